"""The old place of :mod:`tesp.commands.train`, kept so that experiments started before the move
(whose Tune state pickles its classes under this name) still resume."""

from tesp.commands.train import *  # noqa: F403
