"""Trajectory plots of 2D tasks: every episode of every task as a line from its start (a
square), the goals that pay as an x, the ones that do not (MovementBandits' decoy) as an o.

Used by ``main_render.py`` (before/after adaptation), by validation, which logs the plot of
each pool's post-adaptation episodes to TensorBoard through Tune's result (an image array), and
by the evaluation, which stores the paths in its JSON for the report to draw.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def episode_paths(tasks: Sequence[dict], batches: Sequence, env, max_episodes: int = 3) -> list[dict]:
    """Each batch's first ``max_episodes`` episodes as JSON-able records: ``task`` (its index in
    ``tasks``), ``xy`` (``env.positions(obs)`` up to the episode's end), ``pays`` and ``decoys``
    (``env.goal_marks``)."""
    out = []
    for i, (task, batch) in enumerate(zip(tasks, batches, strict=True)):
        for e in range(min(batch.obs.shape[0], max_episodes)):
            obs = batch.obs[e, : int(batch.mask[e].sum())]
            pays, decoys = env.goal_marks(task, obs)
            out.append(
                {
                    "task": i,
                    "xy": np.round(env.positions(obs), 4).tolist(),
                    "pays": np.asarray(pays).tolist(),
                    "decoys": np.asarray(decoys).reshape(-1, 2).tolist(),
                }
            )
    return out


def draw_paths(ax, walls, paths: Sequence[dict]) -> None:
    """Draw :func:`episode_paths` records over the ``walls`` (rectangles x0, y0, x1, y1): each
    episode as a line from its start (a square) and its goals (x: pays, o: does not) in its
    task's colour; each task its own colour (up to 20 tasks)."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    for x0, y0, x1, y1 in walls:
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, color="0.4", linewidth=0))
    num_tasks = 1 + max((path["task"] for path in paths), default=0)
    if num_tasks <= 10:
        colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    else:
        colors = [plt.get_cmap("tab20")(i) for i in range(20)]
    for path in paths:
        color = colors[path["task"] % len(colors)]
        xy, pays, decoys = (np.asarray(path[k], np.float64).reshape(-1, 2) for k in ("xy", "pays", "decoys"))
        ax.plot(xy[:, 0], xy[:, 1], color=color, alpha=0.6, linewidth=1)
        if len(xy):
            ax.plot(xy[:1, 0], xy[:1, 1], "s", color=color, markersize=4)
        ax.plot(pays[:, 0], pays[:, 1], "x", color=color, markersize=10, markeredgewidth=2)
        if len(decoys):
            ax.plot(decoys[:, 0], decoys[:, 1], "o", color=color, markersize=8, fillstyle="none")
    ax.set_xlabel("x", fontsize=8)
    ax.set_ylabel("y", fontsize=8)
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)


def plot_trajectories(ax, tasks: Sequence[dict], batches: Sequence, env, max_episodes: int = 3) -> None:
    """Draw each batch's first ``max_episodes`` episodes and their goals over the env's walls."""
    draw_paths(ax, env.walls(), episode_paths(tasks, batches, env, max_episodes))


def trajectory_image(tasks: Sequence[dict], batches: Sequence, env, title: str) -> np.ndarray:
    """The plot as a ``[3, H, W]`` uint8 array (the layout Tune's TensorBoard logger writes as an
    image)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2.4, 2.4), dpi=50)  # small: Tune also writes it into result.json
    plot_trajectories(ax, tasks, batches, env, max_episodes=1)
    ax.set_title(title, fontsize=8)
    fig.tight_layout()
    fig.canvas.draw()
    image = np.asarray(fig.canvas.buffer_rgba())[..., :3]
    plt.close(fig)
    return np.ascontiguousarray(image.transpose(2, 0, 1))
