"""The frames that ease from cgspeed's added T-pose into the motion, measured on the CMU BVH
archive, and what ``key2mesh.data.mocap.cmu.blend_prefix`` drops.

Every cgspeed BVH file starts with one added T-pose frame (INDEX.tsv ``tpose_frames`` = 1); the
loader drops it. The next frames still move far faster than the rest of the clip: they ease from
the T-pose into the first captured pose. For each trial (T-pose dropped, file frame rate) this
prints the leading frame-to-frame steps (mean joint move) as multiples of the clip's median
step (median, 10th and 90th percentile over the trials), how many leading frames the rule drops
(``--ratio``, ``--max-frames``), and how often a step *inside* a clip (from frame 10 on) is above
the same ratio: the rule's chance of dropping a genuine frame at the start.

    .venv/bin/python benchmarks/cmu_blend_frames.py [--bvh ../shared/data/cmu-mocap/cmu-bvh-cgspeed-daz.tar.xz]

The last line is ``RESULT trials=... step1_median_ratio=... dropped_mean=... ...``.
"""

from __future__ import annotations

import argparse
import csv
import tempfile
from pathlib import Path

import numpy as np
from _common import record_results

DEFAULT_BVH = (
    Path(__file__).resolve().parents[2] / "shared/data/cmu-mocap/cmu-bvh-cgspeed-daz.tar.xz"
)


def _index_keeping_tposes(index: Path, out: Path) -> Path:
    """INDEX.tsv with ``tpose_frames`` 0 everywhere: the loader keeps every frame."""
    with open(index, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    with open(out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]), delimiter="\t")
        w.writeheader()
        w.writerows({**r, "tpose_frames": "0"} for r in rows)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bvh", type=Path, default=DEFAULT_BVH)
    p.add_argument("--ratio", type=float, default=2.0)
    p.add_argument("--max-frames", type=int, default=6)
    a = p.parse_args()
    if not a.bvh.exists():
        raise SystemExit(f"no BVH archive at {a.bvh} (pass --bvh)")
    record_results("cmu_blend_frames", "Frames easing from cgspeed's T-pose, CMU BVH")
    from key2mesh.data.mocap.cmu import blend_prefix, load_bvh_files

    with tempfile.TemporaryDirectory() as tmp:
        index = _index_keeping_tposes(a.bvh.parent / "INDEX.tsv", Path(tmp) / "INDEX.tsv")
        clips = load_bvh_files([a.bvh], index=index).clips
    leading, inside, dropped = [], [], []
    for clip in clips:
        joints = clip.joints[1:]  # the added T-pose frame dropped, as the loader does
        step = np.linalg.norm(np.diff(joints, axis=0), axis=-1).mean(axis=1)
        ratio = step / np.median(step)
        leading.append(ratio[:8])
        inside.append(ratio[10:])
        dropped.append(blend_prefix(joints, ratio=a.ratio, max_frames=a.max_frames))
    lead = np.array(leading)
    inner = np.concatenate(inside)
    counts = np.bincount(dropped, minlength=a.max_frames + 1)
    print(f"{len(clips)} trials; steps as multiples of each clip's median step (file frames)\n")
    print("leading step      " + " ".join(f"{k + 1:>6}" for k in range(lead.shape[1])))
    for name, q in (("p10", 10), ("median", 50), ("p90", 90)):
        row = np.percentile(lead, q, axis=0)
        print(f"{name:<17} " + " ".join(f"{v:6.2f}" for v in row))
    print(f"\nframes dropped (ratio {a.ratio}, at most {a.max_frames}): trials per count")
    print("  " + ", ".join(f"{k}: {n}" for k, n in enumerate(counts)))
    above = float((inner > a.ratio).mean())
    print(f"steps inside the clips (frame 10 on) above {a.ratio}x the median: {100 * above:.1f} %")
    print(
        f"RESULT trials={len(clips)} step1_median_ratio={np.median(lead[:, 0]):.3g} "
        f"step4_median_ratio={np.median(lead[:, 3]):.3g} step5_median_ratio={np.median(lead[:, 4]):.3g} "
        f"dropped_mean={np.mean(dropped):.3g} dropped_at_cap={int(counts[-1])} "
        f"inside_above_ratio_pct={100 * above:.3g} ratio={a.ratio} max_frames={a.max_frames}"
    )


if __name__ == "__main__":
    main()
