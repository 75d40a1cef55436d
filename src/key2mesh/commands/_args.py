"""argparse ``type=`` helpers: counts and sizes that must be positive (a bad value is a usage error)."""

from __future__ import annotations

import argparse
import math


def _number(text: str, cast, what: str):
    try:
        value = cast(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return value


def _bounded(cast, what: str, ok):
    """An argparse type: ``cast(text)`` that must satisfy ``ok(value)``, else "expected {what}"."""

    def parse(text: str):
        value = _number(text, cast, what)
        if not ok(value):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    parse.__name__ = what.replace(" ", "_")
    return parse


positive_int = _bounded(int, "a positive integer", lambda v: v >= 1)
non_negative_int = _bounded(int, "an integer >= 0", lambda v: v >= 0)
positive_float = _bounded(float, "a positive number", lambda v: v > 0)
non_negative_float = _bounded(float, "a number >= 0", lambda v: v >= 0)
