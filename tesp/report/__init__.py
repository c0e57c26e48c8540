"""``main_report.py``: figures, tables and a PDF from Tune experiment folders."""
