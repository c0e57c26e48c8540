"""TESP building blocks: the task encoder (GRU, masking, projection) and the top-M episode buffer."""

import numpy as np
import pytest
import torch

from tesp.algorithms.tesp.episode_buffer import EpisodeBuffer
from tesp.algorithms.tesp.task_encoder import TaskEncoder, hard_sigmoid
from tesp.meta.batch import make_batch


def make_encoder(seed=0, input_dim=5, units=6, d=3):
    torch.manual_seed(seed)
    enc = TaskEncoder(input_dim, units, d).double()
    with torch.no_grad():
        enc.bias.normal_()  # non-zero biases, so every term is exercised
        enc.projection.weight.normal_()
    return enc


def keras_gru_final_state(enc, x):
    """Keras GRUCell (reset_after=False, hard-sigmoid gates), one step at a time, by the book."""
    u = enc.units
    w, uu, b = enc.kernel, enc.recurrent_kernel, enc.bias
    h = torch.zeros(u, dtype=x.dtype)
    for x_t in x:
        z = hard_sigmoid(x_t @ w[:, :u] + h @ uu[:, :u] + b[:u])
        r = hard_sigmoid(x_t @ w[:, u : 2 * u] + h @ uu[:, u : 2 * u] + b[u : 2 * u])
        c = torch.tanh(x_t @ w[:, 2 * u :] + (r * h) @ uu[:, 2 * u :] + b[2 * u :])
        h = z * h + (1 - z) * c
    return h


def test_hard_sigmoid():
    torch.testing.assert_close(
        hard_sigmoid(torch.tensor([-3.0, 0.0, 1.0, 3.0])), torch.tensor([0.0, 0.5, 0.7, 1.0])
    )


def test_gru_matches_the_keras_equations():
    enc = make_encoder()
    x = torch.randn(1, 7, 5, dtype=torch.float64)
    h = enc.final_states(x, torch.ones(1, 7, dtype=torch.float64))[0]
    torch.testing.assert_close(h, keras_gru_final_state(enc, x[0]))


def test_padded_batch_gives_the_same_embedding_as_episodes_alone():
    enc = make_encoder(seed=1)
    lengths = [7, 3, 5]
    episodes = [torch.randn(n, 5, dtype=torch.float64) for n in lengths]
    x = torch.zeros(3, 7, 5, dtype=torch.float64)
    mask = torch.zeros(3, 7, dtype=torch.float64)
    for i, ep in enumerate(episodes):
        x[i, : len(ep)] = ep
        x[i, len(ep) :] = 99.0  # garbage in the padding must not matter
        mask[i, : len(ep)] = 1.0
    z = enc(x, mask)
    alone = torch.stack([enc(ep[None], torch.ones(1, len(ep), dtype=torch.float64)) for ep in episodes])
    torch.testing.assert_close(z, alone.mean(0))
    projected = torch.stack([enc.projection(keras_gru_final_state(enc, ep)) for ep in episodes]).mean(0)
    torch.testing.assert_close(z, projected)


def test_empty_buffer_gives_zero_embedding_and_gradients_reach_the_encoder():
    enc = make_encoder(seed=2)
    empty = enc(torch.zeros(0, 0, 5, dtype=torch.float64), torch.zeros(0, 0, dtype=torch.float64))
    assert empty.shape == (3,) and torch.all(empty == 0)
    z = enc(torch.randn(2, 4, 5, dtype=torch.float64), torch.ones(2, 4, dtype=torch.float64))
    grads = torch.autograd.grad(z.pow(2).mean(), list(enc.parameters()))
    assert all(torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads)


def _batch(returns_per_episode, horizon, seed):
    rng = np.random.default_rng(seed)
    n = len(returns_per_episode)
    lengths = rng.integers(1, horizon + 1, size=n)
    mask = (np.arange(horizon)[None] < lengths[:, None]).astype(np.float32)
    rewards = np.zeros((n, horizon), np.float32)
    rewards[np.arange(n), lengths - 1] = returns_per_episode  # each episode's return sits on its last step
    obs = rng.normal(size=(n, horizon, 2)).astype(np.float32) * mask[..., None]
    return make_batch(obs, obs.copy(), np.zeros((n, horizon, 4), np.float32), rewards, mask, 0.99, 0.97)


def test_buffer_keeps_exactly_the_top_m_episodes_by_return():
    rng = np.random.default_rng(0)
    buffer = EpisodeBuffer.empty(input_dim=2 + 4 + 1)
    seen = []
    for round_ in range(4):
        returns = rng.normal(size=10).round(3)
        batch = _batch(returns, horizon=6 + round_, seed=round_)
        buffer = buffer.add(batch, capacity=16)
        seen.extend(returns.tolist())
        assert len(buffer) == min(16, len(seen))
        np.testing.assert_allclose(
            np.sort(buffer.returns)[::-1], np.sort(seen)[::-1][: len(buffer)], rtol=1e-6
        )
        # Each kept episode's inputs carry its own rewards: the stored return is their sum.
        np.testing.assert_allclose(
            (buffer.inputs[..., -1] * buffer.mask).sum(1), buffer.returns, rtol=1e-5, atol=1e-6
        )
        assert buffer.inputs.shape[1] == int(buffer.mask.sum(1).max())


