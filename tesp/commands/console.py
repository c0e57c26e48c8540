"""A console that is tesp's: Ray's and Tune's own lines off by default, back with ``--verbose``.

Called by every entry point before Ray is imported (Ray and Tune read these switches when they
load); it imports Ray itself after setting them, then quiets Ray's loggers (Ray sets their
levels as it loads). What it turns off, by default:

- Tune's output engine (the configuration table, "View detailed results here", the TensorBoard
  hint pointing at a temporary copy of the results): the legacy reporter at ``verbose=0`` prints
  nothing, and tesp prints one line per iteration and the end-of-run block itself;
- Tune's "experiment state snapshotting has been triggered multiple times" warning, which
  tesp's ``keep_checkpoints: 1`` (a consistent resume point at every checkpoint) triggers by
  design;
- the worker processes' log lines streamed to the driver (RLlib's deprecation notices, "Install
  gputil", "Trainable.setup took ..."; a trial's real error still reaches the end-of-run block,
  with its cause) and the driver's own Ray log lines below ERROR (the token-mode notice,
  "Started a local Ray instance").

Ray's logs stay in its session folder (``/tmp/ray/session_latest/logs``) either way.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence

VERBOSE_FLAG = "--verbose"


def quiet(argv: Sequence[str]) -> bool:
    return VERBOSE_FLAG not in argv


def prepare_console(argv: Sequence[str]) -> None:
    if not quiet(argv):
        return
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    import ray  # noqa: F401 - Ray sets its loggers' levels when it loads: set them after

    for name in ("ray", "ray.tune", "ray.rllib", "ray.train"):
        logging.getLogger(name).setLevel(logging.ERROR)


def ray_init_options(argv: Sequence[str]) -> dict:
    """``ray.init`` keywords: worker logs to the driver only with ``--verbose``."""
    if not quiet(argv):
        return {}
    return {"log_to_driver": False, "logging_level": logging.ERROR}
