"""The report's figures, as matplotlib Figures (tests inspect their axes and lines).

Every curve is the mean over a method's seeds with a 95% percentile-bootstrap band
(:func:`tesp.report.stats.bootstrap_ci`), on the iterations every seed reached.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # headless: files only
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from tesp.report.runs import Evaluation, Run  # noqa: E402
from tesp.report.stats import bootstrap_ci, iqm, normalise, performance_profile, stratified_bootstrap_ci  # noqa: E402

TRAINING = "training"
STAGES = {"pre": "return_stage_0", "post": "return_post"}


def legend(ax) -> None:
    """A small legend, when the axes have labelled artists (matplotlib warns otherwise)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)


def pool_keys(pool: str, stage: str) -> tuple[str, ...]:
    """Where a pool's stage return sits in Tune's result: the training batch or a validation pool."""
    return ("meta", STAGES[stage]) if pool == TRAINING else ("validation", pool, STAGES[stage])


def pools_of(runs: Sequence[Run]) -> list[str]:
    """The training pool and every validation pool any run logged, in the order D, D', D''."""
    found = {p for r in runs for row in r.rows for p in (row.get("validation") or {})}
    return [TRAINING] + sorted(found, key=lambda p: (len(p), p))


def mean_curve(
    runs: Sequence[Run], keys: tuple[str, ...]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(iterations, env steps, mean, CI low, CI high) over ``runs`` on the iterations at which
    every run logged ``keys``; env steps are the runs' mean lifetime count there."""
    common = None
    for run in runs:
        its, _ = run.series(*keys)
        common = set(its) if common is None else common & set(its)
    its = np.array(sorted(common or []), dtype=int)
    if len(its) == 0:
        return (np.zeros(0),) * 5
    values = np.stack([run.at(its, *keys) for run in runs])
    steps = np.nanmean(np.stack([run.at(its, *run_steps_key(run)) for run in runs]), axis=0)
    low, high = bootstrap_ci(values)
    return its, steps, values.mean(0), np.atleast_1d(low), np.atleast_1d(high)


def run_steps_key(run: Run) -> tuple[str, ...]:
    """Where a run logs its lifetime env steps: the meta-learners under ``meta``, RLlib's own
    algorithms (``--alg ppo``) at the top level."""
    return ("meta", "env_steps_lifetime") if "meta" in run.rows[0] else ("num_env_steps_sampled_lifetime",)


#: (keys, label): the first key a run logs is plotted. A hierarchical policy's env (the
#: primitives' meta-policy) logs the env's own return and length as ``env_return`` /
#: ``env_steps``; RLlib's ``episode_return_mean`` there sums its agents' rewards (twice the env's).
EPISODE_CURVES = (
    (("env_return", "episode_return_mean"), "mean episode return"),
    (("env_steps", "episode_len_mean"), "mean episode length"),
    (("success",), "success rate"),
    (("obstacles_passed",), "obstacles passed"),
)


def episode_panel(runs: Sequence[Run], env: str, method: str) -> Figure:
    """A single policy's training (RLlib's episode metrics, e.g. ``--alg ppo``): return, length
    and the env's success metrics per episode against env steps, mean over seeds with 95%
    bootstrap bands."""
    logged = {k for r in runs for row in r.rows[:1] for k in row.get("env_runners", {})}
    keys = [
        (next((k for k in options if k in logged), options[-1]), label) for options, label in EPISODE_CURVES
    ]
    curves = [(label, mean_curve(runs, ("env_runners", key))) for key, label in keys]
    curves = [(label, curve) for label, curve in curves if curve[0].size]
    fig, axes = plt.subplots(1, len(curves), figsize=(3.4 * len(curves), 3.2), squeeze=False)
    for ax, (label, (_, steps, mean, low, high)) in zip(axes[0], curves, strict=True):
        ax.plot(steps, mean)
        ax.fill_between(steps, low, high, alpha=0.2, linewidth=0)
        label_axes(ax, "env steps", label, f"{env}: {method} ({len(runs)} seed(s))")
    fig.tight_layout()
    return fig


def learning_curves(
    runs: Mapping[str, Sequence[Run]], env: str, still: Mapping[str, float] | None = None
) -> Figure:
    """One env: rows = x axis (meta-iterations, env steps), columns = pools; per method the
    post-adaptation return (solid, with its band) and the pre-adaptation one (dashed)."""
    all_runs = [r for rs in runs.values() for r in rs]
    pools = pools_of(all_runs)
    fig, axes = plt.subplots(2, len(pools), figsize=(4.2 * len(pools), 6.4), squeeze=False)
    colors = _colors(runs)
    for col, pool in enumerate(pools):
        for row, x_name in enumerate(("meta-iteration", "env steps")):
            ax = axes[row, col]
            for method, method_runs in runs.items():
                for stage, style in (("post", "-"), ("pre", "--")):
                    its, steps, mean, low, high = mean_curve(method_runs, pool_keys(pool, stage))
                    if not len(its):
                        continue
                    x = its if row == 0 else steps
                    marker = "o" if len(x) <= 3 else None  # a few validations: points a reader can see
                    ax.plot(x, mean, style, marker=marker, color=colors[method], label=f"{method} {stage}")
                    if stage == "post":
                        ax.fill_between(x, low, high, color=colors[method], alpha=0.2, linewidth=0)
                        if len(x) == 1:
                            ax.errorbar(
                                x, mean, yerr=[mean - low, high - mean], color=colors[method], capsize=3
                            )
            ref = (still or {}).get("D" if pool == TRAINING else pool)
            if ref is not None:
                ax.axhline(ref, color="grey", linestyle=":", label="still policy")
            title = f"{env}: {pool}" + ("" if pool == TRAINING else " (validation)")
            label_axes(ax, x_name, "mean episode return", title)
            if row == 0:
                ax.xaxis.get_major_locator().set_params(integer=True)  # iterations are whole
    # One legend for the figure, below the panels, never over the data.
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.tight_layout(rect=(0, 0.08 + 0.02 * (len(labels) // 6), 1, 1))
    fig.legend(
        handles, labels, loc="lower center", ncol=min(6, max(1, len(labels))), fontsize=7, frameon=False
    )
    return fig


#: The mechanism metrics the report draws (tesp.meta.mechanism): key, label, log scale.
MECHANISM = (
    ("adaptation_kl", "KL(before || after the inner steps)", True),
    ("context_kl", "KL(z = 0 || adapted z)", True),
    ("z_inner_shift_ratio", "|dz| of the inner steps / spread of z", False),
    ("step_size_q90", "step size, 90th percentile", True),
    ("step_size_grad_below_eps", "step sizes with Adam RMS < eps", False),
)


def mechanism_panel(runs: Mapping[str, Sequence[Run]], env: str) -> Figure | None:
    """One env: each mechanism metric against meta-iterations on the training batches, per
    method (mean over seeds, 95% bootstrap band; only the metrics some method logged). None
    when no run logged any. Is each method's adaptation at work (docs/supplement.md)?"""
    shown = [m for m in MECHANISM if any(mean_curve(rs, ("meta", m[0]))[0].size for rs in runs.values())]
    if not shown:
        return None
    fig, axes = plt.subplots(1, len(shown), figsize=(3.6 * len(shown), 3.4), squeeze=False)
    colors = _colors(runs)
    for ax, (key, label, log) in zip(axes[0], shown, strict=True):
        for method, method_runs in runs.items():
            its, _, mean, low, high = mean_curve(method_runs, ("meta", key))
            if not its.size:
                continue
            if log:  # a KL of exactly 0 (an inactive inner step) sits at the bottom of the axis
                floor = 1e-10
                mean, low, high = (np.maximum(v, floor) for v in (mean, low, high))
            marker = "o" if len(its) <= 3 else None
            ax.plot(its, mean, marker=marker, color=colors[method], label=method)
            ax.fill_between(its, low, high, color=colors[method], alpha=0.2, linewidth=0)
        if log:
            ax.set_yscale("log")
        label_axes(ax, "meta-iteration", label, f"{env}: {key}")
        ax.xaxis.get_major_locator().set_params(integer=True)
    legend(axes[0, 0])
    fig.tight_layout()
    return fig


def final_scores(runs: Sequence[Run], pool: str) -> np.ndarray:
    """Each run's last logged post-adaptation return on ``pool``."""
    return np.array([run.last(*pool_keys(pool, "post")) for run in runs])


def common_envs(raw: Mapping[tuple[str, str], np.ndarray]) -> list[str]:
    """The envs on which every method of ``raw`` ((env, method) -> final scores) has a finite
    score: an aggregate over envs some method lacks would compare methods on different envs."""
    methods = {m for _, m in raw}
    envs = sorted({e for e, _ in raw})
    return [e for e in envs if all(np.isfinite(raw.get((e, m), np.array([]))).any() for m in methods)]


def aggregate(
    runs: Mapping[tuple[str, str], Sequence[Run]],
    still: Mapping[str, Mapping[str, float]],
    pool: str,
    taus: np.ndarray | None = None,
) -> tuple[Figure, dict[str, tuple[float, float, float]]]:
    """Across envs: per method the IQM of normalised final post-adaptation returns on ``pool``
    with its stratified-bootstrap 95% interval (left), and performance profiles (right).

    ``runs`` maps (env, method) to its runs; only the envs every method ran on count
    (:func:`common_envs`). Per env, scores are :func:`~tesp.report.stats.normalise`'d: 0 is the
    still policy's return (the lowest final return of any run where the env has no still
    reference), 1 the highest final return of any run (or -1 the lowest, when no run is above the
    still policy). Returns the figure and ``{method: (iqm, low, high)}``.
    """
    methods = sorted({m for _, m in runs})
    raw = {key: final_scores(rs, pool) for key, rs in runs.items()}
    envs = common_envs(raw)
    scores: dict[str, dict[str, np.ndarray]] = {m: {} for m in methods}
    for env in envs:
        values = np.concatenate([v for (e, _), v in raw.items() if e == env])
        values = values[np.isfinite(values)]
        ref = still.get(env, {}).get("D" if pool == TRAINING else pool)
        ref = ref if ref is not None else values.min()
        for (e, m), v in raw.items():
            if e == env:
                scores[m][env] = normalise(v[np.isfinite(v)], ref, values)
    if taus is None:
        lowest = min(
            [-0.25] + [float(v.min()) for by_env in scores.values() for v in by_env.values() if len(v)]
        )
        taus = np.linspace(lowest, 1.0, 101)
    fig, (bar_ax, prof_ax) = plt.subplots(1, 2, figsize=(10, 3.2 + 0.25 * len(methods)))
    colors = _colors(dict.fromkeys(methods))
    summary = {}
    for i, method in enumerate(methods):
        if not scores[method]:
            continue
        point, lo, hi = stratified_bootstrap_ci(scores[method], iqm)
        summary[method] = (point, lo, hi)
        bar_ax.errorbar(point, i, xerr=[[point - lo], [hi - point]], fmt="o", color=colors[method], capsize=4)
        prof, plo, phi = performance_profile(scores[method], taus)
        prof_ax.plot(taus, prof, color=colors[method], label=method)
        prof_ax.fill_between(taus, plo, phi, color=colors[method], alpha=0.2, linewidth=0)
    bar_ax.set_yticks(range(len(methods)), methods)
    label_axes(
        bar_ax,
        "IQM of normalised final return (95% stratified bootstrap CI)",
        "",
        f"{pool}: {', '.join(envs) or 'no env every method ran on'}",
    )
    label_axes(prof_ax, "normalised return tau", "fraction of runs with score > tau", "performance profile")
    legend(prof_ax)
    fig.tight_layout()
    return fig, summary


def noise_panel(evaluations: Sequence[Evaluation], env: str, method: str) -> Figure:
    """The TESP supplement's Fig. 1 layout: per pool, the post-adaptation return of the evaluated
    checkpoints against their meta-iteration, one line per observation-noise sigma (mean over
    the trials evaluated at that iteration)."""
    pools = sorted({p for e in evaluations for p in e.pools}, key=lambda p: (len(p), p))
    fig, axes = plt.subplots(1, len(pools), figsize=(4.2 * len(pools), 3.4), squeeze=False)
    sigmas = sorted({s for e in evaluations for by in e.pools.values() for s in by}, key=float)
    for ax, pool in zip(axes[0], pools, strict=True):
        for sigma in sigmas:
            points: dict[int, list[float]] = {}
            for e in evaluations:
                value = e.pools.get(pool, {}).get(sigma, {}).get("return_post")
                if value is not None:
                    points.setdefault(e.iteration, []).append(value)
            its = sorted(points)
            ax.plot(its, [np.mean(points[i]) for i in its], "o-", label=f"sigma {sigma}")
        label_axes(ax, "meta-iteration", "post-adaptation return", f"{env} {method}: {pool}")
        legend(ax)
    fig.tight_layout()
    return fig


def trajectory_panel(evaluations: Mapping[str, Evaluation], env: str, pool: str) -> Figure:
    """Trajectories of the first tasks of ``pool`` (one episode each, in the task's colour)
    before (top row) and after (bottom row) adaptation, one column per method: the evaluation
    of each method's ``evaluations`` entry (e.g. its first seed's final checkpoint)."""
    from tesp.viz.trajectories import draw_paths

    methods = list(evaluations)
    fig, axes = plt.subplots(
        2, len(methods), figsize=(3.2 * len(methods), 6.2), squeeze=False, sharex=True, sharey=True
    )
    for col, method in enumerate(methods):
        e = evaluations[method]
        for row, stage in enumerate(("before", "after")):
            ax = axes[row, col]
            draw_paths(ax, e.trajectories["walls"], e.trajectories["pools"][pool][stage])
            ax.set_title(f"{method} (iter {e.iteration}): {stage} adaptation", fontsize=8)
    fig.suptitle(f"{env}: pool {pool}", fontsize=9)
    fig.tight_layout()
    return fig


def label_axes(ax, xlabel: str, ylabel: str, title: str) -> None:
    """Axis labels, a grid, and the title wrapped to the panel's width (never clipped)."""
    import textwrap

    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    width = ax.get_position().width * ax.figure.get_figwidth()  # inches
    ax.set_title("\n".join(textwrap.wrap(title, max(16, int(width * 72 / (9 * 0.6))))), fontsize=9)
    ax.grid(alpha=0.3)


def _colors(keys) -> dict[str, str]:
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    return {k: cycle[i % len(cycle)] for i, k in enumerate(keys)}
