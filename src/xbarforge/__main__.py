"""`python -m xbarforge ...` runs the `xbarforge` command."""

import sys

from xbarforge.cli import main

if __name__ == "__main__":
    sys.exit(main())
