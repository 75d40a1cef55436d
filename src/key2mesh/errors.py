"""User-facing errors.

Every mistake a user can make (a bad file, a wrong keypoint count, a missing model) raises a
:class:`Key2MeshError` with a one-line message naming the file and what was expected. The CLI
prints that line and exits with status 2 instead of showing a traceback.
"""

from __future__ import annotations


class Key2MeshError(Exception):
    """An error caused by user input (files, options, data); the message is one clear line."""


class NotImplementedYet(Key2MeshError):
    """A command that exists in the CLI but is not implemented yet (exit status 3)."""
