"""Errors and warnings raised by :mod:`resnetlab.data`.

Every problem with the user's data (a missing folder, a corrupt image, a bad download, a damaged archive) is
reported as a :class:`DataError` whose message says what went wrong *and* what to do about it. The command
line prints ``error: <message>`` and exits with status 1, so the message must stand on its own.
"""

from __future__ import annotations

from ..errors import ResNetLabError

__all__ = ["DATA_HINT", "DataError", "DataWarning"]

# What --data takes, for messages about data that is missing or of the wrong kind.
DATA_HINT = "pass --data <image-folder root | cifar-10-python.tar.gz | cifar10 | cifar100>"


class DataError(ResNetLabError):
    """A data input is missing, malformed or corrupt; the message names the file and says what to do."""


class DataWarning(UserWarning):
    """A data problem that was worked around (skipped images, a rebuilt cache, an unofficial archive)."""
