"""Evaluate a checkpoint's adaptation on the task pools: ``python main_test.py CHECKPOINT``."""

import sys

from tesp.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
