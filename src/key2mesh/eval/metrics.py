"""Evaluation metrics in millimetres (inputs in metres): MPJPE, PA-MPJPE, PVE.

Conventions differ across the literature (PAPER.md), so every choice is explicit:

- the pelvis used to centre joints before MPJPE: ``"h36m_root"`` (H36M-17 joint 0) or
  ``"midhip"`` (mean of the two hips);
- PVE alignment: ``"none"`` (vertices as predicted, camera/root-relative frame of the caller)
  or ``"root"`` (subtract a root point of each mesh first);
- the ground-truth mesh gender (used by the dataset side, recorded in :class:`Protocol`).

All per-sample functions are batched (no loops over samples) and return ``(B,)`` errors in mm.
Shape mistakes raise :class:`ValueError` (these are internal APIs, not user input). A
non-finite sample yields a NaN error; :func:`compute_metrics` refuses non-finite inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import roma
import torch

from key2mesh.keypoints.sets import H36M17, H36M_TO_EVAL14, keypoint_names

PELVIS_CHOICES = ("midhip", "h36m_root")
PVE_ALIGN_CHOICES = ("none", "root")
GENDER_CHOICES = ("neutral", "gendered")

EVAL14 = tuple(H36M_TO_EVAL14)
# Names of the 14 evaluation joints (their H36M-17 names, in EVAL14 order); "eval14" is accepted
# as a keypoint set name by the pelvis helpers below (it has hips but no H36M root).
EVAL14_NAMES = tuple(H36M17[i] for i in EVAL14)
# The 12 limb joints of the 14 (no neck, no head top): what detector-defined ground truth (e.g.
# triangulated COCO keypoints) shares with every body model's regressor. Mid-hip only.
EVAL12_NAMES = tuple(n for n in EVAL14_NAMES if n not in ("thorax", "head_top"))

MM = 1000.0  # metres -> millimetres


@dataclass(frozen=True)
class Protocol:
    """Evaluation switches.

    gt_gender: ``"neutral"`` | ``"gendered"`` ground-truth mesh; pelvis: ``"midhip"`` |
    ``"h36m_root"``; pve_align: ``"none"`` | ``"root"``.
    """

    gt_gender: str = "neutral"
    pelvis: str = "midhip"
    pve_align: str = "none"

    def __post_init__(self) -> None:
        for field, value, choices in (
            ("gt_gender", self.gt_gender, GENDER_CHOICES),
            ("pelvis", self.pelvis, PELVIS_CHOICES),
            ("pve_align", self.pve_align, PVE_ALIGN_CHOICES),
        ):
            if value not in choices:
                raise ValueError(f"Protocol.{field} must be one of {choices}, got {value!r}")


# Key2Mesh's own protocol (neutral GT, mid-hip, PVE unaligned) and SPIN's (gendered, H36M root,
# PVE after root alignment).
PROTOCOLS: dict[str, Protocol] = {
    "key2mesh": Protocol("neutral", "midhip", "none"),
    "spin": Protocol("gendered", "h36m_root", "root"),
}


def get_protocol(protocol: Protocol | str) -> Protocol:
    """A :class:`Protocol` from itself or a preset name (``"key2mesh"``, ``"spin"``)."""
    if isinstance(protocol, Protocol):
        return protocol
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; presets: {', '.join(PROTOCOLS)}")
    return PROTOCOLS[protocol]


def _check(pred: torch.Tensor, gt: torch.Tensor, what: str = "points") -> None:
    if pred.ndim != 3 or pred.shape[-1] != 3 or pred.shape != gt.shape:
        raise ValueError(
            f"{what}: expected matching (B, N, 3) tensors, got {tuple(pred.shape)} and {tuple(gt.shape)}"
        )


def _names(keypoint_set: str) -> tuple[str, ...]:
    if keypoint_set in ("eval14", "eval12"):
        return EVAL14_NAMES if keypoint_set == "eval14" else EVAL12_NAMES
    return keypoint_names(keypoint_set)


def procrustes_align(
    pred: torch.Tensor, gt: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Similarity-align ``pred`` (B,N,3) onto ``gt`` (B,N,3): returns ``s·R·p + t`` (B,N,3).

    Least squares over scale ``s``, proper rotation ``R`` (det +1: a mirrored cloud is not
    matched by a reflection) and translation ``t`` (Umeyama, via roma). ``weights`` (B,N) or
    (N,) are optional non-negative per-point weights. A collapsed prediction (all points equal)
    maps to the (weighted) centroid of ``gt``.
    """
    _check(pred, gt)
    if weights is not None:
        weights = torch.as_tensor(weights, dtype=pred.dtype, device=pred.device)
        if weights.shape not in (pred.shape[1:2], pred.shape[:2]):
            raise ValueError(
                f"weights must be (N,) or (B, N) for points {tuple(pred.shape)}, got {tuple(weights.shape)}"
            )
        weights = weights.expand(pred.shape[:2])
        if not bool(((weights >= 0) & weights.isfinite()).all()) or not bool(
            (weights.sum(-1) > 0).all()
        ):
            raise ValueError(
                "weights must be finite, non-negative and not all zero for a sample "
                "(a zero total gave a NaN alignment)"
            )
    r, t, s = roma.rigid_points_registration(pred, gt, weights=weights, compute_scaling=True)
    aligned = s[:, None, None] * pred @ r.transpose(-1, -2) + t[:, None]
    w = (
        torch.ones(pred.shape[:2], dtype=pred.dtype, device=pred.device)
        if weights is None
        else weights
    )
    w = w / w.sum(-1, keepdim=True)
    centroid = (w[..., None] * gt).sum(-2, keepdim=True)
    spread = (w * (pred - (w[..., None] * pred).sum(-2, keepdim=True)).square().sum(-1)).sum(-1)
    degenerate = (spread <= torch.finfo(pred.dtype).tiny)[:, None, None]
    return torch.where(degenerate, centroid.expand_as(gt), aligned)


