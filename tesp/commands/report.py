"""``python main_report.py RESULTS_DIR... --out DIR``: figures, tables and a PDF from Tune
experiment folders (:mod:`tesp.report.report`), with the methods' names and own panels from the
registry."""

from __future__ import annotations

import argparse
from pathlib import Path

from tesp.errors import ConfigError, OneLineParser, check_writable, fail


def make_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="main_report.py",
        description="Learning curves, mechanism panels, aggregate scores, evaluation tables and a PDF "
        "from Tune experiment folders.",
    )
    parser.add_argument(
        "results", nargs="+",
        help="Tune experiment folders (or folders holding them); or reports' trials.csv files, for the "
        "tables alone (results, differences, mechanism) without Tune's folders",
    )  # fmt: skip
    parser.add_argument("--out", required=True, help="folder for the figures, report.md and report.pdf")
    parser.add_argument("--title", default="tesp report", help="title of report.md and report.pdf")
    parser.add_argument(
        "--reference", default=None, metavar="METHOD",
        help="a method (--alg name) whose evaluated returns the others are compared with: a table of "
        "differences with bootstrap intervals",
    )  # fmt: skip
    return parser


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    out = Path(args.out).expanduser()
    if out.exists() and not out.is_dir():
        fail(f"--out {args.out!r} is a file, not a folder")
    csvs = [r for r in args.results if r.endswith(".csv")]
    if csvs:
        if len(csvs) < len(args.results):
            fail("give either Tune experiment folders or trials.csv files, not both")
        return _tables_from_csv(csvs, out, args.title, args.reference)
    from tesp.commands.progress import restore_trial_params
    from tesp.registry import method_names, report_panels
    from tesp.report.report import build
    from tesp.report.runs import ReportError

    for given in map(Path, args.results):  # Tune experiments whose trials lost their params.json
        given = given.expanduser()
        for folder in [given, *(sorted(given.iterdir()) if given.is_dir() else [])]:
            for name in restore_trial_params(folder):
                print(f"restored {name}/params.json from Tune's experiment state", flush=True)
    try:
        check_writable(str(out), "--out")
        report = build(args.results, out, args.title, method_names(), report_panels(), args.reference)
    except (ReportError, ConfigError) as e:
        fail(str(e))
    except OSError as e:  # e.g. the disk filled while the figures were written
        fail(f"--out {args.out!r}: {e.strerror or e} ({e.filename or out})")
    print(f"wrote {report}, report.pdf and the figures in {out}")
    return 0


def _tables_from_csv(paths: list[str], out: Path, title: str, reference: str | None) -> int:
    """``report.md`` with the tables of :mod:`tesp.report.summary` from ``trials.csv`` files."""
    from tesp.report.runs import ReportError
    from tesp.report.summary import load_trials, markdown

    try:
        check_writable(str(out), "--out")
        text = markdown(load_trials(paths), reference)
    except (ReportError, ConfigError) as e:
        fail(str(e))
    out.mkdir(parents=True, exist_ok=True)
    report = out / "report.md"
    report.write_text(f"# {title}\n\nFrom: {', '.join(paths)}\n\n{text}")
    print(f"wrote {report}")
    return 0
