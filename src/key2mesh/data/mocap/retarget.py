"""SMPL-convention rotations → the anny backend's convention, with rest-pose alignment.

Both conventions use world-aligned local rotations in SMPL's 24-joint tree, but identity means a
different rest pose: SMPL's T-pose (arms along ±x, legs along -y) versus anny's A-pose (arms
~45° down, forearms bent forward, legs slightly apart). For each joint j we take the rotation
``Q_j`` that carries anny's rest direction of the bone j → child(j) onto SMPL's T-pose direction
(the minimal, twist-free rotation). If ``G_j`` are SMPL's global rotations, anny's are
``G_j Q_j`` (every bone then points where SMPL's does), hence the local rotations

    R'_j = Q_parent(j)ᵀ R_j Q_j          (Q_parent(root) = I).

The axial chain (pelvis, spine1-3, neck, head) keeps ``Q = I``: both rest poses stand upright
with a natural spine curvature, and straightening anny's would tilt its head back by ~19°. Leaf
joints (feet, head, hands) take their parent's ``Q``.
"""

from __future__ import annotations

import numpy as np
import roma
import torch

from key2mesh.keypoints.sets import SMPL24, SMPL24_CHILD, SMPL24_PARENTS, SMPL24_SPINE

PARENTS = np.array(SMPL24_PARENTS)
_IDX = {n.removeprefix("smpl_"): i for i, n in enumerate(SMPL24)}

# Bone j → child(j) that defines the rest direction of joint j: the limb entries of
# SMPL24_CHILD (axial joints and leaves absent), without the "smpl_" prefix.
BONE_CHILD: dict[str, str] = {
    j.removeprefix("smpl_"): c.removeprefix("smpl_")
    for j, c in SMPL24_CHILD.items()
    if j not in SMPL24_SPINE
}

# SMPL T-pose direction (unit, y up, x = body's left, facing +z) of the bone j → child(j) for
# every joint of SMPL-24; axial joints point up, leaves continue their parent's bone.
_DOWN, _UP, _LEFT, _RIGHT = (0.0, -1.0, 0.0), (0.0, 1.0, 0.0), (1.0, 0.0, 0.0), (-1.0, 0.0, 0.0)
_FOOT = (0.0, -0.35, 0.94)  # ankle → toes: forward, ~20° down
SMPL_TPOSE_DIRECTIONS: dict[str, tuple[float, float, float]] = {
    "pelvis": _UP, "spine1": _UP, "spine2": _UP, "spine3": _UP, "neck": _UP, "head": _UP,
    "left_hip": _DOWN, "right_hip": _DOWN, "left_knee": _DOWN, "right_knee": _DOWN,
    "left_ankle": _FOOT, "right_ankle": _FOOT, "left_foot": _FOOT, "right_foot": _FOOT,
    "left_collar": _LEFT, "left_shoulder": _LEFT, "left_elbow": _LEFT, "left_wrist": _LEFT, "left_hand": _LEFT,
    "right_collar": _RIGHT, "right_shoulder": _RIGHT, "right_elbow": _RIGHT, "right_wrist": _RIGHT, "right_hand": _RIGHT,
}  # fmt: skip


def smpl_tpose_directions() -> np.ndarray:
    """(24, 3) unit SMPL T-pose bone directions, SMPL-24 order."""
    d = np.array([SMPL_TPOSE_DIRECTIONS[n.removeprefix("smpl_")] for n in SMPL24], dtype=np.float64)
    return d / np.linalg.norm(d, axis=1, keepdims=True)


def global_rotations(rotmats: torch.Tensor) -> torch.Tensor:
    """Local (..., 24, 3, 3) → global (..., 24, 3, 3) rotations along SMPL's tree (parents come
    first in SMPL-24, so one pass suffices)."""
    out = [rotmats[..., 0, :, :]]
    for j in range(1, 24):  # 23 tiny matmuls, each batched over all frames
        out.append(out[PARENTS[j]] @ rotmats[..., j, :, :])
    return torch.stack(out, dim=-3)


def smpl_bone_directions(rotmats: np.ndarray | torch.Tensor) -> np.ndarray:
    """Posed unit bone directions (..., 24, 3) of SMPL-convention rotations (..., 24, 3, 3):
    ``G_j t_j`` with ``t_j`` the T-pose direction table (FK on directions, no skeleton needed)."""
    g = global_rotations(torch.as_tensor(np.asarray(rotmats), dtype=torch.float64))
    return torch.einsum("...jab,jb->...ja", g, torch.from_numpy(smpl_tpose_directions())).numpy()


def _align(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, 3, 3) minimal rotations taking unit vectors a (N, 3) onto b (N, 3) (not antiparallel)."""
    axis = np.cross(a, b)
    angle = np.arctan2(np.linalg.norm(axis, axis=1), (a * b).sum(1))
    axis = axis / np.maximum(np.linalg.norm(axis, axis=1, keepdims=True), 1e-12)
    return roma.rotvec_to_rotmat(torch.from_numpy(axis * angle[:, None])).numpy()


def anny_rest_alignment(anny_body) -> np.ndarray:
    """(24, 3, 3) ``Q_j`` for ``anny_body`` at its default shape (cached on the body)."""
    cache = anny_body.__dict__.setdefault("_k2m_rest_alignment", {})
    if "q" not in cache:
        with torch.no_grad():
            eye = torch.eye(3, dtype=anny_body.dtype, device=anny_body.device).expand(1, 24, 3, 3)
            joints = anny_body(eye).joints[0].double().cpu().numpy()
        q = np.broadcast_to(np.eye(3), (24, 3, 3)).copy()
        src = np.array([_IDX[j] for j in BONE_CHILD])
        dst = np.array([_IDX[c] for c in BONE_CHILD.values()])
        rest = joints[dst] - joints[src]
        q[src] = _align(
            rest / np.linalg.norm(rest, axis=1, keepdims=True), smpl_tpose_directions()[src]
        )
        for leaf in ("left_foot", "right_foot", "left_hand", "right_hand"):
            q[_IDX[leaf]] = q[PARENTS[_IDX[leaf]]]
        cache["q"] = q
    return cache["q"]


def retarget_smpl_to_anny(
    rotmats: np.ndarray | torch.Tensor, anny_body
) -> np.ndarray | torch.Tensor:
    """SMPL-convention local rotations (F, 24, 3, 3) → anny-convention ones (F, 24, 3, 3) that put
    every anny limb bone along the SMPL bone; returns the input's type (numpy or torch) and dtype."""
    q = anny_rest_alignment(anny_body)
    q_parent = np.concatenate([np.eye(3)[None], q[PARENTS[1:]]])
    if torch.is_tensor(rotmats):
        qt = torch.as_tensor(q, dtype=rotmats.dtype, device=rotmats.device)
        qp = torch.as_tensor(q_parent, dtype=rotmats.dtype, device=rotmats.device)
        return qp.transpose(-1, -2) @ rotmats @ qt
    r = np.asarray(rotmats)
    return (np.swapaxes(q_parent, -1, -2) @ r.astype(np.float64) @ q).astype(r.dtype)
