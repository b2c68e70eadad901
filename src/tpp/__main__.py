"""`python -m tpp ...` (also what `torchrun -m tpp ...` runs)."""

from tpp.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
