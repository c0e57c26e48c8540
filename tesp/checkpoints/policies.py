"""A trained policy from its checkpoint, without Ray: find the checkpoint of a single policy
(a checkpoint, an exported one, a trial or experiment folder, or a shipped skill), restore its
RLModule and its observation filter, act with it, and export the parts that run it.

Used by training (PPO's ``init_from``), by the primitives' meta-policy (its frozen skills) and by
``main_test.py`` on a policy's checkpoint (:mod:`tesp.commands.run_policy`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tesp.errors import ConfigError

MODULE_DIR = Path("learner_group/learner/rl_module")
FILTER_DIR = Path("env_runner/env_to_module_connector/MeanStdFilter")


def is_policy_checkpoint(checkpoint: Path) -> bool:
    """Whether ``checkpoint`` holds RLlib's default single-agent module (a PPO checkpoint)."""
    from ray.rllib.core import DEFAULT_MODULE_ID

    return (checkpoint / MODULE_DIR / DEFAULT_MODULE_ID).is_dir()


REPO = Path(__file__).resolve().parents[2]


def policy_checkpoint(path: str | Path, what: str = "policy") -> Path:
    """The checkpoint folder of a single policy (a checkpoint, an exported one, or a trial or
    experiment folder's newest); raises ValueError starting with ``what`` and naming ``path``. A
    relative path that is not below the working directory is looked up below the repository
    (the shipped skills, ``skills/walker_*``)."""
    from tesp.checkpoints import find_checkpoint

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
    from tesp.checkpoints import saved_config

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
