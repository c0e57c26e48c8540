"""What a sampling round gives the methods: fresh env randomness every round, whole episodes of
every length, and runs that repeat exactly with the same seed.

Before tesp's own ``TaskEnvRunner.sample_task``, RLlib's ``sample(num_episodes=n)`` re-seeded every
sub-env with the same seed at every call (the same MovementBandits goal layouts and the same
observation noise in every round) and returned the first ``n`` episodes to finish (short ones
over-represented, long ones dropped). Each test below failed on that sampler.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from tesp import envs as tesp_envs
from tesp.envs.base import TaskEnv
from tesp.meta.env_runner import episode_seeds
from tesp.meta.sampler import SampleJob
from tesp.settings import resolve_config

pytestmark = pytest.mark.ray


def build(alg: str, env: str, seed: int = 0, **overrides):
    settings = {"num_env_runners": 0, "num_envs_per_env_runner": 4, "episodes_per_task": 4, "seed": seed}
    config, _, _ = resolve_config(alg, env, settings | overrides)
    return config.build_algo()


def weights_of(algo):
    return algo.on_learner(lambda learner: learner.slot_weights([0]))[0]


def sample_rounds(algo, task, weights, rounds: int):
    return [algo.sampler.sample([SampleJob(0, task, weights)])[0].batch for _ in range(rounds)]


@pytest.fixture(scope="module")
def bandits(ray_session):
    algo = build("mlsh", "movement_bandits")
    yield algo
    algo.stop()


def test_goal_layouts_change_from_round_to_round(bandits):
    # MovementBandits draws both goals at every reset (observation entries 2..5).
    task = {"correct": 0}
    rounds = sample_rounds(bandits, task, weights_of(bandits), 3)
    layouts = [b.obs[:, 0, 2:] for b in rounds]
    assert not np.allclose(layouts[0], layouts[1])
    assert not np.allclose(layouts[1], layouts[2])
    # Within a round, every sub-env's episode has its own layout too.
    assert len({tuple(row) for row in layouts[0].round(6)}) == layouts[0].shape[0]


def test_the_same_seed_gives_the_same_rounds_and_another_seed_others(bandits):
    task, weights = {"correct": 1}, weights_of(bandits)
    runs = []
    for seed in (0, 0, 1):
        algo = build("mlsh", "movement_bandits", seed=seed)
        try:
            runs.append(sample_rounds(algo, task, weights, 2))
        finally:
            algo.stop()
    for a, b in zip(runs[0], runs[1], strict=True):
        np.testing.assert_array_equal(a.obs, b.obs)
        np.testing.assert_array_equal(a.actions, b.actions)
    assert not np.array_equal(runs[0][0].obs, runs[2][0].obs)


def test_observation_noise_is_a_new_draw_every_round(ray_session):
    algo = build("maml", "point")
    try:
        weights = algo.on_learner(lambda learner: learner.start_tasks([-1]))[0]
        task = {"goal": np.array([0.3, -0.2]), "obs_noise_std": 0.1}
        first, second = sample_rounds(algo, task, weights, 2)
        # Every episode starts at the origin: the first observation is pure noise.
        assert not np.allclose(first.obs[:, 0], second.obs[:, 0])
        assert np.abs(first.obs[:, 0]).max() > 0
    finally:
        algo.stop()


class ShortOrLongEnv(TaskEnv):
    """Each episode lasts 2 or 30 steps, drawn at reset from the env's seeded generator."""

    metadata = {"render_modes": []}

    def __init__(self) -> None:
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
        self.action_space = gym.spaces.Box(-1, 1, (2,), np.float32)
        self.length, self.t = 30, 0

    def draw_tasks(self, n: int) -> list[dict[str, Any]]:
        return [{"goal": np.zeros(2)} for _ in range(n)]

    def set_task(self, task) -> None:
        pass

    def get_task(self):
        return {"goal": np.zeros(2)}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.length, self.t = (2 if self.np_random.random() < 0.5 else 30), 0
        return np.zeros(2, np.float32), {}

    def step(self, action):
        self.t += 1
        done = self.t >= self.length
        return np.full(2, self.t, np.float32), 1.0, done, False, {}


def expected_lengths(seed: int, num_episodes: int) -> list[int]:
    env = ShortOrLongEnv()
    out = []
    for s in episode_seeds(seed, num_episodes)[0]:
        env.reset(seed=s)
        out.append(env.length)
    return out


def test_every_episode_is_kept_whole_however_long(ray_session, monkeypatch):
    from ray.tune.registry import register_env

    monkeypatch.setitem(tesp_envs.ENVS, "short_or_long", ShortOrLongEnv)
    register_env("short_or_long", lambda ctx: ShortOrLongEnv())
    algo = build("maml", "short_or_long", episodes_per_task=10, num_envs_per_env_runner=4)
    try:
        weights = algo.on_learner(lambda learner: learner.start_tasks([-1]))[0]
        job = SampleJob(0, {"goal": np.zeros(2)}, weights, seed=123)
        batch = algo.sampler.sample([job])[0].batch
        lengths = batch.episode_lengths.astype(int).tolist()
        # Exactly the episodes the seeds made, in order: none dropped or swapped for being long.
        assert lengths == expected_lengths(123, 10)
        assert {2, 30} <= set(lengths)
        # And each is whole: its last step is the one where the env ended it.
        for e, n in enumerate(lengths):
            assert batch.obs[e, n - 1, 0] == n - 1
    finally:
        algo.stop()
