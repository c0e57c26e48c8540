"""Parameters as name -> tensor dicts, with a leading task dimension for batched adaptation."""

from __future__ import annotations

from collections.abc import Mapping

import torch

Params = dict[str, torch.Tensor]


def per_task(params: Mapping[str, torch.Tensor], num_tasks: int) -> Params:
    """Give every parameter a leading task dimension (a view: gradients flow back to ``params``)."""
    return {k: v.unsqueeze(0).expand(num_tasks, *v.shape) for k, v in params.items()}
