"""`key2mesh predict`: keypoint files in, body parameters (and meshes) out."""

from __future__ import annotations

import argparse

from key2mesh.commands._args import positive_int
from key2mesh.keypoints.io import MIN_KEYPOINTS

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
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument(
        "--chunk-size",
        type=positive_int,
        default=CHUNK,
        help=f"detections processed at a time (bounds memory; results do not depend on it; default {CHUNK})",
    )


def run(args: argparse.Namespace) -> int:
    from key2mesh.inference.pipeline import predict_files, write_meshes
    from key2mesh.inference.predictor import Key2Mesh
    from key2mesh.safe_paths import atomic_savez, refuse_overwriting_inputs

    refuse_overwriting_inputs(args.out, [*args.inputs, args.checkpoint])
    model = Key2Mesh.from_pretrained(args.checkpoint, device=args.device)
    model.min_keypoints = args.min_keypoints
    table = predict_files(
        model, args.inputs, args.keypoint_set, smooth=args.smooth, chunk_size=args.chunk_size
    )
    out = atomic_savez(
        args.out, **table.arrays, keypoint_set=model.keypoint_set, body=str(model.checkpoint.body)
    )
    why = ", ".join(f"{c} {reason}" for reason, c in table.skipped.items())
    print(
        f"wrote {out}: {len(table)} predictions ({sum(table.skipped.values())} of {table.total} detections skipped"
        f"{': ' + why if why else ''})"
    )
    if args.meshes:
        mesh_dir = out.with_name(out.stem + "_meshes")
        n = write_meshes(model, table, mesh_dir, args.meshes, args.chunk_size)
        print(f"wrote {n} meshes to {mesh_dir}/")
    return 0
