"""Stop a trial at the first non-finite loss, gradient or parameter, naming it.

A NaN or inf that reaches the meta-parameters spreads to every later iteration and checkpoint.
The learners check the quantities they compute and raise :class:`NonFiniteError` before a bad
value is applied; the Algorithm adds the iteration, and Tune ends the trial without writing
another checkpoint, so the last checkpoint on disk is the last good state.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch


class NonFiniteError(RuntimeError):
    """A loss, gradient or parameter became NaN or infinite; the message names which."""


def check_finite(what: str, values: torch.Tensor | Mapping[str, torch.Tensor | None]) -> None:
    """Raise :class:`NonFiniteError` if ``values`` (a tensor, or tensors by name) holds a NaN or inf."""
    items: Iterable = [("", values)] if torch.is_tensor(values) else values.items()
    for name, value in items:
        if value is not None and not bool(torch.isfinite(value.detach()).all()):
            kind = "nan" if bool(torch.isnan(value.detach()).any()) else "inf"
            raise NonFiniteError(f"{what}{' ' + name if name else ''} is {kind}")
