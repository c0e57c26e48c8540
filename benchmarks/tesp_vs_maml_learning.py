"""TESP vs MAML at equal env steps on ``wheeled``: the TESP paper's central claim, at the laptop scale.

Lan et al. 2019 ("Meta Reinforcement Learning with Task Embedding and Shared Policy", IJCAI)
report TESP adapting better than MAML, most of all on the out-of-distribution pool D''. This
benchmark compares the two at the **same number of env steps**, not the same number of
meta-iterations: a TESP iteration samples one round more than MAML's (the warm-up episodes that
fill its buffer), so at the laptop scale TESP's checkpoint of iteration 40 and MAML's of
iteration 60 have both sampled 1.2 M steps (the trials run 60 iterations, as in the supplement's
study, where the scale's default is 40).

It runs (resuming it if its folder exists; or, with ``--study``, only reads) the laptop-scale TESP-paper
study restricted to ``maml`` and ``tesp`` on ``wheeled``::

    python main_study.py tesp_paper --scale laptop --iters 60 --envs wheeled --algs maml,tesp --no-noise-sweep

and, for every env-step budget at which both methods have an evaluated checkpoint on every seed,
prints each pool's post-adaptation return (``main_test.py``: first 5 tasks of the pool, no
noise) with a 95% bootstrap CI over seeds, TESP - MAML, and the ratio of their gains over the
still policy (a policy that does not move: -264 on D''), with a paired bootstrap CI over seeds::

    ratio = mean_seeds(R_tesp - R_still) / mean_seeds(R_maml - R_still)

The ratio is only defined where MAML's mean gain is positive; the difference always is.

    python benchmarks/tesp_vs_maml_learning.py [--seeds 0,1,2] [--storage-path DIR]
    python benchmarks/tesp_vs_maml_learning.py --study ~/ray_results/tesp_paper-laptop-...   # the full study's
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tesp.report.report import still_returns  # noqa: E402
from tesp.report.runs import load_evaluations, load_runs  # noqa: E402
from tesp.report.stats import bootstrap_ci  # noqa: E402

ENV, METHODS, POOLS = "wheeled", ("tesp", "maml"), ("D", "D'", "D''")
MATCH = 0.02  # two checkpoints have "equal env steps" within 2%


def run_study(storage: Path, name: str, seeds: str) -> Path:
    folder = storage / name
    if (folder / "study.json").is_file():
        args = ["--resume", str(folder)]
    else:
        args = ["tesp_paper", "--scale", "laptop", "--iters", "60", "--envs", ENV, "--algs", ",".join(METHODS), "--no-noise-sweep",
                "--seeds", seeds, "--storage-path", str(storage), "--name", name]  # fmt: skip
    subprocess.run([sys.executable, str(REPO / "main_study.py"), *args])  # failures: listed; the rest is read
    return folder


def evaluated(study: Path) -> dict[str, dict[int, dict[float, dict]]]:
    """method -> seed -> env steps -> the checkpoint's pools (pool -> sigma -> summary)."""
    evals = load_evaluations([str(study)])
    out: dict = {m: {} for m in METHODS}
    for run in load_runs([str(study)]):
        if run.env != ENV or run.method not in METHODS:
            continue
        for e in evals:
            if e.trial == run.path:
                steps = float(run.at(np.array([e.iteration]), "meta", "env_steps_lifetime")[0])
                out[run.method].setdefault(run.seed, {})[steps] = e.pools | {"iteration": e.iteration}
    return out


def match(steps: float, available: dict[float, dict]) -> dict | None:
    close = [s for s in available if abs(s - steps) <= MATCH * steps]
    return available[min(close, key=lambda s: abs(s - steps))] if close else None


def paired_ratio_ci(
    tesp: np.ndarray, maml: np.ndarray, reps: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """95% percentile interval of mean(tesp) / mean(maml), resampling seeds (pairs) with replacement;
    NaN where some resample's denominator is not positive."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(tesp), size=(reps, len(tesp)))
    num, den = tesp[picks].mean(1), maml[picks].mean(1)
    if (den <= 0).any():
        return float("nan"), float("nan")
    ratios = num / den
    return float(np.percentile(ratios, 2.5)), float(np.percentile(ratios, 97.5))


def fmt(values: np.ndarray) -> str:
    low, high = bootstrap_ci(values)
    return f"{values.mean():8.1f} [{float(low):7.1f}, {float(high):7.1f}]"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--study", default=None, help="only read this tesp_paper study folder")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--storage-path", default=str(Path.home() / "ray_results"))
    parser.add_argument("--name", default="tesp_vs_maml-laptop")
    args = parser.parse_args()
    study = (
        Path(args.study).expanduser()
        if args.study
        else run_study(Path(args.storage_path), args.name, args.seeds)
    )

    found = evaluated(study)
    seeds = sorted(set(found["tesp"]) & set(found["maml"]))
    if not seeds:
        print(f"error: no seed with evaluated tesp and maml checkpoints on {ENV} in {study}", file=sys.stderr)
        return 1
    still = still_returns(ENV)
    budgets = sorted({s for s in found["tesp"][seeds[0]]})
    print(f"TESP vs MAML on {ENV}, seeds {seeds}, post-adaptation return (main_test.py, no noise); "
          f"95% bootstrap CI over seeds; still policy: " + ", ".join(f"{p} {still[p]:.1f}" for p in POOLS))  # fmt: skip
    compared = 0
    for budget in budgets:
        pairs = [(match(budget, found["tesp"][s]), match(budget, found["maml"][s])) for s in seeds]
        if any(t is None or m is None for t, m in pairs):
            continue
        compared += 1
        its = f"TESP iteration {pairs[0][0]['iteration']}, MAML iteration {pairs[0][1]['iteration']}"
        print(f"\n{budget / 1e6:.2f} M env steps ({its})")
        print(f"{'pool':5} {'TESP':>27} {'MAML':>27} {'TESP - MAML':>27}   gain ratio over still [CI]")
        for pool in POOLS:
            t = np.array([p[0][pool]["0.0"]["return_post"] for p in pairs])
            m = np.array([p[1][pool]["0.0"]["return_post"] for p in pairs])
            gain_t, gain_m = t - still[pool], m - still[pool]
            if gain_m.mean() > 0:
                low, high = paired_ratio_ci(gain_t, gain_m)
                ratio = f"{gain_t.mean() / gain_m.mean():6.2f} [{low:.2f}, {high:.2f}]"
            else:
                ratio = f"n/a (MAML {gain_m.mean():+.1f} from the still policy)"
            print(f"{pool:5} {fmt(t):>27} {fmt(m):>27} {fmt(t - m):>27}   {ratio}")
    if not compared:
        print("error: no env-step budget at which both methods have an evaluated checkpoint on every seed",
              file=sys.stderr)  # fmt: skip
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