def pelvis_of(joints: torch.Tensor, keypoint_set: str, pelvis: str) -> torch.Tensor:
    """(B,3) pelvis of ``joints`` (B,K,3) in the named set.

    ``"h36m_root"``: the H36M-17 root joint (the set must contain ``pelvis``);
    ``"midhip"``: the mean of ``left_hip`` and ``right_hip`` (also for sets with a ``mid_hip``
    point, so every set uses the same definition). ``keypoint_set`` may be ``"eval14"``.
    """
    names = _names(keypoint_set)
    if joints.ndim != 3 or joints.shape[1:] != (len(names), 3):
        raise ValueError(
            f"joints of set {keypoint_set!r} must be (B, {len(names)}, 3), got {tuple(joints.shape)}"
        )
    if pelvis == "h36m_root":
        if "pelvis" not in names:
            raise ValueError(f"set {keypoint_set!r} has no H36M root joint; use pelvis='midhip'")
        return joints[:, names.index("pelvis")]
    if pelvis == "midhip":
        if "left_hip" not in names or "right_hip" not in names:
            raise ValueError(f"set {keypoint_set!r} has no left_hip/right_hip")
        return 0.5 * (joints[:, names.index("left_hip")] + joints[:, names.index("right_hip")])
    raise ValueError(f"unknown pelvis {pelvis!r}; use one of {PELVIS_CHOICES}")


def center_on_pelvis(joints: torch.Tensor, keypoint_set: str, pelvis: str) -> torch.Tensor:
    """``joints`` (B,K,3) minus their pelvis (see :func:`pelvis_of`)."""
    return joints - pelvis_of(joints, keypoint_set, pelvis)[:, None]


def eval14(h36m_joints: torch.Tensor) -> torch.Tensor:
    """The 14 evaluation joints from H36M-17: (B,17,3) → (B,14,3) (``H36M_TO_EVAL14``)."""
    if h36m_joints.ndim != 3 or h36m_joints.shape[1] != len(H36M17):
        raise ValueError(f"expected H36M-17 joints (B, 17, 3), got {tuple(h36m_joints.shape)}")
    return h36m_joints[:, list(EVAL14)]


def mpjpe(
    pred: torch.Tensor, gt: torch.Tensor, pelvis: str | None = None, keypoint_set: str = "h36m17"
) -> torch.Tensor:
    """Mean per-joint position error (B,) in mm of ``pred``/``gt`` (B,N,3) in metres.

    ``pelvis=None`` compares the points as given; ``"midhip"`` / ``"h36m_root"`` first centres
    each side on its own pelvis, found in the named ``keypoint_set`` (``"eval14"`` allowed).
    """
    _check(pred, gt, "mpjpe")
    if pelvis is not None:
        pred, gt = (
            center_on_pelvis(pred, keypoint_set, pelvis),
            center_on_pelvis(gt, keypoint_set, pelvis),
        )
    return (pred - gt).norm(dim=-1).mean(-1) * MM


