"""User-facing errors: the CLI prints their message in one line and exits with code 2."""

from __future__ import annotations


class TonguesError(Exception):
    """An error caused by the user's input (a file, a flag, a recipe key), not by a bug.

    The message must say what was wrong, where (file, line or key) and what would be right.
    """


class ConfigError(TonguesError):
    """A recipe or a command-line value that does not validate."""


class DataError(TonguesError):
    """Input data that cannot be used: missing, unreadable, empty, or all filtered away."""
