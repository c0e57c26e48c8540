"""main_report.py: figures, tables and the PDF from Tune-format experiment folders."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from tesp.envs import make_env
from tesp.registry import method_names
from tesp.report import figures, stats, tables
from tesp.report.runs import load_runs

from .conftest import REPO

POOLS = ("D", "D'", "D''")
NAMES = method_names()  # what main_report.py gives the report: class name -> --alg name


def fake_experiment(root, method_class, env, seed, iterations, offset, validate_every=2):
    """A trial folder laid out as Tune writes one (params.json, result.json lines), with returns
    that are a known function of the iteration: pre = offset + it, post = offset + 2 it (+ 10 per
    pool index on the validation pools)."""
    trial = root / f"{method_class}_{env}_0000{seed}_{seed}_seed={seed}"
    trial.mkdir(parents=True)
    (trial / "params.json").write_text(json.dumps({"env": env, "seed": seed, "lr": 0.001}))
    with open(trial / "result.json", "w") as f:
        for it in range(1, iterations + 1):
            row = {
                "training_iteration": it,
                "time_total_s": 2.0 * it,
                "meta": {
                    "return_stage_0": offset + it,
                    "return_post": offset + 2 * it,
                    "env_steps_lifetime": 1000 * it,
                },
            }
            if it % validate_every == 0:
                row["validation"] = {
                    p: {"return_stage_0": offset + it + 10 * i, "return_post": offset + 2 * it + 10 * i}
                    for i, p in enumerate(POOLS)
                }
            f.write(json.dumps(row) + "\n")
    return trial


@pytest.fixture
def results(tmp_path):
    root = tmp_path / "results"
    for seed in (0, 1):
        fake_experiment(root / "maml-exp", "MAML", "wheeled", seed, iterations=6, offset=-100 + seed)
        fake_experiment(root / "tesp-exp", "TESP", "wheeled", seed, iterations=6, offset=-80 + 3 * seed)
    return root


def test_runs_are_read_with_their_method_env_and_seed(results):
    runs = load_runs([str(results)], NAMES)
    assert sorted((r.method, r.seed) for r in runs) == [("maml", 0), ("maml", 1), ("tesp", 0), ("tesp", 1)]
    assert {r.env for r in runs} == {"wheeled"}
    its, post = runs[0].series("validation", "D'", "return_post")
    np.testing.assert_array_equal(its, [2, 4, 6])


def test_learning_curves_have_a_panel_per_pool_and_axis_and_a_line_per_method_and_stage(results):
    runs = load_runs([str(results)], NAMES)
    by_method = {m: [r for r in runs if r.method == m] for m in ("maml", "tesp")}
    still = {"D": -156.0, "D'": -147.0, "D''": -264.0}
    fig = figures.learning_curves(by_method, "wheeled", still)
    axes = np.array(fig.axes).reshape(2, 4)
    assert [ax.get_title() for ax in axes[0]] == [
        "wheeled: training",
        "wheeled: D (validation)",
        "wheeled: D' (validation)",
        "wheeled: D'' (validation)",
    ]
    for row in axes:
        for col, ax in enumerate(row):
            labels = sorted(line.get_label() for line in ax.get_lines())
            assert labels == ["maml post", "maml pre", "still policy", "tesp post", "tesp pre"]
            (ref,) = [line for line in ax.get_lines() if line.get_label() == "still policy"]
            assert ref.get_ydata()[0] == [-156.0, -156.0, -147.0, -264.0][col]
    # The plotted post-adaptation curve of D' is the seeds' mean: offset + 2 it + 10.
    (maml_post,) = [line for line in axes[0, 2].get_lines() if line.get_label() == "maml post"]
    np.testing.assert_array_equal(maml_post.get_xdata(), [2, 4, 6])
    np.testing.assert_allclose(maml_post.get_ydata(), [-99.5 + 2 * it + 10 for it in (2, 4, 6)])
    # Against env steps, the same values at the mean lifetime env steps.
    (steps_post,) = [line for line in axes[1, 2].get_lines() if line.get_label() == "maml post"]
    np.testing.assert_array_equal(steps_post.get_xdata(), [2000, 4000, 6000])


def test_results_table_holds_the_final_values_and_their_ci(results):
    runs = load_runs([str(results)], NAMES)
    groups = {("wheeled", m): [r for r in runs if r.method == m] for m in ("maml", "tesp")}
    rows = {row["method"]: row for row in tables.results_rows(groups)}
    mean, low, high, _ = rows["tesp"]["D'' post"]
    finals = [-80 + 12 + 20, -77 + 12 + 20]  # offset + 2 * 6 + 10 * 2, per seed
    assert mean == pytest.approx(np.mean(finals))
    assert low == pytest.approx(min(finals)) and high == pytest.approx(max(finals))
    assert rows["maml"]["training pre"][0] == pytest.approx(-99.5 + 6)
    assert rows["maml"]["env steps"] == 6000 and rows["maml"]["wall-clock s"] == 12
    assert rows["maml"]["steps/s"] == pytest.approx(500)
    text = tables.results_table(list(rows.values()))
    assert "| wheeled | tesp | 2 |" in text


def test_bootstrap_interval_of_two_values_spans_them():
    # Resampled means of [0, 1] are 0, 0.5, 1 with probabilities 1/4, 1/2, 1/4: the 2.5th and
    # 97.5th percentiles are 0 and 1.
    low, high = stats.bootstrap_ci(np.array([0.0, 1.0]), reps=4000)
    assert (low, high) == (0.0, 1.0)
    low, high = stats.bootstrap_ci(np.array([3.0, 3.0, 3.0]))
    assert low == high == 3.0


def test_iqm_is_scipys_trimmed_mean():
    from scipy.stats import trim_mean

    for n in range(1, 13):
        x = np.random.default_rng(n).normal(size=n)
        assert stats.iqm(x) == pytest.approx(trim_mean(x, 0.25))
    assert stats.iqm(np.array([0.0, 1.0, 2.0, 100.0])) == 1.5  # the outliers are cut


def test_stratified_bootstrap_resamples_within_each_env():
    # Env a's runs all score 0, env b's all 1: every replicate pools two 0s and two 1s, so the
    # IQM is 0.5 with no spread; resampling the pooled runs would spread it.
    point, low, high = stats.stratified_bootstrap_ci({"a": np.zeros(2), "b": np.ones(2)}, stats.iqm)
    assert point == low == high == 0.5


def test_performance_profile_counts_runs_above_each_threshold():
    prof, low, high = stats.performance_profile(
        {"a": np.array([0.1, 0.5, 0.9])}, np.array([0.0, 0.3, 0.7, 1.0])
    )
    np.testing.assert_allclose(prof, [1.0, 2 / 3, 1 / 3, 0.0])
    assert np.all(low <= prof) and np.all(prof <= high)


def test_aggregate_normalises_by_the_still_policy_and_the_best_run(results):
    runs = load_runs([str(results)], NAMES)
    groups = {("wheeled", m): [r for r in runs if r.method == m] for m in ("maml", "tesp")}
    fig, summary = figures.aggregate(groups, {"wheeled": {"D''": -264.0}}, "D''")
    best = -77 + 12 + 20
    tesp_scores = (np.array([-80 + 32, best]) + 264) / (best + 264)
    assert summary["tesp"][0] == pytest.approx(tesp_scores.mean())  # IQM of 2 runs = their mean
    assert len(fig.axes) == 2


def test_normalised_scores_keep_the_order_of_returns_when_every_run_is_below_the_still_policy():
    # The old scale (x - still) / (best - still) gave -300 a score of 1.81 against -235's 1.
    runs = np.array([-300.0, -260.0, -235.0])
    scores = stats.normalise(runs, -155.0, runs)
    assert list(np.argsort(scores)) == [0, 1, 2]
    np.testing.assert_allclose(scores, (runs + 155) / 145)  # -1 at the worst run, 0 at the still policy
    assert np.all(scores < 0)
    above = stats.normalise(np.array([-200.0, -100.0]), -155.0, np.array([-200.0, -100.0]))
    np.testing.assert_allclose(above, [-45 / 55, 1.0])  # 1 at the best run when some run beats it
    # a best run barely above the still policy does not blow up the others (the old span, best
    # - still = 1e-4, scored -60 at -500,000): the span is the largest distance from it
    mixed = stats.normalise(np.array([-60.0, -9.9999]), -10.0, np.array([-60.0, -9.9999]))
    np.testing.assert_allclose(mixed, [-1.0, 1e-4 / 50], rtol=1e-6)


def _fixed_runs(env, method, finals):
    from tesp.report.runs import Run

    rows = [[{"training_iteration": 1, "validation": {"D''": {"return_post": v}}}] for v in finals]
    return [Run(path=None, method=method, env=env, seed=i, config={}, rows=r) for i, r in enumerate(rows)]


def test_aggregate_ranks_methods_by_return_when_all_are_below_the_still_policy():
    groups = {
        ("wheeled", "best"): _fixed_runs("wheeled", "best", [-235.0, -240.0]),
        ("wheeled", "worst"): _fixed_runs("wheeled", "worst", [-300.0, -310.0]),
    }
    _, summary = figures.aggregate(groups, {"wheeled": {"D''": -155.0}}, "D''")
    assert summary["best"][0] > summary["worst"][0]
    assert summary["best"][0] < 0  # below the still policy, and shown so


def test_aggregate_leaves_out_envs_a_method_did_not_run_on():
    groups = {
        ("wheeled", "a"): _fixed_runs("wheeled", "a", [-100.0]),
        ("wheeled", "b"): _fixed_runs("wheeled", "b", [-200.0]),
        ("ant", "a"): _fixed_runs("ant", "a", [50.0]),  # b has no ant run
    }
    fig, summary = figures.aggregate(groups, {}, "D''")
    assert summary["a"][0] == pytest.approx(1.0) and summary["b"][0] == pytest.approx(0.0)
    assert "ant" not in fig.axes[0].get_title() and "wheeled" in fig.axes[0].get_title()


def test_report_writes_figures_markdown_and_pdf(results, tmp_path):
    out = tmp_path / "report"
    proc = subprocess.run(
        [sys.executable, "main_report.py", str(results), "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    for name in ("curves_wheeled", "aggregate_training", "aggregate_Dpp"):
        assert (out / f"{name}.png").stat().st_size > 0 and (out / f"{name}.svg").stat().st_size > 0
    assert (out / "report.pdf").read_bytes().startswith(b"%PDF")
    text = (out / "report.md").read_text()
    assert "![wheeled](curves_wheeled.png)" in text and "## Settings" in text and "torch " in text


def test_report_refuses_a_folder_without_results(tmp_path):
    proc = subprocess.run(
        [sys.executable, "main_report.py", str(tmp_path), "--out", str(tmp_path / "out")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no Tune results")


def test_trajectory_plot_has_a_line_per_episode_and_a_goal_per_task():
    from tesp.commands.render import trajectory_figure
    from tesp.meta.batch import make_batch

    rng = np.random.default_rng(0)

    def batch(episodes, horizon=5):
        obs = np.cumsum(rng.normal(size=(episodes, horizon, 2)), axis=1).astype(np.float32)
        mask = np.ones((episodes, horizon), np.float32)
        mask[0, 3:] = 0.0  # a short episode
        zeros = np.zeros((episodes, horizon), np.float32)
        return make_batch(
            obs, obs.copy(), np.zeros((episodes, horizon, 4), np.float32), zeros, mask, 0.99, 0.97
        )

    tasks = [{"goal": np.array([0.1 * i, -0.2])} for i in range(3)]
    before, after = [batch(2) for _ in tasks], [batch(4) for _ in tasks]
    fig = trajectory_figure(tasks, before, after, make_env("point"), "point", (0, 1))
    before, after = fig.axes

    def paths(ax):
        return [line for line in ax.get_lines() if line.get_marker() in ("None", "", None)]

    def marks(ax, marker):
        return [line for line in ax.get_lines() if line.get_marker() == marker]

    # one line per episode (at most 3 per task), each with its task's goal; no decoys on point
    assert len(paths(before)) == 3 * 2 and len(paths(after)) == 3 * 3
    assert len(paths(before)[0].get_xdata()) == 3  # drawn to the episode's end, not the padding
    goals = marks(after, "x")
    np.testing.assert_allclose([g.get_xdata()[0] for g in goals], np.repeat([0.0, 0.1, 0.2], 3))
    assert not marks(after, "o")
    # each episode's start marked where its line begins, in its line's colour; axes labelled
    starts = marks(after, "s")
    assert [(s.get_xdata()[0], s.get_color()) for s in starts] == [
        (p.get_xdata()[0], p.get_color()) for p in paths(after)
    ]
    assert (after.get_xlabel(), after.get_ylabel()) == ("x", "y")


def test_bandit_trajectories_mark_each_episodes_correct_goal_and_decoy():
    from tesp.commands.render import trajectory_figure
    from tesp.meta.batch import make_batch

    env = make_env("movement_bandits")
    episodes = []
    for seed in (1, 2):
        obs, _ = env.reset(seed=seed)
        steps = [obs] + [env.step(1)[0] for _ in range(4)]
        episodes.append(np.stack(steps))
    obs = np.stack(episodes)
    shape = obs.shape[:2]
    zeros = np.zeros(shape, np.float32)
    batch = make_batch(obs, obs.copy(), zeros[..., None], zeros, np.ones(shape, np.float32), 0.99, 0.97)
    fig = trajectory_figure([{"correct": 1}], [batch], [batch], env, "movement_bandits", (0, 2))
    ax = fig.axes[0]
    pays = [line for line in ax.get_lines() if line.get_marker() == "x"]
    decoys = [line for line in ax.get_lines() if line.get_marker() == "o"]
    # each episode's own goals, in env units: the correct one (task 1) pays, the other is a decoy
    for e, (p, d) in enumerate(zip(pays, decoys, strict=True)):
        np.testing.assert_allclose([p.get_xdata()[0], p.get_ydata()[0]], obs[e, 0, 4:6] * 400, rtol=1e-6)
        np.testing.assert_allclose([d.get_xdata()[0], d.get_ydata()[0]], obs[e, 0, 2:4] * 400, rtol=1e-6)
    trajectory = [line for line in ax.get_lines() if line.get_marker() in ("None", "", None)][0]
    np.testing.assert_allclose(trajectory.get_xdata(), 200 + 20 * np.arange(5), rtol=1e-6)


def test_render_refuses_a_missing_checkpoint_before_ray_starts(tmp_path):
    proc = subprocess.run(
        [sys.executable, "main_render.py", str(tmp_path / "nothing"), "--out", str(tmp_path / "v")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("error: checkpoint") and "does not exist" in line


def test_evaluation_table_takes_each_trials_last_checkpoint(tmp_path):
    from tesp.report.runs import Evaluation
    from tesp.report.tables import evaluation_rows

    def ev(trial, iteration, ret, noisy=None, success=None):
        pools = {
            "D''": {"0.0": {"return_post": ret} | ({"success_post": success} if success is not None else {})}
        }
        if noisy is not None:
            pools["D''"]["0.1"] = {"return_post": noisy}
        return Evaluation(
            tmp_path / f"{trial}-{iteration}.json", "tesp", "wheeled", iteration, pools, tmp_path / trial
        )

    evs = [ev("a", 20, -500.0), ev("a", 60, -200.0, -210.0), ev("b", 60, -100.0, -120.0), ev("b", 40, 0.0)]
    (row,) = evaluation_rows(evs)
    assert row["seeds"] == 2 and row["iteration"] == 60
    mean, low, high, _ = row["D''"]
    assert mean == pytest.approx(-150.0) and low <= -150.0 <= high
    assert row["D'' sigma 0.1"][0] == pytest.approx(-165.0)
    assert "D'' success" not in row
    (row,) = evaluation_rows([ev("a", 5, 1.0, success=0.5), ev("b", 5, 2.0, success=1.0)])
    assert row["D'' success"][0] == pytest.approx(0.75)

    from tesp.report.tables import checkpoint_rows

    by_iteration = {r["iteration"]: r for r in checkpoint_rows(evs)}
    assert sorted(by_iteration) == [20, 40, 60]
    assert by_iteration[60]["seeds"] == 2 and by_iteration[60]["D''"][0] == pytest.approx(-150.0)
    assert by_iteration[20]["D''"][0] == pytest.approx(-500.0) and "D'' sigma 0.1" not in by_iteration[60]
    assert checkpoint_rows([ev("a", 5, 1.0)]) == []  # one iteration: nothing to show


def test_differences_against_a_reference_take_each_trials_last_checkpoint_and_resample_each_side(tmp_path):
    from tesp.report.runs import Evaluation
    from tesp.report.stats import difference_ci
    from tesp.report.tables import difference_rows

    point, low, high = difference_ci(np.array([3.0, 5.0]), np.array([1.0, 1.0, 1.0]))
    assert point == pytest.approx(3.0) and low == pytest.approx(2.0) and high == pytest.approx(4.0)
    assert difference_ci(np.array([2.0]), np.array([1.0])) == (1.0, 1.0, 1.0)

    def ev(method, trial, iteration, ret, env="wheeled"):
        pools = {"D": {"0.0": {"return_post": ret}, "0.1": {"return_post": ret - 100}}}
        return Evaluation(tmp_path / f"{trial}.json", method, env, iteration, pools, tmp_path / trial)

    evs = [
        ev("tesp", "t0", 40, -100.0), ev("tesp", "t1", 40, -120.0), ev("tesp", "t1", 20, -900.0),
        ev("maml", "m0", 40, -150.0), ev("maml", "m1", 40, -170.0), ev("maml", "m2", 40, -160.0),
        ev("maml", "r0", 40, -1.0, env="reacher"),  # no tesp on this env: no row
    ]  # fmt: skip
    (row,) = difference_rows(evs, "tesp")
    assert row["method"] == "tesp - maml" and row["seeds"] == "2 vs 3"
    mean, low, high, n = row["D"]
    assert mean == pytest.approx(-110.0 + 160.0) and low <= 50.0 <= high and low > 0 and n == 2
    assert difference_rows(evs, "nope") == []


def test_trials_csv_keeps_every_trials_final_numbers_to_recompute_the_intervals(results, tmp_path):
    import csv

    trial = next((results / "tesp-exp").glob("TESP_*seed=1"))
    with open(trial / "result.json", "a") as f:  # a mechanism metric in a late row
        f.write(json.dumps({"training_iteration": 7, "meta": {"adaptation_kl": 0.25}}) + "\n")
    for iteration, ret in ((2, -900.0), (6, -42.0)):  # main_test.py's outputs: the last one counts
        evaluation = {
            "env": "wheeled",
            "training_iteration": iteration,
            "pools": {"D''": {"0.0": {"return_post": ret}}},
        }
        (trial / f"checkpoint_{iteration:06d}-eval.json").write_text(json.dumps(evaluation))
    out = tmp_path / "report"
    proc = subprocess.run(
        [sys.executable, "main_report.py", str(results), "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader((out / "trials.csv").open()))
    assert [(r["method"], r["seed"]) for r in rows] == [
        ("maml", "0"),
        ("maml", "1"),
        ("tesp", "0"),
        ("tesp", "1"),
    ]
    tesp1 = rows[3]
    # fake_experiment: post = offset + 2 it (+10 per pool index), offset -77 for TESP seed 1, last validation at 6
    assert float(tesp1["D'' post"]) == pytest.approx(-77 + 12 + 20) and float(
        tesp1["D pre"]
    ) == pytest.approx(-71)
    assert float(tesp1["meta/adaptation_kl"]) == pytest.approx(0.25) and rows[2]["meta/adaptation_kl"] == ""
    assert tesp1["eval_iteration"] == "6" and float(tesp1["eval D'' sigma 0.0 return_post"]) == -42.0
    assert rows[0]["eval_iteration"] == "" and float(rows[0]["env_steps"]) == 6000


def test_tables_from_trials_csv_files_combine_them_and_prefer_the_evaluation(tmp_path):
    from tesp.report.stats import bootstrap_ci, difference_ci, iqm

    header = "env,method,seed,trial,D post,D'' post,eval D sigma 0.0 return_post,meta/adaptation_kl\n"
    first = tmp_path / "first.csv"
    first.write_text(
        header
        + "wheeled,tesp,0,t0,-10,-30,-12,0.2\n"
        + "wheeled,tesp,1,t1,-20,-40,-22,0.4\n"
        + "wheeled,maml,0,m0,-50,-70,,\n"  # never evaluated: its validation counts
        + "wheeled,maml,1,m1,-60,-90,,\n"
    )
    later = tmp_path / "later.csv"  # a later run of a missing seed, and a re-run of seed 1 that replaces it
    later.write_text(header + "wheeled,tesp,1,t1b,-20,-40,-24,0.4\nwheeled,tesp,2,t2,-30,-50,-26,0.6\n")
    out = tmp_path / "tables"
    proc = subprocess.run(
        [sys.executable, "main_report.py", str(first), str(later), "--out", str(out), "--reference", "tesp"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = (out / "report.md").read_text().splitlines()
    tesp = np.array([-12.0, -24.0, -26.0])
    low, high = bootstrap_ci(tesp)
    row = next(line for line in lines if line.startswith("| tesp | 3 | D: evaluation; D'': validation"))
    assert f"{tesp.mean():.1f} [{low:.1f}, {high:.1f}] ({iqm(tesp):.1f})" in row
    row = next(line for line in lines if line.startswith("| maml | 2 | validation at the last iteration |"))
    assert "-55.0 [" in row and "-80.0 [" in row
    point, low, high = difference_ci(tesp, np.array([-50.0, -60.0]))
    row = next(line for line in lines if line.startswith("| tesp - maml |"))
    assert f"{point:+.1f} [{low:+.1f}, {high:+.1f}] (mixed sources)" in row
    assert any(line.startswith("| tesp | 0.4 |") for line in lines)  # adaptation KL, mean over seeds
    proc = subprocess.run(
        [sys.executable, "main_report.py", str(first), str(tmp_path), "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2 and proc.stderr.strip().startswith("error: give either")


def test_report_refuses_a_reference_without_runs(results, tmp_path):
    from tesp.report.report import build
    from tesp.report.runs import ReportError

    with pytest.raises(ReportError, match="--reference 'nope' has no runs here; choose from: "):
        build([str(results)], tmp_path / "out", "t", reference="nope")


def test_report_draws_each_methods_trajectories_from_its_first_trials_last_evaluation(results, tmp_path):
    from tesp.report.report import _trajectory_evaluations, build
    from tesp.report.runs import load_evaluations

    def write_eval(trial, iteration, offset):
        def path(task):
            return {"task": task, "xy": [[0, 0], [offset, task]], "pays": [[1, task]], "decoys": []}

        stages = {"before": [path(0), path(1)], "after": [path(0), path(1), path(2)]}
        data = {
            "env": "wheeled",
            "training_iteration": iteration,
            "pools": {"test": {"0.0": {"return_post": float(offset)}}},
            "trajectories": {"walls": [[2, 2, 3, 3]], "pools": {"test": stages}},
        }
        (trial / f"checkpoint_{iteration:06d}-eval.json").write_text(json.dumps(data))

    trials = sorted(p for p in results.rglob("*seed=*") if p.is_dir())
    for trial in trials:
        seed = int(trial.name.rsplit("=", 1)[1])
        write_eval(trial, 6, offset=10 + seed)
        write_eval(trial, 2, offset=-1)
    chosen = _trajectory_evaluations(load_evaluations([str(results)], NAMES))
    assert sorted(chosen["wheeled"]) == ["maml", "tesp"]
    for e in chosen["wheeled"].values():
        assert e.iteration == 6 and e.trial.name.endswith("seed=0")  # the first trial, its last checkpoint
    fig = figures.trajectory_panel(chosen["wheeled"], "wheeled", "test")
    axes = np.asarray(fig.axes).reshape(2, 2)  # rows before/after, a column per method
    for col in range(2):
        for row, n in ((0, 2), (1, 3)):
            ax = axes[row, col]
            lines = [line for line in ax.get_lines() if line.get_marker() in ("None", "", None)]
            assert len(lines) == n and len(ax.patches) == 1  # a path per task, the wall
            np.testing.assert_allclose(lines[0].get_xdata(), [0, 10])  # seed 0's offset
    report = build([str(results)], tmp_path / "report", "t", NAMES)
    assert "## Trajectories: wheeled, pool test" in report.read_text()
    assert (tmp_path / "report" / "trajectories_wheeled_test.png").stat().st_size > 0


def fake_policy_run(root, seed: int, iterations: int):
    """A single policy's trial (``--alg ppo``) as Tune writes it: RLlib's episode metrics; the
    success rate is exactly 0 until iteration 3."""
    trial = root / f"PPO_walker_forward_0000{seed}_{seed}"
    trial.mkdir(parents=True)
    (trial / "params.json").write_text(json.dumps({"env": "walker_forward", "seed": seed}))
    with open(trial / "result.json", "w") as f:
        for it in range(1, iterations + 1):
            runners = {"episode_return_mean": 100.0 * it + seed, "episode_len_mean": 50.0 * it}
            runners["success"] = 0.0 if it < 3 else 0.5
            row = {"training_iteration": it, "time_total_s": it, "num_env_steps_sampled_lifetime": 8000 * it}
            f.write(json.dumps(row | {"env_runners": runners}) + "\n")


def test_single_policy_runs_get_episode_curves_against_env_steps_and_zeros_count(tmp_path):
    for seed in (0, 1):
        fake_policy_run(tmp_path / "walk", seed, iterations=4)
    runs = load_runs([str(tmp_path)], NAMES)
    its, steps, mean, _, _ = figures.mean_curve(runs, ("env_runners", "success"))
    assert list(its) == [1, 2, 3, 4] and list(steps) == [8000, 16000, 24000, 32000]
    assert list(mean) == [0.0, 0.0, 0.5, 0.5]  # a logged 0 is a value, not a gap
    fig = figures.episode_panel(runs, "walker_forward", "ppo")
    assert [ax.get_ylabel() for ax in fig.axes] == [
        "mean episode return",
        "mean episode length",
        "success rate",
    ]
    x, y = fig.axes[0].lines[0].get_data()
    assert list(x) == [8000, 16000, 24000, 32000] and list(y) == [100.5, 200.5, 300.5, 400.5]
    (row,) = tables.results_rows({("walker_forward", "ppo"): runs})
    assert row["env steps"] == 32000
    # a long env name's title wraps inside the figure (the primitives report's were clipped)
    fig = figures.episode_panel(runs, "walker_obstacle_course", "primitives")
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        box = ax.title.get_window_extent(renderer)
        assert fig.bbox.x0 <= box.x0 and box.x1 <= fig.bbox.x1, ax.get_title()


def test_a_single_validation_is_drawn_as_a_point(tmp_path):
    fake_experiment(tmp_path / "exp", "MAML", "wheeled", 0, iterations=3, offset=-100, validate_every=3)
    fig = figures.learning_curves({"maml": load_runs([str(tmp_path)], NAMES)}, "wheeled")
    post = [line for line in fig.axes[1].lines if line.get_label() == "maml post"]
    assert len(post) == 1 and post[0].get_marker() == "o" and list(post[0].get_xdata()) == [3]


def test_one_seed_is_shown_as_n_1_not_as_an_interval_and_settings_show_values():
    one = tables.results_table([{"method": "a", "D": tables.mean_ci([-12.0])}])
    assert "-12.00 (n = 1)" in one and "[-12.00, -12.00]" not in one
    two = tables.results_table([{"method": "a", "D": tables.mean_ci([-12.0, -14.0])}])
    assert "-13.00 [" in two
    from tesp.models import connectors

    assert tables._value(connectors.env_to_module) == '"tesp.models.connectors.env_to_module"'
    # Tune saves functions in a trial's config as their repr
    assert tables._value("<function env_to_module at 0x7f3a2c1d5e40>") == "env_to_module"


def test_pdf_layout_keeps_every_table_cell_and_drops_markdown_marks():
    from tesp.report import pdf

    cells = [f"-{i}23.45 [-{i}30.00, -{i}10.00]" for i in range(8)]  # 8 wide cells: > one line
    md = ["# title", "## Results", "", "Some `code` and **bold**.", "", tables.results_table(
        [{"env": "wheeled", "method": "tesp", **{f"pool {i}": c for i, c in enumerate(cells)}}]
    ), "", "![curves](curves.png)"]  # fmt: skip
    kinds = list(pdf.blocks(md[1:]))
    assert [k for k, _ in kinds] == ["heading", "text", "table", "figure"]
    assert kinds[1][1] == "Some code and bold."
    (rows,) = [v for k, v in kinds if k == "table"]
    assert len(rows) == 2  # header and one row: the |---| line is not a row
    lines = pdf.table_lines(rows, width=100)
    assert all(len(line) <= 100 for line in lines)
    text = "\n".join(lines)
    assert all(c in text for c in cells)
    assert text.count("wheeled") == len([line for line in lines if line.startswith("env")])  # names repeat


def test_mechanism_panel_draws_each_logged_metric_per_method():
    from tesp.report.runs import Run

    def run(method, seed, kl):
        rows = [
            {"training_iteration": i, "meta": {"adaptation_kl": kl * i, "step_size_q90": 0.001 * i}}
            for i in range(1, 5)
        ]
        return Run(path=None, method=method, env="wheeled", seed=seed, config={}, rows=rows)

    runs = {"tesp": [run("tesp", 0, 1e-3), run("tesp", 1, 2e-3)], "control": [run("control", 0, 0.0)]}
    fig = figures.mechanism_panel(runs, "wheeled")
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["wheeled: adaptation_kl", "wheeled: step_size_q90"]  # only what was logged
    kl_ax = fig.axes[0]
    assert kl_ax.get_yscale() == "log"
    lines = {line.get_label(): line for line in kl_ax.get_lines()}
    np.testing.assert_allclose(lines["tesp"].get_ydata(), 1.5e-3 * np.arange(1, 5))
    assert np.all(lines["control"].get_ydata() > 0)  # a KL of 0 drawn at the axis floor, not lost
    assert (
        figures.mechanism_panel({"mlsh": [Run(None, "mlsh", "x", 0, {}, [{"training_iteration": 1}])]}, "x")
        is None
    )


def test_report_skips_a_malformed_line_with_a_warning_and_refuses_a_system_folder(results, tmp_path):
    trial = next((results / "maml-exp").iterdir())
    with open(trial / "result.json", "a") as f:
        f.write('{"training_iteration": 7, "meta": {"return_po\n')
    proc = subprocess.run(
        [sys.executable, "main_report.py", str(results), "--out", str(tmp_path / "out")],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert f"warning: skipped line 7 of {trial / 'result.json'}: not a result" in proc.stderr
    proc = subprocess.run(
        [sys.executable, "main_report.py", str(results), "--out", "/proc/report"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1].startswith(
        "error: --out '/proc/report'"
    )


def test_learning_curves_have_whole_iteration_ticks_markers_on_short_curves_and_a_legend_off_the_data(
    results,
):
    runs = load_runs([str(results)], NAMES)
    groups = {m: [r for r in runs if r.method == m] for m in ("maml", "tesp")}
    fig = figures.learning_curves(groups, "wheeled")
    top = fig.axes[0]
    fig.canvas.draw()
    assert all(float(t).is_integer() for t in top.get_xticks())
    validation = fig.axes[1]  # D: validated at iterations 2, 4, 6
    assert all(line.get_marker() == "o" for line in validation.get_lines() if len(line.get_xdata()) <= 3)
    assert not any(ax.get_legend() for ax in fig.axes) and len(fig.legends) == 1


def test_the_render_camera_keeps_the_agent_and_the_goal_in_view_without_zooming_in():
    from tesp.commands.render import framing

    goal, reach = np.array([1.0, 0.0]), 1.5
    views = []
    for agent in ([0.0, 0.0], [-4.0, 3.0], [0.5, 0.0]):  # it drives away, then comes back
        lookat, distance, reach = framing(np.array(agent), goal, reach)
        views.append((lookat, distance))
        half_view = distance / 2.2  # the framed radius around lookat
        for point in (np.array(agent), goal):
            assert np.linalg.norm(point - lookat[:2]) <= half_view
    assert views[0][1] == 2.2 * 1.5 and views[2][1] == views[1][1]  # it grew, and stays out


def test_videos_have_a_small_gif_preview_and_captions(tmp_path):
    import imageio.v3 as iio

    from tesp.commands.render import steps_label
    from tesp.viz.video import GIF_WIDTH, with_caption, write_video

    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (240, 960, 3), dtype=np.uint8) for _ in range(40)]
    frames[0] = with_caption(frames[0], "primitive: forward")
    assert frames[0].shape == (240, 960, 3) and (frames[0][-12:, 8:40] == 255).any()  # the white band
    mp4, gif = write_video(frames, tmp_path / "clip", fps=20)
    preview = iio.imread(gif)
    assert preview.shape[0] == 20 and preview.shape[2] <= GIF_WIDTH  # 10 frames per second
    assert iio.imread(mp4).shape[0] == 40
    assert (steps_label(1), steps_label(3)) == ("1 step", "3 steps")
