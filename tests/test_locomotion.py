"""The standard locomotion families (HalfCheetah velocity and direction, Ant direction): the
task's reward recomputed from the physics, the task distributions and pools, exact repeats,
Gymnasium's checker, and a short MAML run through main_train.py."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from tesp.envs import make_env

from .conftest import REPO
from .runner import results, run_main_train, trial_dirs

FAMILIES = ["half_cheetah_vel", "half_cheetah_dir", "ant_dir"]


@pytest.mark.parametrize("name", FAMILIES)
def test_gymnasiums_checker_passes(name):
    check_env(make_env(name), skip_render_check=True)


def _x_velocity(env, action) -> tuple[float, float, float]:
    """Step ``env`` and return (reward, the torso's x and y velocity from its root joint's
    positions; the cheetah's y entry is its root's height, unused)."""
    before = env.env.data.qpos[:2].copy()
    _, reward, *_ = env.step(action)
    after = env.env.data.qpos[:2].copy()
    v = (after - before) / env.env.dt
    return reward, float(v[0]), float(v[1])


def test_half_cheetah_vel_pays_minus_the_speed_error_and_the_control_cost():
    env = make_env("half_cheetah_vel")
    env.set_task({"velocity": 1.5})
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(20):
        a = rng.uniform(-1, 1, 6)
        reward, vx, _ = _x_velocity(env, a)
        assert reward == pytest.approx(-abs(vx - 1.5) - 0.05 * float(a @ a), rel=1e-6, abs=1e-9)


def test_half_cheetah_dir_and_ant_dir_pay_the_velocity_along_the_direction():
    rng = np.random.default_rng(0)
    cheetah = make_env("half_cheetah_dir")
    cheetah.set_task({"direction": -1.0})
    cheetah.reset(seed=0)
    a = rng.uniform(-1, 1, 6)
    reward, vx, _ = _x_velocity(cheetah, a)
    assert reward == pytest.approx(-vx - 0.05 * float(a @ a), rel=1e-6, abs=1e-9)
    # the ant: velocities as Gymnasium's Ant-v5 measures them (its torso's xpos over a step),
    # the contact cost from the contact forces after the step
    ant = make_env("ant_dir", {"two_d": True})
    d = [0.6, 0.8]
    ant.set_task({"direction": d})
    ant.reset(seed=0)
    for _ in range(5):
        a = rng.uniform(-1, 1, 8)
        _, reward, _, _, info = ant.step(a)
        contact = 0.0005 * float(np.sum(np.clip(ant.env.data.cfrc_ext, -1, 1) ** 2))
        expected = (
            d[0] * info["x_velocity"] + d[1] * info["y_velocity"] - 0.005 * float(a @ a) - contact + 0.05
        )
        assert reward == pytest.approx(expected, rel=1e-6, abs=1e-9)


def test_task_distributions_and_pools():
    vel = make_env("half_cheetah_vel", {"pool_size": 5})
    pools = vel.task_pools()
    assert sorted(pools) == ["D", "D'", "D''"]
    assert [t["index"] for t in pools["D"]] == list(range(5))
    assert all(0 <= t["velocity"] <= 2 for t in pools["D"] + pools["D'"] + vel.draw_tasks(50))
    assert all(2 <= t["velocity"] <= 3 for t in pools["D''"])
    assert "D" not in make_env("half_cheetah_vel").task_pools()  # fresh draws for training by default
    assert {t["direction"] for t in make_env("half_cheetah_dir").draw_tasks(40)} == {-1.0, 1.0}
    dirs = np.array([t["direction"] for t in make_env("ant_dir", {"two_d": True}).draw_tasks(20)])
    np.testing.assert_allclose(np.linalg.norm(dirs, axis=1), 1.0)
    assert len({tuple(d) for d in dirs}) == 20


@pytest.mark.parametrize("name", FAMILIES)
def test_an_episode_repeats_exactly_from_its_seed_and_ends_at_the_horizon(name):
    def episode(seed):
        env = make_env(name, {"horizon": 30})
        env.set_task(env.task_pools()["D'"][0])
        obs, _ = env.reset(seed=seed)
        out, rng, done, steps = [obs], np.random.default_rng(1), False, 0
        while not done:
            obs, reward, terminated, truncated, _ = env.step(rng.uniform(-1, 1, env.action_space.shape))
            out.append(np.append(obs, reward))
            done, steps = terminated or truncated, steps + 1
        return out, steps, truncated

    first, steps, truncated = episode(3)
    again, _, _ = episode(3)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert steps <= 30 and (steps == 30) == truncated
    other, _, _ = episode(4)
    assert not np.array_equal(first[0], other[0])  # the reset noise follows the seed


@pytest.mark.ray
@pytest.mark.slow
def test_maml_runs_on_half_cheetah_vel_from_the_command_line(tmp_path):
    proc = run_main_train(
        "--env", "half_cheetah_vel", "--alg", "maml", "--stop-iters", "1", "--storage-path", str(tmp_path),
        "--name", "hc", "--set", "meta_batch_size=2", "--set", "episodes_per_task=2",
        "--set", "num_envs_per_env_runner=2", "--set", "num_env_runners=0", "--set", "env_config.horizon=20",
        "--set", "validation_freq=1", "--set", "validation_pool_size=2",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    (trial,) = trial_dirs(tmp_path / "hc")
    (row,) = results(trial)
    assert sorted(row["validation"]) == ["D'", "D''"]
    assert row["meta"]["env_steps"] == 2 * 2 * 2 * 20  # tasks x episodes x stages x steps
    # main_test.py on its pools and main_render.py's video (the replay starts from each
    # episode's recorded first state: the cheetah's reset is random)
    test = subprocess.run(
        [sys.executable, str(REPO / "main_test.py"), str(tmp_path / "hc"), "--pool-size", "2"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert test.returncode == 0, test.stderr[-3000:]
    assert "D'' sigma 0.0" in test.stdout
    render = subprocess.run(
        [sys.executable, str(REPO / "main_render.py"), str(tmp_path / "hc"), "--out", str(tmp_path / "v.mp4")],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert render.returncode == 0, render.stderr[-3000:]
    assert (tmp_path / "v.mp4").stat().st_size > 0 and (tmp_path / "v.gif").stat().st_size > 0
