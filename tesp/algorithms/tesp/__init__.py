"""TESP (Lan et al. 2019): a task encoder over the best episodes and a shared policy (README.md)."""

from tesp.algorithms.tesp.tesp import (
    TESP,
    TESPAdaptPolicy,
    TESPAdaptPolicyConfig,
    TESPConfig,
    TESPContextOnly,
    TESPContextOnlyConfig,
)
from tesp.meta.rollout import summary_line
from tesp.method import Flag, Method

FLAGS = (
    Flag(
        ("--tesp-adapt-policy", "--tesp_adapt_policy"),
        "adapted_params",
        "adapt the shared policy too (the same as --alg tesp_adapt_policy)",
        type=None,
        value=["encoder", "policy"],
    ),
)
METHODS = (
    Method("tesp", TESP, summary_line, flags=FLAGS),
    Method("tesp_adapt_policy", TESPAdaptPolicy, summary_line, aliases=("tesp-adapt-policy",)),
    Method("tesp_context_only", TESPContextOnly, summary_line, aliases=("tesp-context-only",)),
)

__all__ = [
    "METHODS",
    "TESP",
    "TESPAdaptPolicy",
    "TESPAdaptPolicyConfig",
    "TESPConfig",
    "TESPContextOnly",
    "TESPContextOnlyConfig",
]
