"""The one scorer of predicted against ground-truth body parameters (pre-training's validation,
adaptation's labelled validation and source-domain guard): MPJPE, PA-MPJPE (3D keypoints of the
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


def _batch_errors(
    body: BodyModel,
    keypoint_set: str,
    pred_rotmats: torch.Tensor,
    pred_shape: torch.Tensor,
    rotmats: torch.Tensor,
    shape: torch.Tensor,
    with_vertices: bool,
) -> dict[str, torch.Tensor]:
    """Per-sample errors (B,) of one batch: ``mpjpe``, ``pa_mpjpe`` in mm of the keypoints
    (regressed from the meshes with vertices, else the body's own keypoints) and, with vertices,
    ``pve`` in metres (the means sum metres and scale once: the values every run logged)."""
    if not with_vertices:
        pk = body.forward_keypoints(pred_rotmats, pred_shape, keypoint_set)
        gk = body.forward_keypoints(rotmats, shape, keypoint_set)
        return keypoint_errors(pk, gk, keypoint_set)
    po, go = body(pred_rotmats, pred_shape), body(rotmats, shape)
    pk, gk = body.regress(po.vertices, keypoint_set), body.regress(go.vertices, keypoint_set)
    pve = (po.vertices - go.vertices).norm(dim=-1).mean(-1)
    return {**keypoint_errors(pk, gk, keypoint_set), "pve": pve}


@torch.no_grad()
def body_errors(
    body: BodyModel,
    keypoint_set: str,
    pred_rotmats: torch.Tensor,
    pred_shape: torch.Tensor,
    rotmats: torch.Tensor,
    shape: torch.Tensor,
    with_vertices: bool = False,
) -> dict[str, torch.Tensor]:
    """Per-sample errors (N,) in mm of predicted (rotmats (N,24,3,3), shape (N,S)) against
    ground-truth body parameters, in one pass: ``mpjpe`` and ``pa_mpjpe`` of the 3D keypoints
    of ``keypoint_set`` (mid-hip centred; regressed from the meshes when ``with_vertices``, else
    the body's own keypoints) and, with vertices, ``pve``."""
    errors = _batch_errors(
        body, keypoint_set, pred_rotmats, pred_shape, rotmats, shape, with_vertices
    )
    if with_vertices:
        errors["pve"] = errors["pve"] * 1000
    return errors


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
    """The means (mm) of :func:`body_errors` over a batch, ``chunk`` samples at a time."""
    sums = {"mpjpe": 0.0, "pa_mpjpe": 0.0, "pve": 0.0}
    n = pred_rotmats.shape[0]
    for i in range(0, n, chunk):
        sl = slice(i, i + chunk)
        errors = _batch_errors(
            body,
            keypoint_set,
            pred_rotmats[sl],
            pred_shape[sl],
            rotmats[sl],
            shape[sl],
            with_vertices,
        )
        for k, v in errors.items():
            total = float(v.sum())
            sums[k] += total * 1000 if k == "pve" else total
    out = {k: v / n for k, v in sums.items()}
    if not with_vertices:
        out.pop("pve")
    return out
