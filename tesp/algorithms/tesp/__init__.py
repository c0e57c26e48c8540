from tesp.algorithms.tesp.tesp import (
    TESP,
    TESPAdaptPolicy,
    TESPAdaptPolicyConfig,
    TESPConfig,
    TESPContextOnly,
    TESPContextOnlyConfig,
)

__all__ = [
    "TESP",
    "TESPAdaptPolicy",
    "TESPAdaptPolicyConfig",
    "TESPConfig",
    "TESPContextOnly",
    "TESPContextOnlyConfig",
]
