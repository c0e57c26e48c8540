"""The cluster path: the scripts in scripts/, a two-node Ray cluster on this machine, and
main_train.py joining it with --address. Nothing leaves the machine (every host is local)."""

from __future__ import annotations

import json
import os
import socket
import subprocess

import pytest
import yaml

from .conftest import REPO
from .runner import SMALL, results, run_main_train, trial_dirs

SCRIPTS = REPO / "scripts"
ALL = ["env.sh", "ray_start.sh", "ray_stop.sh", "exec_commands.sh", "upload_codes.sh"]


def script(name: str, *args: str, env: dict[str, str] | None = None, timeout: float = 300, **kw):
    base = {k: v for k, v in os.environ.items() if not k.startswith("TESP_")}
    base["TESP_CLUSTER_ENV"] = "/nonexistent/cluster.env"  # never a developer's own settings file
    return subprocess.run(
        ["bash", str(SCRIPTS / name), *args],
        env=base | (env or {}),
        capture_output=True,
        text=True,
        timeout=timeout,
        **kw,
    )


@pytest.mark.parametrize("name", ALL)
def test_scripts_parse_have_help_and_name_a_missing_setting(name):
    assert subprocess.run(["bash", "-n", str(SCRIPTS / name)]).returncode == 0
    helped = script(name, "--help")
    assert helped.returncode == 0 and f"Usage: scripts/{name}" in helped.stdout, helped.stderr
    missing = script(name)
    assert missing.returncode == 2
    lines = missing.stderr.strip().splitlines()
    assert lines == [lines[0]] and lines[0].startswith("error: TESP_HEAD_HOST is not set"), missing.stderr
    assert "Traceback" not in missing.stderr


def test_settings_come_from_the_environment_or_a_local_file(tmp_path):
    settings = tmp_path / "cluster.env"
    settings.write_text(
        "# comment\nTESP_HEAD_HOST=10.0.0.5\nTESP_WORKER_HOSTS=10.0.0.6 10.0.0.7\nTESP_HEAD_PORT=7000\n"
    )
    out = script("env.sh", env={"TESP_CLUSTER_ENV": str(settings), "TESP_HEAD_PORT": "6500"})
    assert out.returncode == 0, out.stderr
    values = dict(line.split("=", 1) for line in out.stdout.splitlines())
    assert values["TESP_HEAD_HOST"] == "10.0.0.5"
    assert values["TESP_WORKER_HOSTS"] == "10.0.0.6 10.0.0.7"
    assert values["TESP_HEAD_PORT"] == "6500"  # the environment wins over the file
    settings.write_text("HEAD=1.2.3.4\n")
    bad = script("env.sh", env={"TESP_CLUSTER_ENV": str(settings)})
    assert bad.returncode == 2 and "is not a TESP_NAME=value line" in bad.stderr
    port = script("env.sh", env={"TESP_HEAD_HOST": "h", "TESP_HEAD_PORT": "http"})
    assert port.returncode == 2 and "TESP_HEAD_PORT='http'" in port.stderr


def test_upload_copies_the_tracked_files_and_exec_checks_imports(tmp_path):
    target = tmp_path / "node"
    local = {"TESP_HEAD_HOST": "127.0.0.1", "TESP_REMOTE_DIR": str(target)}
    up = script("upload_codes.sh", env=local)
    assert up.returncode == 0, up.stderr
    for path in ("main_train.py", "tesp/commands/train.py", "tesp/envs/assets/ant.xml", "requirements.txt"):
        assert (target / path).read_bytes() == (REPO / path).read_bytes()
    assert not (target / ".git").exists()
    skipped = script("upload_codes.sh", env=local | {"TESP_REMOTE_DIR": str(REPO)})
    assert skipped.returncode == 0 and "is this checkout; skipped" in skipped.stdout
    check = script("exec_commands.sh", "--check-only", env=local | {"TESP_REMOTE_DIR": str(REPO)})
    assert check.returncode == 0, check.stderr
    assert "ok: ray 2.60.0" in check.stdout


def test_cluster_launcher_config_is_valid():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((SCRIPTS / "cluster.yaml").read_text())
    validate_config(prepare_config(config))  # what `ray up` checks, with its defaults filled in
    assert config["provider"]["type"] == "local"
    assert any("ray start --head" in c for c in config["head_start_ray_commands"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray_running() -> bool:
    return subprocess.run(["pgrep", "-f", "raylet"], capture_output=True).returncode == 0


@pytest.mark.ray_nodes
def test_two_node_cluster_from_the_scripts_runs_main_train_on_both_nodes(tmp_path):
    if _ray_running():
        pytest.skip("a Ray instance already runs on this machine; ray_stop.sh would end it")
    token = tmp_path / "auth_token"
    token.write_text(os.environ["RAY_AUTH_TOKEN"])  # the session's token, so the driver can join
    port = _free_port()
    cluster = {
        "TESP_HEAD_HOST": "127.0.0.1",
        "TESP_WORKER_HOSTS": "127.0.0.1",
        "TESP_HEAD_PORT": str(port),
        "TESP_NUM_CPUS": "1",  # the worker node
        "TESP_HEAD_NUM_CPUS": "2",  # the trial's own process and one EnvRunner
        "TESP_TOKEN_FILE": str(token),
    }
    try:
        up = script("ray_start.sh", env=cluster)
        assert up.returncode == 0, up.stdout + up.stderr
        assert "cluster up" in up.stdout
        # The trial (1 CPU) and two EnvRunners (1 CPU each) on 2 + 1 CPUs: the runners must sit on
        # different nodes.
        on_nodes = ["--set", "num_env_runners=2", "--set", "num_cpus_per_env_runner=1"]
        args = ["--env", "point", "--alg", "maml", "--stop-iters", "2", *SMALL, *on_nodes]
        proc = run_main_train(
            *args, "--address", f"127.0.0.1:{port}", "--storage-path", str(tmp_path), "--name", "cluster"
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        rows = results(trial_dirs(tmp_path / "cluster")[0])
        assert [r["training_iteration"] for r in rows] == [1, 2]
        assert all(r["meta"]["sampler_nodes"] == 2 for r in rows)  # EnvRunners on both nodes
    finally:
        down = script("ray_stop.sh", env=cluster)
    assert down.returncode == 0, down.stderr
    assert not _ray_running()
    # A local run of the same settings reports the same metrics.
    local = run_main_train(
        "--env", "point", "--alg", "maml", "--stop-iters", "1", *SMALL,
        "--storage-path", str(tmp_path), "--name", "local",
    )  # fmt: skip
    assert local.returncode == 0, local.stderr[-3000:]
    local_rows = results(trial_dirs(tmp_path / "local")[0])
    assert set(local_rows[0]["meta"]) == set(rows[0]["meta"])
    assert local_rows[0]["meta"]["sampler_nodes"] == 1
    assert (
        json.loads((trial_dirs(tmp_path / "cluster")[0] / "params.json").read_text())["num_env_runners"] == 2
    )
