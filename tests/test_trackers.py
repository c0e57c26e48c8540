"""``--wandb`` and ``--mlflow`` end to end, without network: a short run logs to W&B offline
(a run directory ``wandb sync`` uploads) and to an MLflow file store, and both hold the numbers
of the run's ``result.json`` under TensorBoard's names, read back with each tool's own format
(W&B's record protobufs, MLflow's client)."""

from __future__ import annotations

import json
import os
import struct
import subprocess
from pathlib import Path

import pytest

from tesp.commands.trackers import mlflow_uri, tracker_metrics

from .conftest import REPO
from .runner import SMALL, main_train_cmd, results, trial_dirs

pytest.importorskip("wandb")
pytest.importorskip("mlflow")


def wandb_history(run_file: Path) -> list[dict]:
    """The history rows of a W&B run file (``run-ID.wandb``: a 7-byte header, then records in
    32 KiB blocks, each chunk with a 7-byte header of CRC, length and type, as in LevelDB's log)."""
    from wandb.proto import wandb_internal_pb2

    data = run_file.read_bytes()
    assert data[:4] == b":W&B", data[:7]
    block, pos, pending, rows = 32768, 7, b"", []
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind in (1, 2):  # full, first
            pending = chunk
        elif kind in (3, 4):  # middle, last
            pending += chunk
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            if record.WhichOneof("record_type") == "history":
                rows.append(
                    {
                        item.key or "/".join(item.nested_key): json.loads(item.value_json)
                        for item in record.history.item
                    }
                )
    return rows


def test_tracker_metrics_are_tensorboards_names_without_rays_internals():
    result = {
        "training_iteration": 3,
        "meta": {"return_post": -1.5, "kl": float("nan")},
        "validation": {"D''": {"return_post": -2.0}},
        "env_runners": {"episode_return_mean": -3.0, "num_healthy_workers": 1},
        "time_total_s": 4.0,
        "perf": {"cpu_util_percent": 50.0},
        "config": {"lr": 0.1},
    }
    assert tracker_metrics(result) == {
        "meta/return_post": -1.5,  # the NaN left out, as in TensorBoard
        "validation/Dpp/return_post": -2.0,
        "episodes/episode_return_mean": -3.0,
        "ray/time_total_s": 4.0,
        "training_iteration": 3,
    }


def test_mlflow_uri_defaults_to_a_file_store_beside_the_experiments(tmp_path):
    assert mlflow_uri("", str(tmp_path)) == f"file:{tmp_path}/mlruns"
    assert mlflow_uri("runs", "/x") == "file:" + os.path.abspath("runs")
    assert mlflow_uri("http://host:5000", "/x") == "http://host:5000"


@pytest.mark.ray
@pytest.mark.slow
def test_wandb_offline_and_mlflow_file_store_hold_the_runs_numbers(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "MLFLOW_"))}
    env["HOME"] = str(tmp_path)  # no ~/.netrc key: W&B must go offline by itself
    proc = subprocess.run(
        main_train_cmd(
            "--env",
            "point",
            "--alg",
            "maml",
            *SMALL,
            "--set",
            "num_env_runners=0",
            "--stop-iters",
            "2",
            "--storage-path",
            str(tmp_path),
            "--name",
            "run",
            "--wandb",
            "--mlflow",
        ),  # fmt: skip
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "offline (no API key found)" in proc.stdout
    (trial,) = trial_dirs(tmp_path / "run")
    expected = [r["meta"]["return_post"] for r in results(trial)]

    (run_file,) = trial.glob("wandb/offline-run-*/run-*.wandb")
    rows = wandb_history(run_file)
    assert [row["meta/return_post"] for row in rows] == pytest.approx(expected)
    assert [row["training_iteration"] for row in rows] == [1, 2]
    assert not any(
        key.startswith("ray/") and key != "ray/time_total_s"
        for row in rows
        for key in row
        if "time" not in key
    )

    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"file:{tmp_path}/mlruns")
    experiment = client.get_experiment_by_name("run")
    (run,) = client.search_runs([experiment.experiment_id])
    history = client.get_metric_history(run.info.run_id, "meta/return_post")
    assert [m.step for m in history] == [1, 2]
    assert [m.value for m in history] == pytest.approx(expected)
    assert run.info.status == "FINISHED"
