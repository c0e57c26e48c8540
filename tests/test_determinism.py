"""Runs repeat exactly: the same seed gives the same numbers, and a restored checkpoint continues
the same task, sampling and action-noise streams (a test each that fails if any stream is
re-seeded, shared, or left out of the checkpoint)."""

from __future__ import annotations

import numpy as np
import pytest

from tesp.settings import resolve_config

pytestmark = pytest.mark.ray

SETTINGS = {
    "maml": ("point", {"meta_batch_size": 3, "episodes_per_task": 4, "num_inner_steps": 1}),
    "mlsh": ("movement_bandits", {"episodes_per_task": 4, "warmup_iters": 1, "joint_iters": 1}),
}


def build(alg: str, seed: int = 0):
    env, settings = SETTINGS[alg]
    common = {"num_env_runners": 0, "num_envs_per_env_runner": 4, "seed": seed}
    config, _, _ = resolve_config(alg, env, {**common, **settings})
    return config.build_algo()


def numbers(result: dict) -> dict[str, float]:
    section = result.get("meta") or result["mlsh"]
    return {k: v for k, v in section.items() if not k.startswith("time_") and "per_s" not in k}


def run(alg: str, iters: int, seed: int = 0) -> list[dict[str, float]]:
    algo = build(alg, seed)
    try:
        return [numbers(algo.train()) for _ in range(iters)]
    finally:
        algo.stop()


@pytest.mark.parametrize("alg", sorted(SETTINGS))
def test_the_same_seed_repeats_every_number(ray_session, alg):
    first, second = run(alg, 2), run(alg, 2)
    assert first == second
    assert run(alg, 1, seed=1)[0] != first[0]


@pytest.mark.parametrize("alg", sorted(SETTINGS))
def test_a_restored_checkpoint_continues_exactly(ray_session, alg, tmp_path):
    straight = run(alg, 3)
    algo = build(alg)
    try:
        algo.train()
        path = algo.save(str(tmp_path / "ckpt")).checkpoint.path
    finally:
        algo.stop()
    resumed = build(alg)
    try:
        resumed.restore_from_path(path)
        after = [numbers(resumed.train()) for _ in range(2)]
    finally:
        resumed.stop()
    for a, b in zip(straight[1:], after, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_allclose(b[key], a[key], rtol=1e-6, err_msg=key)
