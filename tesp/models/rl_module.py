"""The base of tesp's RLModules."""

from __future__ import annotations

from typing import Any

from ray.rllib.core.rl_module.torch import TorchRLModule
from ray.rllib.utils.annotations import override


class StatelessModeTorchRLModule(TorchRLModule):
    """A TorchRLModule whose layers act the same in train and eval mode (no dropout, no batch norm).

    RLlib's ``forward_exploration``/``forward_inference`` switch the module to eval mode and back
    on every call, which walks every submodule twice per env step; on MLSH's MovementBandits that
    was ~10% of the sampling time. Modules built from this base skip the switch.
    """

    @override(TorchRLModule)
    def forward_exploration(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        return self._forward_exploration(batch, **kwargs)

    @override(TorchRLModule)
    def forward_inference(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        return self._forward_inference(batch, **kwargs)
