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

MIN_KEYPOINTS = (
    6  # key2mesh.keypoints.io.MIN_KEYPOINTS (not imported: that loads torch; a test checks)
)


class _Deprecated(argparse.Action):
    """An old spelling of a flag: stores into the new flag's ``dest`` and prints one warning line."""

    def __init__(self, option_strings, dest, new: str = "", **kw):
        self.new = new
        super().__init__(option_strings, dest, **kw)

    def __call__(self, parser, namespace, values, option_string=None):
        import sys

        print(
            f"warning: {option_string} is deprecated; use {self.new} (same meaning)",
            file=sys.stderr,
        )
        setattr(namespace, self.dest, values)


def add_deprecated_alias(p: argparse.ArgumentParser, old: str, new: str, dest: str) -> None:
    """Keep ``old`` working as a hidden spelling of ``new`` (a one-line warning when used)."""
    p.add_argument(old, dest=dest, action=_Deprecated, new=new, help=argparse.SUPPRESS)


def device_name(text: str) -> str | None:
    """``--device``: ``auto`` (cuda when available, else cpu) → None; other names as given
    (checked by :func:`key2mesh.devices.check_device` before any work)."""
    return None if text.strip().lower() in ("", "auto") else text.strip()


def add_device_argument(p: argparse.ArgumentParser) -> None:
    """``--device`` of the inference commands (``auto`` = None: cuda when available, else cpu)."""
    p.add_argument(
        "--device",
        type=device_name,
        default="auto",
        help="cpu, cuda, cuda:N or auto (cuda when available, else cpu) (default: %(default)s)",
    )


def add_checkpoint_argument(
    p: argparse.ArgumentParser,
    help: str,
    default: str | None = None,
    dest: str = "checkpoint",
    old: tuple[str, ...] = (),
    required: bool = False,
) -> None:
    """``--checkpoint`` (one spelling in every command; ``old`` spellings kept, deprecated)."""
    if default is not None:
        help += " (default: %(default)s)"
    p.add_argument(
        "--checkpoint", dest=dest, default=default, required=required, help=help, metavar="CKPT"
    )
    for spelling in old:
        add_deprecated_alias(p, spelling, "--checkpoint", dest)


# suffixes of files, refused where a folder is expected (``--out``)
FILE_SUFFIXES = (".npz", ".npy", ".json", ".pt", ".csv", ".mp4", ".png", ".jpg", ".txt")


def output_folder(path: str, option: str = "--out", writes: str = "its files"):
    """``--out`` is always a folder: a one-line error for a file name (``x.npz``), an existing
    file or a path under a file, naming what the command writes there."""
    from pathlib import Path

    from key2mesh.errors import Key2MeshError

    p = Path(path)
    if p.suffix.lower() in FILE_SUFFIXES or p.is_file():
        raise Key2MeshError(
            f"{option} {path!r}: {option} is the output folder (the command writes {writes} "
            f"there), not a file; e.g. {option} {p.with_suffix('')}"
        )
    _no_file_above(p, option, path)  # else the first write fails, after the work
    return p


def _no_file_above(p, option: str, path: str) -> None:
    """A one-line error when a folder above ``p`` is an existing file (``path``: as given)."""
    from key2mesh.errors import Key2MeshError

    blocker = next((a for a in p.parents if a.exists() and not a.is_dir()), None)
    if blocker is not None:
        raise Key2MeshError(f"cannot write {option} {path}: {blocker} is a file, not a folder")


def output_file(path: str, option: str = "--out", suffix: str = "", example: str = "results.json"):
    """An output FILE option checked before any work (the write is at the end): the path as it is
    written (``suffix`` appended when missing, as ``np.savez`` does) must not be an existing
    folder, nor lie under a file; a one-line error naming ``option`` (``example``: a file name
    for the hint)."""
    from pathlib import Path

    from key2mesh.errors import Key2MeshError
    from key2mesh.safe_paths import output_file as written_as

    given = Path(path)
    real = written_as(given, suffix) if suffix else given
    for p in dict.fromkeys((given, real)):
        if p.is_dir():
            raise Key2MeshError(
                f"{option} {path!r}: {p} is a folder; {option} names the one file the command "
                f"writes, e.g. {option} {p / example}"
            )
    _no_file_above(real, option, path)
    return real


def add_out_argument(
    p: argparse.ArgumentParser, writes: str, default: str | None = None, dest: str = "out"
) -> None:
    """``--out FOLDER`` (the same meaning in every command: the folder the command writes into)."""
    text = f"output folder: {writes}"
    if default is not None:
        text += " (default: %(default)s)"
    p.add_argument("--out", dest=dest, default=default, metavar="FOLDER", help=text)


SMOOTHING_MODES = ("none", "one-euro", "zero-phase")  # key2mesh.inference.motion.MotionSmoothing
SMOOTH_MIN_CUTOFF, SMOOTH_BETA = 1.0, 0.05  # the One-Euro defaults of --smooth-min-cutoff / -beta


def add_smoothing_arguments(p: argparse.ArgumentParser) -> None:
    """``--smooth [MODE]``, ``--smooth-min-cutoff``, ``--smooth-beta``: temporal smoothing of the
    motion table, per tracked person (one meaning in ``predict`` and ``demo``)."""
    p.add_argument(
        "--smooth",
        nargs="?",
        const="one-euro",
        default="none",
        choices=list(SMOOTHING_MODES),
        help="temporal smoothing per tracked person: one-euro (online; a bare --smooth) or "
        "zero-phase (offline forward-backward) (default: %(default)s)",
    )
    p.add_argument(
        "--smooth-min-cutoff",
        type=positive_float,
        default=SMOOTH_MIN_CUTOFF,
        metavar="HZ",
        help="One-Euro cutoff at rest, Hz (lower: smoother) (default: %(default)s)",
    )
    p.add_argument(
        "--smooth-beta",
        type=non_negative_float,
        default=SMOOTH_BETA,
        help="One-Euro speed coefficient (higher: less lag on fast motion) (default: %(default)s)",
    )


def smoothing(args: argparse.Namespace):
    """The :class:`~key2mesh.inference.motion.MotionSmoothing` of the parsed options; the One-Euro
    settings without a smoothing mode (they would be ignored) are a one-line error."""
    from key2mesh.errors import Key2MeshError
    from key2mesh.inference.motion import MotionSmoothing

    if args.smooth == "none":
        given = [
            flag
            for flag, value, default in (
                ("--smooth-min-cutoff", args.smooth_min_cutoff, SMOOTH_MIN_CUTOFF),
                ("--smooth-beta", args.smooth_beta, SMOOTH_BETA),
            )
            if value != default
        ]
        if given:
            raise Key2MeshError(
                f"{' and '.join(given)} tune the smoothing, which is off (--smooth none, the "
                "default): give --smooth one-euro or --smooth zero-phase too"
            )
    return MotionSmoothing(args.smooth, args.smooth_min_cutoff, args.smooth_beta)
