"""`key2mesh view`: a result folder in the browser (3D bodies on the ground, cameras, timeline,
overlay video), or a headless screenshot of it."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from key2mesh.commands._args import positive_int

SIZE_DEFAULT = "960x540"  # --size (of --screenshot)

HELP = "open a result (demo / predict output folder, params file, adapt run) in a browser viewer"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "path",
        help="a `key2mesh demo` or `predict` output folder, a <stem>_params.npz, or an adapt run "
        "folder (best.pt)",
    )
    p.add_argument("--port", type=int, default=8080, help="port to serve on (default: %(default)s)")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to serve on (127.0.0.1: this machine only) (default: %(default)s)",
    )
    p.add_argument(
        "--no-browser", action="store_true", help="serve without opening a browser (remote, tests)"
    )
    p.add_argument(
        "--screenshot",
        metavar="PNG",
        help="write the 3D view as a PNG with a headless Chromium and exit",
    )
    p.add_argument(
        "--time",
        type=float,
        default=None,
        metavar="SECONDS",
        help="clock time shown first and in --screenshot (when not given: the first sample)",
    )
    p.add_argument(
        "--size",
        default=SIZE_DEFAULT,
        help="--screenshot size WIDTHxHEIGHT px (default: %(default)s)",
    )
    p.add_argument(
        "--camera-view",
        action="store_true",
        help="start (and screenshot) looking through the first video camera",
    )
    p.add_argument("--play", action="store_true", help="start playing")
    p.add_argument(
        "--max-seconds",
        type=positive_int,
        default=None,
        help="stop serving after this many seconds (when not given: at Ctrl-C)",
    )


def parse_size(spec: str) -> tuple[int, int]:
    """``WIDTHxHEIGHT`` → (W, H) px, each 64..4096."""
    from key2mesh.errors import Key2MeshError

    try:
        w, h = (int(v) for v in spec.lower().split("x"))
    except ValueError:
        raise Key2MeshError(f"--size {spec!r}: expected WIDTHxHEIGHT, e.g. 960x540") from None
    if not (64 <= w <= 4096 and 64 <= h <= 4096):
        raise Key2MeshError(f"--size {spec!r}: width and height must be 64..4096 px")
    return w, h


def check_screenshot_path(path: str) -> None:
    """A one-line error, before any work, for a ``--screenshot`` that could not be written at
    the end: a folder, or a name whose suffix is no image format Pillow writes."""
    from PIL import Image

    from key2mesh.errors import Key2MeshError

    if Path(path).is_dir():
        raise Key2MeshError(f"--screenshot {path}: is a folder; give a file name, e.g. view.png")
    suffix = Path(path).suffix.lower()
    if Image.registered_extensions().get(suffix) not in Image.SAVE:
        raise Key2MeshError(
            f"--screenshot {path}: {suffix or 'no suffix'} is not an image format; use .png"
        )


def _refuse_unused_options(args: argparse.Namespace) -> None:
    """One line for the options the chosen mode ignores: ``--size`` without ``--screenshot``;
    ``--play`` and ``--max-seconds`` with it (a screenshot serves nothing and plays nothing)."""
    from key2mesh.errors import Key2MeshError

    if args.screenshot:
        unused = {"--play": args.play, "--max-seconds": args.max_seconds is not None}
        why = "--screenshot writes one picture and exits"
    else:
        unused = {"--size": args.size != SIZE_DEFAULT}
        why = "--size is the --screenshot's size (the browser picks its own)"
    given = [name for name, value in unused.items() if value]
    if given:
        raise Key2MeshError(f"{' and '.join(given)} would be ignored: {why}")


def run(args: argparse.Namespace) -> int:
    import webbrowser

    from key2mesh.errors import Key2MeshError
    from key2mesh.viewer import load_bodies, load_scene
    from key2mesh.viewer.app import Viewer, camera_view, import_viser, wait_until_stopped

    if not 0 <= args.port <= 65535:
        raise Key2MeshError(f"--port must be 0..65535, got {args.port}")
    if args.time is not None and not math.isfinite(args.time):
        raise Key2MeshError(f"--time must be a number of seconds, got {args.time}")
    size = parse_size(args.size)
    _refuse_unused_options(args)
    if args.screenshot:
        check_screenshot_path(args.screenshot)
    if not Path(args.path).exists():
        raise Key2MeshError(f"{args.path} does not exist")
    import_viser()  # the extra, before any work
    scene = load_scene(args.path)
    if args.camera_view and not scene.cameras:
        raise Key2MeshError(f"{args.path}: --camera-view: this result has no camera")
    viewer = Viewer(scene, load_bodies(scene), host=args.host, port=args.port)
    try:
        t = scene.clock[0] if args.time is None else args.time
        viewer.show(t)
        view = camera_view(scene.cameras[0]) if args.camera_view else None
        if view is not None:
            viewer.frusta[scene.cameras[0].name].visible = False
        if args.screenshot:
            from key2mesh.viewer.screenshot import screenshot

            screenshot(viewer, args.screenshot, t, size, view)
            print(f"wrote {args.screenshot} (t = {viewer.time:.2f} s)")
            return 0
        if view is not None:
            viewer.server.initial_camera.position = view.position
            viewer.server.initial_camera.look_at = view.look_at
        people = ", ".join(f"{tr.name} {tr.start_s:.2f}-{tr.end_s:.2f} s" for tr in scene.tracks)
        print(f"viewer: {viewer.url} ({people}); Ctrl-C to stop")
        if not args.no_browser:
            webbrowser.open(viewer.url)
        viewer.start(playing=args.play)
        wait_until_stopped(args.max_seconds)
        return 0
    finally:
        viewer.close()
