"""Pack the example job into a code tarball: `python -m scheduler.examples.build OUT.tar.gz`.

Then: python -m scheduler add --name published-summary --tarball OUT.tar.gz \
          --command 'python summarise.py' --output-dir output --owner you@example.com
"""

from __future__ import annotations

import argparse
import tarfile
from pathlib import Path

SOURCE = Path(__file__).with_name("summary_job")


def build(out: Path, source: Path = SOURCE) -> Path:
    with tarfile.open(out, "w:gz") as archive:
        for path in sorted(source.rglob("*")):
            if "__pycache__" in path.parts:
                continue
            archive.add(path, arcname=path.relative_to(source).as_posix(), recursive=False)
    return out


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
