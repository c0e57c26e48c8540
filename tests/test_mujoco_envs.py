"""The MuJoCo task suite (docs/original_release.md#environments): models, rewards, pools and test-time noise together."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from tesp.envs import ENVS, make_env

SUITE = ["wheeled", "ant", "reacher_2_link", "reacher_4_link"]
DIMS = {"wheeled": (9, 2), "ant": (29, 8), "reacher_2_link": (8, 2), "reacher_4_link": (14, 4)}
# Per-episode return of a policy that never moves, mean over each pool (docs/original_release.md#environments).
ZERO_MOTION = {
    "wheeled": {"D": -156, "D'": -147, "D''": -264},
    "ant": {"D": -156, "D'": -147, "D''": -264},
    "reacher_2_link": {"D": -347, "D'": -374, "D''": -414},
    "reacher_4_link": {"D": -405, "D'": -432, "D''": -452},
}


def zero_episode(env, task) -> tuple[float, np.ndarray]:
    """Return and tracked positions of one episode with zero actions."""
    env.set_task(task)
    env.reset(seed=0)
    total, positions = 0.0, []
    for _ in range(env.horizon):
        _, reward, terminated, truncated, info = env.step(np.zeros(env.action_space.shape))
        total += reward
        positions.append(env.position())
        assert info["dist_reward"] == pytest.approx(-np.linalg.norm(env.position() - task["goal"]))
        if terminated or truncated:
            break
    return total, np.array(positions)


@pytest.mark.parametrize("name", SUITE)
def test_zero_motion_returns_match_the_reference(name):
    env = make_env(name)
    pools = env.task_pools()
    assert [len(pools[p]) for p in ("D", "D'", "D''")] == [100, 100, 100]
    # A still agent follows the same path whatever the goal, so one episode's positions give
    # every goal's return; a few full episodes per pool check that against the env's reward.
    _, path = zero_episode(env, pools["D"][0])
    assert len(path) == 200  # no early termination
    for pool, expected in ZERO_MOTION[name].items():
        goals = np.array([t["goal"] for t in pools[pool]])
        returns = -np.linalg.norm(path[None] - goals[:, None], axis=-1).sum(1)
        for i in (0, 37, 99):
            got, _ = zero_episode(env, pools[pool][i])
            assert got == pytest.approx(returns[i], rel=1e-6)
        assert returns.mean() == pytest.approx(expected, abs=1.5), pool


@pytest.mark.parametrize("name", SUITE)
def test_dimensions_checker_and_deterministic_reset(name):
    env = make_env(name)
    obs_dim, act_dim = DIMS[name]
    assert env.observation_space.shape == (obs_dim,)
    assert env.action_space.shape == (act_dim,)
    assert ENVS[name].__doc__ and "Observation" in ENVS[name].__doc__
    check_env(env, skip_render_check=True)
    first, _ = env.reset(seed=1)
    env.step(env.action_space.sample())
    second, _ = env.reset(seed=2)
    np.testing.assert_array_equal(first, second)


def test_seed_spellings_and_pools_follow_the_seed():
    assert type(make_env("reacher_2-link")) is type(make_env("reacher_2_link"))
    assert type(make_env("reacher_4-link")) is type(make_env("reacher_4_link"))
    a, b = make_env("wheeled"), make_env("wheeled", {"pool_seed": 2})
    goals = [t["goal"] for t in a.task_pools()["D"]]
    np.testing.assert_allclose(
        goals[0], [-0.2489, 0.6610], atol=1e-4
    )  # docs/original_release.md#task-pools check value
    assert not np.allclose(goals[0], b.task_pools()["D"][0]["goal"])
    assert len(make_env("ant", {"pool_size": 5}).task_pools()["D''"]) == 5
    env = make_env("wheeled")
    env.reset(seed=0)
    drawn = env.sample_tasks(20)
    assert len({t["index"] for t in drawn}) == 20  # distinct training goals per meta-iteration
    for t in drawn:
        np.testing.assert_array_equal(t["goal"], goals[t["index"]])


@pytest.mark.parametrize("rule", [None, False, True])
def test_ant_ends_out_of_the_height_range_only_with_the_originals_rule(rule):
    env = make_env("ant", {} if rule is None else {"terminate_when_unhealthy": rule})
    env.set_task(env.task_pools()["D"][0])
    env.reset(seed=0)
    qpos = env.init_qpos.copy()
    qpos[2] = 0.6  # above the healthy range [0.15, 0.45]
    env.set_state(qpos, env.init_qvel)
    _, _, terminated, _, _ = env.step(np.zeros(8))
    assert terminated == bool(rule)  # default off: ending early must not pay (tesp/envs/goal_mujoco.py)
    qpos[3] = np.nan
    env.set_state(qpos, env.init_qvel)
    assert env.unhealthy()  # a non-finite state always ends the episode


def test_goal_reached_terminates():
    env = make_env("reacher_2_link")
    env.set_task({"goal": np.array([1.7, 0.03])})  # within 0.06 of the tip's start
    env.reset(seed=0)
    _, _, terminated, truncated, _ = env.step(np.zeros(2))
    assert terminated and not truncated


@pytest.mark.parametrize("name", ["wheeled", "reacher_4_link"])
def test_observation_noise_only_where_configured(name):
    env = make_env(name)
    task = env.task_pools()["D'"][0]
    env.set_task(task)
    clean = [env.reset(seed=0)[0]] + [env.step(np.full(env.action_space.shape, 0.3))[0] for _ in range(5)]
    env.set_task({**task, "obs_noise_std": 0.1})
    noisy = [env.reset(seed=0)[0]] + [env.step(np.full(env.action_space.shape, 0.3))[0] for _ in range(5)]
    residual = np.array(noisy) - np.array(clean)
    assert 0.05 < residual.std() < 0.2  # N(0, 0.1^2) on every observed entry
    env.set_task(task)  # a task without noise: back to the env's noise-free default
    again = [env.reset(seed=0)[0]] + [env.step(np.full(env.action_space.shape, 0.3))[0] for _ in range(5)]
    np.testing.assert_array_equal(np.array(again), np.array(clean))
    # Rewards are computed on the true state, so they are equal with and without noise.
    env.set_task({**task, "obs_noise_std": 0.5})
    env.reset(seed=0)
    noisy_reward = env.step(np.zeros(env.action_space.shape))[1]
    env.set_task(task)
    env.reset(seed=0)
    assert env.step(np.zeros(env.action_space.shape))[1] == pytest.approx(noisy_reward)
    # The env option sets the default for every task.
    noisy_env = make_env(name, {"obs_noise_std": 0.1})
    noisy_env.set_task(task)
    assert not np.array_equal(noisy_env.reset(seed=0)[0], clean[0])


@pytest.mark.parametrize("name", SUITE)
def test_step_batch_gives_what_step_gives(name):
    """The sampler's batched step is the env's ``step`` for every env: same observations
    (noise included), rewards and termination/truncation flags, up to the horizon."""
    from tesp.envs.goal_mujoco import GoalMujocoEnv

    def make(n):
        envs = [make_env(name, {"horizon": 30, "obs_noise_std": 0.05}) for _ in range(n)]
        for i, env in enumerate(envs):
            env.set_task(env.task_pools()["D"][i])
            env.reset(seed=i)
        envs[0].set_task({"goal": envs[0].position()})  # starts on its goal: may terminate early
        return envs

    one, batch = make(3), make(3)
    rng = np.random.default_rng(0)
    live = [0, 1, 2]
    for _ in range(35):
        if not live:
            break
        actions = rng.uniform(-1.5, 1.5, size=(len(live), one[0].action_space.shape[0]))
        got = GoalMujocoEnv.step_batch([batch[i] for i in live], actions)
        for j, i in enumerate(live):
            obs, reward, terminated, truncated, _ = one[i].step(actions[j])
            np.testing.assert_array_equal(got.obs[j], obs)
            assert got.rewards[j] == pytest.approx(reward, rel=1e-12, abs=1e-12)
            assert (bool(got.terminated[j]), bool(got.truncated[j])) == (terminated, truncated)
        live = [i for j, i in enumerate(live) if not (got.terminated[j] or got.truncated[j])]
    assert not live  # every episode ended by the horizon
