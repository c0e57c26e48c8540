"""How good is each sub-policy on its own? The diagnostic for MLSH's known failure modes.

The return after warm-up mixes two things: how good the shared sub-policies are and how well a
fresh master picks among them. :func:`forced_sub_returns` separates them: it makes each
sub-policy act alone for whole episodes on each given task. On MovementBandits, specialised
sub-policies score ~43.8 on one goal and ~2 on the other (each on a different goal); two that
went to the same goal (the collapse openai/mlsh#8 and #9 report) share a column of high scores;
a useless one scores near the random level 2.4 on both. :func:`best_master_return` is what a
master that always picks the best sub-policy for the task would score with them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from tesp.algorithms.mlsh.mlsh_rl_module import MLSHModule
from tesp.envs.base import Task, TaskEnv


def forced_sub_returns(
    module: MLSHModule, env: TaskEnv, tasks: Sequence[Task], episodes: int = 100, explore: bool = True
) -> np.ndarray:
    """``[num_subs, len(tasks)]``: the mean episode return of each sub-policy acting alone on
    each task, over ``episodes`` episodes (actions sampled if ``explore``, else the mode)."""
    out = np.zeros((module.num_subs, len(tasks)))
    for k in range(module.num_subs):
        for j, task in enumerate(tasks):
            env.set_task(task)
            out[k, j] = np.mean([episode_return(module, env, k, explore) for _ in range(episodes)])
    return out


def episode_return(module: MLSHModule, env: TaskEnv, sub: int, explore: bool) -> float:
    """One episode of ``env`` (its current task) with sub-policy ``sub`` acting throughout."""
    obs, _ = env.reset()
    total, done = 0.0, False
    while not done:
        with torch.no_grad():
            inputs = module.sub_dist_inputs(
                torch.as_tensor(obs, dtype=torch.float32)[None], torch.tensor([sub])
            )
            action = module.sample_actions(inputs, explore)[0].numpy()
        obs, reward, terminated, truncated, _ = env.step(action.item() if module.discrete else action)
        total += float(reward)
        done = terminated or truncated
    return total


def best_master_return(returns: np.ndarray) -> float:
    """Mean over tasks of the best sub-policy's return: an oracle master's score."""
    return float(returns.max(axis=0).mean())
