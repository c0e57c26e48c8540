"""The old place of :mod:`tesp.commands.progress`, kept so that experiments started before the move
(whose Tune state pickles its classes under this name) still resume."""

from tesp.commands.progress import *  # noqa: F403
