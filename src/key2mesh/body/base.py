"""The body-model interface shared by every backend.

Conventions (all backends):
- World frame = SMPL's: y up, x to the body's left, the body faces +z; metres.
- Pose = 24 rotation matrices (B, 24, 3, 3) in SMPL's joint layout and kinematic tree
  (:data:`key2mesh.keypoints.sets.SMPL24`), each the joint's rotation relative to its parent,
  expressed in the world-aligned rest frame. Joint 0 is the global orientation about the root.
  Identity rotations give the backend's own rest pose (SMPL: T-pose; anny: its A-pose).
- Shape = (B, S) backend-specific (SMPL betas, anny phenotypes in [0, 1]).
- The root joint sits at the origin (plus ``transl`` when given).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from key2mesh.body.traits import BodyTraits, body_traits
from key2mesh.errors import Key2MeshError
from key2mesh.keypoints.convert import conversion_matrix
from key2mesh.keypoints.sets import canonical_set_name, keypoint_names


@dataclass
class BodyOutput:
    """Batched body-model output, metres in the world frame.

    vertices: (B, V, 3); joints: (B, 24, 3) kinematic joints in SMPL-24 order;
    keypoints: (B, 23, 3) COCO-WholeBody body points regressed from the vertices.
    """

    vertices: torch.Tensor
    joints: torch.Tensor
    keypoints: torch.Tensor


class BodyModel(nn.Module):
    """Abstract body model: pose (B,24,3,3) + shape (B,S) → :class:`BodyOutput`."""

    name: str = "abstract"
    num_joints: int = 24
    shape_dim: int = 0
    # True when a row's outputs are bit-identical whatever else shares its batch (no padding needed)
    batch_invariant: bool = False
    # (23, V) COCO-23 vertex regressor, registered by subclasses as buffer ``coco23_regressor``.
    coco23_regressor: torch.Tensor
    faces: torch.Tensor

    @property
    def num_vertices(self) -> int:
        return int(self.coco23_regressor.shape[1])

    @property
    def device(self) -> torch.device:
        return self.coco23_regressor.device

    @property
    def dtype(self) -> torch.dtype:
        return self.coco23_regressor.dtype

    @property
    def traits(self) -> BodyTraits:
        """What sets this body model apart (shape bounds, AMASS export, full-mesh options...)."""
        return body_traits(self.name)

    def config(self) -> dict:
        """Everything needed to rebuild this body model (stored in checkpoints)."""
        raise NotImplementedError

    def default_shape(self, batch_size: int = 1) -> torch.Tensor:
        """(B, S) the neutral / average shape."""
        raise NotImplementedError

    def clamp_shape(self, shape: torch.Tensor) -> torch.Tensor:
        """(B, S) → the shape the body model actually uses (anny clamps its phenotypes to their
        anchor range; SMPL betas are used as they are)."""
        return shape

    def sample_prior_shapes(
        self, n: int, seed: int = 0, min_age: float = 18.0, max_age: float = 70.0
    ) -> np.ndarray:
        """(n, S) float32 realistic shapes of adults aged [min_age, max_age]; only for body models
        whose ``traits.has_shape_prior`` (others draw N(0, I), see ``data.shapes``)."""
        raise Key2MeshError(f"{self.name} has no shape prior: draw its shapes from N(0, I)")

    def joint_skin_weights(self, smpl_index: np.ndarray) -> np.ndarray:
        """(V, J) float64 skin weights of the vertices on the SMPL-24 joints ``smpl_index`` (J,)
        (each vertex's weight on a joint not listed goes to its nearest listed ancestor)."""
        raise NotImplementedError

    def forward(
        self,
        rotmats: torch.Tensor,
        shape: torch.Tensor | None = None,
        transl: torch.Tensor | None = None,
    ) -> BodyOutput:
        raise NotImplementedError

    def _check_transl(self, transl: torch.Tensor | None, batch_size: int) -> None:
        """``transl`` must be None or (B, 3) metres."""
        if transl is not None and tuple(transl.shape) != (batch_size, 3):
            raise Key2MeshError(
                f"{self.name} expects transl of shape ({batch_size}, 3), got {tuple(transl.shape)}"
            )

    def _empty_output(self) -> BodyOutput:
        """The output of an empty batch (B = 0): empty vertices, joints and keypoints."""
        new = self.coco23_regressor.new_zeros
        return BodyOutput(
            vertices=new(0, self.num_vertices, 3),
            joints=new(0, self.num_joints, 3),
            keypoints=new(0, self.coco23_regressor.shape[0], 3),
        )

    # ------------------------------------------------------------------ keypoints
    def keypoint_regressor(self, keypoint_set: str) -> torch.Tensor:
        """(K, V) vertex regressor W for a named keypoint set: ``X = W @ vertices``.

        Built from the model's COCO-23 regressor through the set conversion, so points such as
        ``neck`` (mid-shoulders) or ``mid_hip`` are linear in the vertices as well.
        """
        name = canonical_set_name(keypoint_set)
        cache = self.__dict__.setdefault("_regressor_cache", {})
        key = (name, self.device, self.dtype)
        if key not in cache:
            m = self._from_coco23(name)
            with torch.inference_mode(False):  # a normal tensor: autograd may use it later
                cache[key] = (
                    torch.as_tensor(m, dtype=self.dtype, device=self.device) @ self.coco23_regressor
                )
        return cache[key]

    def _from_coco23(self, keypoint_set: str) -> np.ndarray:
        """(K, 23) map from COCO-23 to ``keypoint_set``; Key2MeshError when a point of the set
        has no source in COCO-23 (SMPL-24's kinematic joints above all)."""
        name = canonical_set_name(keypoint_set)
        if name == "smpl24":
            raise Key2MeshError(
                "SMPL-24 joints are kinematic: use BodyOutput.joints instead of a vertex regressor"
            )
        m, ok = conversion_matrix("coco23", name)
        if not ok.all():
            missing = [n for n, good in zip(keypoint_names(name), ok) if not good]
            raise Key2MeshError(
                f"keypoint set {name!r} cannot be regressed on {self.name}: no source for {missing}"
            )
        return m

    def regress(self, vertices: torch.Tensor, keypoint_set: str) -> torch.Tensor:
        """Vertices (B, V, 3) → keypoints (B, K, 3) of ``keypoint_set``."""
        return torch.einsum("kv,bvd->bkd", self.keypoint_regressor(keypoint_set), vertices)

    def forward_keypoints(
        self, rotmats: torch.Tensor, shape: torch.Tensor | None = None, keypoint_set: str = "coco23"
    ) -> torch.Tensor:
        """Keypoints (B, K, 3) of ``keypoint_set``; backends may override with a faster path."""
        return self.regress(self.forward(rotmats, shape).vertices, keypoint_set)

    def _check_pose(
        self, rotmats: torch.Tensor, shape: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if rotmats.ndim != 4 or rotmats.shape[1:] != (self.num_joints, 3, 3):
            raise Key2MeshError(
                f"{self.name} expects pose rotations of shape (B, {self.num_joints}, 3, 3), got {tuple(rotmats.shape)}"
            )
        b = rotmats.shape[0]
        if shape is None:
            shape = self.default_shape(b)
        if shape.ndim != 2 or shape.shape[1] != self.shape_dim or shape.shape[0] not in (1, b):
            raise Key2MeshError(
                f"{self.name} expects shape parameters (B, {self.shape_dim}), got {tuple(shape.shape)}"
            )
        return rotmats.to(self.dtype), shape.to(self.dtype).expand(b, -1)
