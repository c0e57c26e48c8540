"""Experiment trackers in one flag: ``--wandb [PROJECT]`` and ``--mlflow [URI]``.

Both are Tune's own callbacks (:class:`ray.air.integrations.wandb.WandbLoggerCallback`,
:class:`ray.air.integrations.mlflow.MLflowLoggerCallback`), fed the metrics under the names
TensorBoard shows (:func:`tesp.commands.progress.tracked_scalars`: ``meta/...``, ``validation/D/...``,
``episodes/...``), with the training iteration as the step. Ray's internal counters
(``ray/...`` in TensorBoard) stay out of the trackers, apart from :data:`RAY_KEPT`.

Weights & Biases logs online when it finds an API key (``WANDB_API_KEY`` or ``wandb login``),
otherwise offline into each trial's folder (``TRIAL/wandb/offline-run-*``, uploaded later with
``wandb sync``); ``WANDB_MODE`` set by the user wins. MLflow logs to ``URI`` (default: a file
store ``mlruns`` beside the experiments, ``file:STORAGE/mlruns``, which needs only
``mlflow-skinny``; MLflow 3 keeps that store in maintenance mode, so tesp sets its opt-in
``MLFLOW_ALLOW_FILE_STORE``; a ``sqlite:///...`` or server URI works with the full ``mlflow``);
one MLflow experiment per tesp experiment, one run per trial.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tesp.commands.progress import tracked_scalars

#: Ray's counters worth a tracker's plot (TensorBoard shows them all under ``ray/``).
RAY_KEPT = ("ray/time_total_s", "ray/time_this_iter_s", "ray/num_env_steps_sampled_lifetime")


def tracker_metrics(result: dict) -> dict[str, float]:
    """The result as a tracker logs it: tesp's scalars and :data:`RAY_KEPT`, plus the step."""
    out = {k: v for k, v in tracked_scalars(result).items() if not k.startswith("ray/") or k in RAY_KEPT}
    out["training_iteration"] = int(result["training_iteration"])
    return out


def wandb_has_key() -> bool:
    """Whether W&B can log online: an API key in the environment or in ``~/.netrc``."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        import netrc

        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (OSError, netrc.NetrcParseError):
        return False


from ray.air.integrations.mlflow import MLflowLoggerCallback  # noqa: E402
from ray.air.integrations.wandb import WandbLoggerCallback  # noqa: E402


class WandbLogger(WandbLoggerCallback):
    """Tune's W&B callback with tesp's metric names; each trial's run directory in its folder."""

    def log_trial_start(self, trial) -> None:
        if trial.path and Path(trial.path).is_dir():
            self.kwargs["dir"] = trial.path
        super().log_trial_start(trial)

    def log_trial_result(self, iteration: int, trial, result: dict) -> None:
        super().log_trial_result(iteration, trial, tracker_metrics(result))


class MlflowLogger(MLflowLoggerCallback):
    """Tune's MLflow callback with tesp's metric names, stepped by training iteration."""

    def log_trial_result(self, iteration: int, trial, result: dict) -> None:
        super().log_trial_result(iteration, trial, tracker_metrics(result))


def wandb_callback(project: str) -> WandbLogger:
    import wandb

    kwargs = {"settings": wandb.Settings(silent=True, console="off")}  # tesp's console stays tesp's
    if not os.environ.get("WANDB_MODE") and not wandb_has_key():
        os.environ["WANDB_MODE"] = "offline"  # read by the callback's key check
        kwargs["mode"] = "offline"
    return WandbLogger(project=project, **kwargs)


def mlflow_callback(uri: str, experiment_name: str) -> MlflowLogger:
    if uri.startswith("file:"):  # MLflow 3 keeps its file store behind an opt-in (a database
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # needs the full mlflow package)
    return MlflowLogger(tracking_uri=uri, experiment_name=experiment_name)


def mlflow_uri(value: str, storage_path: str) -> str:
    """``--mlflow``'s URI: a given one as is (a bare path becomes a file store), else
    ``file:STORAGE/mlruns``."""
    if not value:
        value = os.path.join(storage_path, "mlruns")
    if "://" in value or value.startswith("file:"):
        return value
    return "file:" + os.path.abspath(os.path.expanduser(value))


def wandb_mode_line(project: str) -> str:
    if os.environ.get("WANDB_MODE"):
        return f"W&B: project {project!r}, mode {os.environ['WANDB_MODE']} (WANDB_MODE)"
    if wandb_has_key():
        return f"W&B: project {project!r}, online"
    return (
        f"W&B: project {project!r}, offline (no API key found): runs go to each trial's wandb/ folder; "
        "upload them with `wandb sync TRIAL/wandb/offline-run-*`"
    )


def tracker_callbacks(flags: dict[str, Any], storage_path: str, name: str) -> list:
    """Tune's W&B and MLflow callbacks for ``--wandb`` / ``--mlflow`` (:mod:`tesp.commands.trackers`)."""
    out = []
    if flags.get("wandb") is not None:
        print(wandb_mode_line(flags["wandb"]))
        out.append(wandb_callback(flags["wandb"]))
    if flags.get("mlflow") is not None:
        uri = mlflow_uri(flags["mlflow"], storage_path)
        print(f"MLflow: {uri}, experiment {name!r}")
        out.append(mlflow_callback(uri, name))
    return out
