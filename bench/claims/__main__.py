"""``python -m bench.claims``: the claims runner on its own (``python -m bench claims`` too)."""

import sys

from bench.claims import main

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
