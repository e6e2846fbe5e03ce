"""`python -m cft` is the `cft` console script (so `accelerate launch -m cft train ...` works)."""

from cft.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
