"""`key2mesh demo`: detect, predict and render on images, videos or the bundled-at-run-time demo videos."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "run MediaPipe + Key2Mesh on an IMAGE, VIDEO, FOLDER or a demo video name; write overlays and side views"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "input", help="image, video, folder of images, or a demo name: pose2sim-cam01..04, sports2d"
    )
    p.add_argument(
        "--checkpoint",
        default="anny-coco17",
        help="checkpoint file or shipped model name (default anny-coco17: the most accurate on real MediaPipe detections)",
    )
    p.add_argument(
        "--out",
        default="outputs/demo",
        help="output folder (PNGs) — videos are written as OUT/<name>.mp4",
    )
    p.add_argument(
        "--frames", default=None, help="frame range START:STOP[:STEP] for videos (default: all)"
    )
    p.add_argument(
        "--smooth",
        action="store_true",
        help="One-Euro temporal smoothing of the parameters (videos)",
    )
    p.add_argument("--device", default=None)


def _range(spec: str | None) -> tuple[int, int | None, int]:
    """``START:STOP[:STEP]`` (each part optional) → (start, stop or None, step)."""
    from key2mesh.errors import Key2MeshError

    if not spec:
        return 0, None, 1
    parts = spec.split(":")
    bad = Key2MeshError(
        f"--frames {spec!r}: expected START:STOP[:STEP] with whole numbers, e.g. 0:60:10 or 100:"
    )
    if len(parts) > 3:
        raise bad
    try:
        values = [int(x) if x.strip() else None for x in parts]
    except ValueError:
        raise bad from None
    start, stop, step = (values + [None, None, None])[:3]
    start = 0 if start is None else start
    step = 1 if step is None else step
    if start < 0 or step < 1 or (stop is not None and stop <= start):
        raise Key2MeshError(f"--frames {spec!r}: needs 0 <= START < STOP and STEP >= 1")
    return start, stop, step


def run(args: argparse.Namespace) -> int:
    from key2mesh.data.demo_inputs import DEMO_VIDEOS, demo_video
    from key2mesh.errors import Key2MeshError
    from key2mesh.inference.demo import run_demo
    from key2mesh.inference.predictor import Key2Mesh
    from key2mesh.media.video import iter_frames, source_info

    start, stop, step = _range(args.frames)
    src = Path(demo_video(args.input)) if args.input in DEMO_VIDEOS else Path(args.input)
    if not src.exists():
        raise Key2MeshError(
            f"{src} does not exist (give an image, a video, a folder, or one of {', '.join(DEMO_VIDEOS)})"
        )
    info = source_info(src)
    model = Key2Mesh.from_pretrained(args.checkpoint, device=args.device)
    out = Path(args.out)
    frames = iter_frames(src, start, stop, step)
    is_video = info.kind == "video" and (stop is None or stop - start > step)
    name = args.input if args.input in DEMO_VIDEOS else src.stem
    target = out / f"{name}_key2mesh.mp4" if is_video else out
    report = run_demo(
        model, frames, target, is_video, fps=(info.fps or 30.0) / step, smooth=args.smooth
    )
    print(
        f"{report.written} of {report.frames} frames written to {', '.join(str(p) for p in report.outputs[:3])}"
        f"{' ...' if len(report.outputs) > 3 else ''}"
    )
    for reason, idx in report.skipped.items():
        print(f"  skipped {len(idx)} frame(s): {reason} (first: {idx[:5]})")
    return 0
