"""RL² as a method: the GRU module's memory, the trial split into stages, and a run from the
command line whose results and evaluation carry the per-episode returns under the gradient
methods' names."""

from __future__ import annotations

import json
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch
from ray.rllib.core.columns import Columns

from tesp.algorithms.rl2.rl2 import task_batch
from tesp.algorithms.rl2.rl2_rl_module import RL2Module

from .conftest import REPO
from .runner import results, run_main_train, trial_dirs


def module(size=8):
    torch.manual_seed(0)
    return RL2Module(
        observation_space=gym.spaces.Box(-np.inf, np.inf, (6,), np.float32),
        action_space=gym.spaces.Box(-1, 1, (2,), np.float32),
        model_config={"gru_size": size, "hiddens": [16]},
    )


def test_the_gru_carries_its_state_one_step_at_a_time_as_over_a_sequence():
    net = module()
    obs = torch.randn(3, 7, 6)
    h0 = torch.zeros(3, 8)
    whole = net.forward_train({Columns.OBS: obs, Columns.STATE_IN: {"h": h0}})
    state, steps = h0, []
    for t in range(7):  # as the EnvRunner samples: one step, the state fed back
        out = net.forward_inference({Columns.OBS: obs[:, t : t + 1], Columns.STATE_IN: {"h": state}})
        steps.append(out[Columns.ACTION_DIST_INPUTS])
        state = out[Columns.STATE_OUT]["h"]
    torch.testing.assert_close(torch.cat(steps, 1), whole[Columns.ACTION_DIST_INPUTS])
    torch.testing.assert_close(state, whole[Columns.STATE_OUT]["h"])
    # the memory matters: another past gives other outputs for the same last input
    other = net.forward_inference({Columns.OBS: obs[:, -1:], Columns.STATE_IN: {"h": torch.ones(3, 8)}})
    assert not torch.allclose(other[Columns.ACTION_DIST_INPUTS], steps[-1])
    assert net.compute_values({Columns.OBS: obs, Columns.STATE_IN: {"h": h0}}).shape == (3, 7)


def test_a_trials_steps_are_split_into_its_episodes_by_the_start_flag():
    def trial(lengths, offset):
        n = sum(lengths)
        flag = np.concatenate([[1.0] + [0.0] * (m - 1) for m in lengths])
        obs = np.column_stack([np.arange(n) + offset, np.zeros((n, 4)), flag]).astype(np.float32)
        return {
            "obs": obs,
            "actions": np.ones((n, 2)) * offset,
            "rewards": np.arange(n, dtype=np.float64) + offset,
            "episode": np.cumsum(flag > 0.5) - 1,
            "success": [False, True],
        }

    trials = [trial([3, 2], 0), trial([2, 4], 100)]
    first, second = task_batch(trials, 0, 1), task_batch(trials, 1, 1)
    np.testing.assert_array_equal(first.mask, [[1, 1, 1], [1, 1, 0]])
    np.testing.assert_array_equal(first.episode_returns, [0 + 1 + 2, 100 + 101])
    np.testing.assert_array_equal(second.episode_returns, [3 + 4, 102 + 103 + 104 + 105])
    np.testing.assert_array_equal(second.obs[1, :, 0], [102, 103, 104, 105])  # the task env's obs only
    assert second.obs.shape[-1] == 1
    assert first.extras["success"].max() == 0 and second.extras["success"][0].max() == 1


@pytest.mark.ray
@pytest.mark.slow
def test_rl2_trains_on_point_logs_each_episode_of_its_trials_and_main_test_evaluates_them(tmp_path):
    episodes = 3
    proc = run_main_train(
        "--env", "point", "--alg", "rl2", "--stop-iters", "2",
        "--set", f"episodes_per_trial={episodes}", "--set", "env_config.horizon=20",
        "--set", "train_batch_size=480", "--set", "minibatch_size=120", "--set", "num_epochs=2",
        "--set", "num_envs_per_env_runner=4", "--set", "model.max_seq_len=20",
        "--set", "env_config.pool_size=3", "--set", "validation_freq=1", "--set", "validation_pool_size=2",
        "--storage-path", str(tmp_path), "--name", "rl2",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (trial,) = trial_dirs(tmp_path / "rl2")
    rows = results(trial)
    assert [r["training_iteration"] for r in rows] == [1, 2]
    meta = rows[-1]["meta"]
    assert {f"return_stage_{k}" for k in range(episodes)} <= set(meta)
    assert meta["return_post"] == meta[f"return_stage_{episodes - 1}"]
    assert meta["env_steps"] >= 480 and meta["env_steps_lifetime"] >= 960
    for k in range(episodes):  # an episode of 20 steps at most 0.1 per step from the origin
        assert -20 * 1.5 <= meta[f"return_stage_{k}"] <= 0
    # validation on point's pools (env_config.pool_size) every iteration: trials of 2 tasks per pool (4 trials each, one per
    # sub-env), each episode of the trial a stage; its 3 x 2 x 4 x 60 = 1440 env steps are not
    # training's (iteration 2 samples its train batch of 480 only)
    for row in rows:
        assert sorted(row["validation"]) == ["D", "D'", "D''"]
        for pool in row["validation"].values():
            assert {f"return_stage_{k}" for k in range(episodes)} <= set(pool)
            assert -20 * 1.5 <= pool["return_post"] <= 0
    assert rows[1]["meta"]["env_steps"] < 480 + 1440
    out = tmp_path / "eval"
    tested = subprocess.run(
        [sys.executable, str(REPO / "main_test.py"), str(tmp_path / "rl2"), "--out", str(out), "--pool-size", "3"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert tested.returncode == 0, tested.stdout[-3000:] + tested.stderr[-3000:]
    (summary_file,) = out.glob("*-eval.json")
    summary = json.loads(summary_file.read_text())
    pools = summary["pools"]
    stats = next(iter(next(iter(pools.values())).values()))
    assert {f"return_stage_{k}" for k in range(episodes)} <= set(stats)
    assert stats["num_tasks"] == 3
    drawn = subprocess.run(
        [sys.executable, str(REPO / "main_render.py"), str(tmp_path / "rl2"), "--out", str(tmp_path / "paths")],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert drawn.returncode == 0, drawn.stdout[-3000:] + drawn.stderr[-3000:]
    assert (tmp_path / "paths.png").stat().st_size > 0
