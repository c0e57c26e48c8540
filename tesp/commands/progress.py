"""What a run prints and logs through Tune: one console line per iteration (instead of Tune's
status tables), ``result.json`` without images (they go to TensorBoard only), and result files
that hold each iteration once after a resume."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
from ray import cloudpickle, tune
from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback, TBXLoggerCallback
from ray.tune.result import EXPR_PARAM_FILE, EXPR_PARAM_PICKLE_FILE
from ray.tune.utils import flatten_dict
from ray.tune.utils.util import SafeFallbackEncoder

from tesp.checkpoints import write_atomically


class Progress(tune.Callback):
    """Prints ``[trial] iter N | <the method's summary line> | seconds | ETA`` for every result
    (the ETA from the trial's mean time per iteration since its start or restore, to its stop:
    :attr:`stop_at`, else the trial's own stopping criterion)."""

    #: the run's stop, set by the command that runs (a resume may have raised it)
    stop_at: int | None = None

    def __init__(self, summary: Callable[[dict], str], by_config: bool = False) -> None:
        self.summary = summary
        self.by_config = by_config  # label lines by method, env and seed (studies) instead of trial id

    def label(self, trial) -> str:
        # getattr: a Progress pickled with an experiment by an older tesp has no by_config
        if not getattr(self, "by_config", False):
            return trial.trial_id
        config = trial.config or {}
        return f"{trial.trainable_name} {config.get('env', '?')} seed {config.get('seed', '?')}"

    def on_trial_start(self, iteration, trials, trial, **info):
        print(f"[{self.label(trial)}] started: {trial.path}", flush=True)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        first, *details = self.summary(result).splitlines()
        seconds = result.get("time_this_iter_s", 0)
        it = result["training_iteration"]
        target = Progress.stop_at or (getattr(trial, "stopping_criterion", None) or {}).get(
            "training_iteration"
        )
        eta = ""
        since = result.get("iterations_since_restore") or it
        if target and target > it and result.get("time_since_restore"):
            eta = f" | ETA {format_duration(result['time_since_restore'] / since * (target - it))}"
        print(f"[{self.label(trial)}] iter {it:4d} | {first} | {seconds:.1f}s{eta}", flush=True)
        for line in details:
            print(f"[{self.label(trial)}] {line}", flush=True)

    def on_trial_error(self, iteration, trials, trial, **info):
        print(f"[{self.label(trial)}] FAILED; see {trial.path}/error.txt", flush=True)


def format_duration(seconds: float) -> str:
    """``45s``, ``12m05s``, ``3h20m``."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def without_images(result: dict) -> dict:
    """``result`` without its image arrays (``ndim >= 3``, e.g. validation trajectory plots) at
    any depth."""
    out = {}
    for key, value in result.items():
        if isinstance(value, dict) and value:
            value = without_images(value)
            if not value:  # held only images
                continue
        elif isinstance(value, np.ndarray) and value.ndim >= 3:
            continue
        out[key] = value
    return out


def drop_rows_from(path: Path, iteration: int) -> int:
    """Remove the rows of ``result.json`` (JSON lines) or ``progress.csv`` whose
    ``training_iteration`` is ``iteration`` or later, and any line cut short (a write that a kill
    or a full disk interrupted). Returns how many lines went."""
    if not path.is_file():
        return 0
    lines = path.read_text().splitlines(keepends=True)
    if path.suffix == ".csv":
        if not lines:
            return 0
        header = next(csv.reader([lines[0]]))
        column = header.index("training_iteration") if "training_iteration" in header else None
        keep = [lines[0]]
        for line in lines[1:]:
            row = next(csv.reader([line]), [])
            try:
                ok = line.endswith("\n") and len(row) == len(header)
                ok = ok and (column is None or float(row[column]) < iteration)
            except ValueError:
                ok = False
            if ok:
                keep.append(line)
    else:
        keep = []
        for line in lines:
            try:
                ok = line.endswith("\n") and json.loads(line).get("training_iteration", 0) < iteration
            except ValueError:
                ok = False
            if ok:
                keep.append(line)
    if len(keep) != len(lines):
        # In place (the same file, not a new one renamed over it): a logger holding it open for
        # appending keeps writing to it.
        with open(path, "r+") as f:
            f.write("".join(keep))
            f.truncate()
    return len(lines) - len(keep)


def trial_folder(trial) -> Path:
    """Where tesp's loggers write a trial's files: straight into its results folder when that is
    on this machine's filesystem, else Tune's staging folder (Tune copies it to storage).

    Tune's own loggers write into a staging folder that a background copy mirrors into the
    results folder now and then and at the end. That copy can be cut short (a full disk: the
    rows it held are lost for the resume) or fail at the end of a run (CI, 2026-12-07: 14 of a
    smoke study's 15 trial folders ended without their ``params.json``). Appending in place loses
    at most the line being written."""
    storage = trial.storage
    if storage.storage_filesystem.type_name == "local":
        folder = Path(storage.trial_fs_path)
        folder.mkdir(parents=True, exist_ok=True)
        return folder
    trial.init_local_path()
    return Path(trial.local_path)


def result_file(trial, name: str) -> Path:
    """The path of the trial's result file ``name`` (in :func:`trial_folder`)."""
    return trial_folder(trial) / name


class _ResultFile:
    """A result-file logger that appends to :func:`result_file`, and, at a trial's first result
    after a restore, first drops the rows a resume would repeat: those of that iteration and
    later (recorded between the checkpoint it resumed from and the kill) and a last line cut
    short."""

    FILE = ""

    def _open(self, trial):
        return result_file(trial, self.FILE).open("at")

    def log_trial_result(self, iteration: int, trial, result: dict) -> None:
        if result.get("iterations_since_restore") == 1:  # a trial's first result in this run
            if trial in self._trial_files:
                self._trial_files[trial].flush()
            drop_rows_from(result_file(trial, self.FILE), result["training_iteration"])
        super().log_trial_result(iteration, trial, result)


class JsonLogger(_ResultFile, JsonLoggerCallback):
    """Tune's ``result.json`` writer, minus the images: a trajectory plot would otherwise add
    ~0.4 MB of JSON numbers per validation. Passing it replaces Tune's default JSON logger."""

    FILE = "result.json"

    def log_trial_start(self, trial) -> None:
        if trial in self._trial_files:
            self._trial_files[trial].close()
        self.update_config(trial, trial.config)
        self._trial_files[trial] = self._open(trial)

    def update_config(self, trial, config: dict) -> None:
        """Tune's ``params.json`` and ``params.pkl``, written into :func:`trial_folder`."""
        self._trial_configs[trial] = config
        write_atomically(
            result_file(trial, EXPR_PARAM_FILE),
            json.dumps(config, indent=2, sort_keys=True, cls=SafeFallbackEncoder).encode(),
        )
        write_atomically(result_file(trial, EXPR_PARAM_PICKLE_FILE), cloudpickle.dumps(config))

    def log_trial_result(self, iteration: int, trial, result: dict) -> None:
        super().log_trial_result(iteration, trial, without_images(result))


class CsvLogger(_ResultFile, CSVLoggerCallback):
    """Tune's ``progress.csv`` writer (passing it replaces Tune's default one)."""

    FILE = "progress.csv"

    def _setup_trial(self, trial) -> None:
        if trial in self._trial_files:
            self._trial_files[trial].close()
        path = result_file(trial, self.FILE)
        self._trial_continue[trial] = path.exists() and path.stat().st_size > 0
        self._trial_files[trial] = self._open(trial)
        self._trial_csv[trial] = None


def _reads_as_json(data: bytes) -> None:
    json.loads(data)


def _reads_as_pickle(data: bytes) -> None:
    cloudpickle.loads(data)


# Tune's files that a resume reads, each with the copy kept of its newest version that read (in
# the experiment folder) and how it must read: the experiment state (the trials) and the search
# algorithm's state (which trials were generated; without it a resume generates them anew).
STATES = {
    "experiment_state-*.json": (".tesp_experiment_state.json", _reads_as_json),
    "basic-variant-state-*.json": (".tesp_search_state.pkl", _reads_as_pickle),
}


class StateBackup(tune.Callback):
    """Keeps a copy of the newest version of each of Tune's state files (:data:`STATES`) that
    reads (written to a temporary name, then renamed). A full disk can leave Tune's own files
    empty or cut, and Tune cannot resume from them (it starts the trials anew);
    :func:`repair_state` puts the copies back."""

    def __init__(self) -> None:
        self._copied: dict[Path, float] = {}

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self._backup(trial)

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
        self._backup(trial)

    def _backup(self, trial) -> None:
        # Tune writes its files in a staging folder and copies them to the results folder; the
        # copies kept here go straight to the results folder (local storage only), so that
        # Tune's copying, cut short by a full disk, cannot cut them too.
        storage = trial.storage
        if storage.storage_filesystem.type_name != "local":
            return
        experiment = Path(storage.experiment_fs_path)
        staging = Path(storage.experiment_driver_staging_path)
        for pattern, (copy, check) in STATES.items():
            # The driver's own file is the freshest (the results folder's is copied from it later).
            state = newest_state(staging, pattern) or newest_state(experiment, pattern)
            if state is None:
                continue
            try:
                mtime = state.stat().st_mtime
                if self._copied.get(state) == mtime:
                    continue
                data = state.read_bytes()
                check(data)
                write_atomically(experiment / copy, data)
                self._copied[state] = mtime
            except Exception:  # a file being written, or no room for the copy: keep the older copy
                pass


def newest_state(experiment: Path, pattern: str = "experiment_state-*.json") -> Path | None:
    states = sorted(experiment.glob(pattern))
    return states[-1] if states else None


def reopen_short_trials(experiment: Path, target: int) -> list[str]:
    """Before a resume: mark as paused (unfinished) every trial that Tune's newest state calls
    finished although its ``result.json`` stops short of ``target`` iterations. A driver that
    failed (a full disk) can leave a trial marked finished mid-run; Tune resumed such a trial
    for one iteration and then ended it (exit 130, 2 of 3 runs on 2026-12-07). Returns the
    trials reopened."""
    state, data = _read_state(experiment)
    trials = data.get("trial_data") if data else None
    if not isinstance(trials, list):
        return []
    reopened = []
    for entry in trials:
        try:
            trial = json.loads(entry[0])
        except (ValueError, TypeError, IndexError):
            continue
        folder = experiment / str(trial.get("relative_logdir", ""))
        if trial.get("status") == "TERMINATED" and _last_iteration(folder / "result.json") < target:
            trial["status"] = "PAUSED"
            entry[0] = json.dumps(trial)
            reopened.append(str(trial.get("trial_id")))
    if reopened:
        write_atomically(state, json.dumps(data))
    return reopened


def drop_stale_decisions(experiment: Path) -> list[str]:
    """Before a resume: forget the decisions (continue, pause, stop) Tune's newest state holds
    for trials whose checkpoint was being saved when the driver stopped. Tune restores them with
    the state and acts on them after the resumed trial's first checkpoint: a trial that had
    failed on a full disk was stopped again after one iteration (exit 130; 1 run in 8 of the
    full-disk test, 2026-12-07). Returns the trials whose decision was dropped."""
    state, data = _read_state(experiment)
    runner = data.get("runner_data") if data else None
    if not isinstance(runner, dict):
        return []
    dropped = []
    for key in ("_cached_trial_decisions", "_queued_trial_decisions"):
        if isinstance(runner.get(key), dict) and runner[key]:
            dropped += list(runner[key])
            runner[key] = {}
    if dropped:
        write_atomically(state, json.dumps(data))
    return dropped


def restore_trial_params(experiment: Path) -> list[str]:
    """Write the ``params.json`` of every trial folder in ``experiment`` that lacks one, from the
    trial's config in Tune's newest experiment state; returns the folders written to. Runs made
    before :class:`JsonLogger` wrote it straight into the results folder lost it when Tune's
    staging copy did not reach the results folder (10 of the 75 trials of a study run in
    2026-12; the report and the tests find trials by it)."""
    _, data = _read_state(experiment)
    entries = data.get("trial_data") if data else None
    written = []
    for entry in entries if isinstance(entries, list) else []:
        try:
            trial = json.loads(entry[0])
            folder = experiment / trial["relative_logdir"]
            if not folder.is_dir() or (folder / EXPR_PARAM_FILE).exists():
                continue
            # the config's values; the objects Tune pickled into its state (classes, functions:
            # RLlib's internals) are named, not unpickled (that would run code from the file)
            config = json.loads(json.dumps(trial["config"]), object_hook=_unpickled_as_a_name)
            text = json.dumps(config, indent=2, sort_keys=True)
        except Exception:  # an entry that does not read: leave its folder as it is
            continue
        write_atomically(folder / EXPR_PARAM_FILE, text)
        written.append(folder.name)
    return written


def _unpickled_as_a_name(value: dict):
    if value.get("_type") == "CLOUDPICKLE_FALLBACK":
        return "<a Python object in Tune's state>"
    return value


def _read_state(experiment: Path) -> tuple[Path | None, dict | None]:
    """Tune's newest experiment state in ``experiment`` and its contents (None where it is
    missing or does not read)."""
    state = newest_state(experiment)
    if state is None:
        return None, None
    try:
        data = json.loads(state.read_text())
    except (OSError, ValueError):
        return state, None
    return state, data if isinstance(data, dict) else None


def _last_iteration(result_file: Path) -> int:
    last = 0
    try:
        text = result_file.read_text(errors="replace")
    except OSError:
        return 0
    for line in text.splitlines():
        try:
            last = max(last, int(json.loads(line)["training_iteration"]))
        except (ValueError, KeyError, TypeError):
            continue
    return last


def repair_state(experiment: Path) -> list[str]:
    """Before a resume: each of Tune's newest state files (:data:`STATES`) that does not read is
    replaced by its copy if that reads. Returns one line per file repaired or left broken."""
    notes = []
    for pattern, (copy, check) in STATES.items():
        state = newest_state(experiment, pattern)
        if state is None:
            continue
        try:
            check(state.read_bytes())
            continue
        except Exception:
            pass
        try:
            data = (experiment / copy).read_bytes()
            check(data)
        except Exception:
            notes.append(f"{state.name} is unreadable and no copy of it reads; Tune's own error follows")
            continue
        write_atomically(state, data)
        notes.append(
            f"{state.name} was unreadable (cut short by a failed write); restored its last good copy"
        )
    return notes


#: Result sections that are Tune's and RLlib's bookkeeping (under ``ray/`` in TensorBoard); every
#: other section of a result is a method's own metrics (``meta``, ``validation``, a method's own
#: namespace), shown at the top level.
RAY_SECTIONS = (
    "env_runners", "learners", "perf", "timers", "counters", "fault_tolerance", "info", "config",
    "env_runner_group", "evaluation", "sampler_results", "custom_metrics", "hist_stats",
)  # fmt: skip
#: RLlib's per-episode metrics a single-policy run (``--alg ppo``, ``primitives``) is judged by.
EPISODE_METRICS = ("episode_return_mean", "episode_len_mean", "success", "obstacles_passed")


def tensorboard_tag(key: str) -> str | None:
    """The TensorBoard tag of a flattened result key: tesp's metrics under short top-level tags
    (``meta/return_post``, ``validation/Dpp/return_post``: pools named D, Dp, Dpp as TensorBoard
    allows no quotes and as the report's files are named), an episode metric under
    ``episodes/``, the rest under ``ray/`` (None: not logged)."""
    section, _, rest = key.partition("/")
    if rest and section not in RAY_SECTIONS:
        return key.replace("''", "pp").replace("'", "p")
    if section == "env_runners" and rest in EPISODE_METRICS:
        return f"episodes/{rest}"
    if key in ("done", "pid", "timestamp", "config") or section == "config":
        return None
    return f"ray/{key}"


def tracked_scalars(result: dict) -> dict[str, float]:
    """The result's finite numbers under their TensorBoard tags (:func:`tensorboard_tag`), as
    TensorBoard and the experiment trackers (:mod:`tesp.commands.trackers`) log them."""
    out = {}
    for key, value in flatten_dict(result, delimiter="/").items():
        tag = tensorboard_tag(key)
        if (
            tag is not None
            and isinstance(value, (int, float, np.integer, np.floating))
            and not isinstance(value, bool)
            and np.isfinite(value)
        ):
            out[tag] = float(value)
    return out


class TensorBoardLogger(TBXLoggerCallback):
    """Tune's TensorBoard writer with tesp's tags (:func:`tensorboard_tag`) instead of one
    ``ray/tune/...`` group of ~300; passing it replaces Tune's default one."""

    def log_trial_start(self, trial) -> None:
        """Tune's, with the event files written into :func:`trial_folder`."""
        if trial in self._trial_writer:
            self._trial_writer[trial].close()
        self._trial_writer[trial] = self._summary_writer_cls(str(trial_folder(trial)), flush_secs=30)
        self._trial_result[trial] = {}

    def log_trial_result(self, iteration: int, trial, result: dict) -> None:
        if trial not in self._trial_writer:
            self.log_trial_start(trial)
        writer = self._trial_writer[trial]
        step = result.get("training_iteration", iteration)
        for key, value in flatten_dict(result, delimiter="/").items():
            tag = tensorboard_tag(key)
            if tag is not None and isinstance(value, np.ndarray) and value.ndim == 3:
                writer.add_image(tag, value, global_step=step)
        for tag, value in tracked_scalars(result).items():
            writer.add_scalar(tag, value, global_step=step)
        writer.flush()

    def log_trial_end(self, trial, failed: bool = False) -> None:
        if trial in self._trial_writer:
            self._trial_writer[trial].close()
            del self._trial_writer[trial]
            self._trial_result.pop(trial, None)
