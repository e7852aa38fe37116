"""Shared plumbing for every telemetry-pipeline service.

Configuration, blob stores, work queues, the partition layout, the incoming record format
and the application database live here so that services depend on this package and never
on one another.
"""

__version__ = "0.1.0"
