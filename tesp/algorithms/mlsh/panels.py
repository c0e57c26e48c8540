"""MLSH's own report panel (:mod:`tesp.report` draws it for MLSH's runs)."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from tesp.report.figures import label_axes, legend, mean_curve
from tesp.report.runs import Run


def mlsh_panel(runs: Sequence[Run], env: str) -> Figure:
    """MLSH: the return after the warm-up and after the joint phase (means over the tasks done
    so far) against the tasks done, and how often each sub-policy is chosen."""
    fig, (ret_ax, sub_ax) = plt.subplots(1, 2, figsize=(10, 3.4))
    for key, name in (("return_post_warmup", "after warm-up"), ("return_post_joint", "after joint phase")):
        its, _, mean, low, high = mean_curve(runs, ("mlsh", key))
        if len(its):
            tasks = np.nanmean(np.stack([r.at(its, "mlsh", "tasks_done") for r in runs]), axis=0)
            ret_ax.plot(tasks, mean, label=name)
            ret_ax.fill_between(tasks, low, high, alpha=0.2, linewidth=0)
    label_axes(ret_ax, "tasks done", "mean episode return", f"{env}: mlsh ({len(runs)} seed(s))")
    legend(ret_ax)
    subs = sorted(
        {k for r in runs for row in r.rows for k in row.get("mlsh", {}) if k.startswith("sub_choice_freq_")}
    )
    for key in subs:
        its, _, mean, low, high = mean_curve(runs, ("mlsh", key))
        sub_ax.plot(its, mean, label=f"sub-policy {key.rsplit('_', 1)[1]}")
        sub_ax.fill_between(its, low, high, alpha=0.2, linewidth=0)
    label_axes(sub_ax, "iteration", "share of macro steps", "sub-policy choices")
    legend(sub_ax)
    fig.tight_layout()
    return fig
