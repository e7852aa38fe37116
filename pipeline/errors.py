"""Exceptions that carry a message a person can act on."""


class PipelineError(Exception):
    """Base class for every error this project raises on purpose."""


class ConfigError(PipelineError):
    """A setting is missing, malformed or points at something unusable.

    The message always names the setting (for example `TELEMETRY_QUEUE_URL`) so that the
    person reading it knows what to change.
    """

    def __init__(self, setting: str, problem: str) -> None:
        self.setting = setting
        self.problem = problem
        super().__init__(f"{setting}: {problem}")


class ServiceUnreachable(ConfigError):
    """A configured service (blob store, queue) did not answer or answered "unavailable".

    Still a ConfigError for whoever only checks settings, but it may be an outage rather than
    a wrong setting: a service starting up waits and tries again instead of giving up.
    """


class StoreError(PipelineError):
    """A blob store operation failed after its retries."""


class ObjectNotFound(StoreError, KeyError):
    """The requested key does not exist in the store."""

    def __str__(self) -> str:  # KeyError quotes its argument; keep the plain message
        return str(self.args[0]) if self.args else "object not found"


class QueueError(PipelineError):
    """A work queue operation failed after its retries."""


class CorruptBatch(PipelineError):
    """A batch has damage that is not a torn tail; the offset says where."""

    def __init__(self, source: str, offset: int, problem: str) -> None:
        self.source, self.offset, self.problem = source, offset, problem
        super().__init__(f"{source}: corrupt record at byte {offset}: {problem}")


class LayoutError(PipelineError):
    """A filter or schema file is malformed, or a key is not in the published layout."""


class MailError(PipelineError):
    """A message could not be delivered to the SMTP server."""
