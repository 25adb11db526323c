"""`python -m bench [ARGS]` (what `make bench ARGS=...` runs): see bench/harness.py."""

import sys

from bench.harness import main

if __name__ == "__main__":
    sys.exit(main())
