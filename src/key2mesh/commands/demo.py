"""`key2mesh demo`: detect, predict and render on images, videos or the bundled-at-run-time demo videos."""

from __future__ import annotations

import argparse
from pathlib import Path

from key2mesh.commands._args import (
    add_checkpoint_argument,
    add_device_argument,
    add_out_argument,
    add_smoothing_arguments,
    positive_int,
    smoothing,
)
from key2mesh.commands._world import add_world_arguments, motion_options

MIN_OUTPUT_HEIGHT = 64  # px: the smallest --max-height
HELP = "run MediaPipe + Key2Mesh on an IMAGE, VIDEO, FOLDER or a demo video name; write overlays and side views"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "input", help="image, video, folder of images, or a demo name: pose2sim-cam01..04, sports2d"
    )
    add_out_argument(
        p,
        "overlays (PNGs; videos: OUT/<name>_key2mesh.mp4), <name>_params.npz, exports, meshes",
        default="outputs/demo",
    )
    add_processing_arguments(p)
    p.add_argument(
        "--view",
        nargs="?",
        type=int,
        const=8080,
        metavar="PORT",
        help="follow the run in the browser viewer on 127.0.0.1:PORT (a bare --view: "
        "%(const)s), then keep serving the result until Ctrl-C (the viewer extra)",
    )


def add_processing_arguments(p: argparse.ArgumentParser) -> None:
    """The options of how one input is processed (model, frames, people, smoothing, rendering,
    exports, device): the demo's, and `key2mesh batch`'s for every input of a corpus."""
    add_checkpoint_argument(
        p,
        "checkpoint file, shipped model name, or ensemble ('a.pt+b.pt'); anny-coco17-ensemble: "
        "two seeds of the coco17 recipe averaged, the most accurate on real MediaPipe detections",
        default="anny-coco17-ensemble",
    )
    p.add_argument(
        "--frames",
        default=None,
        help="frame range START:STOP[:STEP] for videos (when not given: all), e.g. 0:120:4",
    )
    p.add_argument(
        "--max-frames",
        type=positive_int,
        default=None,
        help="process at most this many frames (when not given: all)",
    )
    p.add_argument(
        "--max-people",
        type=positive_int,
        default=4,
        help="most people detected per frame and tracked at once (default: %(default)s)",
    )
    add_smoothing_arguments(p)
    p.add_argument(
        "--focal",
        type=float,
        default=None,
        help="focal length in pixels (when not given: max(H, W))",
    )
    p.add_argument(
        "--search-every",
        type=float,
        default=0.25,
        metavar="SECONDS",
        help="videos: tracked people are searched on their crops; the whole frame (for people "
        "coming in, or one lost on their crop) at most this often (seconds of video; 0: every "
        "frame where someone may be missing); with a still camera, where a change outside the "
        "tracked people is searched on a crop at once, 8x this for people coming in "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--max-height",
        type=int,
        default=1080,
        metavar="PX",
        help="output panels at most this high: taller frames are shown and rendered scaled down "
        "(0: the source size) (default: %(default)s)",
    )
    p.add_argument("--no-side-view", action="store_true", help="leave out the side-view panel")
    p.add_argument(
        "--save-meshes",
        nargs="?",
        const="obj",
        choices=["obj", "ply"],
        help="also write one camera-frame mesh per person and frame into OUT/<name>_meshes/",
    )
    p.add_argument(
        "--export",
        default=None,
        help="motion files per track, comma-separated: bvh, glb, trc, amass (SMPL models)",
    )
    add_world_arguments(p)
    add_device_argument(p)
    p.add_argument(
        "--int8",
        action="store_true",
        help="int8 network weights on the CPU: about 2x faster network (accuracy: docs)",
    )


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
    run_input(args)
    return 0


def check_processing_options(args: argparse.Namespace):
    """The checks of :func:`add_processing_arguments`' values that need no input and no model
    (``key2mesh batch`` runs them once, before any input): returns (start, stop, step) of
    ``--frames``, the ``--export`` formats and the world-frame options; raises Key2MeshError."""
    from key2mesh.errors import Key2MeshError
    from key2mesh.inference.motion_export import parse_formats

    start, stop, step = _range(args.frames)
    exports = parse_formats(args.export)
    frame_options = motion_options(args)  # world, origin, subjects: checked before any work
    smoothing(args)  # One-Euro settings while smoothing is off: refused before any work
    if args.max_height < 0 or 0 < args.max_height < MIN_OUTPUT_HEIGHT:
        raise Key2MeshError(
            f"--max-height must be 0 (source size) or at least {MIN_OUTPUT_HEIGHT} px, got {args.max_height}"
        )
    if args.search_every < 0:
        raise Key2MeshError(f"--search-every must be >= 0 seconds, got {args.search_every}")
    if args.focal is not None and args.focal <= 0:
        raise Key2MeshError(f"--focal must be a positive number of pixels, got {args.focal}")
    return start, stop, step, exports, frame_options


