"""``main_render.py CHECKPOINT``: a checkpoint's policy on one task, before and after adaptation.

The checkpoint's algorithm adapts to the chosen task(s) exactly as ``main_test.py`` does
(stochastic sampling, the training schedule, no meta-update); the first episode sampled before
adaptation (stage 0) and the first one after the last inner step are then shown:

- MuJoCo envs: the two episodes replayed action by action in a copy of the env that renders
  offscreen (``MUJOCO_GL=egl`` by default), side by side with the goal marked, as MP4 and GIF.
  The physics is deterministic from the reset state, so a replay is the sampled episode (the
  replayed return is checked against the recorded one);
- ``point``: the trajectories of ``--num-tasks`` tasks before and after adaptation, one line
  per episode, goals marked, as PNG and SVG.

Bad input (the checkpoint, the pool, the task index, the output path) ends the program with one
``error:`` line and exit code 2 before Ray starts.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from tesp import limits
from tesp.checkpoints import find_checkpoint, saved_config
from tesp.commands.evaluate import FRESH, fresh_tasks
from tesp.commands.ray_connection import connect_ray
from tesp.errors import ConfigError, OneLineParser, fail
from tesp.viz.video import write_video


def make_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="main_render.py",
        description="Render a checkpoint's policy on a task before and after adaptation.",
    )
    parser.add_argument(
        "checkpoint", help="a checkpoint folder, or a trial or experiment folder (its newest)"
    )
    parser.add_argument(
        "--pool", default=None, help="task pool (default: D'' where the env has pools, else fresh)"
    )
    parser.add_argument("--task", type=int, default=0, help="index of the task in the pool (default 0)")
    parser.add_argument("--num-tasks", type=int, default=4, help="tasks in a trajectory plot (default 4)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fresh tasks' draw (default 0)")
    parser.add_argument(
        "--out", required=True, help="output path; its suffix is replaced by .mp4/.gif or .png/.svg"
    )
    parser.add_argument("--address", default=None, help="join a running Ray cluster: 'auto' or HOST:PORT")
    parser.add_argument(
        "--verbose", action="store_true", help="show Ray's and Tune's own log lines (hidden by default)"
    )
    return parser


def check_args(args: argparse.Namespace):
    """Everything checked before Ray starts; returns (checkpoint, env name, env config, pool)."""
    from tesp.envs import make_env
    from tesp.registry import method_of

    checkpoint = find_checkpoint(args.checkpoint)
    algo_cls, config = saved_config(checkpoint)
    method = method_of(algo_cls)
    if method is None or method.evaluation != "adaptation":
        raise ConfigError(
            f"checkpoint {str(checkpoint)!r} is of {algo_cls.__name__}, which has no adaptation to render"
        )
    env_name, env_config = config["env"], config.get("env_config") or {}
    env = make_env(env_name, env_config)
    valid = list(env.task_pools()) or [FRESH]
    pool = args.pool or ("D''" if "D''" in valid else valid[0])
    if pool not in valid:
        why = "" if env.task_pools() else f" (env {env_name!r} has no task pools)"
        raise ConfigError(f"unknown pool {pool!r}{why}; choose from: {', '.join(valid)}")
    if not renders_frames(env) and env.positions(np.zeros(env.observation_space.shape)) is None:
        raise ConfigError(f"env {env_name!r} can be neither rendered nor plotted as trajectories")
    size = len(env.task_pools()[pool]) if pool != FRESH else None
    if args.task < 0 or (size is not None and args.task >= size):
        raise ConfigError(f"--task {args.task} is out of range: pool {pool} has tasks 0..{size - 1}")
    if args.num_tasks < 1:
        raise ConfigError(f"--num-tasks {args.num_tasks} must be >= 1")
    if size is None:  # fresh tasks are drawn up to the last one shown
        limits.check_size(
            f"--task {args.task} with --num-tasks {args.num_tasks}",
            (args.task + args.num_tasks) * limits.TASK_BYTES,
        )
    out = Path(args.out).expanduser()
    if not out.parent.is_dir() or not os.access(out.parent, os.W_OK):
        raise ConfigError(f"--out {args.out!r}: folder {str(out.parent)!r} does not exist or is not writable")
    return checkpoint, env_name, env_config, pool


def renders_frames(env) -> bool:
    return "rgb_array" in env.metadata.get("render_modes", [])


def episode(batch, index: int = 0) -> tuple[np.ndarray, np.ndarray, float]:
    """(observations, actions, return) of episode ``index`` of a :class:`TaskBatch`."""
    n = int(batch.mask[index].sum())
    return batch.obs[index, :n], batch.actions[index, :n], float(batch.episode_returns[index])


def replay(
    env, task: dict, actions: np.ndarray, progress=None, first_obs: np.ndarray | None = None
) -> tuple[list[np.ndarray], float]:
    """Frames and return of ``actions`` replayed from the env's reset state on ``task`` (or from
    the state of ``first_obs``, for envs with a random reset: :meth:`TaskEnv.start_from`), with
    the goal drawn as a red sphere where the task has one and the camera following the agent
    (:func:`framing`)."""
    import mujoco

    env.set_task(dict(task, obs_noise_std=0.0))
    env.reset(seed=0)
    if first_obs is not None:
        env.start_from(first_obs)
    has_goal = "goal" in task
    tracked = getattr(env, "tracked", None)  # the agent's body: the camera follows it
    agent = env.data.xpos[tracked][:2].copy() if tracked is not None else np.zeros(2)
    goal = np.asarray(task["goal"], np.float64)[:2] if has_goal else agent
    reach = max(1.5, float(np.linalg.norm(goal)) + 0.5) if has_goal else 1.5
    env.mujoco_renderer.default_cam_config = {
        "lookat": np.array([goal[0] / 2, goal[1] / 2, 0.0]),
        "distance": 2.2 * reach,
        "elevation": -60.0 if has_goal else -20.0,
        "azimuth": 90.0,
    }
    viewer = env.mujoco_renderer._get_viewer("rgb_array")  # gymnasium's offscreen viewer
    frames, total = [], 0.0

    def frame():
        nonlocal reach
        if tracked is not None:
            position = env.data.xpos[tracked][:2].copy()
            # with a goal: it and the agent in view; without: the agent, at a fixed distance
            lookat, viewer.cam.distance, reach = framing(position, goal if has_goal else position, reach)
            viewer.cam.lookat[:] = lookat
        if has_goal:
            viewer.add_marker(
                pos=np.array([goal[0], goal[1], 0.05]),
                size=np.full(3, 0.06),
                rgba=np.array([0.9, 0.1, 0.1, 1.0]),
                type=mujoco.mjtGeom.mjGEOM_SPHERE,
                label="",
            )
        frames.append(env.render().copy())

    frame()
    for a in actions:
        _, reward, terminated, truncated, _ = env.step(a)
        total += float(reward)
        frame()
        if progress is not None:
            progress(1)
        if terminated or truncated:
            break
    return frames, total


def side_by_side(
    left: list[np.ndarray], right: list[np.ndarray], labels: tuple[str, str]
) -> list[np.ndarray]:
    """Frames of two episodes next to each other (the shorter one holds its last frame), labelled."""
    from PIL import Image, ImageDraw

    n = max(len(left), len(right))
    out = []
    for t in range(n):
        pair = [left[min(t, len(left) - 1)], right[min(t, len(right) - 1)]]
        image = Image.fromarray(np.concatenate(pair, axis=1))
        draw = ImageDraw.Draw(image)
        width = pair[0].shape[1]
        for i, label in enumerate(labels):
            draw.text((8 + i * width, 8), f"{label}  t={min(t, len((left, right)[i]) - 1)}", fill=(0, 0, 0))
        out.append(np.asarray(image))
    return out


def steps_label(n: int) -> str:
    return f"{n} step" if n == 1 else f"{n} steps"


def framing(agent_xy: np.ndarray, goal: np.ndarray, reach: float) -> tuple[np.ndarray, float, float]:
    """A top-down camera that keeps the agent and the goal in view: look at their midpoint, from
    2.2 x ``reach`` away, where ``reach`` only grows (no zooming in and out) to cover both with
    a 0.5 m margin. Returns (lookat, distance, the new reach)."""
    reach = max(reach, 0.5 * float(np.linalg.norm(agent_xy - goal)) + 0.5)
    centre = (agent_xy + goal) / 2
    return np.array([centre[0], centre[1], 0.0]), 2.2 * reach, reach


def trajectory_figure(
    tasks: list[dict], before: list, after: list, env, env_name: str, stages: tuple[int, int]
):
    """Two panels (before, after adaptation): the first 3 episodes of every task as lines from
    their observed positions, the goals in the task's colour (x: pays, o: does not)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tesp.viz.trajectories import plot_trajectories

    fig, axes = plt.subplots(1, 2, figsize=(9, 4.4), sharex=True, sharey=True)
    for ax, batches, title, stage in zip(
        axes, (before, after), ("before adaptation", "after adaptation"), stages, strict=True
    ):
        plot_trajectories(ax, tasks, batches, env)
        ax.set_title(f"{env_name}: {title} (stage {stage})", fontsize=9)
    fig.tight_layout()
    return fig


