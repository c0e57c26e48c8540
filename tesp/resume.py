"""Resume from the newest checkpoint kept when Tune's experiment state names one it deleted.

Tune deletes a trial's older checkpoints as soon as it registers a newer one
(``CheckpointConfig(num_to_keep)``), but the experiment state that names the checkpoint to
resume from is written afterwards and copied to storage by a background thread. A kill in
between leaves a state naming a checkpoint that is gone, and ``--resume`` then failed with
Tune's "Could not recover from checkpoint as it does not exist on storage anymore". The
checkpoint to resume from in that case is the newest complete one in the same trial folder:
the one whose registration deleted it. :class:`RestoreNewestKept` goes there instead, so a
kill loses at most the work since the last checkpoint.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ray.tune import Checkpoint

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


class RestoreNewestKept:
    """A Trainable mix-in: ``restore`` of a missing local checkpoint restores the newest
    sibling ``checkpoint_*`` that loads instead (newest first; a partly written one is
    skipped), and raises Tune's own error if none does."""

    def restore(self, checkpoint_path):
        checkpoint = _local_checkpoint(checkpoint_path)
        if checkpoint is None or Path(checkpoint.path).exists():
            return super().restore(checkpoint_path)
        missing = Path(checkpoint.path)
        for candidate in sorted(missing.parent.glob("checkpoint_[0-9]*"), reverse=True):
            if candidate.name < missing.name:
                break  # only a newer checkpoint can have replaced the missing one
            replacement = Checkpoint.from_directory(str(candidate))
            if hasattr(checkpoint_path, "metrics"):  # a training result: keep its metrics
                replacement = type(checkpoint_path)(checkpoint=replacement, metrics=checkpoint_path.metrics)
            try:
                super().restore(replacement)
            except Exception as e:  # noqa: BLE001 - a partly written checkpoint: try the next
                logger.warning("checkpoint %s could not be restored (%s); trying an older one", candidate, e)
                continue
            logger.warning(
                "%s no longer exists (Tune deleted it before its experiment state named a newer "
                "one); restored %s, the newest checkpoint kept",
                missing,
                candidate,
            )
            return None
        return super().restore(checkpoint_path)
