"""Per-task transition storage for PEARL (Rakelly et al. 2019, Algorithm 1: a replay buffer B_i
per training task, and a separate encoder buffer of the task's recent data): a ring of numpy
arrays per task with uniform sampling.

Not RLlib's ``ReplayBuffer``: it keeps each timestep as its own ``SampleBatch`` and concatenates
them on every draw, 4.4 ms per draw of 256 against 0.1 ms for indexing arrays (measured here,
2026-12-07); PEARL draws a context and an RL batch for 16 tasks per gradient step, 2000 steps
per iteration (~280 s of concatenation per iteration against ~6 s)."""

from __future__ import annotations

import numpy as np

FIELDS = ("obs", "actions", "rewards", "next_obs", "terminateds")


class TaskReplay:
    """Up to ``capacity`` transitions of one task, the oldest overwritten first."""

    def __init__(self, capacity: int, obs_dim: int, action_dim: int) -> None:
        self.capacity = int(capacity)
        shapes = {
            "obs": (obs_dim,),
            "actions": (action_dim,),
            "rewards": (),
            "next_obs": (obs_dim,),
            "terminateds": (),
        }
        self.data = {k: np.zeros((self.capacity, *s), dtype=np.float32) for k, s in shapes.items()}
        self.size = 0
        self.next = 0

    def add(self, transitions: dict[str, np.ndarray]) -> None:
        n = len(transitions["rewards"])
        index = (self.next + np.arange(n)) % self.capacity
        for key in FIELDS:
            self.data[key][index] = transitions[key]
        self.next = int((self.next + n) % self.capacity)
        self.size = min(self.capacity, self.size + n)

    def clear(self) -> None:
        self.size = self.next = 0

    def sample(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        index = rng.integers(0, self.size, size=n)
        return {k: v[index] for k, v in self.data.items()}

    def get_state(self) -> dict:
        return {
            "size": self.size,
            "next": self.next,
            "data": {k: v[: self.size].copy() for k, v in self.data.items()},
        }

    def set_state(self, state: dict) -> None:
        self.size, self.next = int(state["size"]), int(state["next"])
        for k, v in state["data"].items():
            self.data[k][: len(v)] = v


def context_array(transitions: dict[str, np.ndarray], next_obs: bool, reward: bool = True) -> np.ndarray:
    """The encoder's input per transition: (s, a, r[, s']) concatenated, ``[..., dim]``; with
    ``reward`` false, r is replaced by 0 (a control that cannot tell apart tasks that differ only
    in their rewards)."""
    r = transitions["rewards"][..., None]
    parts = [transitions["obs"], transitions["actions"], r if reward else np.zeros_like(r)]
    if next_obs:
        parts.append(transitions["next_obs"])
    return np.concatenate(parts, axis=-1).astype(np.float32)
