"""Shared set-up for the benchmark scripts: a local Ray sized to this machine, with no auth file."""

from __future__ import annotations

import os
import secrets


def start_ray(num_cpus: int | None = None) -> None:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(16))  # no ~/.ray/auth_token left behind
    import ray

    from tesp.envs import register_envs

    ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    register_envs()
