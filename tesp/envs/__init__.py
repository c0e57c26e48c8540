"""Task environments and their registry (name -> class)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tesp.envs.bandits import AntBanditsEnv, MovementBanditsEnv
from tesp.envs.base import Task, TaskEnv
from tesp.envs.goal_mujoco import AntEnv, Reacher2LinkEnv, Reacher4LinkEnv, WheeledEnv
from tesp.envs.locomotion import AntDirEnv, HalfCheetahDirEnv, HalfCheetahVelEnv
from tesp.envs.metaworld_ml10 import ML10Env
from tesp.envs.pendulum import PendulumEnv, SparsePendulumEnv
from tesp.envs.point import PointNavEnv
from tesp.envs.sparse_nav import (
    CloseRingNavEnv,
    DogFeedingEnv,
    HardExplorationNavEnv,
    SparsePointRobotEnv,
    WideRingNavEnv,
)
from tesp.envs.walker import WalkerCrawlEnv, WalkerForwardEnv, WalkerJumpEnv, WalkerObstacleCourseEnv

ENVS: dict[str, type[TaskEnv]] = {
    "ant": AntEnv,
    "ant_bandits": AntBanditsEnv,
    "ant_dir": AntDirEnv,
    "half_cheetah_dir": HalfCheetahDirEnv,
    "half_cheetah_vel": HalfCheetahVelEnv,
    "ml10": ML10Env,
    "movement_bandits": MovementBanditsEnv,
    "nav_close_ring": CloseRingNavEnv,
    "nav_dog_feeding": DogFeedingEnv,
    "nav_hard_exploration": HardExplorationNavEnv,
    "nav_wide_ring": WideRingNavEnv,
    "pendulum_dense": PendulumEnv,
    "pendulum_sparse": SparsePendulumEnv,
    "point": PointNavEnv,
    "point_robot_sparse": SparsePointRobotEnv,
    "reacher_2_link": Reacher2LinkEnv,
    "reacher_4_link": Reacher4LinkEnv,
    "walker_crawl": WalkerCrawlEnv,
    "walker_forward": WalkerForwardEnv,
    "walker_jump": WalkerJumpEnv,
    "walker_obstacle_course": WalkerObstacleCourseEnv,
    "wheeled": WheeledEnv,
}
# The original release's spellings.
ENV_ALIASES = {"reacher_2-link": "reacher_2_link", "reacher_4-link": "reacher_4_link"}


def canonical_env(name: str) -> str:
    return ENV_ALIASES.get(name, name)


def make_env(name: str, env_config: Mapping[str, Any] | None = None) -> TaskEnv:
    """Build a registered env from its name (or alias) and keyword options."""
    return ENVS[canonical_env(name)](**dict(env_config or {}))


def register_envs() -> None:
    """Register every env with Ray Tune under its tesp name (needed in each fresh driver process)."""
    from ray.tune.registry import register_env

    for name in [*ENVS, *ENV_ALIASES]:
        register_env(name, lambda ctx, name=name: make_env(name, _user_keys(ctx)))


def _user_keys(ctx: Mapping[str, Any]) -> dict[str, Any]:
    # RLlib's EnvContext is a dict of the user's env_config (plus attributes, not keys).
    return {k: v for k, v in dict(ctx).items() if k != "num_envs"}


__all__ = ["ENVS", "ENV_ALIASES", "Task", "TaskEnv", "canonical_env", "make_env", "register_envs"]
