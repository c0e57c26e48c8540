"""RLlib's PPO on one env (the walker's skills, the course from scratch), tested by running it."""

from tesp.algorithms.ppo.ppo import PPO, PPOConfig, summary_line
from tesp.method import Method

METHODS = (Method("ppo", PPO, summary_line, evaluation="policy"),)

__all__ = ["METHODS", "PPO", "PPOConfig", "summary_line"]
