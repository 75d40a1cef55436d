"""Throughput of ``key2mesh batch`` on a small corpus (the five named demo videos by default,
60 frames each), with 1 and 2 worker processes: the real command in a subprocess (imports,
model loads and detector start-ups included), then a second run on the same folder, which must
skip every input. Each worker process imports and loads the model once (~2-3 s here, longer when
two start at once), so inputs much shorter than that measure start-up rather than throughput.

    .venv/bin/python benchmarks/batch.py [--workers 1 2] [--repeats 3]
        [--inputs sports2d pose2sim-cam01 ...] [--frames 0:120:2]

The worker counts are run in turn, ``--repeats`` times (1, 2, 1, 2, ...: this shared machine's
speed drifts over minutes), and each count's median wall time is reported with its fastest and
slowest run. ``videos_per_hour_wN`` is inputs / median wall time of a first run with N workers;
``speedup_w2`` is the 1-worker median over the 2-worker one. The last line is
``RESULT videos_per_hour_w1=... videos_per_hour_w2=... ...``.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import record_results, result_line

DEMOS = ["sports2d", "pose2sim-cam01", "pose2sim-cam02", "pose2sim-cam03", "pose2sim-cam04"]


def run(cmd: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): {' '.join(cmd)}\n{done.stderr[-2000:]}")
    return time.perf_counter() - start


def one_run(inputs: list[str], frames: str, workers: int) -> tuple[float, float, str]:
    """(first run's wall s, rerun's wall s, the first manifest in one line)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "batch"
        cmd = [sys.executable, "-m", "key2mesh.cli", "batch", *inputs, "--out", str(out)]
        cmd += ["--frames", frames, "--workers", str(workers)]
        wall = run(cmd)
        with open(out / "manifest.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        first = ", ".join(f"{r['input']}: {r['status']} {r['people']} p" for r in rows)
        rerun = run(cmd)
        with open(out / "manifest.csv", newline="") as f:
            again = [r["status"] for r in csv.DictReader(f)]
        if any(r["status"] != "ok" for r in rows) or any(s != "skipped" for s in again):
            sys.exit(f"unexpected manifest: {rows} then {again}")
    return wall, rerun, first


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--repeats", type=int, default=3, help="runs per worker count, alternating")
    p.add_argument("--inputs", nargs="+", default=DEMOS)
    p.add_argument("--frames", default="0:120:2")
    a = p.parse_args()
    record_results("batch", "key2mesh batch: videos per hour, CPU")
    print(f"inputs {' '.join(a.inputs)}, --frames {a.frames}, {a.repeats} runs per worker count")
    walls: dict[int, list[float]] = {w: [] for w in a.workers}
    reruns: dict[int, list[float]] = {w: [] for w in a.workers}
    manifest = ""
    for _ in range(a.repeats):
        for workers in a.workers:
            wall, rerun, manifest = one_run(a.inputs, a.frames, workers)
            walls[workers].append(wall)
            reruns[workers].append(rerun)
    print(f"first run's manifest: {manifest}")
    print(
        f"{'workers':>7} {'wall s (median)':>16} {'fastest-slowest s':>18} {'videos/h':>9} {'rerun s':>8}"
    )
    res: dict[str, float] = {}
    for workers in a.workers:
        wall = statistics.median(walls[workers])
        per_hour = 3600 * len(a.inputs) / wall
        spread = f"{min(walls[workers]):.1f}-{max(walls[workers]):.1f}"
        rerun = statistics.median(reruns[workers])
        print(f"{workers:>7} {wall:>16.1f} {spread:>18} {per_hour:>9.0f} {rerun:>8.1f}")
        res[f"videos_per_hour_w{workers}"] = per_hour
        res[f"wall_s_w{workers}"] = wall
    if 1 in walls and 2 in walls:
        res["speedup_w2"] = statistics.median(walls[1]) / statistics.median(walls[2])
    print(result_line(res, inputs=len(a.inputs)))


if __name__ == "__main__":
    main()
