"""RL²'s trials: K episodes of one task as one episode, the previous action, reward and an
episode-start flag in every observation, the episodes' returns at the trial's end."""

from __future__ import annotations

import numpy as np

from tesp.algorithms.rl2.trial_env import TrialEnv
from tesp.envs import make_env


def run_trial(env, seed=0, action_scale=0.05):
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    rows, done, info = [obs], False, {}
    rewards = []
    while not done:
        action = rng.uniform(-action_scale, action_scale, env.action_space.shape).astype(np.float32)
        obs, reward, terminated, truncated, info = env.step(action)
        rows.append(obs)
        rewards.append((action, reward))
        done = terminated or truncated
    return rows, rewards, info, terminated


def test_a_trial_is_k_episodes_of_one_task_with_the_previous_action_reward_and_start_flag():
    env = TrialEnv(make_env("point", {"horizon": 5}), episodes_per_trial=3)
    assert env.observation_space.shape == (2 + 2 + 2,)
    rows, steps, info, terminated = run_trial(env)
    assert len(steps) == 15 and terminated  # 3 episodes of 5 steps; the trial's end is terminal
    starts = [i for i, row in enumerate(rows) if row[-1] == 1.0]
    assert starts == [0, 5, 10]  # the first observation of each episode
    np.testing.assert_array_equal(rows[0][2:5], np.zeros(3))  # nothing before the trial
    for t, (action, reward) in enumerate(steps):  # each observation carries the step before it
        np.testing.assert_allclose(rows[t + 1][2:4], action)
        assert rows[t + 1][4] == np.float32(reward)
    np.testing.assert_allclose(rows[5][:2], [0.0, 0.0])  # the point starts again at the origin
    returns = info["episode_returns"]
    assert len(returns) == 3
    np.testing.assert_allclose(sum(returns), sum(r for _, r in steps), rtol=1e-6)


def test_each_trial_draws_its_task_unless_one_is_set():
    env = TrialEnv(make_env("point", {"horizon": 3}), episodes_per_trial=1)
    env.reset(seed=0)
    first = env.task_env.get_task()["goal"].copy()
    env.reset()
    assert not np.allclose(env.task_env.get_task()["goal"], first)
    env.set_task({"goal": np.array([0.3, -0.2])})
    for _ in range(2):
        env.reset()
        np.testing.assert_allclose(env.task_env.get_task()["goal"], [0.3, -0.2])


def test_a_trial_repeats_exactly_from_its_seed():
    def trial(seed):
        return run_trial(TrialEnv(make_env("point", {"horizon": 4}), episodes_per_trial=2), seed)[0]

    assert all(np.array_equal(a, b) for a, b in zip(trial(3), trial(3), strict=True))
    assert not np.array_equal(trial(3)[-1], trial(4)[-1])


def test_without_the_reward_input_the_previous_reward_reads_zero():
    env = TrialEnv(make_env("point", {"horizon": 4}), episodes_per_trial=2, reward_input=False)
    rows, steps, info, _ = run_trial(env)
    assert all(reward < 0 for _, reward in steps)  # the env still pays its rewards
    assert all(row[4] == 0.0 for row in rows)  # the policy does not see them
    np.testing.assert_allclose(sum(info["episode_returns"]), sum(r for _, r in steps), rtol=1e-6)


def test_success_is_reported_only_for_a_family_that_has_it():
    _, _, info, _ = run_trial(TrialEnv(make_env("point", {"horizon": 3}), episodes_per_trial=2))
    assert "success" not in info  # point has no success: no success rates of 0 in the results
    env = TrialEnv(make_env("nav_wide_ring", {}), episodes_per_trial=2)
    _, _, info, _ = run_trial(env)
    assert len(info["success"]) == 2
