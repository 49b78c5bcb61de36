"""`python -m messenger` is the same as the `messenger` console script."""

from messenger.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
