"""`key2mesh fit`: the optimisation baseline (SMPLify-style), optionally refining Key2Mesh."""

from __future__ import annotations

import argparse
import time

from key2mesh.commands._args import (
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
)
from key2mesh.keypoints.io import MIN_KEYPOINTS

HELP = "fit the body model to 2D keypoint files by optimisation (baseline; --init-from for Key2Mesh + refinement)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", help="OpenPose JSON files/folders, COCO keypoint JSON, .npy/.npz")
    p.add_argument("--keypoint-set", help="keypoint set of the inputs when it cannot be inferred")
    p.add_argument("--fit-set", default="openpose_body25", help="keypoint set the fit uses (inputs are converted)")
    p.add_argument("--body", default="anny", choices=["anny", "smpl"])
    p.add_argument("--smpl-dir", help="SMPL model folder for --body smpl")
    p.add_argument("--init-from", help="checkpoint (or shipped name): start from Key2Mesh's prediction (refinement)")
    p.add_argument("--iters", type=non_negative_int, default=100)
    p.add_argument("--optimizer", choices=["adam", "lbfgs"], default="adam")
    p.add_argument("--lr", type=positive_float)
    p.add_argument("--sigma", type=positive_float, default=0.1, help="Geman-McClure scale (box-normalised units)")
    p.add_argument("--pose-weight", type=non_negative_float, default=1e-3)
    p.add_argument("--batch-size", type=positive_int, default=512)
    p.add_argument("--min-keypoints", type=positive_int, default=MIN_KEYPOINTS, help="skip detections with fewer confident keypoints")
    p.add_argument("--out", default="outputs/fit.npz")


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from key2mesh.body import load_body_model
    from key2mesh.errors import Key2MeshError
    from key2mesh.fitting.smplify import FitWeights, fit_to_keypoints
    from key2mesh.keypoints.io import check_detections, read_detections
    from key2mesh.safe_paths import atomic_savez, refuse_overwriting_inputs

    refuse_overwriting_inputs(args.out, [*args.inputs, args.init_from])
    model = None
    if args.init_from:
        from key2mesh.inference.predictor import Key2Mesh

        model = Key2Mesh.from_pretrained(args.init_from, full_mesh=False)
        body, fit_set = model.body, model.keypoint_set
    else:
        body = load_body_model(args.body, **({"model_dir": args.smpl_dir} if args.body == "smpl" else {}))
        fit_set = args.fit_set
    weights = FitWeights(sigma=args.sigma, pose=args.pose_weight)
    rot_all, shape_all, err_all, names = [], [], [], []
    skipped: dict[str, int] = {}
    total = 0
    t0 = time.perf_counter()
    for path in args.inputs:
        det = read_detections(path, keypoint_set=args.keypoint_set).to(fit_set)
        kp, conf, index = det.flatten()
        total += len(kp)
        # a detection without enough confident keypoints has nothing to fit (its error would read 0)
        check = check_detections(kp, conf, args.min_keypoints)
        for why, count in check.reasons(args.min_keypoints).items():
            skipped[why] = skipped.get(why, 0) + count
        kp, conf, index = kp[check.usable], conf[check.usable], index[check.usable]
        for i in range(0, len(kp), args.batch_size):
            k, c = torch.from_numpy(kp[i:i + args.batch_size]), torch.from_numpy(conf[i:i + args.batch_size])
            init_r = init_s = None
            if model is not None:
                pred = model.predict(k, c, mesh=False)
                init_r, init_s = pred.rotmats, pred.shape
            res = fit_to_keypoints(body, k, c, fit_set, init_rotmats=init_r, init_shape=init_s, iters=args.iters,
                                   lr=args.lr, optimizer=args.optimizer, weights=weights)
            rot_all.append(res.rotmats.detach().cpu().numpy())
            shape_all.append(res.shape.detach().cpu().numpy())
            err_all.append(res.reprojection_error.detach().cpu().numpy())
        names += [f"{det.frame_names[f]}_p{det.person_ids[f, p]}" for f, p in index]
    why = "; ".join(f"{n} {reason}" for reason, n in skipped.items())
    if not names:
        raise Key2MeshError(f"nothing to fit in {', '.join(args.inputs)}: {total} detections read"
                            f"{', none usable (' + why + ')' if why else ''}")
    err = np.concatenate(err_all)
    out = atomic_savez(args.out, rotmats=np.concatenate(rot_all), shape=np.concatenate(shape_all), reprojection_error=err,
             names=np.array(names), body=str(body.config()), keypoint_set=fit_set)
    print(f"wrote {out}: {len(names)} fits in {time.perf_counter() - t0:.1f} s, "
          f"mean normalised re-projection error {err.mean():.4f}"
          f"{f' ({total - len(names)} of {total} detections skipped: {why})' if why else ''}")
    return 0
