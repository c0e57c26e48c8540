"""The MLP builder and the 'normc' initialiser every tesp network uses.

'normc' (from OpenAI's baselines, used by the TESP, MAML and MLSH releases alike): each output
unit's weight row is drawn from N(0, 1) and rescaled to norm ``std``; biases start at 0. Hidden
layers use ``std = 1``; policy heads a small ``std = 0.01`` so that the initial policy is close
to uniform / zero-mean; value heads ``std = 1``.
"""

from __future__ import annotations

import torch
from torch import nn

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}


def normc_(weight: torch.Tensor, std: float) -> None:
    """N(0, 1) entries, each output unit's weights rescaled to norm ``std`` (in place)."""
    with torch.no_grad():
        weight.normal_(0.0, 1.0)
        weight.mul_(std / weight.norm(dim=1, keepdim=True))


def check_activation(name: str) -> None:
    if name not in ACTIVATIONS:
        raise ValueError(f"activation={name!r} is invalid: choose from {sorted(ACTIVATIONS)}")


def mlp(
    in_dim: int, hidden: list[int], out_dim: int, activation: str, head_std: float = 0.01
) -> nn.Sequential:
    """``Linear -> activation`` per hidden width, then a linear head; normc-initialised."""
    check_activation(activation)
    layers: list[nn.Module] = []
    for width in hidden:
        linear = nn.Linear(in_dim, width)
        normc_(linear.weight, 1.0)
        nn.init.zeros_(linear.bias)
        layers += [linear, ACTIVATIONS[activation]()]
        in_dim = width
    head = nn.Linear(in_dim, out_dim)
    normc_(head.weight, head_std)
    nn.init.zeros_(head.bias)
    return nn.Sequential(*layers, head)
