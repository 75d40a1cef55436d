"""`key2mesh live`: webcam (or a video file played as a stream) → detection → mesh, in the
browser viewer, with the latency of every stage."""

from __future__ import annotations

import argparse

from key2mesh.commands._args import add_checkpoint_argument, add_device_argument, positive_int

HELP = "webcam (or a video played as one) -> MediaPipe -> Key2Mesh in the browser viewer, with per-stage latency"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--camera",
        default="0",
        help="camera index or a video file / demo video name played as a live stream "
        "(default: %(default)s)",
    )
    add_checkpoint_argument(
        p, "checkpoint file or shipped model name (as the demo's)", default="anny-coco17-ensemble"
    )
    p.add_argument(
        "--max-people",
        type=positive_int,
        default=2,
        help="people detected and tracked at once (each costs detector time) (default: %(default)s)",
    )
    p.add_argument("--port", type=int, default=8080, help="port to serve on (default: %(default)s)")
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (default: %(default)s)")
    p.add_argument("--no-browser", action="store_true", help="serve without opening a browser")
    p.add_argument(
        "--no-viewer",
        action="store_true",
        help="no viewer: only process the stream and print the latency table (benchmarks)",
    )
    p.add_argument(
        "--as-fast-as-possible",
        action="store_true",
        help="a video file: take every frame as soon as the last one is done (when not given: "
        "played at its frame rate, frames that arrive while one is processed are dropped)",
    )
    p.add_argument(
        "--max-frames", type=positive_int, default=None, help="a video file: stop after this many"
    )
    add_device_argument(p)
    p.add_argument("--int8", action="store_true", help="int8 network weights on the CPU")


def latency_table(summary: dict[str, float]) -> str:
    """The printed summary of a run: ms per stage, end-to-end latency, frame rate."""
    from key2mesh.viewer.live import LIVE_STAGES

    parts = ", ".join(f"{s} {summary[f'{s}_ms']:.1f}" for s in LIVE_STAGES)
    return (
        f"{summary['fps']:.2f} frames/s processed ({100 * summary['dropped']:.0f} % of the "
        f"source's frames dropped), end-to-end latency {summary['latency_ms']:.0f} ms mean, "
        f"{summary['latency_p50_ms']:.0f} p50, {summary['latency_p95_ms']:.0f} p95; per stage "
        f"(ms): {parts}"
    )


def _refuse_unused_options(args: argparse.Namespace) -> None:
    """One line for the options the chosen source or mode ignores: ``--max-frames`` and
    ``--as-fast-as-possible`` with a camera index (a camera runs until Ctrl-C, at its own pace);
    ``--host``, ``--port`` and ``--no-browser`` with ``--no-viewer`` (nothing is served)."""
    from key2mesh.errors import Key2MeshError

    problems = []
    if args.camera.isdigit():
        given = [
            name
            for name, value in (
                ("--max-frames", args.max_frames is not None),
                ("--as-fast-as-possible", args.as_fast_as_possible),
            )
            if value
        ]
        if given:
            problems.append(
                f"{' and '.join(given)} would be ignored: --camera {args.camera} is a camera "
                "(a video file option)"
            )
    if args.no_viewer:
        given = [
            name
            for name, value in (
                ("--host", args.host != "127.0.0.1"),
                ("--port", args.port != 8080),
                ("--no-browser", args.no_browser),
            )
            if value
        ]
        if given:
            problems.append(f"{' and '.join(given)} would be ignored: --no-viewer serves nothing")
    if problems:
        raise Key2MeshError("; ".join(problems))


def run(args: argparse.Namespace) -> int:
    import webbrowser

    from key2mesh.devices import torch_threads
    from key2mesh.errors import Key2MeshError
    from key2mesh.inference.predictor import Key2Mesh
    from key2mesh.viewer.live import LiveStats, open_stream, run_live

    if not 0 <= args.port <= 65535:
        raise Key2MeshError(f"--port must be 0..65535, got {args.port}")
    _refuse_unused_options(args)
    viewer = None
    if not args.no_viewer:
        from key2mesh.viewer.app import import_viser

        import_viser()
    try:
        import mediapipe  # noqa: F401
    except ImportError:
        raise Key2MeshError("live needs MediaPipe: pip install 'key2mesh[detect]'") from None
    stream = open_stream(args.camera, not args.as_fast_as_possible, args.max_frames)
    model = Key2Mesh.from_pretrained(args.checkpoint, device=args.device, int8=args.int8)
    if not args.no_viewer:
        from key2mesh.viewer.app import LiveViewer

        viewer = LiveViewer(model, host=args.host, port=args.port)
        print(f"live viewer: {viewer.url}; Ctrl-C to stop")
        if not args.no_browser:
            webbrowser.open(viewer.url)
    stats = LiveStats()
    try:
        with torch_threads(1):
            run_live(model, stream, viewer, args.max_people, stats=stats)
    except KeyboardInterrupt:  # how a camera stops: the table of what was measured, then 130
        print_table(stats)
        raise
    finally:
        if viewer is not None:
            viewer.close()
    print_table(stats)
    return 0


def print_table(stats) -> None:
    """Print the latency table of a run's :class:`~key2mesh.viewer.live.LiveStats` (nothing
    when no frame was processed)."""
    if stats.count:
        print(f"{stats.count} frames: " + latency_table(stats.summary()), flush=True)
