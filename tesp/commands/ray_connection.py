"""Ray for a command: a local Ray started for it (after checking the run fits this machine) or
an existing cluster joined (after checking its address answers), the auth token kept private."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

from tesp.errors import ConfigError


def check_address(address: str) -> None:
    """Fail fast with one line when a HOST:PORT cannot be reached (ray.init would retry for minutes)."""
    if address == "auto":
        return
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"--address {address!r} is not 'auto' or HOST:PORT")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=3):
            pass
    except OSError as e:
        raise ConfigError(
            f"--address {address!r} is unreachable ({e.strerror or e}); start the cluster first or omit --address for a local Ray"
        ) from None


def check_fits_locally(settings) -> None:
    """A trial that asks for more CPUs than the local Ray has would wait forever: refuse it."""
    from tesp.settings import grid_variants

    have = os.cpu_count() or 1
    for variant in grid_variants(settings.config, settings.groups):
        need = variant.algo_class.default_resource_request(variant).required_resources.get("CPU", 0)
        if need > have:
            parts = [
                f"main process {variant.num_cpus_for_main_process:g}",
                f"EnvRunners {variant.num_env_runners} x {variant.num_cpus_per_env_runner:g}",
            ]
            if variant.num_learners:
                per = variant.num_cpus_per_learner
                parts.append(f"Learners {variant.num_learners} x {1 if per == 'auto' else per:g}")
            raise ConfigError(
                f"a trial needs {need:g} CPUs ({', '.join(parts)}) but the local Ray has {have}; lower "
                "num_env_runners, num_cpus_per_env_runner, num_learners or num_cpus_per_learner, "
                "or join a cluster with --address"
            )


def connect_ray(address: str | None, dashboard: bool) -> None:
    import ray

    from tesp.commands.console import ray_init_options

    options = ray_init_options(sys.argv[1:])
    if address is not None:
        check_address(address)
        try:
            ray.init(address=address, **{"log_to_driver": True, **options})
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise ConfigError(
                f"--address {address!r}: could not join the Ray cluster ({str(e).splitlines()[0]})"
            ) from None
    else:
        context = ray.init(include_dashboard=dashboard, **options)
        private_token()
        if dashboard and getattr(context, "dashboard_url", None):
            token = "the RAY_AUTH_TOKEN variable" if os.environ.get("RAY_AUTH_TOKEN") else "~/.ray/auth_token"
            print(
                f"Ray dashboard: http://{context.dashboard_url} (it asks for the token: paste the content of {token})"
            )


def private_token(path: str = "~/.ray/auth_token") -> None:
    """Ray 2.60 writes the local cluster's auth token readable by everyone (0644); a token is a
    password: make it its owner's only (0600)."""
    token = Path(os.path.expanduser(path))
    try:
        if token.is_file() and token.stat().st_mode & 0o077:
            token.chmod(0o600)
    except OSError:
        pass
