"""`key2mesh predict`: keypoint files in, one motion table per file (and meshes, exports) out."""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path

from key2mesh.commands._args import (
    MIN_KEYPOINTS,
    add_checkpoint_argument,
    add_device_argument,
    add_out_argument,
    add_smoothing_arguments,
    positive_float,
    positive_int,
)
from key2mesh.commands._world import add_world_arguments, motion_options
from key2mesh.safe_paths import OutputNames

HELP = "predict body parameters (and optional meshes, motion files) from keypoint files (OpenPose JSON, COCO JSON, npz)"
CHUNK = 4096  # detections per chunk (key2mesh.inference.pipeline.CHUNK; not imported: torch)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "inputs", nargs="+", help="OpenPose JSON files/folders, COCO keypoint JSON, .npy/.npz"
    )
    add_checkpoint_argument(
        p, "checkpoint file, shipped model name or ensemble ('a.pt+b.pt')", default="anny-body25"
    )
    p.add_argument(
        "--keypoint-set", help="keypoint set of the inputs when it cannot be inferred (e.g. coco17)"
    )
    add_out_argument(
        p,
        "<stem>_params.npz + .json per input file (the motion table), its exports and meshes",
        default="outputs/predict",
    )
    p.add_argument(
        "--meshes",
        choices=["obj", "ply", "glb"],
        help="also write one mesh per row of the motion table into OUT/<stem>_meshes/",
    )
    add_smoothing_arguments(p)
    p.add_argument(
        "--min-keypoints",
        type=positive_int,
        default=MIN_KEYPOINTS,
        help="skip detections with fewer confident keypoints (default: %(default)s)",
    )
    p.add_argument(
        "--export",
        default=None,
        metavar="FORMATS",
        help="motion files per track and input file, comma-separated: bvh, glb, trc, amass (SMPL)",
    )
    p.add_argument(
        "--fps",
        type=positive_float,
        default=None,
        help="frame rate of the input's frames, Hz (their clock) (default: the file's, as a "
        "motion table records it, else 30)",
    )
    p.add_argument(
        "--image-size",
        default=None,
        metavar="WxH",
        help="WIDTHxHEIGHT of the images, for the camera fit (when not given: from the file, "
        "else the keypoints' extent)",
    )
    p.add_argument(
        "--focal",
        type=positive_float,
        default=None,
        help="focal length in pixels (when not given: max(H, W))",
    )
    add_world_arguments(p)
    add_device_argument(p)
    p.add_argument(
        "--int8",
        action="store_true",
        help="int8 network weights on the CPU: about 2x faster network (accuracy: docs)",
    )
    p.add_argument(
        "--chunk-size",
        type=positive_int,
        default=CHUNK,
        help="detections processed at a time (bounds memory; results do not depend on it) "
        "(default: %(default)s)",
    )


def run(args: argparse.Namespace) -> int:
    from key2mesh.commands._args import smoothing
    from key2mesh.errors import Key2MeshError
    from key2mesh.inference.motion import write_params
    from key2mesh.inference.motion_export import check_formats, export_motion
    from key2mesh.inference.pipeline import no_usable_detection, predict_file, write_meshes
    from key2mesh.inference.predictor import Key2Mesh
    from key2mesh.safe_paths import stem_path

    plan = _plan(args)
    options = motion_options(args)  # --world / --origin / --subject errors before any work
    smooth = smoothing(args)
    model = Key2Mesh.from_pretrained(args.checkpoint, device=args.device, int8=args.int8)
    if plan.formats:  # before any prediction
        check_formats(plan.formats, str(model.checkpoint.body.get("name", "anny")))
    model.min_keypoints = args.min_keypoints
    total, rows, skipped = 0, 0, {}
    for path, stem in zip(args.inputs, plan.stems):
        result = predict_file(
            model,
            path,
            args.keypoint_set,
            fps=args.fps,
            image_size=plan.image_size,
            focal=args.focal,
            smoothing=smooth,
            chunk_size=args.chunk_size,
            **options,
        )
        total, rows = total + result.total, rows + len(result.motion)
        for reason, n in result.skipped.items():
            skipped[reason] = skipped.get(reason, 0) + n
        if not len(result.motion):
            print(f"  {path}: no usable, tracked detection: no motion written")
            continue
        motion = result.motion
        written = list(write_params(motion, stem_path(plan.out, stem, "_params.npz"), str(path)))
        if plan.formats:
            written += export_motion(
                model, motion, plan.out, stem, plan.formats, plan.names, f"the exports of {path}"
            )
        if args.meshes:
            mesh_dir = stem_path(plan.out, stem, "_meshes")
            n = write_meshes(model, result, mesh_dir, args.meshes, args.chunk_size)
            written.append(f"{n} meshes in {mesh_dir}/")
        print(f"  {path}: {len(motion.tracks())} track(s) -> {', '.join(str(w) for w in written)}")
    if not rows:
        raise Key2MeshError(no_usable_detection(model, args.inputs, total, skipped))
    why = ", ".join(f"{c} {reason}" for reason, c in skipped.items())
    print(
        f"wrote {plan.out}/: {rows} predictions ({sum(skipped.values())} of {total} detections "
        f"skipped{': ' + why if why else ''})"
    )
    return 0


@dataclass
class _Plan:
    """What a predict run writes, checked before anything is written."""

    names: OutputNames
    out: Path
    stems: list[str]
    formats: tuple[str, ...]
    image_size: tuple[int, int] | None


def _plan(args: argparse.Namespace) -> _Plan:
    """Every file the run writes into the ``--out`` folder: per input ``<stem>_params.npz/.json``,
    ``<stem>_track*`` exports and ``<stem>_meshes/``; none may be an input or another output
    (one line, exit 2)."""
    from key2mesh.commands._args import output_folder
    from key2mesh.errors import Key2MeshError
    from key2mesh.inference.motion_export import export_pattern, parse_formats
    from key2mesh.safe_paths import output_stems, stem_path

    if args.focal is not None and not math.isfinite(args.focal):
        raise Key2MeshError(f"--focal must be a positive number of pixels, got {args.focal}")
    formats = parse_formats(args.export)
    size = _image_size(args.image_size)
    out = output_folder(args.out, writes="<stem>_params.npz per input file")
    names = OutputNames([*args.inputs, args.checkpoint])
    stems = output_stems(args.inputs)
    for path, stem in zip(args.inputs, stems):
        for tail in ("_params.npz", "_params.json"):
            names.claim(stem_path(out, stem, tail), f"the motion table of {path}")
        if formats:
            names.claim_family(out, export_pattern(stem, formats), f"the exports of {path}")
        if args.meshes:
            names.claim(stem_path(out, stem, "_meshes"), f"the meshes of {path}")
    return _Plan(names, out, stems, formats, size)


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
