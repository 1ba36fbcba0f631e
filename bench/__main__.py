"""`python -m bench <verb> ...`, the same as the `peft-bench` script: bench.cli."""

from bench.cli import main

if __name__ == "__main__":
    main()
