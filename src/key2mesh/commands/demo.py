"""`key2mesh demo` (not implemented yet)."""

from __future__ import annotations

import argparse

from key2mesh.errors import NotImplementedYet

HELP = "(demo: not implemented yet)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("args", nargs="*", help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    raise NotImplementedYet("'key2mesh demo' is planned; see the open issues")
