"""`python -m launcher`: what `make run` starts (see launcher.runall)."""

import sys

from launcher.runall import main

if __name__ == "__main__":
    sys.exit(main())
