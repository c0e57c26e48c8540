from tesp.algorithms.maml.maml import MAML, MAMLConfig

__all__ = ["MAML", "MAMLConfig"]
