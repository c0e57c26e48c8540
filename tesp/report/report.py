"""What a person looks at after training, from Tune experiment folders (``main_report.py``,
:mod:`tesp.commands.report`).

For every env in the folders: learning curves (pre- and post-adaptation return per pool against
meta-iterations and env steps, methods overlaid, mean over seeds with 95% bootstrap bands, the
still policy's return as a reference line); each method's mechanism panel; across envs, the IQM
of normalised final returns with stratified-bootstrap intervals and performance profiles
(Agarwal et al. 2021); the observation-noise panel from ``main_test.py`` outputs; a method's own
panels (e.g. MLSH's warm-up/joint returns and sub-policy choices); for 2D envs, each method's
trajectories before and after adaptation (from the evaluations); a results table and a settings
table. Written as PNG and SVG, ``report.md`` and one ``report.pdf``, with ``trials.csv``: every
trial's final numbers, from which each table's intervals can be recomputed.

The report reads result folders only: it imports no method and no RLlib code; the command gives
it the methods' names and panels.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from tesp.report import figures, pdf, tables  # noqa: E402
from tesp.report.runs import Evaluation, ReportError, Run, load_evaluations, load_runs  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def still_returns(env: str, env_config: dict | None = None) -> dict[str, float]:
    """Per pool, the mean return of a policy that outputs zero actions (one episode per task);
    empty for an env without pools."""
    import numpy as np

    from tesp.envs import make_env

    options = {k: v for k, v in (env_config or {}).items() if k != "obs_noise_std"}
    task_env = make_env(env, options)
    out = {}
    for pool, tasks in task_env.task_pools().items():
        totals = []
        for task in tasks:
            task_env.set_task(task)
            task_env.reset(seed=0)
            total, done = 0.0, False
            while not done:
                _, reward, terminated, truncated, _ = task_env.step(np.zeros(task_env.action_space.shape))
                total += reward
                done = terminated or truncated
            totals.append(total)
        out[pool] = float(np.mean(totals))
    return out


#: A method's own panel: (its runs on one env, the env) -> a figure.
Panel = Callable[[list[Run], str], "plt.Figure"]


class Pages:
    """The report as it is written: its figures (saved by name) and its Markdown lines."""

    def __init__(self, md: list[str]) -> None:
        self.figures: list[tuple[str, plt.Figure]] = []
        self.md = md

    def figure(self, name: str, fig: plt.Figure, heading: str, alt: str, *caption: str) -> None:
        """A section: its heading, the caption's lines (if any), then the figure."""
        self.figures.append((name, fig))
        self.md += [heading, ""] + ([*caption, ""] if caption else []) + [f"![{alt}]({name}.png)", ""]

    def text(self, *lines: str) -> None:
        self.md += list(lines)


