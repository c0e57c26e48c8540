"""Finding a primitive's checkpoint from what the user gives (a checkpoint, trial or experiment folder)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def policy_checkpoint(path: str | Path) -> Path:
    """The checkpoint folder of a single policy (a checkpoint, or a trial or experiment folder's
    newest); raises ValueError naming ``path``. A relative path that is not below the working
    directory is looked up below the repository (the shipped skills, ``skills/walker_*``)."""
    from tesp.config_overrides import ConfigError
    from tesp.evaluate import find_checkpoint
    from tesp.policy_eval import MODULE_DIR, is_policy_checkpoint

    given = Path(path).expanduser()
    if not given.is_absolute() and not given.exists() and (REPO / given).exists():
        given = REPO / given
    try:
        checkpoint = find_checkpoint(str(given))
    except ConfigError as e:
        raise ValueError(f"primitives: {e}") from None
    if not is_policy_checkpoint(checkpoint):
        raise ValueError(
            f"primitives: {str(path)!r} is not a single policy's checkpoint (no {MODULE_DIR}/default_policy)"
        )
    return checkpoint
