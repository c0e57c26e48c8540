from tesp.algorithms.e_maml.e_maml import EMAML, EMAMLConfig

__all__ = ["EMAML", "EMAMLConfig"]