def render(algo, env_name: str, env_config: dict, pool: str, args, stem: Path) -> list[Path]:
    from tqdm import tqdm

    from tesp.envs import make_env

    task_env = algo.task_env
    if pool == FRESH:
        candidates = fresh_tasks(env_name, env_config, args.task + args.num_tasks, args.seed)
    else:
        candidates = task_env.task_pools()[pool]
    viewer_env = (
        make_env(env_name, dict(env_config, render_mode="rgb_array")) if renders_frames(task_env) else None
    )
    if viewer_env is not None:
        tasks = [candidates[args.task]]
    else:
        tasks = list(candidates[args.task : args.task + args.num_tasks])
    rollout = algo.adapt_on_tasks(tasks)
    first, last = rollout.stages[0], rollout.stages[-1]
    stages = (0, len(rollout.stages) - 1)
    if viewer_env is None:
        before, after = [r.batch for r in first], [r.batch for r in last]
        fig = trajectory_figure(tasks, before, after, task_env, env_name, stages)
        paths = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
        for p in paths:
            fig.savefig(p, dpi=110)
        return paths
    episodes = [episode(first[0].batch), episode(last[0].batch)]
    clips = []
    with tqdm(total=sum(len(a) for _, a, _ in episodes), unit="frame", desc="rendering") as bar:
        for (obs, actions, recorded), _stage in zip(episodes, stages, strict=True):
            frames, total = replay(viewer_env, tasks[0], actions, progress=bar.update, first_obs=obs[0])
            if not tasks[0].get("obs_noise_std") and not np.isclose(total, recorded, rtol=1e-4, atol=1e-3):
                raise RuntimeError(
                    f"replay diverged from the sampled episode: return {total:.3f} vs {recorded:.3f}"
                )
            clips.append(frames)
    labels = (
        f"before adaptation: {episodes[0][2]:.1f}",
        f"after {steps_label(stages[1])}: {episodes[1][2]:.1f}",
    )
    viewer_env.close()
    return write_video(side_by_side(clips[0], clips[1], labels), stem)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("MUJOCO_GL", "egl")
    args = make_parser().parse_args(argv)
    try:
        checkpoint, env_name, env_config, pool = check_args(args)
        connect_ray(args.address, dashboard=False)
    except ConfigError as e:
        fail(str(e))
    import ray
    import ray.tune.trainable.trainable as trainable
    from ray.rllib.algorithms.algorithm import Algorithm

    from tesp.envs import register_envs

    scratch = tempfile.mkdtemp(prefix="tesp-render-")
    trainable.DEFAULT_STORAGE_PATH = scratch  # no log folder in ~/ray_results
    try:
        register_envs()
        algo = Algorithm.from_checkpoint(str(checkpoint))
        try:
            paths = render(algo, env_name, env_config, pool, args, Path(args.out).expanduser())
        finally:
            algo.stop()
    finally:
        ray.shutdown()
        shutil.rmtree(scratch, ignore_errors=True)
    for p in paths:
        print(f"wrote {p}")
    return 0
