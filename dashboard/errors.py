"""Errors the dashboard raises on purpose, under the project's root `PipelineError`.

Each carries a message meant for the person at the form or API call. (The error *pages* are
`dashboard.error_pages`.)
"""

from __future__ import annotations

from pipeline.errors import PipelineError


class DashboardError(PipelineError):
    """Base class for errors raised by `dashboard`."""


class UserError(DashboardError):
    """A user could not be created; the message says why."""


class LinkError(DashboardError):
    """The link is forged, damaged, expired or already used; the message says which."""


class UploadRejected(DashboardError):
    """The upload is not a safe gzip-compressed tar archive; the message says what is wrong."""


class WorkerProviderError(DashboardError):
    """A worker provider could not start or stop a worker; the message says what to fix."""


class SSHKeyError(DashboardError):
    """The text is not a single OpenSSH public key."""
