"""tesp: distributed meta-reinforcement learning on Ray."""

import os as _os

# Ray 2.60 clusters use token auth, but a driver joining one (``--address``) sends its token only
# in token mode, which Ray reads once, when it is first imported. Turn it on when a token is at
# hand (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token); an explicit RAY_AUTH_MODE wins.
if any(_os.environ.get(v) for v in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")) or _os.path.isfile(
    _os.path.expanduser("~/.ray/auth_token")
):
    _os.environ.setdefault("RAY_AUTH_MODE", "token")
