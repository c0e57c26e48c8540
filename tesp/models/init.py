"""Weight initialisers shared by tesp's networks."""

from __future__ import annotations

import torch


def normc_(weight: torch.Tensor, std: float) -> None:
    """'normc' init (spec §1.1): N(0, 1) entries, each output unit's weights rescaled to norm ``std``."""
    with torch.no_grad():
        weight.normal_(0.0, 1.0)
        weight.mul_(std / weight.norm(dim=1, keepdim=True))
