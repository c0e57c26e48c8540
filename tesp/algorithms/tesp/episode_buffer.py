"""TESP's per-task episode buffer (docs/original_release.md#methods): the M highest-return episodes seen so far.

``B <- top_M(B u new episodes)`` by undiscounted return; ties keep the earlier episode (buffer
first, then the new batch in order). The buffer is emptied at the start of every task's
adaptation. It stores what the task encoder reads, ``[o_t, mu_t, log_sigma_t, r_t]`` (the release's
inputs; with ``inputs="action"`` the sampled action ``a_t`` replaces ``mu_t, log_sigma_t``), as
padded arrays with a mask.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from tesp.meta.batch import TaskBatch

#: What the encoder reads per step next to the observation and the reward, and its width.
ENCODER_INPUTS = {"distribution": 2, "action": 1}  # times the action's dimension


def encoder_input_dim(obs_dim: int, act_dim: int, inputs: str = "distribution") -> int:
    """Width of the encoder's per-step input ``[o_t, (mu_t, log_sigma_t) or a_t, r_t]``."""
    return obs_dim + ENCODER_INPUTS[inputs] * act_dim + 1


@dataclass(frozen=True)
class EpisodeBuffer:
    inputs: np.ndarray  # [M', T, encoder_input_dim]
    mask: np.ndarray  # [M', T]
    returns: np.ndarray  # [M'] undiscounted

    @classmethod
    def empty(cls, input_dim: int) -> EpisodeBuffer:
        return cls(np.zeros((0, 0, input_dim), np.float32), np.zeros((0, 0), np.float32), np.zeros(0))

    def __len__(self) -> int:
        return len(self.returns)

    def add(self, batch: TaskBatch, capacity: int, inputs: str = "distribution") -> EpisodeBuffer:
        """A new buffer with the ``capacity`` best episodes of this buffer and ``batch``, whose
        per-step action inputs are its distribution parameters or its actions (``inputs``)."""
        acts = batch.dist_inputs if inputs == "distribution" else batch.actions
        new_inputs = np.concatenate([batch.obs, acts, batch.rewards[..., None]], axis=-1)
        horizon = max(self.inputs.shape[1], new_inputs.shape[1])
        inputs = np.concatenate([_pad(self.inputs, horizon), _pad(new_inputs, horizon)])
        mask = np.concatenate([_pad(self.mask, horizon), _pad(batch.mask, horizon)])
        returns = np.concatenate([self.returns, batch.episode_returns])
        keep = np.argsort(-returns, kind="stable")[:capacity]
        longest = int(mask[keep].sum(1).max()) if len(keep) else 0
        return EpisodeBuffer(inputs[keep, :longest], mask[keep, :longest], returns[keep])


def _pad(x: np.ndarray, horizon: int) -> np.ndarray:
    widths = [(0, 0), (0, horizon - x.shape[1])] + [(0, 0)] * (x.ndim - 2)
    return np.pad(x, widths)


def stack_buffers(buffers: Sequence[EpisodeBuffer]) -> dict[str, torch.Tensor]:
    """Stack the tasks' buffers: ``buffer_inputs`` ``[T, M, L, D]`` and ``buffer_mask`` ``[T, M, L]``.

    Tasks with fewer episodes are padded with empty (all-masked) episodes, which the encoder
    ignores; shorter episodes are padded in time, as within one buffer.
    """
    num = max(len(b) for b in buffers)
    horizon = max(b.mask.shape[1] for b in buffers)
    inputs = np.stack([_pad_rows(_pad(b.inputs, horizon), num) for b in buffers])
    mask = np.stack([_pad_rows(_pad(b.mask, horizon), num) for b in buffers])
    return {
        "buffer_inputs": torch.as_tensor(inputs, dtype=torch.float32),
        "buffer_mask": torch.as_tensor(mask, dtype=torch.float32),
    }


def _pad_rows(x: np.ndarray, rows: int) -> np.ndarray:
    return np.pad(x, [(0, rows - x.shape[0])] + [(0, 0)] * (x.ndim - 1))
