"""Statistics for comparing methods over few seeds (Agarwal et al. 2021, "Deep reinforcement
learning at the edge of the statistical precipice", NeurIPS).

- :func:`bootstrap_ci`: a percentile bootstrap confidence interval of the mean over seeds;
- :func:`difference_ci`: the same for the difference of two methods' means;
- :func:`iqm`: the interquartile mean, the mean of the middle 50% of the scores (the paper's
  recommended point estimate: robust to outlying runs, less noisy than the median);
- :func:`stratified_bootstrap_ci`: its confidence interval, resampling runs with replacement
  within each task (here: each env) independently, as the paper does;
- :func:`performance_profile`: the fraction of runs whose normalised score exceeds each
  threshold tau, with a stratified-bootstrap band.

Scores are normalised per env before aggregating (:func:`normalise`): 0 is a reference that does
nothing (the still policy), and the runs' largest distance from it is 1 (the best final return
when every run beats the reference, -1 the worst when none does); the scale never reverses the
order of returns.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

Scores = Mapping[str, np.ndarray]  # env -> scores of that env's runs (seeds)


def bootstrap_ci(
    values: np.ndarray, confidence: float = 0.95, reps: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` along axis 0.

    ``values`` ``[runs, ...]``: the interval is computed for every trailing index (e.g. every
    iteration of a learning curve at once). One run gives a zero-width interval at its value.
    """
    values = np.asarray(values, np.float64)
    if len(values) < 2:
        return values.mean(0), values.mean(0)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(values), size=(reps, len(values)))
    means = values[picks].mean(1)
    tail = 100 * (1 - confidence) / 2
    return np.percentile(means, tail, axis=0), np.percentile(means, 100 - tail, axis=0)


def difference_ci(
    a: np.ndarray, b: np.ndarray, confidence: float = 0.95, reps: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """``mean(a) - mean(b)`` and its percentile bootstrap interval, the runs of each side
    resampled independently (two methods' seeds are independent runs, not pairs)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    point = float(a.mean() - b.mean())
    if len(a) < 2 and len(b) < 2:
        return point, point, point
    rng = np.random.default_rng(seed)
    diffs = a[rng.integers(0, len(a), (reps, len(a)))].mean(1) - b[
        rng.integers(0, len(b), (reps, len(b)))
    ].mean(1)
    tail = 100 * (1 - confidence) / 2
    return point, float(np.percentile(diffs, tail)), float(np.percentile(diffs, 100 - tail))


def iqm(scores: np.ndarray) -> float:
    """Interquartile mean: drop the lowest and highest ``floor(n / 4)`` of the ``n`` scores and
    average the rest (``scipy.stats.trim_mean(scores, 0.25)``, which the paper's library uses)."""
    x = np.sort(np.asarray(scores, np.float64).ravel())
    if len(x) == 0:
        return float("nan")
    cut = len(x) // 4
    return float(x[cut : len(x) - cut].mean())


def stratified_bootstrap_ci(
    scores: Scores,
    statistic: Callable[[np.ndarray], float] = iqm,
    confidence: float = 0.95,
    reps: int = 2000,
    seed: int = 0,
) -> tuple[float, float, float]:
    """``statistic`` of all runs pooled over envs, and its stratified-bootstrap interval: each
    replicate resamples the runs of every env with replacement, separately per env."""
    rng = np.random.default_rng(seed)
    groups = [np.asarray(v, np.float64).ravel() for v in scores.values()]
    point = statistic(np.concatenate(groups))
    reps_values = np.empty(reps)
    for i in range(reps):
        reps_values[i] = statistic(np.concatenate([g[rng.integers(0, len(g), len(g))] for g in groups]))
    tail = 100 * (1 - confidence) / 2
    return point, float(np.percentile(reps_values, tail)), float(np.percentile(reps_values, 100 - tail))


def performance_profile(
    scores: Scores, taus: np.ndarray, confidence: float = 0.95, reps: int = 2000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fraction of runs (pooled over envs, each env weighted equally) with score > tau, for
    each tau, and its stratified-bootstrap interval: ``(profile, low, high)``, each ``[taus]``."""

    def profile(groups: Sequence[np.ndarray]) -> np.ndarray:
        return np.mean([(g[:, None] > taus[None]).mean(0) for g in groups], axis=0)

    rng = np.random.default_rng(seed)
    groups = [np.asarray(v, np.float64).ravel() for v in scores.values()]
    boot = np.stack([profile([g[rng.integers(0, len(g), len(g))] for g in groups]) for _ in range(reps)])
    tail = 100 * (1 - confidence) / 2
    return profile(groups), np.percentile(boot, tail, axis=0), np.percentile(boot, 100 - tail, axis=0)


def normalise(score: np.ndarray, reference: float, runs: np.ndarray) -> np.ndarray:
    """Scores of an env's runs on a common scale, increasing with the return whatever the runs:
    ``(score - reference) / span`` with 0 at ``reference`` (the still policy, or the lowest run
    where there is none) and ``span`` the runs' largest distance from it: 1 at the best run when
    every run is above the reference, -1 at the worst when every run is below it, all scores in
    [-1, 1] when runs lie on both sides. ``span`` is always > 0, so a lower return never gets a
    higher score (a negative span would flip the order: a run at -300 scored 1.81 against a
    best of -235 with the still policy at -155), and a best run barely above the reference does
    not blow the others up (a smoke study scored runs at -58,000 against a best 1e-4 above it)."""
    runs = np.asarray(runs, np.float64)
    best, worst = float(runs.max()), float(runs.min())
    span = max(best - reference, reference - worst)
    return (np.asarray(score, np.float64) - reference) / (span if span > 0 else 1.0)
