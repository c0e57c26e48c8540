"""What a person looks at after training, from Tune experiment folders (``main_report.py``,
:mod:`tesp.commands.report`).

For every env in the folders: learning curves (pre- and post-adaptation return per pool against
meta-iterations and env steps, methods overlaid, mean over seeds with 95% bootstrap bands, the
still policy's return as a reference line); each method's mechanism panel; across envs, the IQM
of normalised final returns with stratified-bootstrap intervals and performance profiles
(Agarwal et al. 2021); the observation-noise panel from ``main_test.py`` outputs; a method's own
panels (e.g. MLSH's warm-up/joint returns and sub-policy choices); for 2D envs, each method's
trajectories before and after adaptation (from the evaluations); a results table and a settings
table. Written as PNG and SVG, ``report.md`` and one ``report.pdf``.

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
from tesp.report.runs import Evaluation, Run, load_evaluations, load_runs  # noqa: E402

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


def build(
    roots: list[str],
    out: Path,
    title: str,
    names: Mapping[str, str] | None = None,
    panels: Mapping[str, Mapping[str, Panel]] | None = None,
) -> Path:
    """Write every figure and table of ``roots`` into ``out``; returns ``report.md``'s path.
    ``names``: Algorithm class name -> ``--alg`` name; ``panels``: ``--alg`` name -> its own
    panels by title (both from the registry)."""
    plt.rcParams["figure.max_open_warning"] = 0  # every figure stays open until the PDF is written
    runs = load_runs(roots, names)
    out.mkdir(parents=True, exist_ok=True)
    by_env: dict[str, dict[str, list[Run]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        by_env[run.env][run.method].append(run)
    groups = {(env, m): rs for env, ms in by_env.items() for m, rs in ms.items()}
    gradient = {k: rs for k, rs in groups.items() if any("meta" in row for row in rs[0].rows)}
    still = {
        env: _still(env, next(iter(ms.values()))[0].config.get("env_config")) for env, ms in by_env.items()
    }
    pages: list[tuple[str, plt.Figure]] = []
    md = [f"# {title}", "", tables.provenance(REPO), "", f"Results: {', '.join(roots)}", ""]

    for env, methods in sorted(by_env.items()):
        meta_methods = {m: rs for m, rs in methods.items() if (env, m) in gradient}
        if meta_methods:
            fig = figures.learning_curves(meta_methods, env, still[env])
            seeds = ", ".join(f"{m} {len(rs)}" for m, rs in meta_methods.items())
            pages.append((f"curves_{env}", fig))
            md += [
                f"## {env}",
                "",
                f"Mean return per pool, pre- (dashed) and post-adaptation (solid), mean over seeds "
                f"({seeds}) with 95% bootstrap bands; dotted: the still policy.",
                "",
                f"![{env}](curves_{env}.png)",
                "",
            ]
            mechanism = figures.mechanism_panel(meta_methods, env)
            if mechanism is not None:
                pages.append((f"mechanism_{env}", mechanism))
                md += [
                    f"## {env}: mechanism",
                    "",
                    "Is each method's adaptation at work? Per meta-iteration on the training batches, mean over "
                    "seeds with 95% bootstrap bands: the KL between the policy before and after the inner steps, "
                    "the KL the task latent makes (z = 0 against the adapted z), the latent's inner move over "
                    "its spread between tasks, the learned step sizes' 90th percentile and the fraction of them "
                    "Adam barely moves (docs/supplement.md).",
                    "",
                    f"![mechanism {env}](mechanism_{env}.png)",
                    "",
                ]
        for method, rs in sorted(methods.items()):
            for panel_title, panel in (panels or {}).get(method, {}).items():
                name = f"{_slug(method)}_{_slug(panel_title)}_{env}"
                pages.append((name, panel(rs, env)))
                md += [f"## {env}: {panel_title}", "", f"![{panel_title} {env}]({name}.png)", ""]
        for method, rs in sorted(methods.items()):
            if (env, method) not in gradient and any(
                "episode_return_mean" in r.rows[0].get("env_runners", {}) for r in rs
            ):
                name = f"episodes_{env}_{_slug(method)}"
                pages.append((name, figures.episode_panel(rs, env, method)))
                md += [f"## {env}: {method}", "", f"![{method} {env}]({name}.png)", ""]

    if gradient:
        md += ["## Across envs", ""]
        for pool in figures.pools_of([r for rs in gradient.values() for r in rs]):
            fig, summary = figures.aggregate(gradient, still, pool)
            name = f"aggregate_{_slug(pool)}"
            pages.append((name, fig))
            md += [
                f"### {pool}",
                "",
                "IQM of final post-adaptation returns normalised per env (0: still policy, or the "
                "lowest run without one; 1: the best run), 95% stratified-bootstrap intervals:",
                "",
                *[f"- {m}: {v[0]:.3f} [{v[1]:.3f}, {v[2]:.3f}]" for m, v in summary.items()],
                "",
                f"![aggregate {pool}]({name}.png)",
                "",
            ]

    evaluations = load_evaluations(roots, names)
    by_trial_group: dict[tuple[str, str], list] = defaultdict(list)
    for e in evaluations:
        by_trial_group[(e.env, e.method)].append(e)
    for (env, method), evs in sorted(by_trial_group.items()):
        if len({s for e in evs for by in e.pools.values() for s in by}) < 2:
            continue  # evaluated without noise only: nothing to compare
        name = f"noise_{env}_{method}"
        pages.append((name, figures.noise_panel(evs, env, method)))
        md += [f"## Observation noise: {env} {method}", "", f"![noise]({name}.png)", ""]

    for env, firsts in sorted(_trajectory_evaluations(evaluations).items()):
        for pool in next(iter(firsts.values())).trajectories["pools"]:
            name = f"trajectories_{env}_{_slug(pool)}"
            pages.append((name, figures.trajectory_panel(firsts, env, pool)))
            md += [
                f"## Trajectories: {env}, pool {pool}",
                "",
                "One episode on each of the pool's first tasks (goals marked in the task's colour) before "
                "and after adaptation, each method's first trial at its last evaluated checkpoint.",
                "",
                f"![trajectories]({name}.png)",
                "",
            ]

    if evaluations:
        md += [
            "## Evaluation",
            "",
            "`main_test.py` on each trial's last evaluated checkpoint: post-adaptation return (and success",
            "rate), mean [95% bootstrap CI] over seeds.",
            "",
            tables.results_table(tables.evaluation_rows(evaluations)),
            "",
        ]
        by_checkpoint = tables.checkpoint_rows(evaluations)
        if by_checkpoint:
            md += [
                "## Evaluation by checkpoint",
                "",
                "`main_test.py` on every evaluated checkpoint, without noise: post-adaptation return (and",
                "success rate) against meta-iterations, mean [95% bootstrap CI] over seeds.",
                "",
                tables.results_table(by_checkpoint),
                "",
            ]
    rows = tables.results_rows(groups)
    md += [
        "## Results",
        "",
        "Final values of training (validation: the first `validation_pool_size` tasks of each pool),",
        "mean [95% bootstrap CI] over seeds.",
        "",
        tables.results_table(rows),
        "",
    ]
    md += ["## Settings", "", tables.settings_table(groups), ""]

    for name, fig in pages:
        fig.savefig(out / f"{name}.png", dpi=110)
        fig.savefig(out / f"{name}.svg")
    report = out / "report.md"
    report.write_text("\n".join(md))
    pdf.write(out / "report.pdf", title, md, out)
    for _, fig in pages:
        plt.close(fig)
    return report


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
