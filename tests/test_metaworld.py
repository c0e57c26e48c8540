"""Meta-World ML10 as a task env, and a quick-scale run of the exploration methods on it."""

from __future__ import annotations

import csv
import subprocess
import sys

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from tesp.envs import make_env

from .conftest import REPO
from .runner import SMALL, run_main_train, trial_dirs

TRAIN = {"reach-v3", "push-v3", "pick-place-v3", "door-open-v3", "drawer-close-v3", "button-press-topdown-v3",
         "peg-insert-side-v3", "window-open-v3", "sweep-v3", "basketball-v3"}  # fmt: skip
TEST = {"drawer-open-v3", "door-close-v3", "shelf-place-v3", "sweep-into-v3", "lever-pull-v3"}


@pytest.fixture(scope="module")
def env():
    return make_env("ml10", {"horizon": 20})


def test_pools_are_mls_train_and_test_classes(env):
    pools = env.task_pools()
    assert sorted(pools) == ["D", "test"]
    assert len(pools["D"]) == 500 and len(pools["test"]) == 250
    assert {t["env_name"] for t in pools["D"]} == TRAIN and {t["env_name"] for t in pools["test"]} == TEST
    assert [t["index"] for t in pools["D"]] == list(range(500))


def test_env_checker_and_truncation_at_the_horizon(env):
    env.set_task(env.task_pools()["test"][3])
    check_env(env, skip_render_check=True)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (39,) and np.all(obs[-6:] == 0)  # the hidden goal and an absent object
    for t in range(20):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert isinstance(info["success"], bool) and not terminated
        assert truncated == (t == 19)


def test_a_task_switch_changes_the_goal(env):
    pools = env.task_pools()["D"]
    goals = []
    for task in pools[:2]:  # two goals of the same class
        env.set_task(task)
        env.reset(seed=0)
        goals.append(env._env._target_pos.copy())
    assert pools[0]["env_name"] == pools[1]["env_name"]
    assert not np.allclose(goals[0], goals[1])


@pytest.mark.slow
@pytest.mark.parametrize("alg", ["maml", "mime"])
def test_quick_scale_runs_and_validates_with_a_success_rate(tmp_path, alg):
    proc = run_main_train(
        "--env", "ml10", "--alg", alg, "--stop-iters", "1", "--storage-path", str(tmp_path), "--name", "ml10",
        *SMALL, "--set", "meta_batch_size=2", "--set", "num_env_runners=0", "--set", "env_config.horizon=20",
        "--set", "validation_freq=1", "--set", "validation_pool_size=1", *(["--set", "pre_epochs=0"] if alg == "mime" else []),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    (trial,) = trial_dirs(tmp_path / "ml10")
    assert "validation/test/success_post" in (trial / "progress.csv").read_text().splitlines()[0]
    if alg != "maml":
        return
    # main_test.py on the checkpoint: text task fields (the class name) in the CSV, the success
    # rate printed, one task per pool
    test = subprocess.run(
        [sys.executable, str(REPO / "main_test.py"), str(tmp_path / "ml10"), "--pool-size", "1"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert test.returncode == 0, test.stderr[-3000:]
    assert "success rate" in test.stdout, test.stdout
    (table,) = trial.glob("checkpoint_*-eval.csv")
    with open(table) as f:
        rows = list(csv.DictReader(f))
    assert {r["pool"] for r in rows} == {"D", "test"}
    assert all(r["env_name"].endswith("-v3") for r in rows), rows[0]
