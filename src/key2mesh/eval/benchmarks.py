"""Scoring a Key2Mesh model on the user-supplied benchmarks (3DPW, Human3.6M Protocol 2).

Predictions: the model's body → H36M-17 joints → the 14 evaluation joints (LSP order).
Ground truth: SMPL meshes from the dataset's parameters (user-supplied SMPL files, neutral or
gendered per the protocol; H36M-17 from SPIN's ``J_regressor_h36m`` when the SMPL body was built
with one) or, without SMPL files, the dataset's own 14 joints (H3.6M ``S``). PVE needs the same
mesh on both sides (an SMPL-trained model).
"""

from __future__ import annotations

import torch

from key2mesh.errors import Key2MeshError
from key2mesh.eval.evaluate import EvalResult
from key2mesh.eval.metrics import Protocol, eval14, per_sample_metrics


def _gt_smpl(bench, protocol: Protocol, smpl_dir: str | None, device) -> tuple[torch.Tensor, torch.Tensor | None, object]:
    """GT eval-14 joints (N,14,3) and, for an SMPL prediction, vertices (N,6890,3)."""
    from key2mesh.body import load_body_model

    n = len(bench.pose)
    joints = torch.zeros(n, 14, 3)
    verts = None
    genders = bench.genders if protocol.gt_gender == "gendered" else ["neutral"] * n
    body = None
    for gender in sorted(set(genders)):
        idx = torch.tensor([i for i, g in enumerate(genders) if g == gender])
        body = load_body_model("smpl", model_dir=smpl_dir, gender=gender, device=str(device))
        with torch.no_grad():
            out = body(bench.pose[idx].to(device), bench.betas[idx].to(device))
        joints[idx] = eval14(body.regress(out.vertices, "h36m17")).cpu()
        if verts is None:
            verts = torch.zeros(n, out.vertices.shape[1], 3)
        verts[idx] = out.vertices.cpu()
    return joints, verts, body


def evaluate_benchmark(model, dataset: str, path: str | None, protocol: Protocol, split: str = "test",
                       detections: str | None = None, smpl_dir: str | None = None) -> EvalResult:
    """Load ``dataset`` (``3dpw`` or ``h36m-p2``) from ``path``, predict, and score."""
    from key2mesh.eval.datasets import load_3dpw, load_h36m_p2

    if not path:
        raise Key2MeshError(f"--dataset {dataset} needs --path (the dataset is licensed and user-supplied)")
    bench = load_3dpw(path, split) if dataset == "3dpw" else load_h36m_p2(path, detections)
    pred = model.predict(bench.keypoints2d, bench.confidence, keypoint_set=bench.keypoint_set, mesh=False)
    with torch.no_grad():
        out = model.body(pred.rotmats, pred.shape)
    pj = eval14(model.body.regress(out.vertices, "h36m17")).cpu()
    gv = None
    if bench.pose is not None and (smpl_dir or _smpl_env()):
        gj, gv, _ = _gt_smpl(bench, protocol, smpl_dir, model.device)
    elif bench.joints3d is not None and bench.joints3d_set == "lsp14":
        gj = bench.joints3d.float()
    else:
        raise Key2MeshError(f"{bench.source}: ground-truth meshes need SMPL files (--smpl-dir or KEY2MESH_SMPL_DIR)")
    if protocol.pelvis == "h36m_root":
        raise Key2MeshError("the 14 evaluation joints have no H36M root; use --pelvis midhip "
                            "(SPIN's root-centred numbers need the 17-joint ground truth)")
    same_mesh = gv is not None and gv.shape[1] == out.vertices.shape[1]
    pv = out.vertices.cpu() if same_mesh else None
    roots = (pv.mean(1), gv.mean(1)) if same_mesh else (None, None)
    errors = per_sample_metrics(pj, gj, pv, gv if same_mesh else None, protocol, "eval14", *roots)
    keep = pred.valid.cpu()
    return EvalResult(f"{dataset} ({bench.source})", protocol, int(keep.sum()), bench.dropped,
                      float(errors["mpjpe"][keep].mean()), float(errors["pa_mpjpe"][keep].mean()),
                      float(errors["pve"][keep].mean()) if "pve" in errors else None)


def _smpl_env() -> bool:
    import os

    return bool(os.environ.get("KEY2MESH_SMPL_DIR"))
