"""Running observation normalisation (the mean/std filter of Schulman et al. 2017's PPO baselines).

:class:`RunningMeanStd` keeps the mean and variance of every observation it was updated with
(Chan et al. 1979's parallel update, so batches of any size combine exactly) as module buffers,
which travel with the module's state to the EnvRunners and into checkpoints. ``forward`` maps an
observation to ``clip((o - mean) / std, -clip, clip)`` with ``std = sqrt(max(var, min_var))``, so
a coordinate that barely varies (a fixed start position) is not blown up. Before the first update
it is the identity (mean 0, variance 1).
"""

from __future__ import annotations

import torch
from torch import nn


class RunningMeanStd(nn.Module):
    def __init__(self, dim: int, clip: float = 5.0, min_var: float = 1e-2) -> None:
        super().__init__()
        self.clip, self.min_var = clip, min_var
        self.register_buffer("mean", torch.zeros(dim, dtype=torch.float64))
        self.register_buffer("var", torch.ones(dim, dtype=torch.float64))
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        """Add the rows of ``x`` ``[N, dim]`` to the statistics."""
        x = x.reshape(-1, self.mean.shape[0]).to(torch.float64)
        n = x.shape[0]
        if n == 0:
            return
        mean, var = x.mean(0), x.var(0, unbiased=False)
        total = self.count + n
        delta = mean - self.mean
        m2 = self.var * self.count + var * n + delta.pow(2) * self.count * n / total
        self.mean.add_(delta * n / total)
        self.var.copy_(m2 / total)
        self.count.copy_(total)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        std = torch.sqrt(torch.clamp(self.var, min=self.min_var)).to(x.dtype)
        return torch.clamp((x - self.mean.to(x.dtype)) / std, -self.clip, self.clip)
