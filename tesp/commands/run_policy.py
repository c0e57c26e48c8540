"""``main_test.py`` on a policy's checkpoint (``--alg ppo``, ``--alg primitives``): its episodes.

A checkpoint of an algorithm that adapts nothing (RLlib's PPO on one env, e.g. a primitive skill
of the walker or the from-scratch baseline on the obstacle course; the meta-policy over
primitives) is tested by running its policy. Such an algorithm class has a ``controller(checkpoint,
config, env)`` class method, which returns an object with ``reset()`` and ``act(obs, explore)``
that drives the env the algorithm was configured with (``policy_env(config)``: its name and
options): ``--episodes`` episodes from ``--seed``, actions from the policy's mean (``--explore``:
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
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from tesp.envs.base import EPISODE_METRICS
from tesp.errors import ConfigError


def run_episodes(
    policy, env, episodes: int, seed: int, explore: bool = False, record: bool = False
) -> tuple[list[dict[str, Any]], list[np.ndarray]]:
    """``episodes`` episodes of ``policy`` (a controller: ``reset()``, ``act(obs, explore)``) on
    ``env`` (reset with ``seed`` first); one row per episode, and the frames of the first one
    if ``record`` (``env`` renders ``rgb_array``), captioned with ``policy.caption()`` where the
    policy has one."""
    import torch

    from tesp.viz.video import with_caption

    torch.manual_seed(seed)
    rows, frames = [], []
    obs, _ = env.reset(seed=seed)
    frame_every = max(1, round(env.metadata.get("render_fps", 25) / 25))
    for i in range(episodes):
        if i > 0:
            obs, _ = env.reset()
        policy.reset()
        total, length, done, info = 0.0, 0, False, {}
        while not done:
            action = policy.act(obs, explore)
            if record and i == 0 and length % frame_every == 0:
                frame = env.render().copy()
                if hasattr(policy, "caption"):  # e.g. the primitive that is acting
                    frame = with_caption(frame, policy.caption())
                frames.append(frame)
            obs, reward, terminated, truncated, info = env.step(action)
            total += float(reward)
            length += 1
            done = terminated or truncated
        row = {"episode": i, "return": total, "length": length}
        row |= {k: float(info[k]) for k in EPISODE_METRICS if k in info}
        row |= getattr(policy, "episode_metrics", dict)()
        rows.append(row)
    return rows, frames


def evaluate_policy(
    algo_cls: type,
    checkpoint: Path,
    config: dict,
    episodes: int,
    seed: int,
    explore: bool,
    record: bool,
    env: str | None = None,
    env_options: dict | None = None,
) -> dict:
    """Run the episodes, write the CSV, JSON (and video) next to the checkpoint; returns the
    summary. ``env``: another env to run the policy on (with ``env_options``), e.g. a walker
    skill on the obstacle course; the files then carry its name (and a digest of the options)."""
    from tesp.envs import make_env
    from tesp.viz.video import write_video

    env_name, env_config = algo_cls.policy_env(config)
    env_config = dict(env_config)
    own = env is None or env == env_name
    if not own:
        env_name, env_config = env, dict(env_options or {})
    if record:
        env_config["render_mode"] = "rgb_array"
    env = make_env(env_name, env_config)
    policy = algo_cls.controller(checkpoint, config, env)
    rows, frames = run_episodes(policy, env, episodes, seed, explore=explore, record=record)
    label = "" if own else f"-{env_name}"
    if not own and env_options:  # other options, other files: a short digest of them
        label += "-" + hashlib.sha1(json.dumps(env_options, sort_keys=True).encode()).hexdigest()[:8]
    stem = checkpoint.parent / f"{checkpoint.name}-test{label}"
    with open(stem.with_suffix(".csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    summary = {k: float(np.mean([r[k] for r in rows])) for k in rows[0] if k != "episode"}
    out = {"checkpoint": str(checkpoint), "env": env_name, "episodes": episodes, "seed": seed}
    out |= {"explore": explore, "mean": summary}
    stem.with_suffix(".json").write_text(json.dumps(out, indent=2))
    written = [stem.with_suffix(".csv"), stem.with_suffix(".json")]
    if record:
        fps = env.metadata["render_fps"] / max(1, round(env.metadata["render_fps"] / 25))
        written += write_video(frames, checkpoint.parent / f"{checkpoint.name}{label}-episode0", fps=fps)
    env.close()
    out["written"] = [str(p) for p in written]
    return out


def check_policy_args(args, algo_cls: type, config: dict, pool_size_default: int) -> None:
    """``main_test.py``'s flags for a policy's checkpoint; the meta-learners' flags refused."""
    from tesp.config_overrides import parse_set
    from tesp.envs import ENVS, make_env
    from tesp.settings import check_env_config

    if args.env_option and args.env is None:
        raise ConfigError("--env-option needs --env")
    if args.env is not None:
        if args.env not in ENVS:
            raise ConfigError(f"unknown --env {args.env!r}; choose from: {', '.join(sorted(ENVS))}")
        own_name, own_config = algo_cls.policy_env(config)
        own, other = make_env(own_name, own_config), check_env_config(args.env, parse_set(args.env_option))
        if (
            own.observation_space.shape != other.observation_space.shape
            or own.action_space != other.action_space
        ):
            raise ConfigError(
                f"--env {args.env!r} has other observation or action spaces than the policy's env {own_name!r}"
            )
    if args.episodes < 1:
        raise ConfigError(f"--episodes {args.episodes} must be >= 1")
    for flag, value, default in (
        ("--pools", args.pools, None),
        ("--inner-steps", args.inner_steps, None),
        ("--sigmas", args.sigmas, [0.0]),
        ("--pool-size", args.pool_size, pool_size_default),
    ):
        if value != default:
            raise ConfigError(f"{flag} only applies to checkpoints of meta-learners, not to a single policy")
