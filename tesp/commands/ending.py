"""How a training run ends: at its iteration target (the stopper a resume can raise), on a
signal (exit 130 / 143 after the summary), on a failure of the driver (one line naming the
cause: a full disk, a lost cluster), and the end-of-run block with the resume command."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

from ray.tune.stopper import Stopper


def short_of(experiment: str, target: int) -> bool:
    """Whether some trial of the experiment logged fewer than ``target`` iterations."""
    for result in Path(experiment).glob("*/result.json"):
        last = 0
        for line in result.read_text(errors="replace").splitlines():
            try:
                last = max(last, int(json.loads(line)["training_iteration"]))
            except (ValueError, KeyError, TypeError):
                continue
        if last < target:
            return True
    return False


EXIT_INTERRUPTED = 130  # Ctrl+C (128 + SIGINT)
EXIT_TERMINATED = 143  # SIGTERM (128 + SIGTERM)


def catch_sigterm() -> dict[str, bool]:
    """Make SIGTERM stop the run as Ctrl+C does (Tune ends the trials and saves its state, and
    the summary and the resume command are printed) instead of killing the driver: it raises
    SIGUSR1, which Tune treats as Ctrl+C. Returns a dict whose ``"term"`` says it came."""
    seen: dict[str, bool] = {}

    def on_term(signum, frame):
        seen["term"] = True
        os.kill(os.getpid(), signal.SIGUSR1)

    if hasattr(signal, "SIGUSR1"):
        signal.signal(signal.SIGTERM, on_term)
    return seen


class IterationStop(Stopper):
    """Stop a trial at ``target`` training iterations. The driver's :attr:`target` (set by the
    command that runs, e.g. a resume with a larger ``--stop-iters``) wins over the one pickled
    with the experiment, so a resumed experiment can be made longer."""

    target: int | None = None

    def __init__(self, stop_iters: int) -> None:
        self.stop_iters = stop_iters

    def __call__(self, trial_id: str, result: dict) -> bool:
        limit = IterationStop.target or self.stop_iters
        return result.get("training_iteration", 0) >= limit

    def stop_all(self) -> bool:
        return False


def cause_line(error: BaseException | None, path: str | None = None) -> str:
    """The first line of what really stopped a trial or the driver: the original exception in a
    Ray task's error (not ``ray::MAML.train() (pid=...)``), and, when the results folder's disk
    is full, that (a full disk can leave the error itself unwritten)."""
    text = ""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        cause = getattr(error, "cause", None)
        if isinstance(cause, BaseException) and cause is not error:
            error = cause
            continue
        text = f"{type(error).__name__}: {error}".strip()
        break
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    # A traceback flattened into the message: its last "SomeError: ..." line is the cause.
    errors = [
        line for line in lines if ":" in line and line.split(":", 1)[0].endswith(("Error", "Exception"))
    ]
    line = errors[-1] if errors else (lines[0] if lines else "unknown error")
    if path is not None:
        free = disk_free(path)
        if free is not None and free < 1 << 20:
            line = f"no space left on the device of {path} ({free} bytes free); {line}"
    return line


def disk_free(path: str) -> int | None:
    import shutil

    probe = Path(path)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        return shutil.disk_usage(probe).free
    except OSError:
        return None


def report(results, experiment_path: str, summary, target: int) -> int:
    """The end-of-run block: per trial, how it ended (finished, FAILED with its cause, or
    interrupted at iteration N), where its results and newest complete checkpoint are; then the
    resume command. Returns the exit code (1: a trial failed; 130: interrupted)."""
    from tesp import checkpoints

    failed = interrupted = 0
    print(f"\nExperiment: {experiment_path}")
    for result in results:
        metrics = result.metrics or {}
        iters = metrics.get("training_iteration", 0)
        if result.error is not None:
            failed += 1
            print(f"  trial FAILED after {iters} iterations: {cause_line(result.error, str(result.path))}")
        elif iters < target:
            interrupted += 1
            done = f": {summary(metrics).splitlines()[0]}" if iters else " (before its first result)"
            print(f"  trial interrupted at iteration {iters} of {target}{done}")
        else:
            print(f"  trial finished {iters} iterations: {summary(metrics).splitlines()[0]}")
        print(f"    results (progress.csv, result.json, TensorBoard): {result.path}")
        newest = checkpoints.newest_complete(result.path) if result.path else None
        if newest is not None:
            print(f"    last checkpoint: {newest}")
    print(f"Resume with: python main_train.py --resume {experiment_path}")
    if failed:
        return 1
    return EXIT_INTERRUPTED if interrupted else 0
