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

from tesp.config_overrides import ConfigError

MODULE_DIR = Path("learner_group/learner/rl_module")
FILTER_DIR = Path("env_runner/env_to_module_connector/MeanStdFilter")
EPISODE_METRICS = ("obstacles_passed", "success")


def runs_policy(algo_cls: type) -> bool:
    """Whether ``main_test.py`` tests checkpoints of ``algo_cls`` by running its policy."""
    return hasattr(algo_cls, "controller") and hasattr(algo_cls, "policy_env")


def is_policy_checkpoint(checkpoint: Path) -> bool:
    """Whether ``checkpoint`` holds RLlib's default single-agent module (a PPO checkpoint)."""
    from ray.rllib.core import DEFAULT_MODULE_ID

    return (checkpoint / MODULE_DIR / DEFAULT_MODULE_ID).is_dir()


REPO = Path(__file__).resolve().parents[1]


def policy_checkpoint(path: str | Path, what: str = "primitives") -> Path:
    """The checkpoint folder of a single policy (a checkpoint, an exported one, or a trial or
    experiment folder's newest); raises ValueError starting with ``what`` and naming ``path``. A
    relative path that is not below the working directory is looked up below the repository
    (the shipped skills, ``skills/walker_*``)."""
    from tesp.evaluate import find_checkpoint

    given = Path(path).expanduser()
    if not given.is_absolute() and not given.exists() and (REPO / given).exists():
        given = REPO / given
    try:
        checkpoint = find_checkpoint(str(given))
    except ConfigError as e:
        raise ValueError(f"{what}: {e}") from None
    if not is_policy_checkpoint(checkpoint):
        raise ValueError(
            f"{what}: {str(path)!r} is not a single policy's checkpoint (no {MODULE_DIR}/default_policy)"
        )
    return checkpoint


def restore_module(checkpoint: Path, module_id: str | None = None):
    """The RLModule ``module_id`` (default: the single agent's) saved in ``checkpoint``, in
    inference mode."""
    from ray.rllib.core import DEFAULT_MODULE_ID
    from ray.rllib.core.rl_module.rl_module import RLModule

    # Absolute: RLlib reads the folder through pyarrow, which refuses a relative path.
    module = RLModule.from_checkpoint(
        Path(checkpoint).resolve() / MODULE_DIR / (module_id or DEFAULT_MODULE_ID)
    )
    module.eval()
    return module


# An input whose running std stayed below this in training never varied there.
UNSEEN_STD = 1e-6


def observation_normalizer(obs_filter, hold_unseen: bool = True):
    """``obs -> normalised obs`` with a restored ``MeanStdFilter`` (frozen; identity without one).

    With ``hold_unseen``, the inputs that never varied in training are held at their training
    value (0 once normalised). The filter divides by the std, so on another env any other value
    there (a curb in the height map of a skill trained on flat ground) becomes +-clip (10), and
    it meets weights that never had a gradient, since their input was always 0: noise, not
    behaviour. A skill keeps acting on what it was trained to see, as if it did not observe
    those inputs (in Lee et al. 2019 each skill observes only its own features). On the
    policy's own env this changes nothing.
    """
    if obs_filter is None:
        return lambda obs: obs
    if not hold_unseen:
        return lambda obs: obs_filter(obs, update=False)
    unseen = np.asarray(obs_filter.running_stats.std) < UNSEEN_STD

    def normalize(obs: np.ndarray) -> np.ndarray:
        out = np.array(obs_filter(obs, update=False))  # a copy: never the caller's array
        out[..., unseen] = 0.0
        return out

    return normalize


class SavedPolicy:
    """A trained RLModule and its observation filter, restored without Ray."""

    def __init__(self, module, obs_filter=None) -> None:
        self.module, self.obs_filter = module, obs_filter
        self.normalize = observation_normalizer(obs_filter)

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path, env) -> SavedPolicy:
        """The policy saved in ``checkpoint``, for observations of ``env``'s space (the inputs that
        never varied in its training held: :func:`observation_normalizer`)."""
        checkpoint = Path(checkpoint).resolve()  # RLlib's reader (pyarrow) refuses relative paths
        return cls(restore_module(checkpoint), cls.restore_filter(checkpoint, env))

    @staticmethod
    def restore_filter(checkpoint: Path, env):
        """The checkpoint's running observation filter (RLlib's), or None without one."""
        from ray.rllib.connectors.env_to_module import MeanStdFilter

        if not (checkpoint / FILTER_DIR).is_dir():
            return None
        connector = MeanStdFilter()  # spaces set after its own settings (as a pipeline does)
        connector.input_action_space = env.action_space
        connector.input_observation_space = env.observation_space
        connector.restore_from_path(checkpoint / FILTER_DIR)
        # RLlib's connector keeps one running filter per agent; a single agent's is under None.
        return connector._filters[None]

    def reset(self) -> None:
        pass

    def act(self, obs: np.ndarray, explore: bool = False) -> np.ndarray:
        """The action for one observation (the mean, or a sample)."""
        return module_action(self.module, self.normalize(obs), explore)


