"""Evaluation metrics in millimetres (inputs in metres): MPJPE, PA-MPJPE, PVE, with explicit
pelvis and alignment choices (conventions differ across the literature; see PAPER.md)."""

from __future__ import annotations

from dataclasses import dataclass

import roma
import torch

from key2mesh.keypoints.sets import H36M_TO_EVAL14, keypoint_names


@dataclass(frozen=True)
class Protocol:
    """gt_gender: 'neutral'|'gendered'; pelvis: 'midhip'|'h36m_root'; pve_align: 'none'|'root'."""

    gt_gender: str = "neutral"
    pelvis: str = "midhip"
    pve_align: str = "none"


PROTOCOLS = {"key2mesh": Protocol("neutral", "midhip", "none"), "spin": Protocol("gendered", "h36m_root", "root")}


def _check(pred: torch.Tensor, gt: torch.Tensor) -> None:
    if pred.shape != gt.shape or pred.ndim != 3 or pred.shape[-1] != 3:
        raise ValueError(f"expected matching (B, N, 3) tensors, got {tuple(pred.shape)} and {tuple(gt.shape)}")


def procrustes_align(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Similarity-align pred (B,N,3) onto gt (B,N,3): s·R·p + t, R a proper rotation."""
    _check(pred, gt)
    r, t, s = roma.rigid_points_registration(pred, gt, compute_scaling=True)
    return s[:, None, None] * pred @ r.transpose(-1, -2) + t[:, None]


def pelvis_of(joints: torch.Tensor, keypoint_set: str, pelvis: str) -> torch.Tensor:
    """(B,3) pelvis of joints (B,K,3): 'h36m_root' (H36M-17 joint 0) or 'midhip' (mean of hips)."""
    names = keypoint_names(keypoint_set)
    if pelvis == "h36m_root":
        if "pelvis" not in names:
            raise ValueError(f"set {keypoint_set!r} has no H36M root")
        return joints[:, names.index("pelvis")]
    if pelvis == "midhip":
        return 0.5 * (joints[:, names.index("left_hip")] + joints[:, names.index("right_hip")])
    raise ValueError(f"unknown pelvis {pelvis!r} (midhip or h36m_root)")


def center_on_pelvis(joints: torch.Tensor, keypoint_set: str, pelvis: str) -> torch.Tensor:
    return joints - pelvis_of(joints, keypoint_set, pelvis)[:, None]


def mpjpe(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Per-sample mean joint error (B,) in mm; centre the inputs first (center_on_pelvis)."""
    _check(pred, gt)
    return (pred - gt).norm(dim=-1).mean(-1) * 1000


def pa_mpjpe(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Per-sample error after similarity Procrustes (B,) in mm."""
    return mpjpe(procrustes_align(pred, gt), gt)


def pve(pred_verts: torch.Tensor, gt_verts: torch.Tensor, align: str = "none",
        pred_root: torch.Tensor | None = None, gt_root: torch.Tensor | None = None) -> torch.Tensor:
    """Per-vertex error (B,) mm; align='root' subtracts the given roots (B,3) first."""
    if align == "root":
        if pred_root is None or gt_root is None:
            raise ValueError("pve(align='root') needs pred_root and gt_root")
        pred_verts, gt_verts = pred_verts - pred_root[:, None], gt_verts - gt_root[:, None]
    elif align != "none":
        raise ValueError(f"unknown PVE alignment {align!r} (none or root)")
    return mpjpe(pred_verts, gt_verts)


def eval14(h36m_joints: torch.Tensor) -> torch.Tensor:
    """The 14 evaluation joints from H36M-17 (B,17,3) → (B,14,3)."""
    return h36m_joints[:, list(H36M_TO_EVAL14)]
