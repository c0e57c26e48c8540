"""Sizes checked against the memory this machine has, before anything of that size is made.

A setting such as ``meta_batch_size=100000000`` would otherwise be found out by the kernel's
out-of-memory killer (or a swap storm) minutes later. :func:`check_size` turns it into one line
naming the setting, the estimate and the limit; the estimates are arithmetic only, so a check
never allocates in proportion to the value it checks.
"""

from __future__ import annotations

import os

from tesp.config_overrides import ConfigError

#: Bytes a task description costs (a dict with a small numpy goal), with headroom.
TASK_BYTES = 2_000


def available_memory() -> int:
    """Bytes of memory available to new allocations (``MemAvailable``; the total as a fallback)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_size(setting: str, estimate_bytes: float, share: float = 0.8) -> None:
    """Refuse ``setting`` when its estimated memory exceeds ``share`` of the memory available."""
    limit = share * available_memory()
    if estimate_bytes > limit:
        raise ConfigError(
            f"{setting} needs about {_human(estimate_bytes)} of memory, more than the "
            f"{_human(limit)} available here; lower it"
        )


def sample_round_bytes(
    tasks: int, episodes: int, horizon: int, obs_dim: int, act_dim: int, rounds: int
) -> float:
    """One meta-iteration's sampled data, roughly: per step the observation (twice: the step's and
    the next), the action, the policy's distribution inputs and a few scalars, as float32, held
    about 3 times (the EnvRunner's episodes, the batch, the learner's tensors), for every round."""
    per_step = 4 * (2 * obs_dim + 3 * act_dim + 8)
    return 3.0 * tasks * episodes * horizon * per_step * rounds


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n:.0f} B"
        n /= 1024
    return f"{n:.1f} PB"
