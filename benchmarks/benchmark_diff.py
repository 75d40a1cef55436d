"""How far two builds of a benchmark file's 3D ground truth lie apart (e.g. before / after a
change of ``key2mesh data pose2sim``), and whether their inputs are the same.

    .venv/bin/python benchmarks/benchmark_diff.py OLD.npz NEW.npz [--name pose2sim_gt_shift]

Prints the per-joint displacement (mm; median, 90th / 99th percentile, max), how many joints moved
more than 10 / 30 mm and at how many instants, and whether the 2D inputs, confidences, instants
and intrinsics are identical. Writes ``benchmarks/results/<name>.md``; the last line is
``RESULT median_mm=... p99_mm=... max_mm=... ...``.
"""

from __future__ import annotations

import argparse

import numpy as np
from _common import record_results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("old")
    p.add_argument("new")
    p.add_argument("--name", default="pose2sim_gt_shift")
    a = p.parse_args()
    record_results(a.name, f"3D ground truth of {a.new} vs {a.old}")
    old, new = np.load(a.old, allow_pickle=True), np.load(a.new, allow_pickle=True)
    same = {
        k: bool(np.array_equal(old[k], new[k]))
        for k in ("keypoints", "confidence", "instants", "intrinsics")
        if k in old.files and k in new.files
    }
    if old["joints3d"].shape != new["joints3d"].shape:
        raise SystemExit(
            f"joints3d shapes differ: {old['joints3d'].shape} vs {new['joints3d'].shape}"
        )
    d = 1000 * np.linalg.norm(old["joints3d"] - new["joints3d"], axis=-1)  # (N, J) mm
    q = np.nanpercentile(d, [50, 90, 99, 100])
    instants = new["instants"] if "instants" in new.files else np.arange(len(d))
    moved = lambda t: (int((d > t).sum()), len(np.unique(instants[(d > t).any(1)])))  # noqa: E731
    print(f"{d.shape[0]} samples x {d.shape[1]} joints; inputs identical: {same}")
    print(
        f"joint displacement mm: median {q[0]:.2f}, p90 {q[1]:.2f}, p99 {q[2]:.2f}, max {q[3]:.1f}"
    )
    for t in (10, 30):
        n, k = moved(t)
        print(f"joints moved > {t} mm: {n} of {d.size} (at {k} instants)")
    print(
        f"RESULT median_mm={q[0]:.3g} p90_mm={q[1]:.3g} p99_mm={q[2]:.3g} max_mm={q[3]:.3g} "
        f"moved10={moved(10)[0]} moved10_instants={moved(10)[1]} moved30={moved(30)[0]} "
        f"inputs_identical={int(all(same.values()))}"
    )


if __name__ == "__main__":
    main()
