"""Upload checks for code tarballs, so a bad upload is an inline form error, not a failed run.

The member checks and limits are the scheduler's (scheduler.tarball, the one tarball-safety
module); this adds the upload form's own checks (file name, size, empty file) and words the
problem for the form. The scheduler's `store_tarball` checks the archive again before storing.
"""

from __future__ import annotations

from dashboard.errors import UploadRejected
from scheduler.config import load_scheduler_config
from scheduler.errors import TarballError
from scheduler.tarball import GZIP_MAGIC, validate_tarball

ALLOWED_SUFFIXES = (".tar.gz", ".tgz")


def check_tarball(filename: str, data: bytes, max_bytes: int) -> None:
    """Raise UploadRejected unless `data` is a gzip tar of plain files and directories with
    safe relative names, within the scheduler's extraction limits."""
    if not filename.lower().endswith(ALLOWED_SUFFIXES):
        raise UploadRejected("The file name must end in .tar.gz or .tgz.")
    if len(data) > max_bytes:
        raise UploadRejected(
            f"The tarball is {len(data):,} bytes; the limit is {max_bytes:,} bytes."
        )
    if not data:
        raise UploadRejected("The uploaded file is empty.")
    if not data.startswith(GZIP_MAGIC):
        raise UploadRejected(
            "This is not a gzip file (the content does not start with the gzip header)."
        )
    config = load_scheduler_config()
    try:
        members = validate_tarball(
            data,
            max_compressed=max_bytes,
            max_bytes=config.extract_max_bytes,
            max_members=config.extract_max_members,
        )
    except TarballError as exc:
        message = str(exc)
        if message.startswith("corrupt or truncated"):
            raise UploadRejected(
                f"This gzip file does not hold a readable tar archive ({message})."
            ) from exc
        raise UploadRejected(f"Unsafe archive: {message}.") from exc
    if not members:
        raise UploadRejected("The archive is empty.")
