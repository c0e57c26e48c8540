"""Finding a primitive's checkpoint from what the user gives (a checkpoint, trial or experiment folder)."""

from __future__ import annotations

from pathlib import Path


def policy_checkpoint(path: str | Path) -> Path:
    """The checkpoint folder of a single policy (a checkpoint, or a trial or experiment folder's
    newest); raises ValueError naming ``path``."""
    from tesp.config_overrides import ConfigError
    from tesp.evaluate import find_checkpoint
    from tesp.policy_eval import MODULE_DIR, is_policy_checkpoint

    try:
        checkpoint = find_checkpoint(str(path))
    except ConfigError as e:
        raise ValueError(f"primitives: {e}") from None
    if not is_policy_checkpoint(checkpoint):
        raise ValueError(
            f"primitives: {str(path)!r} is not a single policy's checkpoint (no {MODULE_DIR}/default_policy)"
        )
    return checkpoint
