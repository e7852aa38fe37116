"""The package wheel EC2 workers install, kept in the code store under `wheels/`.

An EC2 worker must run the same `mapreduce` and CLIs as this installation, so the operator
publishes a wheel of it once per upgrade (`python -m dashboard publish-wheel`), and each
worker's user data downloads the newest one through a pre-signed URL (the instance has no
credentials for the code store) and `pip install`s it. The wheel is pure Python: the Cython
loop is optional and the package falls back to its pure-Python twin, so it installs on any
CPU and any Python >= 3.11 the AMI has.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlparse

from dashboard.errors import WorkerProviderError
from pipeline.aws import make_client
from pipeline.config import Settings
from pipeline.errors import ObjectNotFound, PipelineError
from pipeline.stores import BlobStore, open_store

WHEELS_PREFIX = "wheels/"
LATEST_KEY = WHEELS_PREFIX + "LATEST"  # holds the file name of the newest published wheel
SOURCE_ROOT = Path(__file__).resolve().parents[2]
_COPY_IGNORE = shutil.ignore_patterns(
    ".venv", "var", ".git", "build", "dist", "*.egg-info", "__pycache__", "*.so", "*.c", "tests"
)


def build_wheel(out_dir: Path, source: Path = SOURCE_ROOT) -> Path:
    """Build a pure-Python wheel of the source tree into `out_dir`; return its path.

    The tree is copied first so the build never writes into a checkout others are using.
    """
    if not (source / "pyproject.toml").is_file():
        raise PipelineError(
            f"{source} is not a source checkout (no pyproject.toml): pass --wheel FILE instead"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="wheel-src-") as scratch:
        tree = Path(scratch) / "src"
        shutil.copytree(source, tree, ignore=_COPY_IGNORE)
        done = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
            + ["--quiet", "--wheel-dir", str(out_dir), str(tree)],
            env={**os.environ, "TELEMETRY_PURE_WHEEL": "1"},
            capture_output=True,
            text=True,
            timeout=600,
        )
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise PipelineError(
            f"building the wheel failed: {detail[-1] if detail else done.returncode}"
        )
    wheels = sorted(out_dir.glob("telemetry_pipeline-*.whl"), key=lambda p: p.stat().st_mtime)
    if not wheels:
        raise PipelineError(f"pip built no telemetry_pipeline wheel in {out_dir}")
    return wheels[-1]


def publish_wheel(code_store: BlobStore, wheel: Path) -> str:
    """Upload `wheel` and make it the one new workers install; return its key."""
    if not wheel.name.endswith(".whl"):
        raise PipelineError(f"{wheel} is not a wheel (.whl)")
    if not wheel.is_file():
        raise PipelineError(f"{wheel}: no such file")
    key = WHEELS_PREFIX + wheel.name
    code_store.put_file(key, str(wheel))
    code_store.put(LATEST_KEY, wheel.name.encode())
    return key


def latest_wheel_key(code_store: BlobStore) -> str:
    """The key of the wheel new workers install; a clear error when none was published."""
    try:
        name = code_store.get(LATEST_KEY).decode().strip()
    except ObjectNotFound:
        name = ""
    if not name:
        raise WorkerProviderError(
            "no package wheel in the code store for EC2 workers to install: run "
            "`python -m dashboard publish-wheel` once (and after each upgrade)"
        )
    return WHEELS_PREFIX + name


def wheel_download_url(settings: Settings, key: str, expires_seconds: int) -> str:
    """A pre-signed GET URL for `key` in the code store (which must be s3://)."""
    parsed = urlparse(settings.code_url)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise WorkerProviderError(
            f"TELEMETRY_CODE_URL must be s3:// for EC2 workers to download the package "
            f"(got {settings.code_url!r}); an instance cannot reach a local directory"
        )
    prefix = parsed.path.strip("/")
    s3 = make_client("s3", endpoint_url=settings.s3_endpoint_url or None)
    return s3.generate_presigned_url(
        "get_object",
        Params={"Bucket": parsed.netloc, "Key": f"{prefix}/{key}" if prefix else key},
        ExpiresIn=expires_seconds,
    )


def open_code_store(settings: Settings) -> BlobStore:
    return open_store(
        settings.code_url, setting="TELEMETRY_CODE_URL", endpoint_url=settings.s3_endpoint_url
    )
