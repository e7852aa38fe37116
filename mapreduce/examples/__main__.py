"""`python -m mapreduce.examples [NAME ...]`: where the example jobs are, as absolute paths.

The examples ship inside the package, so their place depends on the installation, not on the
current directory. Without arguments this prints the examples' directory (for
`EX=$(python -m mapreduce.examples)` and then `$EX/simple_counter.py`); with names it prints
each file's absolute path and fails with one line for a name that is not an example.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent


def available() -> list[str]:
    return sorted(
        p.name for p in EXAMPLES.iterdir() if p.suffix in (".py", ".json") and p.stem[0] != "_"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mapreduce.examples",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples: " + ", ".join(available()),
    )
    parser.add_argument("names", nargs="*", help="example files to print the paths of")
    args = parser.parse_args(argv)
    if not args.names:
        print(EXAMPLES)
        return 0
    for name in args.names:
        path = EXAMPLES / name
        if name not in available():
            print(
                f"error: no example {name!r}; there are {', '.join(available())}", file=sys.stderr
            )
            return 2
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
