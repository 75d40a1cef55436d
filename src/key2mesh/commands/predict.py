"""`key2mesh predict` (not implemented yet)."""

from __future__ import annotations

import argparse

from key2mesh.errors import NotImplementedYet

HELP = "(predict: not implemented yet)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("args", nargs="*", help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    raise NotImplementedYet("'key2mesh predict' is planned; see the open issues")