def build(
    roots: list[str],
    out: Path,
    title: str,
    names: Mapping[str, str] | None = None,
    panels: Mapping[str, Mapping[str, Panel]] | None = None,
    reference: str | None = None,
) -> Path:
    """Write every figure and table of ``roots`` into ``out``; returns ``report.md``'s path.
    ``names``: Algorithm class name -> ``--alg`` name; ``panels``: ``--alg`` name -> its own
    panels by title (both from the registry); ``reference``: a method whose evaluated returns
    the others are compared with, difference by difference."""
    plt.rcParams["figure.max_open_warning"] = 0  # every figure stays open until the PDF is written
    runs = load_runs(roots, names)
    out.mkdir(parents=True, exist_ok=True)
    by_env: dict[str, dict[str, list[Run]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        by_env[run.env][run.method].append(run)
    groups = {(env, m): rs for env, ms in by_env.items() for m, rs in ms.items()}
    if reference is not None and reference not in {m for _, m in groups}:
        raise ReportError(
            f"--reference {reference!r} has no runs here; choose from: {', '.join(sorted({m for _, m in groups}))}"
        )
    gradient = {k: rs for k, rs in groups.items() if any("meta" in row for row in rs[0].rows)}
    still = {
        env: _still(env, next(iter(ms.values()))[0].config.get("env_config")) for env, ms in by_env.items()
    }
    pages = Pages([f"# {title}", "", tables.provenance(REPO), "", f"Results: {', '.join(roots)}", ""])
    for env, methods in sorted(by_env.items()):
        _env_sections(pages, env, methods, {m for e, m in gradient if e == env}, still[env], panels or {})
    if gradient:
        _aggregate_sections(pages, gradient, still)
    evaluations = load_evaluations(roots, names)
    _evaluation_sections(pages, evaluations, reference)
    pages.text(
        "## Results",
        "",
        "Final values of training (validation: the first `validation_pool_size` tasks of each pool),",
        "mean [95% bootstrap CI] over seeds.",
        "",
        tables.results_table(tables.results_rows(groups)),
        "",
    )
    pages.text("## Settings", "", tables.settings_table(groups), "")

    for name, fig in pages.figures:
        fig.savefig(out / f"{name}.png", dpi=110)
        fig.savefig(out / f"{name}.svg")
    tables.write_csv(out / "trials.csv", tables.trial_rows(runs, evaluations))
    report = out / "report.md"
    report.write_text("\n".join(pages.md))
    pdf.write(out / "report.pdf", title, pages.md, out)
    for _, fig in pages.figures:
        plt.close(fig)
    return report


def _env_sections(
    pages: Pages,
    env: str,
    methods: Mapping[str, list[Run]],
    gradient: set[str],
    still: Mapping[str, float],
    panels: Mapping[str, Mapping[str, Panel]],
) -> None:
    """One env: the gradient methods' curves and mechanism panel, each method's own panels, and
    the episode returns of the methods without meta-iterations."""
    meta_methods = {m: rs for m, rs in methods.items() if m in gradient}
    if meta_methods:
        seeds = ", ".join(f"{m} {len(rs)}" for m, rs in meta_methods.items())
        pages.figure(
            f"curves_{env}",
            figures.learning_curves(meta_methods, env, still),
            f"## {env}",
            env,
            f"Mean return per pool, pre- (dashed) and post-adaptation (solid), mean over seeds "
            f"({seeds}) with 95% bootstrap bands; dotted: the still policy.",
        )
        mechanism = figures.mechanism_panel(meta_methods, env)
        if mechanism is not None:
            pages.figure(
                f"mechanism_{env}",
                mechanism,
                f"## {env}: mechanism",
                f"mechanism {env}",
                "Is each method's adaptation at work? Per meta-iteration on the training batches, mean over "
                "seeds with 95% bootstrap bands: the KL between the policy before and after the inner steps, "
                "the KL the task latent makes (z = 0 against the adapted z), the latent's inner move over "
                "its spread between tasks, the learned step sizes' 90th percentile and the fraction of them "
                "Adam barely moves (docs/supplement.md).",
            )
    for method, rs in sorted(methods.items()):
        for panel_title, panel in panels.get(method, {}).items():
            name = f"{_slug(method)}_{_slug(panel_title)}_{env}"
            pages.figure(name, panel(rs, env), f"## {env}: {panel_title}", f"{panel_title} {env}")
    for method, rs in sorted(methods.items()):
        if method not in gradient and any(
            "episode_return_mean" in r.rows[0].get("env_runners", {}) for r in rs
        ):
            name = f"episodes_{env}_{_slug(method)}"
            pages.figure(
                name, figures.episode_panel(rs, env, method), f"## {env}: {method}", f"{method} {env}"
            )


def _aggregate_sections(pages: Pages, gradient: Mapping, still: Mapping[str, Mapping[str, float]]) -> None:
    """Across envs, per pool: the IQM of normalised final returns with its intervals."""
    pages.text("## Across envs", "")
    for pool in figures.pools_of([r for rs in gradient.values() for r in rs]):
        fig, summary = figures.aggregate(gradient, still, pool)
        pages.figure(
            f"aggregate_{_slug(pool)}",
            fig,
            f"### {pool}",
            f"aggregate {pool}",
            "IQM of final post-adaptation returns normalised per env (0: still policy, or the "
            "lowest run without one; +-1: the run farthest from it, so 1 is the best run when "
            "every run beats the still policy), 95% stratified-bootstrap intervals:",
            "",
            *[f"- {m}: {v[0]:.3f} [{v[1]:.3f}, {v[2]:.3f}]" for m, v in summary.items()],
        )


def _evaluation_sections(pages: Pages, evaluations: list[Evaluation], reference: str | None = None) -> None:
    """From ``main_test.py``'s outputs: the noise panels, the 2D trajectories and the tables."""
    by_trial_group: dict[tuple[str, str], list] = defaultdict(list)
    for e in evaluations:
        by_trial_group[(e.env, e.method)].append(e)
    for (env, method), evs in sorted(by_trial_group.items()):
        if len({s for e in evs for by in e.pools.values() for s in by}) < 2:
            continue  # evaluated without noise only: nothing to compare
        name = f"noise_{env}_{method}"
        pages.figure(
            name, figures.noise_panel(evs, env, method), f"## Observation noise: {env} {method}", "noise"
        )
    for env, firsts in sorted(_trajectory_evaluations(evaluations).items()):
        for pool in next(iter(firsts.values())).trajectories["pools"]:
            pages.figure(
                f"trajectories_{env}_{_slug(pool)}",
                figures.trajectory_panel(firsts, env, pool),
                f"## Trajectories: {env}, pool {pool}",
                "trajectories",
                "One episode on each of the pool's first tasks (goals marked in the task's colour) before "
                "and after adaptation, each method's first trial at its last evaluated checkpoint.",
            )
    if not evaluations:
        return
    pages.text(
        "## Evaluation",
        "",
        "`main_test.py` on each trial's last evaluated checkpoint: post-adaptation return (and success",
        "rate), mean [95% bootstrap CI] over seeds.",
        "",
        tables.results_table(tables.evaluation_rows(evaluations)),
        "",
    )
    differences = tables.difference_rows(evaluations, reference) if reference else []
    if differences:
        pages.text(
            f"## Differences against {reference}",
            "",
            f"`main_test.py` on each trial's last evaluated checkpoint, without noise: {reference}'s",
            "post-adaptation return minus each other method's, difference of the means over seeds [95%",
            "bootstrap CI, each method's seeds resampled independently]; positive: "
            f"{reference} is ahead, an interval that holds 0: no difference shown.",
            "",
            tables.results_table(differences),
            "",
        )
    by_checkpoint = tables.checkpoint_rows(evaluations)
    if by_checkpoint:
        pages.text(
            "## Evaluation by checkpoint",
            "",
            "`main_test.py` on every evaluated checkpoint, without noise: post-adaptation return (and",
            "success rate) against meta-iterations, mean [95% bootstrap CI] over seeds.",
            "",
            tables.results_table(by_checkpoint),
            "",
        )


def _trajectory_evaluations(evaluations) -> dict[str, dict[str, Evaluation]]:
    """env -> method -> the evaluation with trajectories of the method's first trial (by folder)
    at its last evaluated checkpoint."""
    out: dict[str, dict[str, Evaluation]] = defaultdict(dict)
    for e in sorted(evaluations, key=lambda e: (str(e.trial), -e.iteration)):
        if e.trajectories.get("pools"):
            out[e.env].setdefault(e.method, e)
    return out


def _still(env: str, env_config: dict | None) -> dict[str, float]:
    try:
        return still_returns(env, env_config)
    except (KeyError, ValueError):  # an env this checkout does not know
        return {}


def _slug(text: str) -> str:
    return text.replace("''", "pp").replace("'", "p")
