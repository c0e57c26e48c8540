"""Checkpoints that are complete or not used, and a resume that finds the right one.

Every tesp Algorithm mixes :class:`CompleteCheckpoints` in:

- ``save_checkpoint`` writes :mod:`tesp.checkpoints`' manifest as the checkpoint's last file, so
  a checkpoint cut short (a full disk, a kill) is recognisable as incomplete;
- ``restore`` of a checkpoint that is incomplete restores the newest complete older one of the
  same trial (with a one-line warning), so a resume after a failed write continues from the last
  complete checkpoint;
- ``restore`` of a complete checkpoint that is not the trial's newest complete one restores the
  newest (Tune's state can name an older one when it was written before the newer ones);
- ``restore`` of a checkpoint that is missing restores the newest complete *newer* one: Tune
  deletes a trial's older checkpoints as soon as it registers a newer one
  (``CheckpointConfig(num_to_keep)``), but writes the experiment state that names the checkpoint
  to resume from afterwards, from a background thread; a kill in between left a state naming a
  checkpoint that is gone ("Could not recover from checkpoint as it does not exist on storage
  anymore"). The one to resume from is then the one whose registration deleted it.

- a trial that Tune starts from scratch although its folder holds complete checkpoints restores
  the newest of them before its first iteration. Tune writes its experiment state from a
  background thread, so the state a resume reads can predate the trial's first checkpoint (a
  driver that died early, e.g. on a full disk); Tune then knows no checkpoint for the trial.

Either way a kill or a failed write loses at most the work since the last complete checkpoint.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ray.tune import Checkpoint

from tesp import checkpoints

logger = logging.getLogger(__name__)


def _local_checkpoint(arg) -> Checkpoint | None:
    """The checkpoint in Trainable.restore's argument (a path, a Checkpoint or a training
    result), when it lives on the local filesystem."""
    checkpoint = getattr(arg, "checkpoint", arg)
    if isinstance(checkpoint, str):
        checkpoint = Checkpoint.from_directory(checkpoint)
    if not isinstance(checkpoint, Checkpoint) or checkpoint.filesystem.type_name != "local":
        return None
    return checkpoint


def _trial_folder(storage) -> Path | None:
    """The trial's folder on the storage, when that storage is the local filesystem."""
    try:
        if storage is None or storage.storage_filesystem.type_name != "local":
            return None
        return Path(storage.trial_fs_path)
    except (AttributeError, RuntimeError):  # no trial (a Trainable built outside Tune)
        return None


class CompleteCheckpoints:
    """A Trainable mix-in (before the Algorithm class): manifests on save, the right checkpoint
    on restore, the trial's own checkpoints when Tune knows none (see the module docstring)."""

    def train(self):
        if self.iteration == 0 and not getattr(self, "_restored", True):
            folder = _trial_folder(getattr(self, "_storage", None))
            newest = checkpoints.newest_complete(folder) if folder is not None and folder.is_dir() else None
            if newest is not None:
                logger.warning(
                    "the trial starts with no checkpoint named; restoring its newest complete one, %s", newest
                )
                self.restore(str(newest))
        return super().train()

    def save_checkpoint(self, checkpoint_dir):
        out = super().save_checkpoint(checkpoint_dir)
        checkpoints.write_manifest(checkpoint_dir, self.iteration)
        return out

    def restore(self, checkpoint_path):
        checkpoint = _local_checkpoint(checkpoint_path)
        if checkpoint is None:
            return super().restore(checkpoint_path)
        named = Path(checkpoint.path)
        why = checkpoints.problem(named)
        if why is None:
            newest = checkpoints.newest_complete(named.parent)
            if newest is not None and newest.name > named.name:
                # Tune named an older checkpoint than the trial's newest complete one (its state
                # was written before the newer ones: a driver that died, e.g. on a full disk)
                logger.warning(
                    "checkpoint %s is not the trial's newest complete one; restoring %s", named, newest
                )
                return self._restore_replacing(checkpoint_path, newest)
            return super().restore(checkpoint_path)
        if named.exists():  # cut short: the newest complete one before it
            candidates = [c for c in sorted(named.parent.glob("checkpoint_[0-9]*")) if c.name < named.name]
        else:  # deleted by Tune after a newer one was registered: only a newer one replaces it
            candidates = [c for c in sorted(named.parent.glob("checkpoint_[0-9]*")) if c.name > named.name]
        for candidate in reversed(candidates):
            problem = checkpoints.problem(candidate)
            if problem is not None:
                logger.warning("skipped checkpoint %s: %s", candidate, problem)
                continue
            logger.warning("checkpoint %s cannot be restored (%s); restoring %s", named, why, candidate)
            return self._restore_replacing(checkpoint_path, candidate)
        return super().restore(checkpoint_path)  # nothing better: Tune's own error

    def _restore_replacing(self, checkpoint_path, folder: Path):
        replacement = Checkpoint.from_directory(str(folder))
        if hasattr(checkpoint_path, "metrics"):  # a training result: keep its metrics
            replacement = type(checkpoint_path)(checkpoint=replacement, metrics=checkpoint_path.metrics)
        return super().restore(replacement)
