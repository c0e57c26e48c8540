"""Figures, tables and a PDF from Tune results: ``python main_report.py RESULTS_DIR... --out DIR``."""

import sys

from tesp.commands.report import main

if __name__ == "__main__":
    sys.exit(main())
