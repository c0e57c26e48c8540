from tesp.algorithms.primitives.primitives import Primitives, PrimitivesConfig, summary_line

__all__ = ["Primitives", "PrimitivesConfig", "summary_line"]
