"""VIME's Bayesian dynamics model and the information gain of a transition (Houthooft et al.
2016, "VIME: Variational Information Maximizing Exploration", NeurIPS), functional so that it is
adapted per task and batched with ``torch.func``.

**The model.** A multilayer perceptron from ``[s, a]`` to the next observation ``s'`` whose
weights and biases are fully factorised Gaussians ``q(w) = N(mu, sigma^2)``,
``sigma = softplus(rho)``; tanh hidden layers, a linear output. The forward pass uses the local
reparameterisation trick (Kingma et al. 2015): a layer's pre-activation is drawn as
``gamma + sqrt(delta) * eps`` with ``gamma = x mu_W + mu_b`` and
``delta = x^2 sigma_W^2 + sigma_b^2``. The noise ``eps`` is an argument (one tensor per layer)
so that a computation can be repeated exactly; :func:`draw_noise` draws it, one vector per
layer shared by every row (as MIME's reference implementation does) or one per row.

**Training** minimises the negative ELBO
``KL(q || p) / n_batches - mean_samples sum_rows log N(s'; f_w(s, a), likelihood_sd^2)`` with the
prior ``p = N(0, prior_sd^2)`` (VIME, eq. 4).

**Information gain** of a transition (VIME, eq. 13 and section 2.5): the KL divergence between
the posterior after one update on that transition and the posterior before it. Following MIME's
reference, per trajectory: an Adam optimiser (lr ``lr``) starts fresh; for each step t in order,
one Adam step on ``-log p(s'_t | s_t, a_t)`` from the current parameters (the objective's
``KL(q_new || q_old)`` term has zero gradient there), the gain is ``KL(q_new || q_old)`` in
closed form (clipped to [0, 1000]), the parameters are restored and the Adam moments kept.

:func:`information_gain` computes exactly that, but for every trajectory of every task at once:
the only sequential dependency is each trajectory's own Adam moments, so it loops over the T
time steps and vectorises over trajectories (per-row gradients with ``torch.func.vmap``),
instead of the reference's one optimiser step per transition (~40k per meta-batch on 2D
navigation). :func:`information_gain_second_order` is VIME's own cheaper approximation (eq. 17):
``KL ~ 1/2 lambda^2 g^T H^-1 g`` with the diagonal Hessian of the KL, one gradient per
transition and no loop at all; it is not the reference's computation (tests measure how far
apart they are).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch.func import grad, vmap

from tesp.nn.params import Params

LOG_2PI = math.log(2 * math.pi)


def layer_names(num_layers: int) -> list[tuple[str, str, str, str]]:
    return [(f"w{i}_mu", f"w{i}_rho", f"b{i}_mu", f"b{i}_rho") for i in range(num_layers)]


def init_bnn(in_dim: int, out_dim: int, hidden: Sequence[int], prior_sd: float, generator=None) -> Params:
    """Means ~ N(0, 1) (MIME's reference; not the prior), ``rho = softplus^-1(prior_sd)``."""
    sizes = [in_dim, *hidden, out_dim]
    rho = math.log(math.expm1(prior_sd))
    params: Params = {}
    for (w_mu, w_rho, b_mu, b_rho), (n_in, n_out) in zip(
        layer_names(len(sizes) - 1), zip(sizes[:-1], sizes[1:], strict=True), strict=True
    ):
        params[w_mu] = torch.randn(n_in, n_out, generator=generator)
        params[w_rho] = torch.full((n_in, n_out), rho)
        params[b_mu] = torch.randn(n_out, generator=generator)
        params[b_rho] = torch.full((n_out,), rho)
    return params


def num_layers(params: Params) -> int:
    return sum(1 for k in params if k.endswith("_mu") and k.startswith("w"))


def draw_noise(params: Params, rows: int | None = None, generator=None) -> list[torch.Tensor]:
    """One standard-normal tensor per layer: ``[out]`` shared by every row (``rows`` None) or
    ``[rows, out]``."""
    out = []
    for w_mu, *_ in layer_names(num_layers(params)):
        width = params[w_mu].shape[-1]
        shape = (width,) if rows is None else (rows, width)
        out.append(torch.randn(shape, generator=generator, dtype=params[w_mu].dtype))
    return out


def forward(params: Params, x: torch.Tensor, noise: Sequence[torch.Tensor] | None) -> torch.Tensor:
    """A draw of the network's output on ``x`` ``[..., in]`` (local reparameterisation);
    ``noise`` None: the mean pre-activations ``gamma`` (no sampling)."""
    layers = layer_names(num_layers(params))
    h = x
    for i, (w_mu, w_rho, b_mu, b_rho) in enumerate(layers):
        gamma = h @ params[w_mu] + params[b_mu]
        if noise is not None:
            delta = (h**2) @ F.softplus(params[w_rho]) ** 2 + F.softplus(params[b_rho]) ** 2
            gamma = gamma + torch.sqrt(delta) * noise[i]
        h = torch.tanh(gamma) if i < len(layers) - 1 else gamma
    return h


def log_likelihood(pred: torch.Tensor, target: torch.Tensor, sd: float) -> torch.Tensor:
    """``log N(target; pred, sd^2)`` summed over the last dimension."""
    return (-0.5 * ((target - pred) / sd) ** 2 - math.log(sd) - 0.5 * LOG_2PI).sum(-1)


def gaussian_kl_sum(mu_p, sd_p, mu_q, sd_q) -> torch.Tensor:
    """``KL(N(mu_p, sd_p^2) || N(mu_q, sd_q^2))`` summed over all elements."""
    return (torch.log(sd_q / sd_p) + (sd_p**2 + (mu_p - mu_q) ** 2) / (2 * sd_q**2) - 0.5).sum()


def kl_divergence(new: Params, old: Params) -> torch.Tensor:
    """``KL(q_new || q_old)`` over every weight and bias (closed form)."""
    total = torch.zeros((), dtype=next(iter(new.values())).dtype)
    for w_mu, w_rho, b_mu, b_rho in layer_names(num_layers(new)):
        for mu, rho in ((w_mu, w_rho), (b_mu, b_rho)):
            total = total + gaussian_kl_sum(new[mu], F.softplus(new[rho]), old[mu], F.softplus(old[rho]))
    return total


def kl_to_prior(params: Params, prior_sd: float) -> torch.Tensor:
    """``KL(q || N(0, prior_sd^2))``."""
    total = torch.zeros((), dtype=next(iter(params.values())).dtype)
    for w_mu, w_rho, b_mu, b_rho in layer_names(num_layers(params)):
        for mu, rho in ((w_mu, w_rho), (b_mu, b_rho)):
            prior = torch.full_like(params[mu], prior_sd)
            total = total + gaussian_kl_sum(
                params[mu], F.softplus(params[rho]), torch.zeros_like(prior), prior
            )
    return total


def elbo_loss(
    params: Params,
    x: torch.Tensor,
    y: torch.Tensor,
    noises: Sequence[Sequence[torch.Tensor]],
    prior_sd: float,
    likelihood_sd: float,
    mask: torch.Tensor | None = None,
    n_batches: float = 1.0,
) -> torch.Tensor:
    """The negative ELBO on rows ``x -> y`` (``mask`` 0: a padded row): the prior KL over
    ``n_batches`` minus the log-likelihood summed over the rows, averaged over the noise draws."""
    loglik = torch.stack([log_likelihood(forward(params, x, n), y, likelihood_sd) for n in noises])
    if mask is not None:
        loglik = loglik * mask
    return kl_to_prior(params, prior_sd) / n_batches - loglik.sum(-1).mean()


def _step_loss(params: Params, x: torch.Tensor, y: torch.Tensor, noise, likelihood_sd: float) -> torch.Tensor:
    return -log_likelihood(forward(params, x, noise), y, likelihood_sd)


def information_gain(
    params: Params,
    x: torch.Tensor,
    y: torch.Tensor,
    mask: torch.Tensor,
    noise: Sequence[torch.Tensor],
    lr: float,
    likelihood_sd: float,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    clip: float = 1000.0,
    chunk_floats: int = 1 << 22,
) -> torch.Tensor:
    """The information gain of every transition ``x[b, t] -> y[b, t]`` of trajectories
    ``b`` (``[B, T, ...]``, ``mask`` ``[B, T]``), each trajectory from ``params`` (shared, or
    ``[B, ...]`` per trajectory: e.g. each task's adapted model) with its own Adam moments, as
    the module docstring describes; ``noise``: one draw per layer, ``[B, T, out]``. Returns
    ``[B, T]`` (0 on padding). No gradient flows back (the gains are rewards).

    Each step is undone, so every transition's gradient is taken at the same ``params``: the
    gradients and the KLs of a chunk of steps are computed in one batched call each (chunks
    of at most ``chunk_floats`` parameter values), and only Adam's moment recursion runs step
    by step. Equal to the one-transition-at-a-time computation (tests/test_vime.py)."""
    with torch.no_grad():
        batch, steps = mask.shape
        theta = (
            params if _batched(params, batch) else {k: v.expand(batch, *v.shape) for k, v in params.items()}
        )
        live_steps = torch.nonzero(mask.sum(0) > 0)
        steps = int(live_steps.max()) + 1 if len(live_steps) else 0  # nothing to do after the last real step
        per_step = batch * sum(v[0].numel() for v in theta.values())
        chunk = max(1, min(steps, chunk_floats // max(per_step, 1)))
        m = {k: torch.zeros_like(v) for k, v in theta.items()}
        v2 = {k: torch.zeros_like(v) for k, v in theta.items()}
        count = torch.zeros(batch, dtype=theta[next(iter(theta))].dtype)
        gains = torch.zeros(mask.shape, dtype=count.dtype)
        step_grad = vmap(grad(_step_loss), in_dims=(0, 0, 0, 0, None))
        kl_rows = vmap(kl_divergence)
        for t0 in range(0, steps, chunk):
            t1 = min(t0 + chunk, steps)
            n = t1 - t0
            rows = {k: v.unsqueeze(1).expand(batch, n, *v.shape[1:]).reshape(batch * n, *v.shape[1:])
                    for k, v in theta.items()}  # fmt: skip
            g = step_grad(
                rows,
                x[:, t0:t1].reshape(batch * n, -1),
                y[:, t0:t1].reshape(batch * n, -1),
                [d[:, t0:t1].reshape(batch * n, -1) for d in noise],
                likelihood_sd,
            )
            g = {k: v.reshape(batch, n, *v.shape[1:]) for k, v in g.items()}
            new = {k: torch.empty_like(v) for k, v in g.items()}
            for i in range(n):
                live = mask[:, t0 + i] > 0
                count = count + live.to(count.dtype)
                c = count.clamp(min=1)
                for k in theta:
                    keep = _rows(live, theta[k])
                    gk = g[k][:, i]
                    m[k] = torch.where(keep, betas[0] * m[k] + (1 - betas[0]) * gk, m[k])
                    v2[k] = torch.where(keep, betas[1] * v2[k] + (1 - betas[1]) * gk**2, v2[k])
                    m_hat = m[k] / _rows(1 - betas[0] ** c, m[k])
                    v_hat = v2[k] / _rows(1 - betas[1] ** c, v2[k])
                    new[k][:, i] = theta[k] - lr * m_hat / (torch.sqrt(v_hat) + eps)
            kl = kl_rows({k: v.reshape(batch * n, *v.shape[2:]) for k, v in new.items()}, rows).reshape(
                batch, n
            )
            live = mask[:, t0:t1] > 0
            gains[:, t0:t1] = torch.where(live, kl.clamp(0.0, clip), torch.zeros_like(kl))
        return gains


def information_gain_second_order(
    params: Params,
    x: torch.Tensor,
    y: torch.Tensor,
    mask: torch.Tensor,
    noise: Sequence[torch.Tensor],
    step: float,
    likelihood_sd: float,
    clip: float = 1000.0,
) -> torch.Tensor:
    """VIME's approximation ``1/2 step^2 sum_j g_j^2 / H_jj`` of the same gain, ``H`` the
    diagonal Hessian of ``KL(q_new || q_old)`` at ``q_old``: ``1 / sigma^2`` for a mean and
    ``2 sigmoid(rho)^2 / sigma^2`` for a ``rho`` (VIME, eq. 16-17); every transition at once."""
    with torch.no_grad():
        batch, steps = mask.shape
        flat = {k: v if _batched(params, batch) else v.expand(batch, *v.shape) for k, v in params.items()}
        rows = {k: v.unsqueeze(1).expand(batch, steps, *v.shape[1:]).reshape(batch * steps, *v.shape[1:])
                for k, v in flat.items()}  # fmt: skip
        xs, ys = x.reshape(batch * steps, -1), y.reshape(batch * steps, -1)
        ns = [n.reshape(batch * steps, -1) for n in noise]
        g = vmap(grad(_step_loss), in_dims=(0, 0, 0, 0, None))(rows, xs, ys, ns, likelihood_sd)
        total = torch.zeros(batch * steps, dtype=xs.dtype)
        for k, gk in g.items():
            rho = rows[k.replace("_mu", "_rho")] if k.endswith("_mu") else rows[k]
            sd = F.softplus(rho)
            hess = 1 / sd**2 if k.endswith("_mu") else 2 * torch.sigmoid(rho) ** 2 / sd**2
            total = total + (gk**2 / hess).reshape(batch * steps, -1).sum(-1)
        return (0.5 * step**2 * total).reshape(batch, steps).clamp(0.0, clip) * mask


def _batched(params: Params, batch: int) -> bool:
    """Whether ``params`` carry a leading per-trajectory dimension (``w0_mu`` is ``[B, in, out]``)."""
    return params["w0_mu"].dim() == 3 and params["w0_mu"].shape[0] == batch


def _rows(flags: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``flags`` ``[B]`` shaped to broadcast against ``like`` ``[B, ...]``."""
    return flags.reshape(-1, *([1] * (like.dim() - 1)))


def transitions(obs: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor):
    """The transitions of padded episodes ``[B, T, ...]``: inputs ``[s_t, a_t]`` and targets
    ``s_{t+1}``, ``[B, T - 1, ...]``, and their mask (step t has a successor in the episode)."""
    x = torch.cat([obs[:, :-1], actions[:, :-1]], dim=-1)
    return x, obs[:, 1:], mask[:, 1:]


def step_gains(gains: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-step gains ``[B, T]`` from the transitions' ``[B, T - 1]``: each episode's last step,
    whose next observation was not recorded, gets its second-to-last step's gain (as MIME's
    reference does)."""
    out = torch.cat([gains, torch.zeros_like(gains[:, :1])], dim=1)
    lengths = mask.sum(1).long()
    rows = torch.arange(len(lengths))[lengths >= 2]
    last = lengths[lengths >= 2] - 1
    out[rows, last] = out[rows, last - 1]
    return out * mask
