"""Batch scaling of Key2Mesh + refinement (``fit_to_keypoints`` from the network's prediction,
Adam, 50 iterations): the same 152 inputs fitted one at a time and in one batch. The inputs are
the shipped model's own keypoint set, projected from random poses and shapes of the training
body through the virtual camera (fixed seed), so the run needs no data files.

    .venv/bin/python benchmarks/refine_scaling.py [--threads 2] [--num 152] [--iters 50]

The last line is ``RESULT refine_b1_s=... refine_b152_s=... refine_b152_over_b1=...``.
"""

from __future__ import annotations

import argparse
import time

import torch
from _common import random_poses, record_results


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--checkpoint", default="anny-coco17")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--num", type=int, default=152)
    p.add_argument("--iters", type=int, default=50)
    p.add_argument("--singles", type=int, default=3, help="batch-1 runs (median)")
    a = p.parse_args()
    record_results(f"refine_scaling_threads{a.threads}", "Refinement batch scaling")
    torch.set_num_threads(a.threads)
    from key2mesh.fitting.smplify import fit_to_keypoints
    from key2mesh.inference.predictor import Key2Mesh

    model = Key2Mesh.from_pretrained(a.checkpoint, device="cpu", full_mesh=False)
    body, kset = model.body, model.keypoint_set
    g = torch.Generator().manual_seed(0)
    shape = body.default_shape(a.num) + 0.15 * torch.randn(a.num, body.shape_dim, generator=g)
    shape = shape.clamp(0, 1)
    with torch.no_grad():
        kp3d = body.forward_keypoints(random_poses(a.num, 0.3, seed=1), shape, kset)
    kp = model.camera.project(kp3d) + 2.0 * torch.randn(*kp3d.shape[:2], 2, generator=g)
    conf = torch.ones(kp.shape[:2])

    def refine(sel: slice) -> torch.Tensor:
        pred = model.predict(kp[sel], conf[sel], mesh=False)
        res = fit_to_keypoints(
            body,
            kp[sel],
            conf[sel],
            kset,
            init_rotmats=pred.rotmats,
            init_shape=pred.shape,
            iters=a.iters,
        )
        return res.reprojection_error

    refine(slice(0, 1))  # warm-up
    singles = []
    for i in range(a.singles):
        t0 = time.perf_counter()
        refine(slice(i, i + 1))
        singles.append(time.perf_counter() - t0)
    t_one = sorted(singles)[len(singles) // 2]
    t0 = time.perf_counter()
    err = refine(slice(0, a.num))
    t_all = time.perf_counter() - t0
    print(f"checkpoint {a.checkpoint}, {a.threads} threads, {a.iters} Adam iterations")
    print(f"batch 1:   {t_one:.3f} s (median of {a.singles} inputs)")
    print(
        f"batch {a.num}: {t_all:.3f} s ({t_all / t_one:.1f}x batch 1, {a.num * t_one / t_all:.1f}x faster than one at a time)"
    )
    print(f"mean reprojection error after refinement: {err.mean():.4f} (bbox units)")
    print(
        f"RESULT refine_b1_s={t_one:.3f} refine_b{a.num}_s={t_all:.3f} "
        f"refine_b{a.num}_over_b1={t_all / t_one:.2f} threads={a.threads}"
    )


if __name__ == "__main__":
    main()
