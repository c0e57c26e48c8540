"""Test-session setup: Ray runs with token auth from an env var, so no ~/.ray/auth_token is written."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest

os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(16))  # inherited by subprocesses too
os.environ.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning")

REPO = Path(__file__).resolve().parent.parent
TOKEN_FILE = Path.home() / ".ray" / "auth_token"
_token_existed = TOKEN_FILE.exists()
RESULTS_DIR = Path.home() / "ray_results"
_results_before = set(RESULTS_DIR.iterdir()) if RESULTS_DIR.is_dir() else set()


@pytest.fixture(scope="session")
def ray_session(tmp_path_factory):
    """One local Ray for all in-process tests that need it (2 CPUs, like the machine)."""
    import ray
    import ray.tune.trainable.trainable as trainable
    import torch

    from tesp.envs import register_envs

    # In-process algorithms run here, beside Ray's actors: one torch thread, as Ray gives its
    # 1-CPU actors (OMP_NUM_THREADS), so spin-waiting threads do not fight over the 2 cores.
    torch.set_num_threads(1)

    # Algorithms built outside Tune log to ~/ray_results/<timestamp>; keep tests out of it.
    trainable.DEFAULT_STORAGE_PATH = str(tmp_path_factory.mktemp("ray_results"))

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    register_envs()
    yield ray
    ray.shutdown()


def pytest_collection_modifyitems(config, items):
    # The fast lane (`pytest -m "not slow"`) leaves out the learning tests and the ones that start
    # whole Ray nodes as well as those marked slow (end-to-end runs of main_train.py).
    for item in items:
        if item.get_closest_marker("learning") or item.get_closest_marker("ray_nodes"):
            item.add_marker(pytest.mark.slow)
    # Tests that start and stop whole Ray nodes run first: `ray stop` ends every Ray process of
    # the machine, so they must finish before this session starts its own Ray.
    items.sort(key=lambda item: 0 if item.get_closest_marker("ray_nodes") else 1)


def pytest_sessionfinish(session, exitstatus):
    new = (set(RESULTS_DIR.iterdir()) if RESULTS_DIR.is_dir() else set()) - _results_before
    if new:
        raise RuntimeError(f"tests wrote into {RESULTS_DIR}: {sorted(p.name for p in new)}; use a temp dir")
    if not _token_existed and TOKEN_FILE.exists():
        TOKEN_FILE.unlink()
        raise RuntimeError(f"a test wrote {TOKEN_FILE}; tests must use RAY_AUTH_TOKEN instead")
