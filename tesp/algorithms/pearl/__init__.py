"""PEARL (Rakelly et al. 2019): SAC with a probabilistic context encoder over per-task replay
(README.md)."""

from tesp.algorithms.pearl.pearl import PEARL, PEARLConfig
from tesp.meta.rollout import summary_line
from tesp.method import Method

METHODS = (Method("pearl", PEARL, summary_line),)

__all__ = ["METHODS", "PEARL", "PEARLConfig"]
