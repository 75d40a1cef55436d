"""The ``key2mesh`` command line: one sub-command per module in :mod:`key2mesh.commands`.

Each command module defines ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``.
User mistakes (:class:`~key2mesh.errors.Key2MeshError`, bad options, an unavailable ``--device``,
files that cannot be read or written) print one line and exit with status 2; commands that are not
implemented yet say so and exit with status 3. ``-v`` shows full tracebacks instead.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import sys

# Transparent huge pages for PyTorch's large CPU buffers (read once, at the first allocation, so
# it is set before torch is imported): a fresh batch of meshes (e.g. 512 x 13,718 vertices) costs
# a third as much in page faults. An explicit THP_MEM_ALLOC_ENABLE=0 in the environment wins.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

from key2mesh import __version__
from key2mesh.errors import Key2MeshError, NotImplementedYet

# name -> module under key2mesh.commands
COMMANDS: dict[str, str] = {
    "info": "info",
    "data": "data",
    "pretrain": "pretrain",
    "adapt": "adapt",
    "predict": "predict",
    "demo": "demo",
    "batch": "batch",
    "export-model": "export",
    "evaluate": "evaluate",
    "fit": "fit",
    "view": "view",
    "live": "live",
}


# old command names kept working (the command prints a deprecation line)
ALIASES: dict[str, list[str]] = {"export-model": ["export"]}


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line (``key2mesh predict: error: ...``), status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="key2mesh",
        description="3D human body meshes from 2D keypoints, adapted to your detector without 3D labels.",
    )
    parser.add_argument("--version", action="version", version=f"key2mesh {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="debug logging and full tracebacks"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(f"key2mesh.commands.{module_name}")
        p = sub.add_parser(
            name, help=module.HELP, description=module.HELP, aliases=ALIASES.get(name, [])
        )
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except (
        SystemExit
    ) as exc:  # --help, --version, usage errors: return the status (in-process callers too)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s"
    )
    if not getattr(args, "_run", None):
        parser.print_help()
        return 1
    try:
        from key2mesh.allocator import keep_large_allocations
        from key2mesh.devices import check_device

        keep_large_allocations()  # large arrays reused, not faulted in again per batch
        if getattr(args, "int8", False) and getattr(args, "device", "") is None:
            args.device = "cpu"  # --device auto with --int8 (a CPU path): not cuda when present
        check_device(getattr(args, "device", None))
        return int(args._run(args) or 0)
    except NotImplementedYet as exc:
        _close_progress_bars()
        print(f"key2mesh {args.command}: not implemented yet: {exc}", file=sys.stderr)
        return 3
    except Key2MeshError as exc:
        if args.verbose:
            raise
        _close_progress_bars()
        print(f"key2mesh {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except (
        OSError
    ) as exc:  # a file that cannot be read or written (disk full, permissions, a folder...)
        if isinstance(exc, BrokenPipeError) and _stdout_gone():
            return _reader_gone()
        if args.verbose:
            raise
        _close_progress_bars()
        where = f"{exc.filename}: " if exc.filename else ""
        print(
            f"key2mesh {args.command}: error: {where}{_one_line(exc.strerror or exc)}",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        _close_progress_bars()
        print("interrupted", file=sys.stderr)
        return 130


def _stdout_gone() -> bool:
    """Whether stdout is a pipe whose reader went away (``key2mesh info | head -1``)."""
    try:
        import select

        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll (Windows), no real stdout
        return False


def _reader_gone() -> int:
    """End quietly, as a command killed by SIGPIPE does (status 141): stdout points at the null
    device so the interpreter's last flush does not print another broken pipe."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return 141


def _close_progress_bars() -> None:
    """Close the progress bars an error left open, so its line starts on a line of its own."""
    tqdm = sys.modules.get("tqdm")
    for bar in list(getattr(getattr(tqdm, "tqdm", None), "_instances", ())):
        with contextlib.suppress(Exception):
            bar.close()


def _one_line(exc: object) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
