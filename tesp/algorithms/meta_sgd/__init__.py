from tesp.algorithms.meta_sgd.meta_sgd import MetaSGD, MetaSGDConfig

__all__ = ["MetaSGD", "MetaSGDConfig"]
