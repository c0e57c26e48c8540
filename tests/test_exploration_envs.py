"""MIME's sparse task families: the goal rings, the dog-feeding house, the pendulum."""

from collections import deque

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from tesp.envs import make_env
from tesp.envs.pendulum import TEST_TASKS, TRAIN_TASKS
from tesp.envs.sparse_nav import DOGS

NEW_ENVS = [
    "nav_wide_ring",
    "nav_hard_exploration",
    "nav_close_ring",
    "nav_dog_feeding",
    "pendulum_dense",
    "pendulum_sparse",
    "point_robot_sparse",
]


@pytest.mark.parametrize("name", NEW_ENVS)
def test_gymnasium_env_checker(name):
    env = make_env(name)
    env.set_task((env.task_pools().get("test") or env.draw_tasks(1))[0])
    check_env(env, skip_render_check=True)


@pytest.mark.parametrize(
    ("name", "low", "high", "radii", "horizon"),
    [
        ("nav_wide_ring", 5.0, 9.0, (5.5, 8.5), 100),
        ("nav_hard_exploration", 8.0, 9.0, (8.5,), 100),
        ("nav_close_ring", 5.0, 5.5, (5.25,), 300),
    ],
)
def test_goal_rings(name, low, high, radii, horizon):
    env = make_env(name)
    env.reset(seed=0)
    norms = np.linalg.norm([t["goal"] for t in env.draw_tasks(500)], axis=1)
    assert norms.min() > low and norms.max() < high
    # the radius density of a 2D Gaussian's norm grows up to sigma = ring_high: more goals outside
    assert (norms > (low + high) / 2).mean() > 0.5
    test = np.array([t["goal"] for t in env.task_pools()["test"]])
    assert len(test) == 8 * len(radii)
    assert sorted(set(np.round(np.linalg.norm(test, axis=1), 6))) == list(radii)
    assert env.horizon == horizon


def walk(env, target, steps):
    """Head straight for ``target`` at full speed; returns the rewards, the infos, the last obs."""
    rewards, infos, obs = [], [], None
    for _ in range(steps):
        obs, reward, terminated, truncated, info = env.step(
            np.clip(target - env.positions(obs_of(env)), -0.1, 0.1)
        )
        rewards.append(reward)
        infos.append(info)
        assert not terminated
    return np.array(rewards), infos, obs


def obs_of(env):
    return env._observe()


def test_ring_reward_is_one_per_step_within_one_of_the_goal():
    env = make_env("nav_wide_ring")
    goal = np.array([6.05, 0.0])
    env.set_task({"goal": goal})
    env.reset(seed=0)
    rewards, infos, obs = walk(env, goal, 70)
    x = np.minimum(0.1 * np.arange(1, 71), 6.05)  # the position after each step along the x axis
    expected = (np.abs(x - 6.05) < 1.0).astype(float)
    assert expected[49] == 0 and expected[50] == 1  # in the disk from the 51st step (x 5.1) on
    np.testing.assert_allclose(rewards, expected)
    assert [i["success"] for i in infos] == list(expected.astype(bool))
    np.testing.assert_allclose(obs, goal, atol=1e-5)
    # the episode is truncated at the horizon, never terminated
    for _ in range(29):
        *_, truncated, _ = env.step(np.zeros(2))
        assert not truncated
    *_, truncated, _ = env.step(np.zeros(2))
    assert truncated


def test_dog_house_walls_block_moves_and_say_so():
    env = make_env("nav_dog_feeding")
    env.set_task(env.task_pools()["test"][0])
    obs, _ = env.reset(seed=0)
    np.testing.assert_allclose(obs, [1.3, 2.0, 0.0])
    for _ in range(30):  # walk left into the outer wall at x = 0
        obs, *_ = env.step(np.array([-0.1, 0.0]))
    assert obs[2] == 1.0  # bumped
    x = obs[0]
    assert 0.0 < x <= 0.2  # stopped at the wall's clearance
    obs, *_ = env.step(np.array([-0.1, 0.0]))
    assert obs[0] == x and obs[2] == 1.0  # a walk into a wall does not move
    obs, *_ = env.step(np.array([0.0, 0.1]))
    assert obs[2] == 0.0 and obs[1] > 2.0  # along the wall it does


def reachable(env, resolution=0.1):
    """The free cells of a grid over the house reachable from the start by axis moves."""
    n = int(round(10 / resolution))
    start = tuple(np.round(env.start / resolution).astype(int))
    seen, queue = {start}, deque([start])
    while queue:
        i, j = queue.popleft()
        for di, dj in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            cell = (i + di, j + dj)
            inside = 0 <= cell[0] <= n and 0 <= cell[1] <= n
            if cell not in seen and inside and not env.blocked(np.array(cell) * resolution):
                seen.add(cell)
                queue.append(cell)
    return seen


def test_dog_house_every_dog_reachable_and_rooms_separated():
    env = make_env("nav_dog_feeding")
    cells = reachable(env)
    for dog in DOGS:
        assert tuple(np.round(dog / 0.1).astype(int)) in cells
    # a straight line from the start to each dog is blocked: the dogs are in other rooms
    for dog in DOGS:
        line = env.start + np.linspace(0, 1, 200)[:, None] * (dog - env.start)
        assert any(env.blocked(p) for p in line)
    pools = env.task_pools()
    np.testing.assert_allclose([t["goal"] for t in pools["D"]], DOGS)
    np.testing.assert_allclose([t["goal"] for t in pools["test"]], DOGS[[0, 2]])