def run_input(args: argparse.Namespace, model=None):
    """``key2mesh demo`` on ``args.input``; returns its :class:`~key2mesh.inference.demo.DemoReport`.
    ``model``: a loaded :class:`~key2mesh.inference.predictor.Key2Mesh` to reuse (``key2mesh
    batch`` keeps one per worker), else ``args.checkpoint`` is loaded."""
    from key2mesh.data.demo_inputs import DEMO_VIDEOS, demo_video
    from key2mesh.errors import Key2MeshError
    from key2mesh.inference.demo import DemoOptions, ReplayableFrames, run_demo, timing_summary
    from key2mesh.inference.motion_export import check_formats
    from key2mesh.inference.predictor import Key2Mesh
    from key2mesh.media.detect import warm_up
    from key2mesh.media.video import folder_images, iter_frames, source_info
    from key2mesh.safe_paths import output_stems, refuse_overwriting_inputs

    start, stop, step, exports, frame_options = check_processing_options(args)
    src = Path(demo_video(args.input)) if args.input in DEMO_VIDEOS else Path(args.input)
    if not src.exists():
        raise Key2MeshError(
            f"{src} does not exist (give an image, a video, a folder, or one of {', '.join(DEMO_VIDEOS)})"
        )
    info = source_info(src)
    n = info.num_frames or (stop if stop is not None else 1 << 40)  # 0: count unknown
    indices = range(start, n if stop is None else min(stop, n), step)
    if args.max_frames is not None:
        indices = indices[: args.max_frames]
    if not indices:
        raise Key2MeshError(
            f"--frames {args.frames!r}: no frame in range (the input has {info.num_frames})"
        )
    last = indices[-1] + 1
    if args.view is not None:  # the viewer extra, before any work
        from key2mesh.viewer.app import import_viser

        import_viser()
    mediapipe = warm_up()  # its start-up overlaps the model's loading
    if model is None:
        model = Key2Mesh.from_pretrained(args.checkpoint, device=args.device, int8=args.int8)
    check_formats(exports, str(model.checkpoint.body.get("name", "anny")))  # before detection
    mediapipe.join()
    out = Path(args.out)
    is_video = info.kind == "video" and len(indices) > 1
    name = output_stems([args.input if args.input in DEMO_VIDEOS else src])[0]
    target = out / f"{name}_key2mesh.mp4" if is_video else out
    refuse_overwriting_inputs(out, [src])
    inputs = (src, *folder_images(src)) if info.kind == "folder" else (src,)
    options = DemoOptions(
        max_people=args.max_people,
        smoothing=smoothing(args),
        focal=args.focal,
        side_view=not args.no_side_view,
        save_meshes=args.save_meshes,
        exports=exports,
        stem=name,
        search_every_s=args.search_every,
        max_height=args.max_height or None,
        inputs=inputs,
        source=str(src),
        **frame_options,
    )
    # a short clip is decoded once for both passes
    frames, view = ReplayableFrames(lambda: iter_frames(src, start, last, step)), None
    if args.view is not None:
        from key2mesh.viewer.demo_view import DemoView

        clock = indices if info.kind == "video" else range(len(indices))
        view = DemoView(out, name, clock, info.fps or 30.0, port=args.view)
        frames = view.frames(frames)
    report = run_demo(
        model,
        frames,
        target,
        is_video,
        fps=info.fps or 30.0,
        options=options,
        frame_indices=indices if info.kind == "video" else None,
        total=len(indices),
    )
    shown = [p for p in report.outputs if p.suffix not in (".json",)]
    print(
        f"{report.written} of {report.frames} frames written; {len(report.tracks)} track(s); "
        f"outputs: {', '.join(str(p) for p in shown[:8])}{' ...' if len(shown) > 8 else ''}"
    )
    people = report.people_per_frame
    if people:
        counts = {k: people.count(k) for k in sorted(set(people))}
        print("  people per frame: " + ", ".join(f"{k}: {v} frame(s)" for k, v in counts.items()))
    if report.dropped_tracks:
        print(f"  dropped {len(report.dropped_tracks)} track(s) seen in under 3 frames (spurious)")
    for reason, idx in report.skipped.items():
        print(f"  skipped {len(idx)} frame(s): {reason} (first: {idx[:5]})")
    print(
        f"  {timing_summary(report)}, {report.detector_calls} BlazePose runs, "
        f"{report.full_searches} frame(s) searched whole"
    )
    if view is not None:
        view.serve()
    return report
