"""AdaptSV: the TESP paper's "MAESN with a latent variable" baseline (see adaptsv.py)."""

from tesp.algorithms.adaptsv.adaptsv import AdaptSV, AdaptSVConfig
from tesp.meta.rollout import summary_line
from tesp.method import Method

METHODS = (Method("adaptsv", AdaptSV, summary_line),)

__all__ = ["METHODS", "AdaptSV", "AdaptSVConfig"]
