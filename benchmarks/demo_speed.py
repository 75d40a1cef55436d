"""Speed of ``key2mesh demo`` end to end on the real demo videos: the one-person pose2sim view
(1080x1920, 60 fps, all 100 frames) and the two-person sports2d video (1768x994, frames
0:120:4, the docs' command). Each run is the real command in a subprocess; its stage times
come from the line it prints (``time: ... (decode ..., detect ..., ... s)``, measured inside
the demo), the whole command's wall time (imports, model load and detector start-up included)
from here.

    .venv/bin/python benchmarks/demo_speed.py [--threads 1] [--videos pose2sim-cam01 sports2d]
        [-- extra demo options, e.g. --max-people 1]

``--baseline REV`` also runs revision REV's demo (a temporary git worktree), each of its runs
next to one of the current code's, and reports the speed-up measured in the same run
(``speedup_*``). Each video runs ``--repeats`` times (3): its row is the run of median speed, and
``demo_fps_*_min`` / ``_max`` give the spread. ``demo_fps`` is frames / the demo's own run time (both passes: read, detect, track, predict,
render, encode); ``command_fps`` divides by the whole command's wall time. For sports2d it also
counts the frames of 48..116 (both people in view) where two people were found. The last line
is ``RESULT demo_fps_pose2sim=... demo_fps_sports2d=... ...``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import record_results

FRAMES = {"sports2d": "0:120:4"}  # others: every frame
STAGES = ("decode", "detect", "track", "predict", "export", "render", "encode")
BOTH_IN_VIEW = range(48, 120, 4)  # sports2d frames of 0:120:4 with both people in view


def run_demo(
    video: str, out: Path, threads: int, extra: list[str], source: Path | None = None
) -> dict[str, float]:
    """Run ``key2mesh demo`` on ``video``; its wall time, frames, stage seconds and runs.
    ``source``: a checkout's ``src`` folder to run instead of the installed package."""
    cmd = [sys.executable, "-m", "key2mesh.cli", "demo", video, "--out", str(out)]
    if video in FRAMES:
        cmd += ["--frames", FRAMES[video]]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    if source is not None:
        env["PYTHONPATH"] = str(source)
    t0 = time.perf_counter()
    done = subprocess.run(cmd + extra, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    line = re.search(r"time: ([\d.]+) s, [\d.]+ frames/s \((.*) s\), (\d+) BlazePose", done.stdout)
    frames = re.search(r"(\d+) of (\d+) frames written", done.stdout)
    if not line or not frames:
        sys.exit(f"no timing line in the demo's output:\n{done.stdout[-2000:]}")
    res = {"wall_s": wall, "run_s": float(line.group(1)), "frames": float(frames.group(2))}
    res["runs"] = float(line.group(3))
    for part in line.group(2).split(", "):
        name, value = part.split()
        res[name] = float(value)
    if video == "sports2d":
        d = np.load(out / "sports2d_params.npz")
        res["both"] = float(sum((d["frame_index"] == f).sum() >= 2 for f in BOTH_IN_VIEW))
    return res


def encoder_costs(video: Path, presets=("veryfast", "superfast", "ultrafast")) -> list[str]:
    """Re-encode the frames of ``video`` (the demo's panels) with the demo's H.264 writer at each
    x264 preset: FFmpeg's CPU ms per frame, wall ms and file size."""
    import resource

    from key2mesh.media.video import _H264, H264_PRESET, iter_frames

    frames = list(iter_frames(video))
    h, w = frames[0].shape[:2]
    rows = []
    for preset in presets:
        out = video.with_name(f"reencoded_{preset}.mp4")
        before, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
        writer = _H264(out, 10, (w, h), "mp4", preset=preset)
        for f in frames:
            writer.write(f)
        writer.release()
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
        used = " (the demo's)" if preset == H264_PRESET else ""
        rows.append(
            f"| {preset}{used} | {w}x{h} | {1000 * cpu / len(frames):.0f} | "
            f"{1000 * wall / len(frames):.0f} | {out.stat().st_size / len(frames) / 1024:.0f} |"
        )
    return rows


@contextlib.contextmanager
def baseline_checkout(rev: str | None, tmp: str):
    """The ``src`` folder of a temporary ``git worktree`` of ``rev`` (None: no baseline)."""
    if rev is None:
        yield None
        return
    root = Path(__file__).resolve().parents[1]
    tree = Path(tmp) / "baseline"
    subprocess.run(
        ["git", "-C", str(root), "worktree", "add", "--detach", "-q", str(tree), rev], check=True
    )
    try:
        yield tree / "src"
    finally:
        subprocess.run(["git", "-C", str(root), "worktree", "remove", "--force", str(tree)])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--videos", nargs="+", default=["pose2sim-cam01", "sports2d"])
    p.add_argument("--threads", type=int, default=1, help="torch threads of the demo")
    p.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="runs per video; the row is the run of median speed (others share the 2 cores)",
    )
    p.add_argument(
        "--baseline",
        metavar="REV",
        help="also run the demo of this git revision (a temporary worktree), each of its runs "
        "next to one of the current code's, and report the speed-up measured in this run",
    )
    a, extra = p.parse_known_args()
    extra = [x for x in extra if x != "--"]
    record_results("demo_speed", "Demo end to end", markdown=True)
    rows, result, encoders, baseline_rows = [], {}, [], []
    with tempfile.TemporaryDirectory() as tmp, baseline_checkout(a.baseline, tmp) as old:
        for video in a.videos:
            runs, base = [], []
            for _ in range(a.repeats):  # interleaved: both see the same machine
                if old is not None:
                    base.append(run_demo(video, Path(tmp) / "old" / video, a.threads, extra, old))
                runs.append(run_demo(video, Path(tmp) / video, a.threads, extra))
            key = video.split("-")[0]
            if base:
                fps_old = float(np.median([x["frames"] / x["run_s"] for x in base]))
                fps_new = float(np.median([x["frames"] / x["run_s"] for x in runs]))
                result[f"demo_fps_{key}_baseline"] = fps_old
                result[f"speedup_{key}"] = fps_new / fps_old
                baseline_rows.append(
                    f"| {video} | {a.baseline} | {fps_old:.2f} | {fps_new:.2f} | "
                    f"{fps_new / fps_old:.2f}x | {np.mean([x['runs'] / x['frames'] for x in base]):.1f} |"
                )
            r = sorted(runs, key=lambda x: x["run_s"])[len(runs) // 2]
            spread = [x["frames"] / x["run_s"] for x in runs]
            result[f"demo_fps_{key}_min"] = min(spread)
            result[f"demo_fps_{key}_max"] = max(spread)
            n = r["frames"]
            result[f"demo_fps_{key}"] = n / r["run_s"]
            result[f"command_fps_{key}"] = n / r["wall_s"]
            result[f"runs_per_frame_{key}"] = r["runs"] / n
            for s in ("detect", "render", "encode"):
                result[f"{s}_ms_{key}"] = 1000 * r[s] / n
            if "both" in r:
                result["sports2d_both_found"] = r["both"]
                encoders = encoder_costs(Path(tmp) / video / "sports2d_key2mesh.mp4")
            both = f"{r['both']:.0f}/{len(BOTH_IN_VIEW)}" if "both" in r else ""
            cells = [video, f"{n:.0f}", f"{n / r['run_s']:.2f}", f"{n / r['wall_s']:.2f}"]
            cells += [f"{r['wall_s'] - r['run_s']:.1f}", f"{r['runs'] / n:.1f}"]
            cells += [f"{1000 * r[s] / n:.0f}" for s in STAGES] + [both]
            rows.append("| " + " | ".join(cells) + " |")
    print(f"threads {a.threads}{', options ' + ' '.join(extra) if extra else ''}\n")
    print(
        "| video | frames | demo frames/s | command frames/s | start-up s | BlazePose runs/frame | "
        + " | ".join(f"{s} ms/frame" for s in STAGES)
        + " | both people found |"
    )
    print("|---" * (7 + len(STAGES)) + "|")
    print("\n".join(rows))
    if baseline_rows:
        print("\n**Against a baseline revision** (its runs interleaved with these; medians)\n")
        print(
            "| video | baseline | baseline frames/s | frames/s now | speed-up | "
            "baseline BlazePose runs/frame |"
        )
        print("|---|---|---|---|---|---|")
        print("\n".join(baseline_rows))
    if encoders:
        print("\n**H.264 encoder** (the sports2d panels re-encoded by x264, CRF 23)\n")
        print("| preset | size | FFmpeg CPU ms/frame | wall ms/frame | KB/frame |")
        print("|---|---|---|---|---|")
        print("\n".join(encoders) + "\n")
    print("RESULT " + " ".join(f"{k}={v:.3g}" for k, v in result.items()) + f" threads={a.threads}")


if __name__ == "__main__":
    main()
