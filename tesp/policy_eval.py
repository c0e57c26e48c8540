"""``main_test.py`` on a single-policy checkpoint (``--alg ppo``): the policy's episodes on its env.

A checkpoint of an algorithm that adapts nothing (RLlib's PPO on one env, e.g. a primitive skill
of the walker or the from-scratch baseline on the obstacle course) is tested by running its
policy: ``--episodes`` episodes from ``--seed``, actions from the policy's mean (``--explore``:
sampled), observations normalised as in training (the checkpoint's ``MeanStdFilter`` state).
Results go next to the checkpoint:

- ``<checkpoint>-test.csv``: one row per episode with its return, length and the env's
  success metrics of its last step (``obstacles_passed``, ``success``) where the env has them;
- ``<checkpoint>-test.json``: their means, the settings, the checkpoint;
- with ``--record``: ``<checkpoint>-episode0.mp4`` and ``.gif``, the first episode rendered
  offscreen (every ``frame_every``-th physics frame, real time).

No Ray is started: the RLModule and the filter are restored from their checkpoint folders.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

from tesp.config_overrides import ConfigError

MODULE_DIR = Path("learner_group/learner/rl_module")
FILTER_DIR = Path("env_runner/env_to_module_connector/MeanStdFilter")
EPISODE_METRICS = ("obstacles_passed", "success")


def is_policy_checkpoint(checkpoint: Path) -> bool:
    """Whether ``checkpoint`` holds RLlib's default single-agent module (a PPO checkpoint)."""
    from ray.rllib.core import DEFAULT_MODULE_ID

    return (checkpoint / MODULE_DIR / DEFAULT_MODULE_ID).is_dir()


class SavedPolicy:
    """A trained RLModule and its observation filter, restored without Ray."""

    def __init__(self, module, obs_filter=None) -> None:
        self.module, self.obs_filter = module, obs_filter

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path, env) -> SavedPolicy:
        """The policy saved in ``checkpoint``, for observations of ``env``'s space."""
        from ray.rllib.connectors.env_to_module import MeanStdFilter
        from ray.rllib.core import DEFAULT_MODULE_ID
        from ray.rllib.core.rl_module.rl_module import RLModule

        checkpoint = Path(checkpoint)
        module = RLModule.from_checkpoint(checkpoint / MODULE_DIR / DEFAULT_MODULE_ID)
        module.eval()
        obs_filter = None
        if (checkpoint / FILTER_DIR).is_dir():
            connector = MeanStdFilter()  # spaces set after its own settings (as a pipeline does)
            connector.input_action_space = env.action_space
            connector.input_observation_space = env.observation_space
            connector.restore_from_path(checkpoint / FILTER_DIR)
            # RLlib's connector keeps one running filter per agent; a single agent's is under None.
            obs_filter = connector._filters[None]
        return cls(module, obs_filter)

    def act(self, obs: np.ndarray, explore: bool = False) -> np.ndarray:
        """Actions for a batch of observations ``[B, obs_dim]`` (the mean, or a sample)."""
        import torch
        from ray.rllib.core.columns import Columns

        obs = np.asarray(obs, dtype=np.float32)
        if self.obs_filter is not None:
            obs = np.stack([self.obs_filter(o, update=False) for o in obs]).astype(np.float32)
        with torch.no_grad():
            out = self.module.forward_inference({Columns.OBS: torch.from_numpy(obs)})
            dist = self.module.get_inference_action_dist_cls().from_logits(out[Columns.ACTION_DIST_INPUTS])
            if not explore:
                dist = dist.to_deterministic()
            return dist.sample().numpy()


def run_episodes(
    policy: SavedPolicy, env, episodes: int, seed: int, explore: bool = False, record: bool = False
) -> tuple[list[dict[str, Any]], list[np.ndarray]]:
    """``episodes`` episodes of ``policy`` on ``env`` (reset with ``seed`` first); one row per
    episode, and the frames of the first one if ``record`` (``env`` renders ``rgb_array``)."""
    import torch

    torch.manual_seed(seed)
    rows, frames = [], []
    obs, _ = env.reset(seed=seed)
    frame_every = max(1, round(env.metadata.get("render_fps", 25) / 25))
    for i in range(episodes):
        if i > 0:
            obs, _ = env.reset()
        total, length, done, info = 0.0, 0, False, {}
        while not done:
            if record and i == 0 and length % frame_every == 0:
                frames.append(env.render().copy())
            obs, reward, terminated, truncated, info = env.step(policy.act(obs[None], explore)[0])
            total += float(reward)
            length += 1
            done = terminated or truncated
        row = {"episode": i, "return": total, "length": length}
        row |= {k: float(info[k]) for k in EPISODE_METRICS if k in info}
        rows.append(row)
    return rows, frames


def test_policy(checkpoint: Path, config: dict, episodes: int, seed: int, explore: bool, record: bool) -> dict:
    """Run the episodes, write the CSV, JSON (and video) next to the checkpoint; returns the summary."""
    from tesp.envs import make_env
    from tesp.render import write_video

    env_config = dict(config.get("env_config") or {})
    if record:
        env_config["render_mode"] = "rgb_array"
    env = make_env(config["env"], env_config)
    policy = SavedPolicy.from_checkpoint(checkpoint, env)
    rows, frames = run_episodes(policy, env, episodes, seed, explore=explore, record=record)
    stem = checkpoint.parent / f"{checkpoint.name}-test"
    with open(stem.with_suffix(".csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    summary = {k: float(np.mean([r[k] for r in rows])) for k in rows[0] if k != "episode"}
    out = {"checkpoint": str(checkpoint), "env": config["env"], "episodes": episodes, "seed": seed}
    out |= {"explore": explore, "mean": summary}
    stem.with_suffix(".json").write_text(json.dumps(out, indent=2))
    written = [stem.with_suffix(".csv"), stem.with_suffix(".json")]
    if record:
        fps = env.metadata["render_fps"] / max(1, round(env.metadata["render_fps"] / 25))
        written += write_video(frames, checkpoint.parent / f"{checkpoint.name}-episode0", fps=fps)
    env.close()
    out["written"] = [str(p) for p in written]
    return out


def check_policy_args(args) -> None:
    if args.episodes < 1:
        raise ConfigError(f"--episodes {args.episodes} must be >= 1")
    for flag, value, default in (("--pools", args.pools, None), ("--inner-steps", args.inner_steps, None)):
        if value != default:
            raise ConfigError(f"{flag} only applies to checkpoints of meta-learners, not to a single policy")
