import numpy as np
import pytest

from tesp.envs.pools import goal_pools


def test_reference_pools_check_values():
    pools = goal_pools()  # seed 1, 100 goals each, threshold 0.1 (docs/original_release.md#task-pools)
    np.testing.assert_allclose(
        pools.train[:3], [[-0.2489, 0.6610], [-0.9412, -0.4633], [-0.3097, 0.1165]], atol=1e-4
    )
    np.testing.assert_allclose(pools.test[0], [0.3949, 0.6219], atol=1e-4)
    np.testing.assert_allclose(pools.ood[0], [-0.1601, -1.3822], atol=1e-4)
    means = [np.linalg.norm(p, axis=1).mean() for p in (pools.train, pools.test, pools.ood)]
    np.testing.assert_allclose(means, [0.778, 0.734, 1.318], atol=1e-3)
    # Zero-motion returns from the origin over a 200-step horizon (docs/original_release.md#environments: -156, -147, -264).
    np.testing.assert_allclose([-200 * m for m in means], [-156, -147, -264], atol=1.0)


@pytest.mark.parametrize("threshold", [0.1, 0.11])
def test_radii_and_spacing(threshold):
    pools = goal_pools(threshold=threshold)
    for name, goals, (low, high) in [
        ("D", pools.train, (0.2, 1.1)),
        ("D'", pools.test, (0.2, 1.1)),
        ("D''", pools.ood, (1.1, 1.5)),
    ]:
        assert goals.shape == (100, 2), name
        radii = np.linalg.norm(goals, axis=1)
        assert radii.min() > low and radii.max() < high, name
        gaps = np.linalg.norm(goals[:, None] - goals[None], axis=-1) + np.eye(len(goals)) * 10
        assert gaps.min() >= threshold, name
    # D' keeps its distance from D as well.
    assert np.linalg.norm(pools.test[:, None] - pools.train[None], axis=-1).min() >= threshold


def test_same_seed_same_pools_and_other_seed_other_pools():
    a, b, c = goal_pools(seed=3, size=20), goal_pools(seed=3, size=20), goal_pools(seed=4, size=20)
    for x, y in zip(a.as_dict().values(), b.as_dict().values(), strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a.train, c.train)


def test_impossible_request_fails_clearly():
    with pytest.raises(ValueError, match="could not place"):
        goal_pools(size=10_000, threshold=0.3, max_proposals=20_000)
