"""TESP's task encoder (docs/original_release.md#methods): a GRU over each buffered episode, projected to d, averaged.

Per step the encoder reads ``x_t = [o_t, mu_t, log_sigma_t, r_t]`` (the observation, the
sampling policy's distribution parameters, and the reward). The GRU follows Keras' GRUCell
with TF1 defaults (``reset_after=False``, hard-sigmoid gates), as the reference did:

    z_t = hard_sigmoid(x_t W_z + h_{t-1} U_z + b_z)       update gate
    r_t = hard_sigmoid(x_t W_r + h_{t-1} U_r + b_r)       reset gate
    c_t = tanh(x_t W_c + (r_t * h_{t-1}) U_c + b_c)       candidate
    h_t = z_t * h_{t-1} + (1 - z_t) * c_t,                hard_sigmoid(x) = clip(0.2 x + 0.5, 0, 1)

with Glorot-uniform ``W``, orthogonal ``U``, zero biases and ``h_0 = 0``. Each episode runs to
its own length (padding steps leave ``h`` unchanged); its final state is projected linearly,
``u_e = P h_e + p`` (``P`` normc(0.01), ``p = 0``), and the task embedding is the mean of the
``u_e`` over the buffered episodes. An empty buffer gives ``z = 0``.
"""

from __future__ import annotations

import torch
from torch import nn

from tesp.nn.mlp import normc_


def hard_sigmoid(x: torch.Tensor) -> torch.Tensor:
    return torch.clamp(0.2 * x + 0.5, 0.0, 1.0)


class TaskEncoder(nn.Module):
    def __init__(
        self, input_dim: int, units: int, embed_dim: int, projection_init_norm: float = 0.01
    ) -> None:
        super().__init__()
        self.units = units
        self.kernel = nn.Parameter(torch.empty(input_dim, 3 * units))
        self.recurrent_kernel = nn.Parameter(torch.empty(units, 3 * units))
        self.bias = nn.Parameter(torch.zeros(3 * units))
        nn.init.xavier_uniform_(self.kernel)
        nn.init.orthogonal_(self.recurrent_kernel)
        self.projection = nn.Linear(units, embed_dim)
        normc_(self.projection.weight, projection_init_norm)
        nn.init.zeros_(self.projection.bias)

    def final_states(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Run the GRU over ``x`` ``[E, T, input_dim]`` with ``mask`` ``[E, T]``; return ``[E, units]``."""
        u = self.units
        h = x.new_zeros(x.shape[0], u)
        inputs = x @ self.kernel + self.bias  # all input projections at once: [E, T, 3u]
        w_zr, w_c = self.recurrent_kernel[:, : 2 * u], self.recurrent_kernel[:, 2 * u :]
        for t in range(x.shape[1]):
            xz, xr, xc = inputs[:, t].split(u, dim=-1)
            hz, hr = (h @ w_zr).split(u, dim=-1)
            z, r = hard_sigmoid(xz + hz), hard_sigmoid(xr + hr)
            candidate = torch.tanh(xc + (r * h) @ w_c)
            new = z * h + (1.0 - z) * candidate
            m = mask[:, t : t + 1]
            h = m * new + (1.0 - m) * h
        return h

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The task embedding ``z`` ``[embed_dim]`` of the episodes in ``x`` (zeros if there are none)."""
        episodes = mask.sum(-1) > 0
        if x.shape[0] == 0 or x.shape[1] == 0:
            return self.projection.weight.new_zeros(self.projection.out_features)
        per_episode = self.projection(self.final_states(x, mask))  # [E, d]
        weight = episodes.to(per_episode.dtype).unsqueeze(-1)
        count = weight.sum()
        return (per_episode * weight).sum(0) / torch.clamp(count, min=1.0) * (count > 0)
