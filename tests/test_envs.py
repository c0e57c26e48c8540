import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from tesp.envs import ENVS, make_env
from tesp.envs.point import PointNavEnv


@pytest.mark.parametrize("name", sorted(ENVS))
def test_env_passes_gymnasium_check_and_has_the_task_api(name):
    env = make_env(name)
    env.reset(seed=0)
    tasks = env.sample_tasks(3)
    assert len(tasks) == 3
    env.set_task(tasks[1])
    current = env.get_task()
    for key in set(tasks[1]) - {"index"}:  # the pool index is bookkeeping, not part of the task
        np.testing.assert_array_equal(current[key], tasks[1][key])
    check_env(env, skip_render_check=True)


def test_point_rules():
    env = PointNavEnv()
    env.reset(seed=0)
    env.set_task({"goal": np.array([0.3, -0.2])})
    obs, _ = env.reset()
    assert obs.tolist() == [0.0, 0.0]
    obs, reward, term, trunc, _ = env.step(np.array([5.0, -0.05]))  # clipped to 0.1 per axis
    np.testing.assert_allclose(obs, [0.1, -0.05], atol=1e-7)
    assert reward == pytest.approx(-np.hypot(0.2, 0.15))
    assert not term and not trunc
    env.step(np.array([0.1, -0.1]))
    obs, reward, term, _, _ = env.step(np.array([0.095, -0.05]))
    assert term and reward == pytest.approx(-np.hypot(0.005, 0.0))


def test_point_step_batch_steps_each_env_as_its_own_step():
    """The batched step keeps each env's position, goal, clock and noise to itself: three envs
    with different goals, noise and starting clocks, stepped together, give what each gives
    stepped alone (one reaches its goal, one its horizon)."""

    def make():
        envs = [PointNavEnv(horizon=6, obs_noise_std=s) for s in (0.0, 0.05, 0.0)]
        for i, (env, goal) in enumerate(zip(envs, ([0.3, 0.0], [-0.3, 0.2], [0.9, 0.9]), strict=True)):
            env.set_task({"goal": np.array(goal)})
            env.reset(seed=i)
        envs[2].step(np.zeros(2))  # a clock one step ahead
        return envs

    alone, together = make(), make()
    actions = np.random.default_rng(0).uniform(-0.2, 0.2, size=(5, 3, 2))
    actions[:, 0] = [0.1, 0.0]  # env 0 is on its goal after 3 steps
    flags = []
    for t in range(5):
        got = PointNavEnv.step_batch(together, actions[t])
        for i, env in enumerate(alone):
            obs, reward, terminated, truncated, _ = env.step(actions[t, i])
            np.testing.assert_array_equal(got.obs[i], obs)
            assert (got.rewards[i], got.terminated[i], got.truncated[i]) == (reward, terminated, truncated)
        flags.append((got.terminated.tolist(), got.truncated.tolist()))
    assert flags[2][0] == [True, False, False]  # env 0 on its goal at its 3rd step
    assert [f[1] for f in flags[3:]] == [[False] * 3, [False, False, True]]  # env 2's 6th step


def test_point_horizon_and_goal_distribution():
    env = PointNavEnv(horizon=5, goal_low=0.2, goal_high=0.4)
    env.reset(seed=1)
    goals = np.array([t["goal"] for t in env.sample_tasks(500)])
    assert goals.min() >= 0.2 and goals.max() <= 0.4
    env.set_task({"goal": np.array([1.0, 1.0])})
    env.reset()
    flags = [env.step(np.zeros(2))[3] for _ in range(5)]
    assert flags == [False] * 4 + [True]


def test_same_seed_same_tasks():
    a, b = PointNavEnv(), PointNavEnv()
    a.reset(seed=7)
    b.reset(seed=7)
    np.testing.assert_array_equal(
        [t["goal"] for t in a.sample_tasks(4)], [t["goal"] for t in b.sample_tasks(4)]
    )


def test_bad_env_options_are_rejected():
    with pytest.raises(ValueError, match="goal_low"):
        PointNavEnv(goal_low=1.0, goal_high=0.0)


def test_point_pools_and_noise():
    env = PointNavEnv(pool_size=7, pool_seed=3)
    pools = env.task_pools()
    assert [len(pools[p]) for p in ("D", "D'", "D''")] == [7, 7, 7]
    assert all(np.all(np.abs(t["goal"]) <= 0.5) for t in pools["D"] + pools["D'"])
    assert all(np.any(np.abs(t["goal"]) > 0.5) for t in pools["D''"])  # outside the training square
    env.reset(seed=0)
    assert sorted(t["index"] for t in env.sample_tasks(7)) == list(range(7))
    env.set_task({**pools["D'"][0], "obs_noise_std": 0.2})
    obs, _ = env.reset(seed=0)
    assert np.abs(obs).max() > 0  # the true position is the origin
    env.set_task(pools["D'"][0])
    assert env.reset(seed=0)[0].tolist() == [0.0, 0.0]
