"""`key2mesh predict`: keypoint files in, body parameters (and meshes) out."""

from __future__ import annotations

import argparse
import logging

from key2mesh.commands._args import positive_int
from key2mesh.keypoints.io import MIN_KEYPOINTS

HELP = "predict body parameters (and optional meshes) from keypoint files (OpenPose JSON, COCO JSON, npz)"
log = logging.getLogger(__name__)
CHUNK = 4096  # detections per chunk: outputs beyond the compact parameters are never held for more
MESH_BATCH = 256  # bodies per mesh batch (their vertices are dropped once the meshes are written)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", help="OpenPose JSON files/folders, COCO keypoint JSON, .npy/.npz")
    p.add_argument("--checkpoint", default="anny-body25", help="checkpoint file or shipped model name (default anny-body25)")
    p.add_argument("--keypoint-set", help="keypoint set of the inputs when it cannot be inferred (e.g. coco17)")
    p.add_argument("--out", default="outputs/predictions.npz", help="npz with parameters per frame and person")
    p.add_argument("--meshes", choices=["obj", "ply", "glb"], help="also write one mesh per detection into OUT_meshes/")
    p.add_argument("--smooth", action="store_true", help="One-Euro smoothing over frames per tracked person")
    p.add_argument("--min-keypoints", type=positive_int, default=MIN_KEYPOINTS, help="skip detections with fewer confident keypoints")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--chunk-size", type=positive_int, default=CHUNK,
                   help=f"detections processed at a time (bounds memory; results do not depend on it; default {CHUNK})")


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch
    from tqdm import tqdm

    from key2mesh.errors import Key2MeshError
    from key2mesh.inference.predictor import Key2Mesh
    from key2mesh.keypoints.io import check_detections, read_detections
    from key2mesh.safe_paths import atomic_savez, refuse_overwriting_inputs

    refuse_overwriting_inputs(args.out, [*args.inputs, args.checkpoint])
    model = Key2Mesh.from_pretrained(args.checkpoint, device=args.device)
    rows: dict[str, list] = {k: [] for k in ("source", "frame", "frame_name", "person_id", "rotmats", "shape", "keypoints3d")}
    skipped: dict[str, int] = {}
    total = 0
    for path in args.inputs:
        det = read_detections(path, keypoint_set=args.keypoint_set)
        kp, conf, index = det.flatten()
        total += len(kp)
        check = check_detections(kp, conf, args.min_keypoints, model.normalization.conf_threshold)
        ok = check.usable
        for mask, why in ((check.too_few, f"fewer than {args.min_keypoints} keypoints"),
                          (check.degenerate, "degenerate detection: all keypoints on one spot")):
            for f in np.unique(index[mask, 0]):
                log.warning("%s frame %s: detection skipped (%s)", path, det.frame_names[f], why)
        for why, count in check.reasons(args.min_keypoints).items():
            skipped[why] = skipped.get(why, 0) + count
        if not ok.any():
            continue
        kp, conf, index = kp[ok], conf[ok], index[ok]
        rot, shape, kp3d = [], [], []
        for _, pred in model.predict_chunks(kp, conf, keypoint_set=det.keypoint_set, chunk_size=args.chunk_size):
            rot.append(pred.rotmats.cpu())
            shape.append(pred.shape.cpu())
            kp3d.append(pred.keypoints3d.cpu())
        rot, shape, kp3d = torch.cat(rot), torch.cat(shape), torch.cat(kp3d)
        pids = det.person_ids[index[:, 0], index[:, 1]]
        if args.smooth:  # over whole tracks (compact parameters), then the keypoints again, chunk by chunk
            rot, shape = _smooth_tracks(rot, shape, index[:, 0], pids)
            kp3d = model.keypoints3d(rot, shape, args.chunk_size)
        rows["source"] += [str(path)] * len(kp)
        rows["frame"].append(index[:, 0])
        rows["frame_name"] += [det.frame_names[f] for f in index[:, 0]]
        rows["person_id"].append(pids)
        rows["rotmats"].append(rot.numpy())
        rows["shape"].append(shape.numpy())
        rows["keypoints3d"].append(kp3d.numpy())
    if not rows["rotmats"]:
        why = "; ".join(f"{n} {reason}" for reason, n in skipped.items()) or "no detection in the files"
        raise Key2MeshError(f"no usable detection (at least {args.min_keypoints} keypoints, not all on one spot) in "
                            f"{', '.join(args.inputs)}: {total} detections read ({why})")
    arrays = {k: (np.concatenate(v) if k in ("frame", "person_id", "rotmats", "shape", "keypoints3d") else np.array(v)) for k, v in rows.items()}
    out = atomic_savez(args.out, **arrays, keypoint_set=model.keypoint_set, body=str(model.checkpoint.body))
    n = len(arrays["rotmats"])
    why = ", ".join(f"{c} {reason}" for reason, c in skipped.items())
    print(f"wrote {out}: {n} predictions ({sum(skipped.values())} of {total} detections skipped{': ' + why if why else ''})")
    if args.meshes:
        from key2mesh.inference.meshes import write_mesh
        from key2mesh.safe_paths import unique_names

        mesh_dir = out.with_name(out.stem + "_meshes")
        # names come from inside the input files: plain, unique file names inside mesh_dir only
        stems = unique_names(f"{fn}_p{pid}" for fn, pid in zip(arrays["frame_name"], arrays["person_id"]))
        rot_t, shape_t = torch.from_numpy(arrays["rotmats"]), torch.from_numpy(arrays["shape"])
        faces = model.faces.cpu().numpy()
        batch = min(MESH_BATCH, args.chunk_size)
        with tqdm(total=n, desc="meshes") as bar:
            for part, verts in model.mesh_chunks(rot_t, shape_t, batch):
                for j, k in enumerate(range(part.start, part.stop)):
                    write_mesh(verts[j], faces, mesh_dir / f"{stems[k]}.{args.meshes}")
                bar.update(len(verts))
                del verts  # this batch's vertices go before the next batch is computed
        print(f"wrote {n} meshes to {mesh_dir}/")
    return 0


def _smooth_tracks(rot, shape, frames, pids):
    """One-Euro filter of 6D rotations and shape along frames, separately per person id."""
    import numpy as np
    import torch

    from key2mesh.geometry.rotations import matrix_to_rot6d, rot6d_to_matrix
    from key2mesh.inference.smoothing import one_euro

    rot, shape = rot.clone(), shape.clone()
    for pid in np.unique(pids):
        sel = np.nonzero(pids == pid)[0]
        sel = sel[np.argsort(frames[sel])]
        if len(sel) < 3:
            continue
        six = one_euro(matrix_to_rot6d(rot[sel]).numpy())
        rot[sel] = rot6d_to_matrix(torch.from_numpy(np.asarray(six, dtype=np.float32)))
        shape[sel] = torch.from_numpy(np.asarray(one_euro(shape[sel].numpy()), dtype=np.float32))
    return rot, shape
