"""Pack the example job into a code tarball: `python -m scheduler.examples.build OUT.tar.gz`.

The packed example is also committed as `scheduler/examples/summary-job.tar.gz`; the build is
byte-for-byte reproducible (no timestamps or owners), and a test rebuilds it and compares, so
the tarball and `summary_job/` cannot drift apart. After editing `summary_job/`, run
`python -m scheduler.examples.build scheduler/examples/summary-job.tar.gz`.

Then: python -m scheduler add --name published-summary --tarball OUT.tar.gz \
          --command 'python summarise.py' --output-dir output --owner you@example.com
"""

from __future__ import annotations

import argparse
import gzip
import io
import tarfile
from pathlib import Path

SOURCE = Path(__file__).with_name("summary_job")
TARBALL = Path(__file__).with_name("summary-job.tar.gz")


def build(out: Path, source: Path = SOURCE) -> Path:
    out.write_bytes(tarball_bytes(source))
    return out


def tarball_bytes(source: Path = SOURCE) -> bytes:
    """The tarball of `source`, the same bytes every time for the same files."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for path in sorted(source.rglob("*")):
            if "__pycache__" in path.parts:
                continue
            info = archive.gettarinfo(path, arcname=path.relative_to(source).as_posix())
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            info.mode = 0o755 if info.isdir() else 0o644
            if info.isfile():
                with open(path, "rb") as handle:
                    archive.addfile(info, handle)
            else:
                archive.addfile(info)
    return gzip.compress(buffer.getvalue(), mtime=0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scheduler.examples.build",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("out", type=Path, help="tarball to write, e.g. summary-job.tar.gz")
    args = parser.parse_args(argv)
    build(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