def test_buffer_ties_keep_the_earlier_episode():
    buffer = EpisodeBuffer.empty(7).add(_batch([1.0, 2.0], 3, seed=0), capacity=2)
    newer = _batch([2.0, 0.5], 3, seed=1)
    kept = buffer.add(newer, capacity=2)
    old = buffer.returns == 2.0
    n = int(buffer.mask[old][0].sum())
    np.testing.assert_array_equal(kept.returns, [2.0, 2.0])
    np.testing.assert_array_equal(kept.mask[0].sum(), n)
    # The old episode comes first.
    np.testing.assert_array_equal(kept.inputs[0, :n], buffer.inputs[old][0, :n])


def test_encoder_batches_over_tasks_with_vmap():
    from torch.func import functional_call, vmap

    enc = make_encoder(seed=3)
    params = {k: torch.stack([v, v + 0.1 * torch.randn_like(v)]) for k, v in enc.named_parameters()}
    x = torch.randn(2, 4, 6, 5, dtype=torch.float64)
    mask = torch.ones(2, 4, 6, dtype=torch.float64)
    mask[1, 2:, 3:] = 0
    z = vmap(lambda p, xi, mi: functional_call(enc, p, (xi, mi)))(params, x, mask)
    for t in range(2):
        alone = functional_call(enc, {k: v[t] for k, v in params.items()}, (x[t], mask[t]))
        torch.testing.assert_close(z[t], alone)


def _encode_tasks(enc, params, x, mask, fused):
    from torch.func import functional_call, vmap

    enc.fused = fused
    z = vmap(lambda p, xi, mi: functional_call(enc, p, (xi, mi)))(params, x, mask)
    loss = (z * torch.arange(1.0, 1.0 + z.shape[-1], dtype=z.dtype)).sum() + z.pow(2).sum()
    return z, torch.autograd.grad(loss, list(params.values()))


def test_fused_recurrence_gives_the_autograd_loops_embeddings_and_gradients():
    """GRURecurrence's hand-written backward against autograd through the step loop: per-task
    encoder parameters under vmap, episodes of different lengths, an empty padding episode,
    gates driven into both flat ends of the hard sigmoid."""
    enc = make_encoder(seed=4)
    tasks = 3
    torch.manual_seed(5)
    params = {
        k: torch.stack([v + 0.3 * torch.randn_like(v) for _ in range(tasks)]).requires_grad_()
        for k, v in enc.named_parameters()
    }
    x = 3.0 * torch.randn(tasks, 4, 9, 5, dtype=torch.float64)  # large inputs saturate gates
    mask = torch.ones(tasks, 4, 9, dtype=torch.float64)
    mask[1, 2:, 5:] = 0.0
    mask[2, 3] = 0.0  # an all-padding episode
    z_fused, g_fused = _encode_tasks(enc, params, x, mask, fused=True)
    z_loop, g_loop = _encode_tasks(enc, params, x, mask, fused=False)
    torch.testing.assert_close(z_fused, z_loop, rtol=1e-12, atol=1e-12)
    for name, a, b in zip(params, g_fused, g_loop, strict=True):
        assert b.abs().sum() > 0, name
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12, msg=name)
    # The test has teeth: the gates really were saturated somewhere (hard sigmoid flat at 0 and 1).
    enc.fused = True
    inputs = x[0].transpose(0, 1) @ params["kernel"][0] + params["bias"][0]
    from tesp.algorithms.tesp.task_encoder import GRURecurrence

    _, _, gates, _ = GRURecurrence.apply(
        inputs[None].detach(), mask[0].transpose(0, 1)[None], params["recurrent_kernel"][0][None].detach()
    )
    assert (gates < 0).any() and (gates > 1).any()


def test_fused_recurrence_refuses_a_second_derivative():
    """The fused backward is first order; second-order meta-gradients use the loop."""
    enc = make_encoder(seed=6)
    x, mask = torch.randn(2, 5, 5, dtype=torch.float64), torch.ones(2, 5, dtype=torch.float64)
    enc.fused = True
    (g,) = torch.autograd.grad(enc(x, mask).pow(2).sum(), [enc.kernel], create_graph=True)
    with pytest.raises(RuntimeError):
        torch.autograd.grad(g.sum(), [enc.recurrent_kernel])
    enc.fused = False
    (g,) = torch.autograd.grad(enc(x, mask).pow(2).sum(), [enc.kernel], create_graph=True)
    (gg,) = torch.autograd.grad(g.pow(2).sum(), [enc.recurrent_kernel])
    assert gg.abs().sum() > 0
