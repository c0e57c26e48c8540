"""Ray token auth for drivers that join a running cluster (``--address``).

Ray 2.60 clusters check a token on every connection, but a driver that joins one sends its token
only in token mode, and Ray reads the mode once, when it is first imported. So the entry points
call :func:`prepare_client_auth` before anything imports Ray. It changes nothing for a local run
(``ray.init()`` starting its own Ray) and never overrides an explicit ``RAY_AUTH_MODE``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence


def token_at_hand() -> bool:
    """A token in RAY_AUTH_TOKEN, a file named by RAY_AUTH_TOKEN_PATH, or ~/.ray/auth_token."""
    return bool(os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")) or os.path.isfile(
        os.path.expanduser("~/.ray/auth_token")
    )


def prepare_client_auth(argv: Sequence[str]) -> None:
    joining = any(a == "--address" or a.startswith("--address=") for a in argv)
    if joining and token_at_hand():
        os.environ.setdefault("RAY_AUTH_MODE", "token")