def pa_mpjpe(
    pred: torch.Tensor, gt: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Per-sample error (B,) in mm after similarity Procrustes alignment of ``pred`` onto ``gt``."""
    return mpjpe(procrustes_align(pred, gt, weights), gt)


def pve(
    pred_verts: torch.Tensor,
    gt_verts: torch.Tensor,
    align: str = "none",
    pred_root: torch.Tensor | None = None,
    gt_root: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-vertex error (B,) in mm of meshes (B,V,3) in metres (same topology).

    ``align="none"``: vertices as given; ``"root"``: subtract ``pred_root`` / ``gt_root`` (B,3)
    from each mesh first (e.g. the pelvis joint of each body).
    """
    _check(pred_verts, gt_verts, "pve")
    if align == "root":
        if pred_root is None or gt_root is None:
            raise ValueError("pve(align='root') needs pred_root and gt_root (B, 3)")
        b = pred_verts.shape[0]
        if pred_root.shape != (b, 3) or gt_root.shape != (b, 3):
            raise ValueError(
                f"roots must be ({b}, 3), got {tuple(pred_root.shape)} and {tuple(gt_root.shape)}"
            )
        pred_verts, gt_verts = pred_verts - pred_root[:, None], gt_verts - gt_root[:, None]
    elif align != "none":
        raise ValueError(f"unknown PVE alignment {align!r}; use one of {PVE_ALIGN_CHOICES}")
    return (pred_verts - gt_verts).norm(dim=-1).mean(-1) * MM


def per_sample_metrics(
    pred_joints: torch.Tensor,
    gt_joints: torch.Tensor,
    pred_verts: torch.Tensor | None = None,
    gt_verts: torch.Tensor | None = None,
    protocol: Protocol | str = "key2mesh",
    keypoint_set: str = "h36m17",
    pred_root: torch.Tensor | None = None,
    gt_root: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Per-sample ``mpjpe``, ``pa_mpjpe`` (and ``pve``) (B,) in mm under ``protocol``.

    Joints (B,17,3) in ``"h36m17"`` (centred on the protocol's pelvis, then reduced to the 14
    evaluation joints), (B,14,3) in ``"eval14"`` or (B,12,3) in ``"eval12"`` order (mid-hip only).
    PA-MPJPE uses the 14 (12) joints. PVE needs both vertex tensors; with ``pve_align="root"`` the roots default to each
    side's pelvis (protocol's choice) of the joints.
    """
    protocol = get_protocol(protocol)
    _check(pred_joints, gt_joints, "joints")
    if keypoint_set not in ("h36m17", "eval14", "eval12"):
        raise ValueError(
            f"compute_metrics works on 'h36m17', 'eval14' or 'eval12' joints, got {keypoint_set!r}"
        )
    pc = center_on_pelvis(pred_joints, keypoint_set, protocol.pelvis)
    gc = center_on_pelvis(gt_joints, keypoint_set, protocol.pelvis)
    if keypoint_set == "h36m17":
        pc, gc, p14, g14 = eval14(pc), eval14(gc), eval14(pred_joints), eval14(gt_joints)
    else:
        p14, g14 = pred_joints, gt_joints
    out = {"mpjpe": mpjpe(pc, gc), "pa_mpjpe": pa_mpjpe(p14, g14)}
    if (pred_verts is None) != (gt_verts is None):
        raise ValueError("PVE needs both pred_verts and gt_verts")
    if pred_verts is not None and gt_verts is not None:
        if pred_verts.shape[0] != pred_joints.shape[0]:
            raise ValueError(f"{pred_verts.shape[0]} meshes for {pred_joints.shape[0]} joint sets")
        if protocol.pve_align == "root":
            pred_root = (
                pelvis_of(pred_joints, keypoint_set, protocol.pelvis)
                if pred_root is None
                else pred_root
            )
            gt_root = (
                pelvis_of(gt_joints, keypoint_set, protocol.pelvis) if gt_root is None else gt_root
            )
        out["pve"] = pve(pred_verts, gt_verts, protocol.pve_align, pred_root, gt_root)
    return out


def compute_metrics(
    pred_joints: torch.Tensor,
    gt_joints: torch.Tensor,
    pred_verts: torch.Tensor | None = None,
    gt_verts: torch.Tensor | None = None,
    protocol: Protocol | str = "key2mesh",
    keypoint_set: str = "h36m17",
    pred_root: torch.Tensor | None = None,
    gt_root: torch.Tensor | None = None,
) -> dict[str, float]:
    """Mean ``mpjpe``, ``pa_mpjpe`` (and ``pve``) in mm plus the sample ``count``.

    Same arguments as :func:`per_sample_metrics`; non-finite inputs and an empty batch raise
    :class:`ValueError` (a mean over NaNs, or over nothing, would hide the failure).
    """
    for name, t in (
        ("pred_joints", pred_joints),
        ("gt_joints", gt_joints),
        ("pred_verts", pred_verts),
        ("gt_verts", gt_verts),
        ("pred_root", pred_root),
        ("gt_root", gt_root),
    ):
        if t is not None and not bool(torch.isfinite(t).all()):
            bad = int((~torch.isfinite(t)).flatten(1).any(-1).sum()) if t.ndim > 1 else -1
            raise ValueError(f"{name} {tuple(t.shape)} has non-finite values in {bad} sample(s)")
    errors = per_sample_metrics(
        pred_joints, gt_joints, pred_verts, gt_verts, protocol, keypoint_set, pred_root, gt_root
    )
    if len(pred_joints) == 0:  # the means of no sample would be NaN
        raise ValueError("no samples to score: pred_joints and gt_joints are empty (B = 0)")
    out: dict[str, float] = {k: float(v.mean()) for k, v in errors.items()}
    out["count"] = int(pred_joints.shape[0])
    return out
