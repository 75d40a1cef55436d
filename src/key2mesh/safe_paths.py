"""Turning names read from input files into file names (never a path out of the output folder)."""

from __future__ import annotations

import re
from collections.abc import Iterable

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
MAX_NAME = 120  # characters; leaves room for suffixes within the usual 255-byte limit


def safe_name(name: object, default: str = "frame") -> str:
    """A plain file name from ``name``: only ``[A-Za-z0-9._-]`` (every other run of characters,
    path separators and NUL included, becomes ``_``), no leading dots or underscores, at most
    ``MAX_NAME`` characters; ``default`` when nothing is left. ``"../../evil"`` → ``"evil"``,
    ``"/etc/passwd"`` → ``"etc_passwd"``."""
    text = _UNSAFE.sub("_", str(name)).lstrip("._")[:MAX_NAME].rstrip("_")
    return text if text.strip(".") else default


def unique_names(names: Iterable[object], default: str = "frame") -> list[str]:
    """:func:`safe_name` of each name, made unique in order: ``a``, ``a_1``, ``a_2``, ...
    (case-insensitively, so they stay distinct on case-insensitive file systems)."""
    used: set[str] = set()
    out = []
    for name in names:
        base = safe_name(name, default)
        candidate, i = base, 0
        while candidate.lower() in used:
            i += 1
            candidate = f"{base}_{i}"
        used.add(candidate.lower())
        out.append(candidate)
    return out
