"""Run ``main_train.py`` as a user would, in a subprocess, and read what Tune wrote."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from .conftest import REPO

SMALL = [
    "--set", "meta_batch_size=4",
    "--set", "episodes_per_task=4",
    "--set", "num_envs_per_env_runner=4",
    "--set", "num_env_runners=1",
]  # fmt: skip


def main_train_cmd(*args: str) -> list[str]:
    return [sys.executable, str(REPO / "main_train.py"), *args]


def run_main_train(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(main_train_cmd(*args), cwd=REPO, capture_output=True, text=True, timeout=timeout)


def trial_dirs(experiment: Path) -> list[Path]:
    return sorted(p for p in experiment.iterdir() if p.is_dir() and (p / "params.json").exists())


def results(trial: Path) -> list[dict]:
    return [json.loads(line) for line in (trial / "result.json").read_text().splitlines() if line.strip()]


def pids() -> set[int]:
    return {int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()}


def kill_orphaned_ray(existing: set[int]) -> None:
    """After a driver was SIGKILLed: end the Ray processes it left (re-parented to init), except
    those in ``existing`` (the pids before it started). Raylet's agents outlive a killed group."""
    for pid in pids() - existing:
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = Path(f"/proc/{pid}/stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            if ppid == 1 and (cmd.startswith("ray::") or "site-packages/ray/" in cmd):
                os.kill(pid, signal.SIGKILL)
