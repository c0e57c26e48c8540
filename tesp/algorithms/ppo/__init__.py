from tesp.algorithms.ppo.ppo import PPO, PPOConfig, summary_line

__all__ = ["PPO", "PPOConfig", "summary_line"]
