"""The MuJoCo quick scale end to end: training with validation, then main_test.py on its checkpoint."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from tesp import checkpoints

from .conftest import REPO
from .runner import results, run_main_train, trial_dirs

pytestmark = [pytest.mark.ray, pytest.mark.slow]

POOLS = ["D", "D'", "D''"]


def run_main_test(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(REPO / "main_test.py"), *args]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def wheeled_run(tmp_path_factory):
    storage = tmp_path_factory.mktemp("wheeled")
    proc = run_main_train(
        "--env", "wheeled", "--alg", "tesp", "--config", "configs/quick.yaml", "--stop-iters", "2",
        "--storage-path", str(storage), "--name", "quick",
        "--set", "validation_freq=1", "--set", "validation_pool_size=2", "--set", "num_env_runners=1",
        "--set", "meta_batch_size=2", "--set", "model.hidden=[32, 32]", "--set", "model.encoder_units=16",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return storage / "quick", proc


def test_quick_wheeled_tesp_run_validates_on_every_pool(wheeled_run):
    experiment, proc = wheeled_run
    (trial,) = trial_dirs(experiment)
    rows = results(trial)
    assert [r["training_iteration"] for r in rows] == [1, 2]
    for row in rows:
        assert sorted(row["validation"]) == sorted(POOLS)
        for pool in POOLS:
            values = row["validation"][pool]
            for key in (
                "return_warmup", "return_stage_0", "return_stage_1", "return_post", "length_stage_1",
                "adaptation_kl", "context_kl", "z_inner_shift_ratio",  # the mechanism, per pool
            ):  # fmt: skip
                assert key in values, (pool, key)
            assert -1000 < values["return_post"] < 0
    assert "validation D''" in proc.stdout


def test_evaluation_command_writes_csv_and_json_next_to_the_checkpoint(wheeled_run):
    experiment, _ = wheeled_run
    proc = run_main_test(str(experiment), "--pool-size", "2", "--sigmas", "0", "0.05", "--pools", "D'", "D''")
    assert proc.returncode == 0, proc.stderr[-3000:]
    (trial,) = trial_dirs(experiment)
    (checkpoint,) = [p for p in trial.glob("checkpoint_*") if p.is_dir()]
    csv_path = trial / f"{checkpoint.name}-eval.csv"
    json_path = trial / f"{checkpoint.name}-eval.json"
    assert f"wrote {csv_path}" in proc.stdout
    assert "adapting" in proc.stderr  # the progress bar
    with open(csv_path) as f:
        table = list(csv.DictReader(f))
    # 2 pools x 2 sigmas x 2 tasks x 2 stages (K = 1 at the quick scale)
    assert len(table) == 16
    assert {(r["pool"], r["sigma"]) for r in table} == {
        (p, s) for p in ("D'", "D''") for s in ("0.0", "0.05")
    }
    assert {r["stage"] for r in table} == {"0", "1"}
    summary = json.loads(json_path.read_text())
    assert summary["algorithm"] == "TESP" and summary["env"] == "wheeled"
    assert summary["training_iteration"] == 2
    for pool in ("D'", "D''"):
        for sigma in ("0.0", "0.05"):
            entry = summary["pools"][pool][sigma]
            assert entry["num_tasks"] == 2
            post = [
                float(r["return"]) for r in table if (r["pool"], r["sigma"], r["stage"]) == (pool, sigma, "1")
            ]
            # Each task has the same number of episodes here, so the episode mean is the task mean.
            assert entry["return_post"] == pytest.approx(sum(post) / len(post), rel=1e-5)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["/nonexistent/ckpt"], "checkpoint '/nonexistent/ckpt' does not exist"),
        (["."], "holds no checkpoint"),
        ([".", "--sigmas", "-1"], "must all be finite numbers >= 0"),
        ([".", "--inner-steps", "-1"], "--inner-steps -1 must be >= 0"),
    ],
)
def test_bad_evaluation_input_gives_one_line_and_exit_2(args, expected):
    proc = run_main_test(*args)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and expected in lines[0], proc.stderr


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    """The single ``error:`` line of a run that stopped before Ray started (Ray logs to stderr)."""
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr[-2000:]
    return lines[0]


def test_an_unknown_pool_is_named_with_the_envs_pools(wheeled_run):
    experiment, _ = wheeled_run
    line = one_error_line(run_main_test(str(experiment), "--pools", "E"))
    assert "unknown pool 'E'; choose from: D, D', D''" in line


@pytest.fixture(scope="module")
def point_run(tmp_path_factory):
    storage = tmp_path_factory.mktemp("point")
    proc = run_main_train(
        "--env", "point", "--alg", "maml", "--stop-iters", "1", "--storage-path", str(storage), "--name", "p",
        "--set", "meta_batch_size=4", "--set", "episodes_per_task=4", "--set", "num_envs_per_env_runner=4",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return storage / "p"


def test_a_checkpoint_of_an_env_without_pools_is_evaluated_on_fresh_seeded_tasks(point_run):
    proc = run_main_test(str(point_run), "--pool-size", "3", "--task-seed", "5")
    assert proc.returncode == 0, proc.stderr[-3000:]
    (trial,) = trial_dirs(point_run)
    (checkpoint,) = [p for p in trial.glob("checkpoint_*") if p.is_dir()]
    summary = json.loads((trial / f"{checkpoint.name}-eval.json").read_text())
    assert list(summary["pools"]) == ["fresh"] and summary["task_seed"] == 5
    assert summary["pools"]["fresh"]["0.0"]["num_tasks"] == 3
    with open(trial / f"{checkpoint.name}-eval.csv") as f:
        goals = {(r["goal_x"], r["goal_y"]) for r in csv.DictReader(f)}
    # The trajectories for the report: one episode per task before and after adaptation, drawn
    # to the episode's end, each task's own goal.
    paths = summary["trajectories"]["pools"]["fresh"]
    assert [len(paths[stage]) for stage in ("before", "after")] == [3, 3]
    assert {(str(p["pays"][0][0]), str(p["pays"][0][1])) for p in paths["after"]} == goals
    assert all(1 < len(p["xy"]) <= 100 for p in paths["after"])  # the point env's horizon is 100
    # The stated seed fixes the tasks: the same goals again, other goals with another seed.
    again = run_main_test(str(point_run), "--pool-size", "3", "--task-seed", "5")
    with open(trial / f"{checkpoint.name}-eval.csv") as f:
        assert {(r["goal_x"], r["goal_y"]) for r in csv.DictReader(f)} == goals
    assert again.returncode == 0
    run_main_test(str(point_run), "--pool-size", "3", "--task-seed", "6")
    with open(trial / f"{checkpoint.name}-eval.csv") as f:
        assert {(r["goal_x"], r["goal_y"]) for r in csv.DictReader(f)} != goals


def test_pools_of_an_env_without_pools_are_refused_before_ray_starts(point_run):
    line = one_error_line(run_main_test(str(point_run), "--pools", "D"))
    assert "unknown pool 'D' (env 'point' has no task pools); choose from: fresh" in line


def test_an_mlsh_checkpoint_is_evaluated_by_its_warm_up_and_written_to_out(tmp_path):
    """MLSH's test: a fresh master per task trained for the warm-up (here 1 iteration instead of
    the checkpoint's 2), sub-policies fixed; --out puts the files elsewhere, named by trial."""
    proc = run_main_train(
        "--env", "movement_bandits", "--alg", "mlsh", "--stop-iters", "1", "--storage-path", str(tmp_path),
        "--name", "m", "-W", "2", "-U", "1", "--set", "episodes_per_task=2", "--set", "num_envs_per_env_runner=2",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "after warm-up: first value in" in proc.stdout, proc.stdout
    out = tmp_path / "evaluations"
    test = run_main_test(str(tmp_path / "m"), "--pool-size", "3", "--inner-steps", "1", "--out", str(out))
    assert test.returncode == 0, test.stderr[-3000:]
    (trial,) = trial_dirs(tmp_path / "m")
    (checkpoint,) = [p for p in trial.glob("checkpoint_*") if p.is_dir()]
    summary = json.loads((out / f"{trial.name}_{checkpoint.name}-eval.json").read_text())
    assert summary["algorithm"] == "MLSHAlgorithm" and summary["num_inner_steps"] == 1
    assert summary["pools"]["fresh"]["0.0"]["num_tasks"] == 3
    with open(out / f"{trial.name}_{checkpoint.name}-eval.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted({r["stage"] for r in rows}) == ["0", "1"] and len(rows) == 6
    assert not list(trial.glob("*-eval.*"))  # nothing beside the checkpoint


def test_a_checkpoint_without_adaptation_is_refused_before_ray_starts(tmp_path):
    import pickle

    checkpoint = tmp_path / "trial" / "checkpoint_000001"
    checkpoint.mkdir(parents=True)
    from ray.rllib.algorithms.ppo import PPO, PPOConfig
    from ray.rllib.utils.checkpoints import Checkpointable

    with open(checkpoint / Checkpointable.CLASS_AND_CTOR_ARGS_FILE_NAME, "wb") as f:
        pickle.dump({"class": PPO, "ctor_args_and_kwargs": ((PPOConfig().get_state(),), {})}, f)
    (checkpoint / "rllib_checkpoint.json").write_text("{}")
    checkpoints.write_manifest(checkpoint, 1)
    line = one_error_line(run_main_test(str(checkpoint)))
    assert "is of PPO, which has no adaptation to evaluate" in line


def test_mime_on_a_sparse_ring_is_evaluated_with_more_inner_steps_and_a_success_rate(tmp_path):
    """MIME's test protocol: the fixed test goals, more inner steps than in training (10 in the
    reference; 2 here), success = a goal reached in any episode."""
    proc = run_main_train(
        "--env", "nav_hard_exploration", "--alg", "mime", "--stop-iters", "1", "--storage-path", str(tmp_path),
        "--name", "m", "--set", "meta_batch_size=2", "--set", "episodes_per_task=2",
        "--set", "num_envs_per_env_runner=2", "--set", "num_env_runners=0",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    test = run_main_test(str(tmp_path / "m"), "--inner-steps", "2", "--pool-size", "2")
    assert test.returncode == 0, test.stderr[-3000:]
    (trial,) = trial_dirs(tmp_path / "m")
    (checkpoint,) = [p for p in trial.glob("checkpoint_*") if p.is_dir()]
    summary = json.loads((trial / f"{checkpoint.name}-eval.json").read_text())
    assert summary["num_inner_steps"] == 2 and list(summary["pools"]) == ["test"]
    stats = summary["pools"]["test"]["0.0"]
    assert {"success_stage_0", "success_stage_2", "success_post", "return_stage_2"} <= set(stats)
    assert 0.0 <= stats["success_post"] <= 1.0
    # rewards are 0 or 1 here, so a task succeeded exactly when its mean return is above 0
    with open(trial / f"{checkpoint.name}-eval.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["stage"] for r in rows} == {"0", "1", "2"}
    for k in range(3):
        stage = [float(r["return"]) > 0 for r in rows if r["stage"] == str(k)]
        assert stats[f"success_stage_{k}"] == pytest.approx(sum(stage) / len(stage))


def test_task_columns_keep_text_fields_and_leave_out_what_is_not_a_number():
    from tesp.commands.evaluate import task_columns

    ml10 = {"env_name": "reach-v3", "split": "train", "goal_index": 3, "index": 7}
    assert task_columns(ml10) == {"env_name": "reach-v3", "split": "train", "goal_index": 3.0}
    assert task_columns({"goal": np.array([0.5, -1.0]), "blob": b"\x00\x01"}) == {
        "goal_x": 0.5,
        "goal_y": -1.0,
    }
