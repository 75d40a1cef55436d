"""The kinematic skeleton a body model drives, for animation exports (BVH, glTF)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from key2mesh.body.traits import body_traits
from key2mesh.keypoints.sets import SMPL24, SMPL24_PARENTS


@dataclass
class Skeleton:
    """Joints (J of the SMPL-24) that the body model's rotations drive, in SMPL order.

    smpl_index (J,) SMPL-24 index of each joint; names (J,); parents (J,) index into these
    joints (-1 for the root); offsets (J, 3) rest offset from the parent, metres, world frame
    (the root's: its rest position); end_sites {joint: (3,) offset} of the leaves;
    rest (J, 3) rest positions."""

    smpl_index: np.ndarray
    names: list[str]
    parents: np.ndarray
    offsets: np.ndarray
    end_sites: dict[int, np.ndarray]
    rest: np.ndarray


def driven_joints(body: str) -> list[int]:
    """SMPL-24 indices a body model's rotations drive: all 24 for SMPL; anny's training rig has
    no toe or hand bones, so its feet and hands (10, 11, 22, 23) only end the chains."""
    if body_traits(body).drives_all_smpl_joints:
        return list(range(24))
    from key2mesh.body.joint_map import SMPL_TO_ANNY_BONE

    return [i for i, n in enumerate(SMPL24) if SMPL_TO_ANNY_BONE[n] is not None]


@torch.no_grad()
def rest_joints(model, shape: np.ndarray) -> np.ndarray:
    """(24, 3) SMPL-24 joints of the body in its rest pose (identity rotations), metres."""
    body = model.body
    rot = torch.eye(3, dtype=body.dtype, device=body.device).expand(1, 24, 3, 3)
    s = torch.as_tensor(np.asarray(shape), dtype=body.dtype, device=body.device).reshape(1, -1)
    return body(rot, s).joints[0].double().cpu().numpy()


def body_skeleton(model, shape: np.ndarray, body: str) -> Skeleton:
    """The driven skeleton of a body with ``shape`` (S,)."""
    rest = rest_joints(model, shape)
    idx = driven_joints(body)
    pos = {s: k for k, s in enumerate(idx)}
    parents = np.array([pos[SMPL24_PARENTS[s]] if SMPL24_PARENTS[s] >= 0 else -1 for s in idx])
    offsets = np.stack(
        [rest[s] - (rest[SMPL24_PARENTS[s]] if SMPL24_PARENTS[s] >= 0 else 0.0) for s in idx]
    )
    end_sites: dict[int, np.ndarray] = {}
    has_child = set(parents[parents >= 0].tolist())
    for k, s in enumerate(idx):
        if k in has_child:
            continue
        children = [c for c in range(24) if SMPL24_PARENTS[c] == s and c not in pos]
        if children:  # a joint the body does not drive (anny's feet, hands) ends the chain
            end_sites[k] = rest[children[0]] - rest[s]
        elif SMPL24[s] == "smpl_head":
            end_sites[k] = np.array([0.0, 0.15, 0.0])
        else:
            end_sites[k] = 0.5 * offsets[k]
    names = [SMPL24[s].removeprefix("smpl_") for s in idx]
    return Skeleton(np.array(idx), names, parents, offsets, end_sites, rest[idx])


def global_pose(
    skeleton: Skeleton, rotmats: np.ndarray, root: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Global joint rotations (T, J, 3, 3) and positions (T, J, 3) from local rotations
    (T, 24, 3, 3) (SMPL-24, the root's in the output frame) and root positions (T, 3):
    ``G_j = G_parent · R_j``, ``p_j = p_parent + G_parent · offset_j`` (vectorised over T; one
    step per joint, parents first in SMPL order)."""
    t, j = len(rotmats), len(skeleton.names)
    glob = np.empty((t, j, 3, 3))
    pos = np.empty((t, j, 3))
    for k, s in enumerate(skeleton.smpl_index):
        p = skeleton.parents[k]
        if p < 0:
            glob[:, k] = rotmats[:, s]
            pos[:, k] = root
        else:
            glob[:, k] = glob[:, p] @ rotmats[:, s]
            pos[:, k] = pos[:, p] + glob[:, p] @ skeleton.offsets[k]
    return glob, pos


def forward_kinematics(skeleton: Skeleton, rotmats: np.ndarray, root: np.ndarray) -> np.ndarray:
    """Joint positions (T, J, 3) from local rotations (T, 24, 3, 3) (SMPL-24, world frame) and
    root positions (T, 3) (see :func:`global_pose`)."""
    return global_pose(skeleton, rotmats, root)[1]
