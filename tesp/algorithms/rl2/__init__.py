"""RL² (Duan et al. 2016; Wang et al. 2016): a GRU policy meta-trained with RLlib's PPO over
trials of several episodes of one task (README.md)."""

from tesp.algorithms.rl2.rl2 import RL2, RL2Config
from tesp.meta.rollout import summary_line
from tesp.method import Method

METHODS = (Method("rl2", RL2, summary_line),)

__all__ = ["METHODS", "RL2", "RL2Config"]
