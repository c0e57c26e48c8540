"""The PPO observation filter's statistics, merged from an EnvRunner after every iteration, are
the statistics of every observation it saw (RLlib 2.60's own merge drifts the mean to 0)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from tesp.algorithms.ppo.mean_std_filter import MeanStdFilter


def synced_runs(filter_class, rounds=20, per_round=500, runners=2):
    """``runners`` EnvRunner-side filters push observations, the central filter merges their
    states and every runner is set to the result, as RLlib's sync does after each iteration."""
    space = gym.spaces.Box(-np.inf, np.inf, (3,), np.float64)

    def make():
        connector = filter_class()
        connector.input_observation_space = space  # as the connector pipeline sets it
        connector.set_state(connector.get_state())  # builds its filter
        return connector

    central, workers = make(), [make() for _ in range(runners)]
    rng = np.random.default_rng(0)
    seen = []
    for _ in range(rounds):
        for worker in workers:
            (inner,) = worker._filters.values()
            for x in rng.normal([5.0, -2.0, 0.0], [1.0, 0.1, 3.0], size=(per_round, 3)):
                inner(x)
                seen.append(x)
        merged = central.merge_states([w.get_state() for w in workers])
        for worker in workers:
            worker.set_state(merged)
    return central, np.array(seen)


def test_merged_statistics_are_those_of_every_observation():
    central, seen = synced_runs(MeanStdFilter)
    (inner,) = central._filters.values()
    stats = inner.running_stats
    assert stats.n == len(seen)
    np.testing.assert_allclose(stats.mean, seen.mean(axis=0), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(stats.std, seen.std(axis=0, ddof=1), rtol=1e-6)  # RLlib returns float32


def test_rllibs_own_merge_is_the_defect_this_fixes():
    """If this fails, RLlib's merge is right again and the subclass can go."""
    from ray.rllib.connectors.env_to_module import MeanStdFilter as RLlibMeanStdFilter

    central, seen = synced_runs(RLlibMeanStdFilter)
    (inner,) = central._filters.values()
    assert abs(inner.running_stats.mean[0] - seen[:, 0].mean()) > 1.0
    with pytest.raises(AssertionError):
        np.testing.assert_allclose(inner.running_stats.mean, seen.mean(axis=0), rtol=1e-3)
