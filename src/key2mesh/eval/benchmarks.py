"""Scoring a Key2Mesh model on benchmarks: 3DPW, Human3.6M Protocol 2 (user-supplied), benchmark files.

Predictions: the model's body in its world frame (y up, facing +z), rotated into the camera
frame of the ground truth (:func:`model_to_camera_frame`), → H36M-17 joints → the 14 evaluation
joints (LSP order), centred on the protocol's pelvis. Ground truth, by what the user supplies:

- SMPL files (``--smpl-dir`` / ``KEY2MESH_SMPL_DIR``), both datasets: SMPL meshes from the
  dataset's parameters (neutral or gendered per the protocol) and their H36M-17 joints (SPIN's
  ``J_regressor_h36m`` when the SMPL body was built with one). Both pelvis choices (mid-hip,
  H36M root) work; PVE needs the same mesh on both sides (an SMPL-trained model).
- no SMPL files, H3.6M: the npz's ``S`` joints (SPIN's 24-joint layout → H36M-17). Both pelvis
  choices work; no PVE.
- no SMPL files, 3DPW: cannot be scored (its joints are SMPL-24 joints, not H36M ones).
- a key2mesh benchmark file (``key2mesh data pose2sim``) whose ground truth is a detector's
  keypoints (e.g. triangulated COCO-17): the 12 limb joints of the 14 (no neck/head top, whose
  definitions differ between detectors and body models), mid-hip only; no PVE.

PVE with ``pve_align="root"`` subtracts each mesh's pelvis (the protocol's choice) first.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from key2mesh.errors import Key2MeshError
from key2mesh.eval.evaluate import EvalResult, result_from_errors
from key2mesh.eval.metrics import Protocol, per_sample_metrics

GT_CHUNK = 512  # ground-truth SMPL bodies per forward pass (bounds memory on whole test sets)


def model_to_camera_frame(points: torch.Tensor) -> torch.Tensor:
    """Points (..., 3) in metres from the model's world frame to the camera frame: (x, -y, -z).

    The model predicts bodies in its world frame (SMPL's: y up, facing +z); the benchmarks' ground
    truth is in the real camera frame (OpenCV: x right, y down, z forward). This is the rotation
    of the virtual camera (:class:`~key2mesh.geometry.camera.VirtualCamera`, ``diag(1, -1, -1)``)
    without its translation; without it an upright prediction meets an upside-down ground truth
    (PA-MPJPE is unaffected, MPJPE and PVE are not).
    """
    return points * points.new_tensor([1.0, -1.0, -1.0])


def _gt_smpl(
    bench, protocol: Protocol, smpl_dir: str | None, device, h36m_regressor: str | None = None
) -> tuple[torch.Tensor, torch.Tensor, object]:
    """GT H36M-17 joints (N,17,3) and vertices (N,6890,3), metres in the camera frame."""
    from key2mesh.body import load_body_model

    n = len(bench.pose)
    joints = torch.zeros(n, 17, 3)
    verts = None
    genders = bench.genders if protocol.gt_gender == "gendered" else ["neutral"] * n
    body = None
    for gender in sorted(set(genders)):  # one body model per gender
        idx = torch.tensor([i for i, g in enumerate(genders) if g == gender])
        opts = {"joint_regressor_h36m": h36m_regressor} if h36m_regressor else {}
        body = load_body_model(
            "smpl", model_dir=smpl_dir, gender=gender, device=str(device), **opts
        )
        if verts is None:
            verts = torch.zeros(n, body.num_vertices, 3)
        for part in idx.split(GT_CHUNK):  # bounded memory: a whole test set at once took ~30 GB
            with torch.no_grad():
                out = body(bench.pose[part].to(device), bench.betas[part].to(device))
            joints[part] = body.regress(out.vertices, "h36m17").cpu()
            verts[part] = out.vertices.cpu()
    return joints, verts, body


def ground_truth(
    bench,
    protocol: Protocol,
    smpl_dir: str | None = None,
    device="cpu",
    h36m_regressor: str | None = None,
):
    """(joints (N,J,3), their set, vertices (N,V,3) or None) of ``bench`` in the camera frame.

    SMPL meshes when the benchmark has SMPL parameters and SMPL files are available (H36M-17
    joints), else the benchmark's own joints: ``h36m17``, or a detector keypoint set (scored on
    the 12 limb joints, mid-hip only).
    """
    from key2mesh.keypoints.sets import KEYPOINT_SETS

    if bench.pose is not None and (smpl_dir or _smpl_env()):
        joints, verts, _ = _gt_smpl(bench, protocol, smpl_dir, device, h36m_regressor)
        return joints, "h36m17", verts
    if bench.joints3d is not None and bench.joints3d_set == "h36m17":
        return bench.joints3d.float(), "h36m17", None
    if (
        bench.joints3d is not None
        and bench.joints3d_set in KEYPOINT_SETS
        and bench.joints3d_set != "smpl24"
    ):
        if protocol.pelvis != "midhip":
            raise Key2MeshError(
                f"{bench.source}: its {bench.joints3d_set} ground truth has no H36M root; use --pelvis midhip"
            )
        return bench.joints3d.float(), bench.joints3d_set, None
    raise Key2MeshError(
        f"{bench.source}: scoring needs SMPL files for ground-truth meshes (--smpl-dir or "
        f"KEY2MESH_SMPL_DIR); the dataset's own {bench.joints3d_set or 'no'} joints are not H36M joints"
    )


@torch.no_grad()
def score_parameters(
    body,
    rotmats: torch.Tensor,
    shape: torch.Tensor,
    gt_joints: torch.Tensor,
    gt_set: str,
    gt_verts: torch.Tensor | None,
    protocol: Protocol,
    chunk: int = 1024,
    h36m_regressor: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Per-sample errors (mm) of predicted parameters (in the model's world frame) against camera-frame
    ground truth from :func:`ground_truth`: ``mpjpe``, ``pa_mpjpe`` and, on the same mesh, ``pve``.
    ``h36m_regressor`` (17, V): the H36M joint regressor for the predicted mesh (the one the
    ground truth used, e.g. SPIN's); default the body's own."""
    if h36m_regressor is not None and h36m_regressor.shape[-1] != body.num_vertices:
        raise Key2MeshError(
            f"the H36M regressor has {h36m_regressor.shape[-1]} vertices, the predicted mesh "
            f"{body.num_vertices}: it cannot be applied to the predictions"
        )
    from key2mesh.eval.metrics import EVAL12_NAMES
    from key2mesh.keypoints.sets import keypoint_names

    out: dict[str, list[torch.Tensor]] = {}
    idx = None if gt_set == "h36m17" else [keypoint_names(gt_set).index(n) for n in EVAL12_NAMES]
    for i in range(0, len(rotmats), chunk):
        sl = slice(i, i + chunk)
        verts = model_to_camera_frame(body(rotmats[sl], shape[sl]).vertices)
        gj = gt_joints[sl].to(verts)
        if idx is None:
            gv = (
                None
                if gt_verts is None or gt_verts.shape[1] != verts.shape[1]
                else gt_verts[sl].to(verts)
            )
            pj = (
                body.regress(verts, "h36m17")
                if h36m_regressor is None
                else torch.einsum("jv,bvc->bjc", h36m_regressor.to(verts), verts)
            )
            errors = per_sample_metrics(
                pj, gj, None if gv is None else verts, gv, protocol, "h36m17"
            )
        else:
            errors = per_sample_metrics(
                body.regress(verts, gt_set)[:, idx], gj[:, idx], None, None, protocol, "eval12"
            )
        for k, v in errors.items():
            out.setdefault(k, []).append(v.cpu())
    return {k: torch.cat(v) for k, v in out.items()}


