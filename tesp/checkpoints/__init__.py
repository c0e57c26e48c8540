"""Checkpoint folders that are complete or do not count: a manifest written last.

A checkpoint is written file by file (RLlib's state files, then Tune copies the folder to the
results folder), so a full disk or a kill can leave one half written: files missing, or present
with zero bytes. Every tesp algorithm writes :data:`MANIFEST` as the last file of its checkpoint
(:func:`write_manifest`): each file's size and the training iteration. A checkpoint counts only
when the manifest is there and every file it lists has its size (:func:`is_complete`); the
manifest itself is written to a temporary name and renamed, so it is never partial. Everything
that picks a checkpoint (``--resume``, ``main_test.py``, ``main_render.py``, ``init_from``) goes
through :func:`newest_complete` or :func:`check_complete`.

Checkpoints written before manifests existed have none; in a trial folder where no checkpoint has
one, a checkpoint counts when none of its files is empty and its RLlib metadata reads.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from tesp.errors import ConfigError

MANIFEST = "tesp_checkpoint.json"
RLLIB_METADATA = "rllib_checkpoint.json"


class IncompleteCheckpoint(ValueError):
    """A checkpoint folder that was not completely written."""


def write_atomically(path: str | os.PathLike, text: str | bytes) -> None:
    """Write ``text`` to ``path`` so that a reader sees the old file or the whole new one, never a
    part: to a temporary name beside it, flushed to disk, then renamed over it."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb" if isinstance(text, bytes) else "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_manifest(folder: str | os.PathLike, training_iteration: int) -> None:
    """Record every file of the checkpoint ``folder`` with its size, last (atomically)."""
    root = Path(folder)
    files = {
        str(p.relative_to(root)): p.stat().st_size
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }
    write_atomically(
        root / MANIFEST, json.dumps({"training_iteration": int(training_iteration), "files": files})
    )


def read_manifest(folder: str | os.PathLike) -> dict | None:
    try:
        return json.loads((Path(folder) / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def problem(folder: str | os.PathLike) -> str | None:
    """Why the checkpoint ``folder`` does not count (None: it is complete)."""
    root = Path(folder)
    if not root.is_dir():
        return "it does not exist" if not root.exists() else "it is not a folder"
    manifest = read_manifest(root)
    if manifest is None:
        if (root / MANIFEST).exists():
            return f"its {MANIFEST} is unreadable"
        if any((sibling / MANIFEST).exists() for sibling in root.parent.glob("checkpoint_*")):
            return f"it has no {MANIFEST} (written last): it was not completely written"
        return _legacy_problem(root)
    for name, size in manifest.get("files", {}).items():
        path = root / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != size:
            return f"{name} has {path.stat().st_size} bytes, not the {size} written"
    return None


def _legacy_problem(root: Path) -> str | None:
    """A checkpoint from before manifests: plausible when no file is empty and RLlib's metadata reads."""
    empty = [p.name for p in root.rglob("*") if p.is_file() and p.stat().st_size == 0]
    if empty:
        return f"{len(empty)} of its files are empty (e.g. {empty[0]})"
    try:
        json.loads((root / RLLIB_METADATA).read_text())
    except (OSError, ValueError):
        return f"its {RLLIB_METADATA} is missing or unreadable"
    return None


def is_complete(folder: str | os.PathLike) -> bool:
    return problem(folder) is None


def check_complete(folder: str | os.PathLike) -> None:
    """Raise :class:`IncompleteCheckpoint` (one line naming the folder and why) unless complete."""
    why = problem(folder)
    if why is not None:
        raise IncompleteCheckpoint(f"checkpoint {str(folder)!r} is incomplete: {why}")


def checkpoints_in(folder: str | os.PathLike) -> list[Path]:
    """The ``checkpoint_*`` folders at or below ``folder``, oldest first (by trial, then by index)."""
    root = Path(folder)
    return sorted(
        (p for p in root.rglob("checkpoint_[0-9]*") if p.is_dir()), key=lambda p: (str(p.parent), p.name)
    )


def newest_complete(folder: str | os.PathLike, below: str | None = None) -> Path | None:
    """The newest complete checkpoint at or below ``folder`` (by modification time across trials,
    by index within one), skipping incomplete ones with a one-line warning each; ``below``: only
    checkpoints whose name sorts before it (an older one of the same trial)."""
    candidates = [c for c in checkpoints_in(folder) if below is None or c.name < below]
    candidates.sort(key=lambda p: (_mtime(p), p.name))
    for candidate in reversed(candidates):
        why = problem(candidate)
        if why is None:
            return candidate
        print(f"warning: skipped checkpoint {candidate}: {why}", file=sys.stderr)
    return None


def iteration_of(folder: str | os.PathLike) -> int | None:
    """The training iteration the checkpoint holds (from its manifest; None without one)."""
    manifest = read_manifest(folder)
    return None if manifest is None else int(manifest["training_iteration"])


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def find_checkpoint(path: str) -> Path:
    """The checkpoint at ``path`` (which must be complete), or the newest complete one below it
    (incomplete ones skipped with a one-line warning each); raises ConfigError."""
    root = Path(os.path.expanduser(path)).resolve()
    if not root.exists():
        raise ConfigError(f"checkpoint {path!r} does not exist")
    if not root.is_dir():
        raise ConfigError(
            f"checkpoint {path!r} is a file; give a checkpoint_NNNNNN folder or a results folder"
        )
    if root.name.startswith("checkpoint_") or (root / "algorithm_state.pkl").exists():
        try:
            check_complete(root)
        except IncompleteCheckpoint as e:
            raise ConfigError(str(e)) from None
        return root
    if not checkpoints_in(root):
        raise ConfigError(f"checkpoint {path!r} holds no checkpoint (expected a checkpoint_NNNNNN folder)")
    found = newest_complete(root)
    if found is None:
        raise ConfigError(f"checkpoint {path!r}: every checkpoint below it is incomplete")
    return found


def saved_config(checkpoint: Path) -> tuple[type, dict[str, Any]]:
    """The Algorithm class and config state saved with ``checkpoint`` (read without Ray)."""
    import pickle

    from ray.rllib.utils.checkpoints import Checkpointable

    try:
        with open(checkpoint / Checkpointable.CLASS_AND_CTOR_ARGS_FILE_NAME, "rb") as f:
            info = pickle.load(f)
        return info["class"], info["ctor_args_and_kwargs"][0][0]
    except (OSError, pickle.UnpicklingError, AttributeError, KeyError, IndexError, ImportError) as e:
        raise ConfigError(f"checkpoint {str(checkpoint)!r} is unreadable ({type(e).__name__}: {e})") from None
