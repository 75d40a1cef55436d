"""Throughput of ``key2mesh batch`` on the demo videos, with 1 and 2 worker processes: the real
command in a subprocess (imports, model loads and detector start-ups included), then a second
run on the same folder, which must skip every input.

    .venv/bin/python benchmarks/batch.py [--workers 1 2] [--inputs sports2d pose2sim-cam01]
        [--frames 0:40:4]

``videos_per_hour_wN`` is inputs / wall time of the first run with N workers; the last line is
``RESULT videos_per_hour_w1=... videos_per_hour_w2=... ...``.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import record_results


def run(cmd: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): {' '.join(cmd)}\n{done.stderr[-2000:]}")
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--inputs", nargs="+", default=["sports2d", "pose2sim-cam01"])
    p.add_argument("--frames", default="0:40:4")
    a = p.parse_args()
    record_results("batch", "key2mesh batch: videos per hour, CPU")
    print(f"inputs {' '.join(a.inputs)}, --frames {a.frames}")
    print(
        f"{'workers':>7} {'wall s':>7} {'videos/h':>9} {'rerun s':>8} {'manifest (first run)':<40}"
    )
    res: dict[str, float] = {}
    for workers in a.workers:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "batch"
            cmd = [sys.executable, "-m", "key2mesh.cli", "batch", *a.inputs, "--out", str(out)]
            cmd += ["--frames", a.frames, "--workers", str(workers)]
            wall = run(cmd)
            with open(out / "manifest.csv", newline="") as f:
                rows = list(csv.DictReader(f))
            first = ", ".join(
                f"{r['input']}: {r['status']} {r['frames']} fr {r['people']} p" for r in rows
            )
            rerun = run(cmd)
            with open(out / "manifest.csv", newline="") as f:
                again = [r["status"] for r in csv.DictReader(f)]
            if any(r["status"] != "ok" for r in rows) or any(s != "skipped" for s in again):
                sys.exit(f"unexpected manifest: {rows} then {again}")
        per_hour = 3600 * len(a.inputs) / wall
        print(f"{workers:>7} {wall:>7.1f} {per_hour:>9.0f} {rerun:>8.1f} {first:<40}")
        res[f"videos_per_hour_w{workers}"] = per_hour
        res[f"wall_s_w{workers}"] = wall
    print("RESULT " + " ".join(f"{k}={v:.3g}" for k, v in res.items()))


if __name__ == "__main__":
    main()
