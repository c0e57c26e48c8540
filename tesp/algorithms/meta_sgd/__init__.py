"""Meta-SGD (Li et al. 2017): MAML with learned per-weight step sizes (README.md)."""

from tesp.algorithms.meta_sgd.meta_sgd import MetaSGD, MetaSGDConfig
from tesp.meta.rollout import summary_line
from tesp.method import Method

METHODS = (Method("meta_sgd", MetaSGD, summary_line, aliases=("meta-sgd",)),)

__all__ = ["METHODS", "MetaSGD", "MetaSGDConfig"]
