"""`key2mesh predict`: keypoint files in, body parameters (and meshes) out."""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path

from key2mesh.commands._args import positive_int
from key2mesh.commands._world import add_world_arguments, motion_options
from key2mesh.keypoints.io import MIN_KEYPOINTS
from key2mesh.safe_paths import OutputNames

HELP = "predict body parameters (and optional meshes) from keypoint files (OpenPose JSON, COCO JSON, npz)"
CHUNK = (
    4096  # detections per chunk (key2mesh.inference.pipeline.CHUNK; not imported: that loads torch)
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "inputs", nargs="+", help="OpenPose JSON files/folders, COCO keypoint JSON, .npy/.npz"
    )
    p.add_argument(
        "--checkpoint",
        default="anny-body25",
        help="checkpoint file or shipped model name (default anny-body25)",
    )
    p.add_argument(
        "--keypoint-set", help="keypoint set of the inputs when it cannot be inferred (e.g. coco17)"
    )
    p.add_argument(
        "--out", default="outputs/predictions.npz", help="npz with parameters per frame and person"
    )
    p.add_argument(
        "--meshes",
        choices=["obj", "ply", "glb"],
        help="also write one mesh per detection into OUT_meshes/",
    )
    p.add_argument(
        "--smooth", action="store_true", help="One-Euro smoothing over frames per tracked person"
    )
    p.add_argument(
        "--min-keypoints",
        type=positive_int,
        default=MIN_KEYPOINTS,
        help="skip detections with fewer confident keypoints",
    )
    p.add_argument(
        "--export",
        default=None,
        help="motion files per track and input file, comma-separated: bvh, glb, trc, amass (SMPL)",
    )
    p.add_argument(
        "--fps", type=float, default=30.0, help="frame rate of the keypoint frames (default 30)"
    )
    p.add_argument(
        "--image-size",
        default=None,
        help="WIDTHxHEIGHT of the images, for the camera fit (default: from the file, else the keypoints' extent)",
    )
    p.add_argument(
        "--focal", type=float, default=None, help="focal length in pixels (default max(H, W))"
    )
    add_world_arguments(p)
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument(
        "--int8",
        action="store_true",
        help="int8 network weights on the CPU: about 2x faster network, accuracy in the README",
    )
    p.add_argument(
        "--chunk-size",
        type=positive_int,
        default=CHUNK,
        help=f"detections processed at a time (bounds memory; results do not depend on it; default {CHUNK})",
    )


def run(args: argparse.Namespace) -> int:
    from key2mesh.inference.pipeline import predict_files, write_meshes
    from key2mesh.inference.predictor import Key2Mesh
    from key2mesh.safe_paths import atomic_savez

    plan = _plan(args)
    motion_options(args)  # --world / --origin / --subject errors before any work
    model = Key2Mesh.from_pretrained(args.checkpoint, device=args.device, int8=args.int8)
    if plan.formats:  # before any prediction
        from key2mesh.inference.motion_export import check_formats

        check_formats(plan.formats, str(model.checkpoint.body.get("name", "anny")))
    model.min_keypoints = args.min_keypoints
    table = predict_files(
        model, args.inputs, args.keypoint_set, smooth=args.smooth, chunk_size=args.chunk_size
    )
    out = atomic_savez(
        plan.out, **table.arrays, keypoint_set=model.keypoint_set, body=str(model.checkpoint.body)
    )
    why = ", ".join(f"{c} {reason}" for reason, c in table.skipped.items())
    print(
        f"wrote {out}: {len(table)} predictions ({sum(table.skipped.values())} of {table.total} detections skipped"
        f"{': ' + why if why else ''})"
    )
    _write_motions(model, args, plan)
    if plan.mesh_dir is not None:
        mesh_dir = plan.mesh_dir
        n = write_meshes(model, table, mesh_dir, args.meshes, args.chunk_size)
        print(f"wrote {n} meshes to {mesh_dir}/")
    return 0


@dataclass
class _Plan:
    """What a predict run writes, checked before anything is written."""

    names: OutputNames
    out: Path
    stems: list[str]
    mesh_dir: Path | None
    formats: tuple[str, ...]
    image_size: tuple[int, int] | None


def _plan(args: argparse.Namespace) -> _Plan:
    """Every file the run writes: ``--out`` (with ``.npz``), per input ``<stem>_params.npz/.json``
    and ``<stem>_track*`` exports beside it, the meshes folder; none may be an input or another
    output (one line, exit 2)."""
    from key2mesh.errors import Key2MeshError
    from key2mesh.inference.motion_export import export_pattern, parse_formats
    from key2mesh.safe_paths import output_file, output_stems, stem_path

    if not math.isfinite(args.fps) or args.fps <= 0:
        raise Key2MeshError(f"--fps must be a positive number, got {args.fps}")
    if args.focal is not None and not (math.isfinite(args.focal) and args.focal > 0):
        raise Key2MeshError(f"--focal must be a positive number of pixels, got {args.focal}")
    formats = parse_formats(args.export)
    size = _image_size(args.image_size)
    names = OutputNames([*args.inputs, args.checkpoint])
    out = names.claim(output_file(args.out, ".npz"), "--out")
    stems = output_stems(args.inputs)
    for path, stem in zip(args.inputs, stems):
        for tail in ("_params.npz", "_params.json"):
            names.claim(stem_path(out.parent, stem, tail), f"the motion table of {path}")
        if formats:
            names.claim_family(out.parent, export_pattern(stem, formats), f"the exports of {path}")
    mesh_dir = None
    if args.meshes:
        mesh_dir = names.claim(out.with_name(out.name[: -len(".npz")] + "_meshes"), "--meshes")
    return _Plan(names, out, stems, mesh_dir, formats, size)


def _image_size(spec: str | None) -> tuple[int, int] | None:
    """``WIDTHxHEIGHT`` → (H, W)."""
    from key2mesh.errors import Key2MeshError

    if not spec:
        return None
    try:
        w, h = (int(v) for v in spec.lower().split("x"))
    except ValueError:
        raise Key2MeshError(
            f"--image-size {spec!r}: expected WIDTHxHEIGHT, e.g. 1920x1080"
        ) from None
    if w < 1 or h < 1:
        raise Key2MeshError(f"--image-size {spec!r}: width and height must be positive")
    return h, w


def _write_motions(model, args: argparse.Namespace, plan: _Plan) -> None:
    """Per input file: ``<stem>_params.npz`` + ``.json`` (the demo's keys: tracks, translation)
    and the ``--export`` files, next to ``--out`` (names from ``plan``)."""
    from key2mesh.inference.motion import MotionSmoothing, write_params
    from key2mesh.inference.motion_export import export_motion
    from key2mesh.inference.pipeline import motion_from_file
    from key2mesh.safe_paths import stem_path

    folder = plan.out.parent
    for path, stem in zip(args.inputs, plan.stems):
        motion = motion_from_file(
            model,
            path,
            args.keypoint_set,
            fps=args.fps,
            image_size=plan.image_size,
            focal=args.focal,
            smoothing=MotionSmoothing("one-euro" if args.smooth else "none"),
            chunk_size=args.chunk_size,
            **motion_options(args),
        )
        if not len(motion):
            print(f"  {path}: no usable, tracked detection: no motion written")
            continue
        params = stem_path(folder, stem, "_params.npz")
        written = list(write_params(motion, params, source=str(path)))
        if plan.formats:
            written += export_motion(
                model, motion, folder, stem, plan.formats, plan.names, f"the exports of {path}"
            )
        print(f"  {path}: {len(motion.tracks())} track(s) -> {', '.join(str(w) for w in written)}")