def evaluate_benchmark(
    model,
    dataset: str,
    path: str | None,
    protocol: Protocol,
    split: str | None = None,
    detections: str | None = None,
    smpl_dir: str | None = None,
    h36m_regressor: str | None = None,
) -> EvalResult:
    """Load ``dataset`` (``3dpw``, ``h36m-p2`` or a benchmark ``.npz``), predict, and score, with
    bootstrap intervals over the set's instants (multi-view sets) or video sequences.

    ``h36m_regressor``: SPIN's ``J_regressor_h36m.npy`` for the SMPL ground truth's H36M-17 joints
    (default: key2mesh's name-derived regressor). ``split``: the 3DPW split (default ``test``);
    other datasets have none and refuse one (scoring a whole file would mix its dev/test parts)."""
    from key2mesh.data.datasets import load_benchmark

    if split is not None and dataset != "3dpw":
        raise Key2MeshError(
            f"--split {split} applies to 3dpw only; {dataset} has no splits (a benchmark file's "
            "development / test parts are the _dev / _test files of `key2mesh data pose2sim`)"
        )
    bench = load_benchmark(dataset, path, split or "test", detections)
    errors, clusters, dropped = benchmark_errors(model, bench, protocol, smpl_dir, h36m_regressor)
    name = bench.name if dataset not in ("3dpw", "h36m-p2") else f"{dataset} ({bench.source})"
    return result_from_errors(name, errors, protocol, dropped, clusters=clusters)


def benchmark_errors(
    model,
    bench,
    protocol: Protocol,
    smpl_dir: str | None = None,
    h36m_regressor: str | None = None,
) -> tuple[dict[str, torch.Tensor], np.ndarray, int]:
    """Per-sample errors (mm) of ``model`` on a loaded :class:`BenchmarkSet` (scored samples
    only), their cluster ids for intervals and paired differences (instants, or video sequences:
    :meth:`~key2mesh.data.benchmark.BenchmarkSet.interval_clusters`) and the dropped count."""
    gj, gset, gv = ground_truth(bench, protocol, smpl_dir, model.device, h36m_regressor)
    pred = model.predict(
        bench.keypoints2d, bench.confidence, keypoint_set=bench.keypoint_set, mesh=False
    )
    pred_reg = None
    if h36m_regressor and gset == "h36m17" and model.body.num_vertices == 6890:
        # the same regressor on both sides (an SMPL-trained model); another mesh keeps its own
        from key2mesh.body.smpl_backend import SMPLBody

        pred_reg = SMPLBody._load_h36m(Path(h36m_regressor), 6890).float()
    errors = score_parameters(
        model.body, pred.rotmats, pred.shape, gj, gset, gv, protocol, h36m_regressor=pred_reg
    )
    keep = pred.valid.cpu()
    if not bool(keep.any()):
        raise Key2MeshError(
            f"{bench.source}: all {bench.dropped + len(keep)} samples were dropped (too few confident "
            "keypoints, or all on one spot); nothing to score"
        )
    return (
        {k: v[keep.to(v.device)].cpu() for k, v in errors.items()},
        bench.interval_clusters()[keep.numpy()],
        bench.dropped + int((~keep).sum()),
    )


def _smpl_env() -> bool:
    import os

    return bool(os.environ.get("KEY2MESH_SMPL_DIR"))
