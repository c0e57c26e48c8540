#!/usr/bin/env python
"""Meta-train a method on a task family: ``python main_train.py --env point --alg maml``."""

import sys

from tesp.cli import main

if __name__ == "__main__":
    sys.exit(main())
