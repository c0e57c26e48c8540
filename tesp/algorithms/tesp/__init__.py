from tesp.algorithms.tesp.tesp import TESP, TESPAdaptPolicy, TESPAdaptPolicyConfig, TESPConfig

__all__ = ["TESP", "TESPAdaptPolicy", "TESPAdaptPolicyConfig", "TESPConfig"]
