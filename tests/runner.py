"""Run ``main_train.py`` as a user would, in a subprocess, and read what Tune wrote."""

from __future__ import annotations

import json
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
