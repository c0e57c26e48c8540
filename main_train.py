#!/usr/bin/env python
"""Meta-train a method on a task family: ``python main_train.py --env point --alg maml``."""

import sys

from tesp.commands.auth import prepare_client_auth
from tesp.commands.console import prepare_console

prepare_client_auth(sys.argv[1:])  # before Ray is imported
prepare_console(sys.argv[1:])

from tesp.commands.train import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