def module_action(module, obs: np.ndarray, explore: bool = False) -> np.ndarray:
    """An RLModule's action for one (normalised) observation: its distribution's mode, or a sample."""
    import torch
    from ray.rllib.core.columns import Columns

    with torch.no_grad():
        out = module.forward_inference({Columns.OBS: torch.as_tensor(np.asarray(obs, np.float32)[None])})
        dist = module.get_inference_action_dist_cls().from_logits(out[Columns.ACTION_DIST_INPUTS])
        if not explore:
            dist = dist.to_deterministic()
        return dist.sample().numpy()[0]


def run_episodes(
    policy, env, episodes: int, seed: int, explore: bool = False, record: bool = False
) -> tuple[list[dict[str, Any]], list[np.ndarray]]:
    """``episodes`` episodes of ``policy`` (a controller: ``reset()``, ``act(obs, explore)``) on
    ``env`` (reset with ``seed`` first); one row per episode, and the frames of the first one
    if ``record`` (``env`` renders ``rgb_array``), captioned with ``policy.caption()`` where the
    policy has one."""
    import torch

    from tesp.render import with_caption

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
    from tesp.render import write_video

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


# What a policy's checkpoint needs to be run (main_test.py) and loaded as a primitive: the
# algorithm's class and config, its iteration, the module and the observation filter. The rest
# (the optimiser's state, the EnvRunner's copy of the module) only serves resuming training.
EXPORTED = ("rllib_checkpoint.json", "algorithm_state.pkl", "class_and_ctor_args.pkl", MODULE_DIR, FILTER_DIR)


def export_policy(checkpoint: Path, dest: Path) -> dict:
    """Copy the parts of a policy's ``checkpoint`` that run it (:data:`EXPORTED`, ~150 KB for a
    walker skill instead of ~400 KB) to ``dest``, a new folder, with ``export.json``: where it
    came from, its training iteration and env steps. ``dest`` is then a checkpoint that
    ``main_test.py`` and ``--primitives`` accept, but not ``--resume``. Returns the export record."""
    import pickle
    import shutil

    checkpoint, dest = Path(checkpoint), Path(dest)
    if not is_policy_checkpoint(checkpoint):
        raise ConfigError(
            f"{str(checkpoint)!r} is not a single policy's checkpoint (no {MODULE_DIR}/default_policy)"
        )
    if dest.exists():
        raise ConfigError(f"{str(dest)!r} exists: give a new folder")
    with open(checkpoint / "algorithm_state.pkl", "rb") as f:
        state = pickle.load(f)
    stats = state.get("metrics_logger", {}).get("stats", {})
    steps = stats.get("env_runners--num_env_steps_sampled_lifetime", {}).get("lifetime_sum")
    for part in EXPORTED:
        source = checkpoint / part
        if source.is_dir():
            shutil.copytree(source, dest / part)
        elif source.is_file():
            (dest / part).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / part)
    record = {
        "source": str(checkpoint.resolve()),
        "training_iteration": state.get("training_iteration"),
        "env_steps": None if steps is None else int(steps),
    }
    from tesp.evaluate import saved_config

    start = saved_config(checkpoint)[1].get("init_from")
    if start:  # a run that started from another policy (PPO's init_from): that one's record too
        try:
            earlier = policy_checkpoint(start, what="init_from") / "export.json"
        except ValueError:  # moved or deleted since: its path is all that is known
            earlier = None
        record["started_from"] = (
            json.loads(earlier.read_text()) if earlier and earlier.is_file() else {"source": start}
        )
    (dest / "export.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def check_policy_args(args, algo_cls: type, config: dict) -> None:
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
    from tesp.evaluate import NUM_FRESH  # the default of --pool-size

    for flag, value, default in (
        ("--pools", args.pools, None),
        ("--inner-steps", args.inner_steps, None),
        ("--sigmas", args.sigmas, [0.0]),
        ("--pool-size", args.pool_size, NUM_FRESH),
    ):
        if value != default:
            raise ConfigError(f"{flag} only applies to checkpoints of meta-learners, not to a single policy")
