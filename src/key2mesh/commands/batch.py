"""`key2mesh batch`: ``key2mesh demo`` over a corpus of videos, resumable, in N processes or on Ray."""

from __future__ import annotations

import argparse
import os
import sys
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path

from key2mesh.commands import demo
from key2mesh.commands._args import positive_int

HELP = "run `key2mesh demo` on many inputs (videos, folders, globs, list files): resumable, N workers or Ray, manifest.csv"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="videos, image folders, folders of videos, glob patterns ('clips/*.mp4'), list files "
        "(.txt: one per line; .csv: first column) or demo names (sports2d, pose2sim-cam01..04)",
    )
    p.add_argument(
        "--out", required=True, help="output folder: OUT/<stem>/ per input and OUT/manifest.csv"
    )
    p.add_argument(
        "--workers",
        type=positive_int,
        default=1,
        help="worker processes, one model each; torch threads split between them "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--retry-failed",
        action="store_true",
        help="run the inputs an earlier run failed on again (default: keep their failed rows)",
    )
    p.add_argument(
        "--ray",
        nargs="?",
        const="auto",
        default=None,
        metavar="ADDRESS",
        help="one Ray task per input: 'auto' (the running cluster, else a local Ray instance; the "
        "default of a bare --ray) or the cluster's address; OUT must be on storage every node "
        "sees (the cluster extra)",
    )
    demo.add_processing_arguments(p)  # every `key2mesh demo` option but its input, --out, --view


def demo_options(args: argparse.Namespace) -> argparse.Namespace:
    """The demo options of a batch command line (picklable: sent to the workers)."""
    keep = {
        k: v
        for k, v in vars(args).items()
        # out: each job gets its own folder (and a moved or re-spelled --out must not count as
        # other options: the markers hold a digest of these)
        if k
        not in ("inputs", "out", "workers", "retry_failed", "ray", "_run", "command", "verbose")
    }
    keep["checkpoint"] = _absolute_checkpoint(keep.get("checkpoint"))
    return argparse.Namespace(**keep, view=None)


def _absolute_checkpoint(spec: str | None) -> str | None:
    """``--checkpoint`` with its files (an ensemble's members too: ``a.pt+b.pt``) as absolute
    paths: Ray workers do not run in this folder (another node, a head started elsewhere);
    shipped model names as they are."""
    if spec is None or Path(spec).is_file():
        return None if spec is None else str(Path(spec).resolve())
    members = [m.strip() for m in spec.split("+")]
    return "+".join(str(Path(m).resolve()) if m and Path(m).is_file() else m for m in members)


_MODELS: dict = {}  # per process: the last model loaded (one per worker)


def demo_job(input: str, out_dir: Path, options: argparse.Namespace) -> dict:
    """``key2mesh demo`` on one input into ``out_dir`` (its console output into
    ``out_dir/log.txt``); the model stays loaded for the process's next input."""
    from key2mesh.inference.predictor import Key2Mesh

    args = argparse.Namespace(**vars(options))
    args.input, args.out, args.view = input, str(out_dir), None
    key = (args.checkpoint, args.device, args.int8)
    with _output_to(out_dir / "log.txt"):  # the model's loading messages too
        if key not in _MODELS:
            _MODELS.clear()
            _MODELS[key] = Key2Mesh.from_pretrained(
                args.checkpoint, device=args.device, int8=args.int8
            )
        report = demo.run_input(args, model=_MODELS[key])
    return {"frames": report.frames, "people": len(report.tracks)}


@contextmanager
def _output_to(path: Path):
    """Send this process's output into ``path`` meanwhile: Python's streams and the file
    descriptors 1 and 2 (MediaPipe's C++ logging writes there directly)."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        # lines in order; a file name that is not UTF-8 escaped, not an error in the demo
        with open(path, "a", encoding="utf-8", errors="backslashreplace", buffering=1) as log:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            with redirect_stdout(log), redirect_stderr(log):
                yield
            log.flush()
    finally:
        for fd, copy in zip((1, 2), saved, strict=True):
            os.dup2(copy, fd)
            os.close(copy)


def run(args: argparse.Namespace) -> int:
    from key2mesh.data.demo_inputs import DEMO_VIDEOS
    from key2mesh.inference.batch import MANIFEST, run_batch, summary

    demo.check_processing_options(demo_options(args))  # a bad option fails here, not per input
    rows = run_batch(
        args.inputs,
        args.out,
        demo_job,
        demo_options(args),
        workers=args.workers,
        retry_failed=args.retry_failed,
        ray=args.ray,
        names=DEMO_VIDEOS,
    )
    line = summary(rows, Path(args.out) / MANIFEST)
    if any(r.status == "failed" for r in rows):
        print(f"key2mesh batch: {line}", file=sys.stderr)
        return 1
    print(line)
    return 0
