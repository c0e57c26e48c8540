"""Validation on the task pools during training: every ``validation_freq`` iterations, adapt to
the tasks of D, D' and D'' (Lan et al. 2019, §5: in-distribution and out-of-distribution test
tasks) and put, per pool, the mean return per adaptation stage into that iteration's result as
``validation/<pool>/return_stage_<k>`` (and a trajectory plot under ``validation_trajectories``).

Shared by every method whose algorithm adapts to a list of tasks
(``evaluate_adaptation(tasks)``) and owns a ``task_env``: the gradient methods' engine and RL²."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tesp.meta.rollout import pool_summary
from tesp.meta.setting import Setting, at_least

VALIDATION = "validation"  # metric namespace: validation/<pool>/return_stage_<k>, ...
VALIDATION_IMAGES = "validation_trajectories"  # validation_trajectories/<pool>: a trajectory plot

SETTINGS = (
    Setting(
        "validation_freq", 25, "every N iterations, adapt to the tasks of the pools D, D', D''; 0: never.",
        "an integer >= 0 (0: never)", at_least(0),
    ),
    Setting(
        "validation_pool_size", 0, "tasks per pool to validate on; 0: all of them.",
        "an integer >= 0 (0: whole pools)", at_least(0),
    ),
)  # fmt: skip


class PoolValidation:
    """Algorithm mixin: :meth:`validate_if_due` at the end of ``training_step`` runs the
    validation; ``step`` puts it into that iteration's result only (a metric logged through
    RLlib's metrics would show as NaN in every other iteration)."""

    _validation: dict | None = None
    _validation_images: dict[str, np.ndarray] = {}

    def step(self) -> dict:
        self._validation = None
        self._validation_images = {}
        result = super().step()
        if self._validation:
            result[VALIDATION] = self._validation
        if self._validation_images:
            # Tune's TensorBoard logger writes a [3, H, W] array of the result as an image.
            result[VALIDATION_IMAGES] = self._validation_images
        return result

    def validate_if_due(self) -> None:
        """In ``training_step`` (the iteration counter is incremented after it returns)."""
        freq = self.config.validation_freq
        if freq and (self.iteration + 1) % freq == 0:
            self._validation_images = {}
            self._validation = self.validate_pools(images=self._validation_images)

    def validate_pools(
        self,
        pools: Sequence[str] | None = None,
        size: int | None = None,
        obs_noise_std: float = 0.0,
        images: dict[str, np.ndarray] | None = None,
    ) -> dict[str, dict[str, float]]:
        """Adapt to the first ``size`` tasks of each pool (default: ``validation_pool_size``;
        every task when 0) and return, per pool, the mean episode return and length per stage.

        ``images``, where the env's observations hold positions: filled per pool with a plot of
        the post-adaptation episodes of (up to) the first 6 tasks, ``[3, H, W]`` uint8."""
        size = self.config.validation_pool_size if size is None else size
        out = {}
        for name in pools or list(self.task_env.task_pools()):
            tasks = self.task_env.task_pools().get(name, [])
            tasks = [dict(t, obs_noise_std=obs_noise_std) for t in (tasks[:size] if size else tasks)]
            if not tasks:
                continue
            rollouts = self.evaluate_adaptation(tasks)
            out[name] = pool_summary(rollouts)
            if (
                images is not None
                and self.task_env.positions(np.zeros(self.task_env.observation_space.shape)) is not None
            ):
                from tesp.viz.trajectories import trajectory_image

                post = [r.batch for ro in rollouts for r in ro.stages[-1]][:6]
                title = f"{name}: after adaptation, iteration {self.iteration + 1}"
                # TensorBoard tags allow no quotes: D, Dp, Dpp
                tag = name.replace("'", "p")
                images[tag] = trajectory_image(tasks[: len(post)], post, self.task_env, title)
        return out