def test_dog_reward_through_the_doorway():
    env = make_env("nav_dog_feeding")
    env.set_task({"goal": DOGS[0]})  # the upper-left dog, through the door at y = 5, x 0.5 - 1.5
    env.reset(seed=0)
    total = 0.0
    for waypoint, steps in (((1.0, 2.0), 5), ((1.0, 6.0), 45), ((2.0, 9.0), 40)):
        rewards, _, obs = walk(env, np.array(waypoint), steps)
        total += rewards.sum()
    np.testing.assert_allclose(obs[:2], DOGS[0], atol=1e-5)
    assert rewards[-1] == 1.0 and total > 0
    assert env.step(np.zeros(2))[1] == 1.0


def test_pendulum_rewards_upright_and_hanging():
    dense, sparse = make_env("pendulum_dense"), make_env("pendulum_sparse")
    for env in (dense, sparse):
        env.set_task({"mass": 0.6, "length": 0.8})
        env.reset(seed=0)
        env._th, env._thdot = 0.0, 0.0  # upright and still: it stays there with no torque
    assert dense.step(np.zeros(1))[1] == 0.0
    assert sparse.step(np.zeros(1))[1] == 1.0
    for env in (dense, sparse):
        obs, _ = env.reset(seed=1)
        assert 3.0 <= np.arctan2(obs[1], obs[0]) % (2 * np.pi) <= 3.28 and abs(obs[2]) <= 0.01
    # hanging: the tip is ~2 l below the upright tip
    assert dense.step(np.zeros(1))[1] == pytest.approx(-1.6, abs=0.01)
    assert sparse.step(np.zeros(1))[1] == 0.0


def test_pendulum_dynamics_one_step():
    env = make_env("pendulum_dense")
    env.set_task({"mass": 0.5, "length": 0.4})
    env.reset(seed=0)
    env._th, env._thdot = 0.3, 0.1
    obs, *_ = env.step(np.array([5.0]))  # clipped to 2
    thdot = 0.1 + (3 * 10 / (2 * 0.4) * np.sin(0.3) + 3 * 2.0 / (0.5 * 0.4**2)) * 0.1
    th = 0.3 + thdot * 0.1
    np.testing.assert_allclose(obs, [np.cos(th), np.sin(th), thdot], rtol=1e-6)


def test_pendulum_tasks():
    env = make_env("pendulum_dense")
    env.reset(seed=0)
    drawn = {(t["mass"], t["length"]) for t in env.draw_tasks(300)}
    assert drawn == {(t["mass"], t["length"]) for t in TRAIN_TASKS} and len(drawn) == 6
    assert env.task_pools()["test"] == TEST_TASKS and len(TEST_TASKS) == 4


def test_sparse_point_robot_goals_pools_and_reward():
    env = make_env("point_robot_sparse")
    pools = env.task_pools()
    assert [len(pools[k]) for k in ("D", "D'", "D''")] == [80, 20, 20]
    goals = {k: np.array([t["goal"] for t in pools[k]]) for k in pools}
    for k in pools:  # all on the unit circle; D and D' on its upper half, D'' on its lower half
        np.testing.assert_allclose(np.linalg.norm(goals[k], axis=1), 1.0)
    assert (goals["D"][:, 1] >= 0).all() and (goals["D'"][:, 1] >= 0).all() and (goals["D''"][:, 1] < 0).all()
    # D and D' together are the 100 evenly spaced angles, shuffled (D' is not one end of the arc)
    both = np.concatenate([goals["D"], goals["D'"]])
    np.testing.assert_allclose(
        np.sort(np.arctan2(both[:, 1], both[:, 0])), np.linspace(0, np.pi, 100), atol=1e-9
    )
    assert np.ptp(np.arctan2(goals["D'"][:, 1], goals["D'"][:, 0])) > np.pi / 2
    env.reset(seed=0)
    drawn = env.draw_tasks(50)
    assert all(any(t is d for d in pools["D"]) for t in drawn)

    env.set_task({"goal": np.array([0.95, 0.0])})
    env.reset(seed=0)
    rewards, successes, dense = [], [], []
    for _ in range(20):  # straight at the goal at full speed
        _, r, terminated, truncated, info = env.step(np.array([0.5, 0.0]))
        rewards.append(r)
        successes.append(info["success"])
        dense.append(info["dense_reward"])
        assert not terminated
    assert truncated
    # x = 0.1 k is within 0.2 of the goal for k = 8..11 (distances 0.15, 0.05, 0.05, 0.15), else 0
    expected = [1 - abs(0.95 - 0.1 * k) if 8 <= k <= 11 else 0.0 for k in range(1, 21)]
    np.testing.assert_allclose(rewards, expected, atol=1e-9)
    assert successes == [e > 0 for e in expected]
    np.testing.assert_allclose(
        dense, [-abs(0.95 - 0.1 * k) for k in range(1, 21)], atol=1e-9
    )  # minus the distance
    assert max(rewards) == pytest.approx(0.95)
