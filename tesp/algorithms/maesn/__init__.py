"""MAESN (Gupta et al. 2018): per-task latent distributions adapted in the inner loop."""

from tesp.algorithms.maesn.maesn import MAESN, MAESNConfig
from tesp.meta.rollout import summary_line
from tesp.method import Method

METHODS = (Method("maesn", MAESN, summary_line),)

__all__ = ["METHODS", "MAESN", "MAESNConfig"]
