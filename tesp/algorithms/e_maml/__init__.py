"""E-MAML (Stadie et al. 2018): MAML whose meta-gradient adds the pre-update sampling's term."""

from tesp.algorithms.e_maml.e_maml import EMAML, EMAMLConfig
from tesp.meta.rollout import summary_line
from tesp.method import Method, Variant

METHODS = (Method("e_maml", EMAML, summary_line, aliases=("e-maml",)),)
VARIANTS = (Variant("maml", {"e-maml": "E-MAML's exploration term (= --alg e_maml)"}, "e_maml", {}),)

__all__ = ["METHODS", "VARIANTS", "EMAML", "EMAMLConfig"]
