"""``--alg ppo`` (RLlib's PPO) on a walker skill end to end: training under Tune, then
``main_test.py`` running the checkpoint's policy with the env's success metrics and a video."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from tesp.checkpoints.policies import SavedPolicy
from tesp.commands.run_policy import run_episodes
from tesp.envs import make_env

from .runner import results, run_main_train, trial_dirs
from .test_evaluate import run_main_test

pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.fixture(scope="module")
def jump_run(tmp_path_factory):
    storage = tmp_path_factory.mktemp("ppo")
    proc = run_main_train(
        "--env", "walker_jump", "--alg", "ppo", "--stop-iters", "2", "--storage-path", str(storage),
        "--name", "skill", "--set", "train_batch_size=600", "--set", "minibatch_size=200",
        "--set", "num_epochs=2", "--set", "env_config.horizon=60", "--set", "num_envs_per_env_runner=2",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    (trial,) = trial_dirs(storage / "skill")
    return trial, proc


def test_ppo_trains_with_the_envs_success_metrics(jump_run):
    trial, proc = jump_run
    rows = results(trial)
    assert [r["training_iteration"] for r in rows] == [1, 2]
    runners = rows[-1]["env_runners"]
    assert np.isfinite(runners["episode_return_mean"])
    assert 0.0 <= runners["obstacles_passed"] <= 1.0 and 0.0 <= runners["success"] <= 1.0
    assert "obstacles_passed" in proc.stdout and "iter    2 | return" in proc.stdout
    assert list(trial.glob("checkpoint_*"))


def test_the_saved_observation_filter_has_the_observations_mean(jump_run):
    """The filter merged from the EnvRunner over 2 iterations: an input that is 2.0 in every
    observation (the height map's ceiling row, no ceiling on the jump's course) has mean 2.0 and
    std 0; RLlib 2.60's own merge halves the mean at the second merge
    (``tesp/algorithms/ppo/mean_std_filter.py``)."""
    trial, _ = jump_run
    (checkpoint,) = [p for p in trial.glob("checkpoint_*") if p.is_dir()]
    stats = SavedPolicy.restore_filter(checkpoint, make_env("walker_jump")).running_stats
    ceiling = slice(49, 81)  # the height map's ceiling row (tesp/envs/walker.py)
    assert stats.n >= 1200
    np.testing.assert_allclose(np.asarray(stats.mean)[ceiling], 2.0, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(stats.std)[ceiling], 0.0, atol=1e-3)


def test_main_test_runs_the_policy_and_records(jump_run):
    trial, _ = jump_run
    (checkpoint,) = [p for p in trial.glob("checkpoint_*") if p.is_dir()]
    proc = run_main_test(str(trial), "--episodes", "2", "--record")
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(trial / f"{checkpoint.name}-test.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["episode"]) for r in rows] == [0, 1]
    assert {"return", "length", "obstacles_passed", "success"} <= set(rows[0])
    assert all(1 <= int(r["length"]) <= 60 for r in rows)  # the trained horizon
    summary = json.loads((trial / f"{checkpoint.name}-test.json").read_text())
    assert summary["mean"]["length"] == pytest.approx(np.mean([int(r["length"]) for r in rows]))
    assert (trial / f"{checkpoint.name}-episode0.mp4").stat().st_size > 1000

    # The same episodes again from the restored policy, in this process: the mean action is
    # deterministic, so the returns repeat exactly.
    config = json.loads((trial / "params.json").read_text())
    env = make_env("walker_jump", config["env_config"])
    again, _ = run_episodes(SavedPolicy.from_checkpoint(checkpoint, env), env, 2, seed=0)
    assert [r["return"] for r in again] == pytest.approx([float(r["return"]) for r in rows])


def test_meta_learner_flags_are_refused_for_a_single_policy(jump_run):
    trial, _ = jump_run
    proc = run_main_test(str(trial), "--pools", "D")
    assert proc.returncode == 2
    assert (
        proc.stderr.strip()
        == "error: --pools only applies to checkpoints of meta-learners, not to a single policy"
    )


def test_meta_policy_over_the_trained_skill_trains_and_records(jump_run, tmp_path):
    """``--alg primitives`` from the CLI: the skill's run as the primitive, 2 iterations, then
    ``main_test.py`` drives the course with the meta-policy and records it."""
    trial, _ = jump_run
    proc = run_main_train(
        "--env", "walker_obstacle_course", "--alg", "primitives", "--primitives", f"walker_jump={trial}",
        "--switch-period", "5", "--stop-iters", "2", "--storage-path", str(tmp_path), "--name", "meta",
        "--set", "train_batch_size=400", "--set", "minibatch_size=200", "--set", "num_epochs=1",
        "--set", "env_config.horizon=60", "--set", "num_envs_per_env_runner=2",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "picks walker_jump 1.00" in proc.stdout
    (meta_trial,) = trial_dirs(tmp_path / "meta")
    runners = results(meta_trial)[-1]["env_runners"]
    assert runners["choice/walker_jump"] == 1.0 and 1 <= runners["env_steps"] <= 60
    test = run_main_test(str(meta_trial), "--episodes", "2", "--record")
    assert test.returncode == 0, test.stderr[-3000:]
    (checkpoint,) = [p for p in meta_trial.glob("checkpoint_*") if p.is_dir()]
    with open(meta_trial / f"{checkpoint.name}-test.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and float(rows[0]["choice/walker_jump"]) == 1.0
    assert (meta_trial / f"{checkpoint.name}-episode0.mp4").stat().st_size > 1000


def test_a_skill_runs_alone_on_the_course(jump_run):
    """The baseline "each primitive alone": a skill's checkpoint on another env of its spaces."""
    trial, _ = jump_run
    proc = run_main_test(str(trial), "--env", "walker_obstacle_course", "--episodes", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    (checkpoint,) = [p for p in trial.glob("checkpoint_*") if p.is_dir()]
    summary = json.loads((trial / f"{checkpoint.name}-test-walker_obstacle_course.json").read_text())
    assert summary["env"] == "walker_obstacle_course" and 0 <= summary["mean"]["obstacles_passed"] <= 5
    reduced = run_main_test(
        str(trial), "--env", "walker_obstacle_course", "--env-option", "kinds=[curb]", "--episodes", "1"
    )
    assert reduced.returncode == 0, reduced.stderr[-3000:]
    (other,) = trial.glob(f"{checkpoint.name}-test-walker_obstacle_course-*.json")  # its own files
    assert json.loads(other.read_text())["mean"]["obstacles_passed"] <= 1
    bad = run_main_test(str(trial), "--env", "point")
    assert bad.returncode == 2 and "other observation or action spaces" in bad.stderr


def test_an_exported_skill_runs_like_its_checkpoint(jump_run, tmp_path):
    """``scripts/export_policy.py``: the small folder (no optimiser, no runner copy) gives the
    same episodes under ``main_test.py`` as the checkpoint it came from, and names its source."""
    import subprocess
    import sys

    from .conftest import REPO

    trial, _ = jump_run
    (checkpoint,) = [p for p in trial.glob("checkpoint_*") if p.is_dir()]
    dest = tmp_path / "skill"
    export = [sys.executable, str(REPO / "scripts/export_policy.py"), str(trial), str(dest)]
    proc = subprocess.run(export, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((dest / "export.json").read_text())
    assert record["source"] == str(checkpoint.resolve()) and record["training_iteration"] == 2
    assert record["env_steps"] >= 1200
    assert not (dest / "learner_group/learner/state.pkl").exists()  # no optimiser state

    for path in (dest, trial):
        proc = run_main_test(str(path), "--episodes", "2")
        assert proc.returncode == 0, proc.stderr[-3000:]
    exported = json.loads((tmp_path / "skill-test.json").read_text())["mean"]
    original = json.loads((trial / f"{checkpoint.name}-test.json").read_text())["mean"]
    assert exported == pytest.approx(original)

    again = subprocess.run(export, capture_output=True, text=True)  # never over an existing folder
    assert again.returncode == 2 and again.stderr.strip() == f"error: {str(dest)!r} exists: give a new folder"


def test_a_run_starts_from_an_exported_skill(jump_run, tmp_path):
    """``--set init_from=SKILL``: the run starts from the skill's weights and observation filter
    (with lr 0 the weights stay the skill's; the filter's count goes on from the skill's); a path
    that is not a policy's checkpoint is one line, exit 2."""
    import pickle
    import subprocess
    import sys

    from tesp.checkpoints.policies import FILTER_DIR, restore_module

    from .conftest import REPO

    trial, _ = jump_run
    skill = tmp_path / "skill"
    export = [sys.executable, str(REPO / "scripts/export_policy.py"), str(trial), str(skill)]
    assert subprocess.run(export, capture_output=True).returncode == 0
    proc = run_main_train(
        "--env", "walker_jump", "--alg", "ppo", "--stop-iters", "1", "--storage-path", str(tmp_path),
        "--name", "more", "--set", f"init_from={skill}", "--set", "lr=0.0", "--set", "train_batch_size=600",
        "--set", "minibatch_size=200", "--set", "num_epochs=1", "--set", "env_config.horizon=60",
        "--set", "num_envs_per_env_runner=2",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    (checkpoint,) = [p for p in trial_dirs(tmp_path / "more")[0].glob("checkpoint_*") if p.is_dir()]
    start, end = restore_module(skill).state_dict(), restore_module(checkpoint).state_dict()
    assert all(np.array_equal(start[k].numpy(), end[k].numpy()) for k in start)

    def pushes(path):
        state = pickle.loads((path / FILTER_DIR / "state.pkl").read_bytes())
        return state[None]["running_stats"][0]["num_pushes"]

    assert pushes(checkpoint) >= pushes(skill) + 600
    again = tmp_path / "skill-more"  # its export names what it started from
    assert subprocess.run([*export[:2], str(checkpoint), str(again)], capture_output=True).returncode == 0
    started = json.loads((again / "export.json").read_text())["started_from"]
    assert started == json.loads((skill / "export.json").read_text())

    bad = run_main_train(
        "--env", "walker_jump", "--alg", "ppo", "--set", f"init_from={tmp_path / 'none'}",
        "--storage-path", str(tmp_path),
    )  # fmt: skip
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1].startswith("error: init_from: checkpoint ")
    assert len(bad.stderr.strip().splitlines()) == 1


def test_the_envrunners_sample_a_started_run_with_the_skills_weights(ray_session):
    """With ``init_from``, every EnvRunner's module holds the skill's weights when setup returns
    (before the first round is sampled), not the module's initial weights."""
    from tesp.checkpoints.policies import policy_checkpoint, restore_module
    from tesp.settings import resolve_config

    skill = restore_module(policy_checkpoint("skills/walker_jump")).get_state()
    config, _, _ = resolve_config("ppo", "walker_jump", {"init_from": "skills/walker_jump", "seed": 0})
    algo = config.build_algo()
    try:
        states = algo.env_runner_group.foreach_env_runner(
            lambda runner: runner.module.get_state(), local_env_runner=False
        )
    finally:
        algo.stop()
    assert states and all(state for state in states)
    for state in states:
        assert all(np.allclose(np.asarray(v), np.asarray(skill[k])) for k, v in state.items())
