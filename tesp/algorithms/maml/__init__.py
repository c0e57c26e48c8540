"""MAML (Finn et al. 2017): the shared engine with every policy weight adapted (README.md)."""

from tesp.algorithms.maml.maml import MAML, MAMLConfig
from tesp.meta.rollout import summary_line
from tesp.method import Method

METHODS = (Method("maml", MAML, summary_line),)

__all__ = ["METHODS", "MAML", "MAMLConfig"]
