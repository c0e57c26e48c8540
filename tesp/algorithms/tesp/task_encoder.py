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

Two implementations of the recurrence give the same numbers (tests/test_task_encoder.py):
:class:`GRURecurrence`, one autograd node for the whole sequence with a hand-written backward
(its weight gradients are two batched matrix products over all steps at once, instead of one
``[tasks, units, 3 units]`` gradient per step; first order only), used by default, and the
step-by-step autograd loop (``fused = False``), which second-order meta-gradients need because
they differentiate the backward pass again.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from tesp.nn.mlp import normc_


def hard_sigmoid(x: torch.Tensor) -> torch.Tensor:
    return torch.clamp(0.2 * x + 0.5, 0.0, 1.0)


class GRURecurrence(torch.autograd.Function):
    """The masked Keras GRU recurrence over whole sequences, batched over a leading dimension.

    ``inputs`` ``[B, T, E, 3u]`` are the input projections ``x_t W + b`` (step-major, so a step
    is one block; differentiated by autograd outside), ``mask`` ``[B, T, E]``,
    ``recurrent_kernel`` ``[B, u, 3u]``. Returns the final states ``[B, E, u]`` and, marked
    non-differentiable, what the backward reads: the states before each step ``[B, T + 1, E, u]``,
    the gates' pre-clip values ``[B, T, E, 2u]`` and the candidates ``[B, T, E, u]`` (with
    ``record=False``, for a forward pass without gradients, empty tensors instead).
    """

    @staticmethod
    def forward(inputs, mask, recurrent_kernel, record=True):
        batch, steps, episodes, width = inputs.shape
        u = width // 3
        w_zr = recurrent_kernel[..., : 2 * u].contiguous()
        w_c = recurrent_kernel[..., 2 * u :].contiguous()
        kept = steps if record else 0
        states = inputs.new_empty(batch, kept + 1, episodes, u)
        gates = inputs.new_empty(batch, kept, episodes, 2 * u)
        candidates = inputs.new_empty(batch, kept, episodes, u)
        states[:, 0] = 0.0
        h = states[:, 0]
        if not record:
            states = states[:, :0]
        for t in range(steps):
            x_t = inputs[:, t]
            y = torch.baddbmm(x_t[..., : 2 * u], h, w_zr).mul_(0.2).add_(0.5)  # gates before the clip
            z, r = torch.clamp(y, 0.0, 1.0).split(u, dim=-1)
            c = torch.baddbmm(x_t[..., 2 * u :], r * h, w_c).tanh_()
            # z h + (1 - z) c on the episode's steps, h after its end
            h = torch.addcmul(h, mask[:, t, :, None] * (1.0 - z), c - h)
            if record:
                gates[:, t], candidates[:, t], states[:, t + 1] = y, c, h
        return h, states, gates, candidates

    @staticmethod
    def setup_context(ctx, inputs, output):
        _, mask, recurrent_kernel, _ = inputs
        _, states, gates, candidates = output
        ctx.mark_non_differentiable(states, gates, candidates)
        ctx.set_materialize_grads(False)  # no zero gradients filled in for the recorded outputs
        ctx.save_for_backward(mask, recurrent_kernel, states, gates, candidates)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_h, *_):
        mask, recurrent_kernel, states, gates, candidates = ctx.saved_tensors
        batch, steps, episodes, u = candidates.shape
        if grad_h is None:  # the final states unused
            grad_h = torch.zeros_like(states[:, 0])
        w_zr_t = recurrent_kernel[..., : 2 * u].transpose(1, 2).contiguous()
        w_c_t = recurrent_kernel[..., 2 * u :].transpose(1, 2).contiguous()
        m = mask.unsqueeze(-1)
        grad_pre = grad_h.new_empty(batch, steps, episodes, 3 * u)  # d loss / d (x_t W + b)
        reset_h = torch.empty_like(candidates)
        dh = grad_h
        for t in reversed(range(steps)):
            h, y, c = states[:, t], gates[:, t], candidates[:, t]
            z, r = torch.clamp(y, 0.0, 1.0).split(u, dim=-1)
            d_new = m[:, t] * dh
            d_act = torch.mul(d_new * (1.0 - z), 1.0 - c * c, out=grad_pre[:, t, :, 2 * u :])  # tanh'
            d_rh = torch.bmm(d_act, w_c_t)
            # clamp passes the gradient on its closed interval, as torch.clamp's backward does
            passes = (y >= 0.0) & (y <= 1.0)
            d_zr = torch.where(passes, torch.cat([d_new * (h - c), d_rh * h], dim=-1), 0.0).mul_(0.2)
            grad_pre[:, t, :, : 2 * u] = d_zr
            torch.mul(r, h, out=reset_h[:, t])
            dh = torch.baddbmm(dh - d_new * (1.0 - z) + d_rh * r, d_zr, w_zr_t)
        grad_kernel = None
        if ctx.needs_input_grad[2]:
            # sums over steps and episodes of h_{t-1}^T dzr_t and (r_t h_{t-1})^T dc_t
            flat = grad_pre.view(batch, steps * episodes, 3 * u)
            before = states[:, :-1].reshape(batch, steps * episodes, u).transpose(1, 2)
            reset = reset_h.view(batch, steps * episodes, u).transpose(1, 2)
            grad_kernel = torch.cat(
                [torch.bmm(before, flat[..., : 2 * u]), torch.bmm(reset, flat[..., 2 * u :])], dim=-1
            )
        return grad_pre, None, grad_kernel, None

    @staticmethod
    def vmap(info, in_dims, inputs, mask, recurrent_kernel, record=True):
        """Under ``torch.func.vmap`` (tasks): fold the mapped dimension into the batch one."""
        size = info.batch_size

        def fold(x, dim):
            x = x.movedim(dim, 0) if dim is not None else x.expand(size, *x.shape)
            return x.reshape(size * x.shape[1], *x.shape[2:])

        args = [fold(x, d) for x, d in zip((inputs, mask, recurrent_kernel), in_dims[:3], strict=True)]
        out = GRURecurrence.apply(*args, record)
        return tuple(o.view(size, o.shape[0] // size, *o.shape[1:]) for o in out), (0, 0, 0, 0)


class TaskEncoder(nn.Module):
    def __init__(
        self, input_dim: int, units: int, embed_dim: int, projection_init_norm: float = 0.01
    ) -> None:
        super().__init__()
        self.units = units
        self.fused = True  # GRURecurrence; False: the autograd loop (needed for second order)
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
        if self.fused:
            steps, episodes = x.shape[1], x.shape[0]
            flat = x.transpose(0, 1).reshape(steps * episodes, x.shape[-1])
            inputs = torch.addmm(self.bias, flat, self.kernel).view(1, steps, episodes, 3 * self.units)
            mask = mask.transpose(0, 1)[None]
            record = torch.is_grad_enabled()
            return GRURecurrence.apply(inputs, mask, self.recurrent_kernel[None], record)[0][0]
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
