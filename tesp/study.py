"""The old place of :mod:`tesp.commands.study`, kept so that experiments started before the move
(whose Tune state pickles its classes under this name) still resume."""

from tesp.commands.study import *  # noqa: F403
