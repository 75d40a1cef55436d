"""Validation of a Key2Mesh network on labelled pairs: MPJPE, PA-MPJPE (3D keypoints of the
model's set, mid-hip centred) and PVE (vertices, root at the origin, unaligned), in mm."""

from __future__ import annotations

import torch

from key2mesh.body.base import BodyModel


def keypoint_errors(
    pred: torch.Tensor, gt: torch.Tensor, keypoint_set: str
) -> dict[str, torch.Tensor]:
    """Per-sample ``mpjpe`` (mid-hip centred) and ``pa_mpjpe`` (B,) in mm of (B,K,3) keypoints."""
    from key2mesh.eval.metrics import center_on_pelvis, pa_mpjpe

    pc = center_on_pelvis(pred, keypoint_set, "midhip")
    gc = center_on_pelvis(gt, keypoint_set, "midhip")
    return {"mpjpe": (pc - gc).norm(dim=-1).mean(-1) * 1000, "pa_mpjpe": pa_mpjpe(pred, gt)}


@torch.no_grad()
def keypoint_metrics(
    body: BodyModel,
    keypoint_set: str,
    pred_rotmats: torch.Tensor,
    pred_shape: torch.Tensor,
    rotmats: torch.Tensor,
    shape: torch.Tensor,
    with_vertices: bool = True,
    chunk: int = 1024,
) -> dict[str, float]:
    """Mean metrics (mm) of predicted vs ground-truth body parameters over a batch."""
    sums = {"mpjpe": 0.0, "pa_mpjpe": 0.0, "pve": 0.0}
    n = pred_rotmats.shape[0]
    for i in range(0, n, chunk):
        sl = slice(i, i + chunk)
        if with_vertices:
            po, go = body(pred_rotmats[sl], pred_shape[sl]), body(rotmats[sl], shape[sl])
            pk, gk = (
                body.regress(po.vertices, keypoint_set),
                body.regress(go.vertices, keypoint_set),
            )
            sums["pve"] += float((po.vertices - go.vertices).norm(dim=-1).mean(-1).sum()) * 1000
        else:
            pk = body.forward_keypoints(pred_rotmats[sl], pred_shape[sl], keypoint_set)
            gk = body.forward_keypoints(rotmats[sl], shape[sl], keypoint_set)
        for k, v in keypoint_errors(pk, gk, keypoint_set).items():
            sums[k] += float(v.sum())
    out = {k: v / n for k, v in sums.items()}
    if not with_vertices:
        out.pop("pve")
    return out
