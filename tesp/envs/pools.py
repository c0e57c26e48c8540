"""The TESP goal pools D, D' and D'' (docs/original_release.md#task-pools), drawn reproducibly from one seed.

Goals are proposed uniformly in the square ``[-square, square]^2`` by one
``numpy.random.RandomState(seed)`` and rejected until each pool holds ``size`` goals:

- D (``train``): ``inner < |g| < split``, at least ``threshold`` from every goal already in D;
- D' (``test``): the same annulus, at least ``threshold`` from D' so far and from all of D;
- D'' (``ood``): ``split < |g| < square``, at least ``threshold`` from D'' so far.

With the defaults (seed 1, 100 goals, threshold 0.1; 0.11 for the 4-link reacher) this gives
the reference's pools: the first D goal is (-0.2489, 0.6610) and the mean goal norms are
0.778, 0.734 and 1.318.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class GoalPools:
    train: np.ndarray  # D, [size, 2]
    test: np.ndarray  # D', [size, 2]: in distribution, unseen
    ood: np.ndarray  # D'', [size, 2]: out of distribution

    def as_dict(self) -> dict[str, np.ndarray]:
        return {"D": self.train, "D'": self.test, "D''": self.ood}


def goal_pools(
    seed: int = 1,
    size: int = 100,
    threshold: float = 0.1,
    inner: float = 0.2,
    split: float = 1.1,
    square: float = 1.5,
    max_proposals: int = 1_000_000,
) -> GoalPools:
    """Draw D, D', D'' in that order from one rng (see the module docstring)."""
    rng = np.random.RandomState(seed)
    budget = [max_proposals]

    def draw(low: float, high: float, others: np.ndarray) -> np.ndarray:
        accepted: list[np.ndarray] = []
        while len(accepted) < size:
            budget[0] -= 1
            if budget[0] < 0:
                raise ValueError(
                    f"could not place {size} goals {threshold} apart in {low} < |g| < {high}; "
                    "lower size or threshold"
                )
            goal = rng.uniform(-square, square, size=2)
            if not low < np.linalg.norm(goal) < high:
                continue
            near = np.concatenate([np.asarray(accepted).reshape(-1, 2), others])
            if len(near) and np.min(np.linalg.norm(near - goal, axis=1)) < threshold:
                continue
            accepted.append(goal)
        return np.asarray(accepted)

    train = draw(inner, split, np.zeros((0, 2)))
    test = draw(inner, split, train)
    ood = draw(split, square, np.zeros((0, 2)))
    return GoalPools(train=train, test=test, ood=ood)
