"""Bad input, said in one line: the error type every command raises for a bad user-supplied
value, the parser and exit that turn it into one ``error:`` line and exit code 2, and the check
that a results folder can be written. Imports nothing of tesp: every layer may use it."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import NoReturn

EXIT_BAD_INPUT = 2


class ConfigError(ValueError):
    """A bad user-supplied setting; the message is one line naming the value and the valid choices."""


class OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        fail(f"{message} (see --help)")


def fail(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(EXIT_BAD_INPUT)


def check_writable(path: str, flag: str) -> None:
    """``path`` exists as a writable folder, or can be created (its nearest existing parent is)."""
    existing = Path(path).resolve()
    if str(existing).startswith(("/proc/", "/sys/", "/dev/")) or str(existing) in ("/proc", "/sys", "/dev"):
        raise ConfigError(
            f"{flag} {path!r} is under a system folder ({str(existing).split('/')[1]}), not a place for results"
        )
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag} {path!r} cannot be written ({str(existing)!r} is not a writable folder)")
