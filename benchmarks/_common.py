"""Shared helpers of the benchmarks: timing with warm-up, a random pose batch, and the results
file each benchmark writes (:func:`record_results`)."""

from __future__ import annotations

import atexit
import datetime
import io
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch


def timeit(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` in seconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def timeit_interleaved(
    fns: dict[str, Callable[[], object]], rounds: int = 7, repeats: int = 5
) -> dict[str, float]:
    """Median over ``rounds`` of each ``fn``'s mean wall time (s) over ``repeats`` calls, the
    functions taking turns in every round: an A/B ratio measured this way is not skewed by the
    machine's speed drifting during the run."""
    for fn in fns.values():
        fn()  # warm-up
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for key, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(repeats):
                fn()
            times[key].append((time.perf_counter() - t0) / repeats)
    return {k: sorted(v)[len(v) // 2] for k, v in times.items()}


def random_poses(n: int, scale: float = 0.3, seed: int = 0) -> torch.Tensor:
    from key2mesh.geometry.rotations import axis_angle_to_matrix

    g = torch.Generator().manual_seed(seed)
    return axis_angle_to_matrix(scale * torch.randn(n, 24, 3, generator=g))


RESULTS = Path(__file__).resolve().parent / "results"


def _machine() -> str:
    """CPU model, cores, torch/Python versions and the load average (this machine is shared)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return (
        f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"Python {platform.python_version()}; load average at the end: {load}"
    )


def _commit() -> str:
    root = Path(__file__).resolve().parents[1]
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return (rev or "unknown") + (" (with uncommitted changes)" if dirty else "")


class _Tee(io.TextIOBase):
    def __init__(self, stream) -> None:
        self.stream, self.parts = stream, []

    def write(self, text: str) -> int:
        self.parts.append(text)
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()


def results_header(title: str, command: str | None = None) -> str:
    """The header of a results file: title, command (default: this process's), commit, machine
    and date, as markdown lines (a blank line and the body follow)."""
    if command is None:
        command = " ".join(["python", *[shlex.quote(x) for x in sys.argv]])
    return (
        f"**{title}**\n\n"
        f"- command: `{command}`\n"
        f"- commit: {_commit()}\n"
        f"- machine: {_machine()}\n"
        f"- date: {datetime.date.today().isoformat()}\n"
    )


def result_line(values: dict[str, float], digits: int = 3, **extra) -> str:
    """The machine-readable last line: ``RESULT key=value ...`` (``digits`` significant digits),
    then ``extra`` as given (e.g. ``threads=2``)."""
    parts = [f"{k}={v:.{digits}g}" for k, v in values.items()] + [
        f"{k}={v}" for k, v in extra.items()
    ]
    return "RESULT " + " ".join(parts)


def record_results(name: str, title: str, markdown: bool = False) -> Path:
    """Write what this run prints into ``benchmarks/results/<name>.md`` when it ends with a
    ``RESULT`` line, under a header with the command, commit, machine and date (the docs
    include these files instead of retyping numbers). ``markdown``: the printed text is markdown
    (a table) rather than plain text. Returns the path."""
    path = RESULTS / f"{name}.md"
    tee = _Tee(sys.stdout)
    sys.stdout = tee
    command = " ".join(["python", *[shlex.quote(x) for x in sys.argv]])

    def write() -> None:
        sys.stdout = tee.stream
        text = "".join(tee.parts).rstrip()
        if "RESULT " not in text:  # a failed or interrupted run writes nothing
            return
        body = text if markdown else f"```text\n{text}\n```"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(results_header(title, command) + "\n" + body + "\n")
        print(f"wrote {path.relative_to(RESULTS.parent.parent)}")

    atexit.register(write)
    return path
