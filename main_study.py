#!/usr/bin/env python
"""Train, evaluate and report a whole comparison: ``python main_study.py tesp_paper --scale laptop``."""

import sys

from tesp.commands.auth import prepare_client_auth
from tesp.commands.console import prepare_console

prepare_client_auth(sys.argv[1:])  # before Ray is imported
prepare_console(sys.argv[1:])

from tesp.commands.study import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
