"""Skinned bodies for the viewer: each track's rest mesh, its skin weights on the driven
skeleton (the glTF export's, :func:`~key2mesh.inference.motion_export.gltf.joint_weights`) and
the bone poses at every sample, so the browser skins the mesh and the server sends only
J bone transforms per person and frame."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import torch

from key2mesh.inference.motion_export.skeleton import Skeleton, global_pose


@dataclass
class SkinnedBody:
    """One track's body: ``vertices`` (V, 3) rest pose, metres; ``faces`` (F, 3);
    ``weights`` (V, J) skin weights on the skeleton's joints; ``skeleton``; ``rotations``
    (T, J, 3, 3) and ``positions`` (T, J, 3) every joint's global pose per sample (scene frame)."""

    vertices: np.ndarray
    faces: np.ndarray
    weights: np.ndarray
    skeleton: Skeleton
    rotations: np.ndarray
    positions: np.ndarray

    def wxyz(self, k: int) -> np.ndarray:
        """(J, 4) the joints' global rotations at sample ``k`` as quaternions (w, x, y, z)."""
        return quaternions_wxyz(self.rotations[k])


def quaternions_wxyz(rot: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) → unit quaternions (..., 4), (w, x, y, z)."""
    from scipy.spatial.transform import Rotation

    q = Rotation.from_matrix(rot.reshape(-1, 3, 3)).as_quat()  # x, y, z, w
    return np.concatenate([q[:, 3:], q[:, :3]], axis=1).reshape(*rot.shape[:-2], 4)


def bone_poses(
    skeleton: Skeleton, rotmats: np.ndarray, root: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Global joint rotations (T, J, 3, 3) and positions (T, J, 3) from local rotations
    (T, 24, 3, 3) (SMPL-24, the root's in the scene frame) and root positions (T, 3): the
    exports' forward kinematics (:func:`~key2mesh.inference.motion_export.skeleton.global_pose`)."""
    return global_pose(skeleton, rotmats, root)


def skin(body: SkinnedBody, k: int) -> np.ndarray:
    """(V, 3) the mesh at sample ``k``, skinned on the CPU as the browser does
    (``v' = Σ_j w_j (G_j (v - rest_j) + p_j)``): for checks and headless use."""
    g, p = body.rotations[k], body.positions[k]
    local = body.vertices[:, None, :] - body.skeleton.rest[None]  # (V, J, 3)
    moved = np.einsum("jab,vjb->vja", g, local) + p[None]
    return np.einsum("vj,vja->va", body.weights, moved)


def body_kit(body: str, device: str = "cpu") -> SimpleNamespace:
    """What the export helpers need of a predictor (``.body``, ``.mesh_body``) for a body
    model by name: anny's full mesh (default rig), or SMPL (``$KEY2MESH_SMPL_DIR``)."""
    from key2mesh.body import load_body_model
    from key2mesh.body.traits import body_traits

    model = load_body_model(body, device=device, **body_traits(body).full_mesh_options)
    return SimpleNamespace(body=model, mesh_body=model)


@torch.no_grad()
def skinned_body(kit, track) -> SkinnedBody:
    """The :class:`SkinnedBody` of a :class:`~key2mesh.viewer.scene.TrackScene` (``kit``: a
    predictor or :func:`body_kit`)."""
    from key2mesh.inference.motion_export.gltf import _rest_mesh, joint_weights
    from key2mesh.inference.motion_export.skeleton import body_skeleton

    skeleton = body_skeleton(kit, track.shape, track.body)
    verts, faces = _rest_mesh(kit, track.shape)
    weights = joint_weights(kit, skeleton)
    weights = weights / np.clip(weights.sum(1, keepdims=True), 1e-12, None)
    rot, pos = bone_poses(skeleton, track.rotmats, track.root)
    return SkinnedBody(verts, faces, weights, skeleton, rot, pos)
