"""The anny body model (Apache-2.0, assets bundled in the ``anny`` wheel) behind the
:class:`~key2mesh.body.base.BodyModel` interface.

anny is z-up and faces -y; its ``local-ref`` pose convention equals SMPL's local rotations after
the frame change ``C = Rx(+90°)``. This backend takes SMPL-frame rotations ``R``, feeds anny
``C R Cᵀ`` on the bones of :data:`~key2mesh.body.joint_map.SMPL_TO_ANNY_BONE` (identity on the
others), and returns vertices in the SMPL frame (``v = Cᵀ v_anny``).

The first build of a rig/topology takes ~35 s and writes ~0.8 GB under ``ANNY_CACHE_DIR``.
"""

from __future__ import annotations

import hashlib
import logging
import math
import warnings

import numpy as np
import torch

from key2mesh.body.base import BodyModel, BodyOutput
from key2mesh.body.joint_map import SMPL_TO_ANNY_BONE
from key2mesh.errors import Key2MeshError
from key2mesh.keypoints.convert import conversion_matrix
from key2mesh.keypoints.sets import COCO23, SMPL24
from key2mesh.paths import key2mesh_cache_dir

TRAIN_RIG = "anny-notoes-nohands-noeyes"
TRAIN_TOPOLOGY = "notoes_collapse10pc"
FULL_TOPOLOGY = "anny"
# Mean of the adult shape distribution used for training (rounded); anny's own default (all 0.5)
# is a teenager.
DEFAULT_PHENOTYPES = {
    "gender": 0.5,
    "age": 0.8,
    "muscle": 0.35,
    "weight": 0.55,
    "height": 0.37,
    "proportions": 0.5,
}

log = logging.getLogger(__name__)


def _frame_change(dtype=torch.float64) -> torch.Tensor:
    """C = Rx(+90°): SMPL (y-up) coordinates → anny (z-up) coordinates."""
    c, s = math.cos(math.pi / 2), math.sin(math.pi / 2)
    return torch.tensor([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]], dtype=dtype).round(
        decimals=12
    )


def _quiet_warp() -> None:
    """anny's skinning runs on NVIDIA Warp, which prints a multi-line banner when it initialises
    (into every command's output and error stream); keep it quiet (errors still surface)."""
    try:
        import warp

        warp.config.quiet = True
        if hasattr(warp, "LOG_WARNING") and hasattr(warp.config, "log_level"):  # warp ≥ 1.19
            warp.config.log_level = max(warp.config.log_level, warp.LOG_WARNING)
    except Exception:  # noqa: BLE001 - warp is anny's dependency; a missing or changed one is not ours to fail on
        pass


def _build_anny(rig: str, topology: str):
    _quiet_warp()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import anny

        try:
            return anny.Anny(rig=rig, topology=topology)
        except (ValueError, KeyError, FileNotFoundError) as exc:
            raise Key2MeshError(
                f"anny cannot build rig {rig!r} with topology {topology!r}: {exc}"
            ) from exc


def _coco23_regressor(model, rig: str, topology: str) -> torch.Tensor:
    """(23, V) COCO-23 regressor for ``model``; transferred from the full mesh for low-res ones.

    anny ships COCO-23 weights on its full mesh. For a reduced topology, every full-mesh vertex
    carrying weight is replaced by an inverse-distance blend of its 4 nearest reduced rest
    vertices, so the regressed points ride on the reduced mesh (cached under the key2mesh cache).
    """
    import anny

    try:
        reg = anny.KeypointsRegressor.coco(model, labels=list(COCO23))
        return reg.regression_weights.detach().to(torch.float64)
    except AssertionError:
        pass  # reduced topology: anny's weights do not sum to 1 there; transfer them.

    key = hashlib.sha1(f"{rig}|{topology}|{anny.__version__}".encode()).hexdigest()[:12]
    path = key2mesh_cache_dir() / "regressors" / f"anny_coco23_{key}.npy"
    if path.exists():
        return torch.from_numpy(np.load(path))
    full = _build_anny(rig, FULL_TOPOLOGY)
    w_full = anny.KeypointsRegressor.coco(full, labels=list(COCO23)).regression_weights.detach()
    v_full = full()["vertices"][0].detach()
    v_low = model()["vertices"][0].detach().to(torch.float64)
    support = torch.nonzero(w_full.abs().sum(0) > 0).squeeze(1)
    # Each supporting full-mesh vertex → inverse-distance blend of its 4 nearest reduced vertices.
    dist, nn = torch.cdist(v_full[support], v_low).topk(4, largest=False)
    inv = 1.0 / dist.clamp(min=1e-5)
    transfer = np.zeros((len(support), len(v_low)))
    np.add.at(
        transfer,
        (np.repeat(np.arange(len(support)), 4), nn.reshape(-1).numpy()),
        (inv / inv.sum(1, keepdim=True)).reshape(-1).numpy(),
    )
    w_low = w_full[:, support].numpy() @ transfer
    w_low /= w_low.sum(1, keepdims=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, w_low)
    return torch.from_numpy(w_low)


class AnnyBody(BodyModel):
    """anny behind the SMPL-like interface. Shape = 6 phenotypes in [0, 1]
    (gender, age, muscle, weight, height, proportions)."""

    name = "anny"
    shape_dim = 6

    def __init__(
        self,
        rig: str = TRAIN_RIG,
        topology: str = TRAIN_TOPOLOGY,
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        self.rig, self.topology = rig, topology
        model = _build_anny(rig, topology)
        self.phenotype_labels = list(model.phenotype_labels)
        bones = list(model.bone_labels)
        index = {b: i for i, b in enumerate(bones)}
        missing = [b for b in SMPL_TO_ANNY_BONE.values() if b is not None and b not in index]
        if missing:
            raise Key2MeshError(
                f"anny rig {rig!r} lacks the bones {missing} that key2mesh maps SMPL joints onto"
            )
        smpl_idx = [i for i, n in enumerate(SMPL24) if SMPL_TO_ANNY_BONE[n] is not None]
        bone_idx = [index[SMPL_TO_ANNY_BONE[SMPL24[i]]] for i in smpl_idx]
        self.num_bones = len(bones)
        self.register_buffer("smpl_idx", torch.tensor(smpl_idx), persistent=False)
        self.register_buffer("bone_idx", torch.tensor(bone_idx), persistent=False)
        self.register_buffer(
            "coco23_regressor", _coco23_regressor(model, rig, topology).to(dtype), persistent=False
        )
        self.register_buffer("frame", _frame_change(dtype), persistent=False)
        self.register_buffer("faces", model.get_triangular_faces().long(), persistent=False)
        self.model = model.to(dtype)
        self._init_fast_paths()
        cidx = {n: i for i, n in enumerate(COCO23)}
        self._toe_idx = [
            (cidx["left_big_toe"], cidx["left_small_toe"]),
            (cidx["right_big_toe"], cidx["right_small_toe"]),
        ]

    def config(self) -> dict:
        return {"name": "anny", "rig": self.rig, "topology": self.topology}

    def default_shape(self, batch_size: int = 1) -> torch.Tensor:
        """The mean adult of :func:`key2mesh.data.shapes.sample_shapes` (1.70 m tall)."""
        values = [DEFAULT_PHENOTYPES[label] for label in self.phenotype_labels]
        return (
            torch.tensor(values, dtype=self.dtype, device=self.device)
            .expand(batch_size, -1)
            .clone()
        )

    # ------------------------------------------------------------------ fast paths
    def _init_fast_paths(self) -> None:
        """Precompute what makes the forward ~3x faster than ``anny.Anny.forward``.

        anny turns phenotypes into blendshape coefficients with a dense masked product over
        (B, K, n_variations); each blendshape only multiplies a handful of variations, so we
        gather those few factors instead (same numbers, far fewer operations). We also fold the
        keypoint regressor into skinning weights and rest shape, so that keypoints-only forwards
        (training losses) skin no vertex."""
        m = self.model
        mask = m.stacked_phenotype_blend_shapes_mask.to(torch.float32)  # (K, NV)
        nv = mask.shape[1]
        width = int(mask.sum(1).max().item())
        order = torch.argsort(mask, dim=1, descending=True, stable=True)[:, :width]
        picked = torch.gather(mask, 1, order) > 0
        self.register_buffer(
            "_factor_idx", torch.where(picked, order, torch.full_like(order, nv)), persistent=False
        )
        self._num_variations = nv
        support = torch.nonzero(self.coco23_regressor.abs().sum(0) > 0).squeeze(1)
        # Keypoints are linear in LBS: k = sum_b T_b · sum_v W_kv w_vb [rest_v; 1]. G (23, S, bones)
        # folds the regressor into the skinning weights of the S supporting vertices.
        skin = torch.zeros(len(support), self.num_bones, dtype=self.dtype)
        skin.scatter_add_(
            1, m.vertex_bone_indices[support].long(), m.vertex_bone_weights[support].to(self.dtype)
        )
        g = self.coco23_regressor[:, support, None] * skin[None]
        self.register_buffer("_kp_skin_sum", g.sum(1), persistent=False)
        # ... and into the rest shape, which is linear in the blendshape coefficients.
        self.register_buffer(
            "_kp_rest0",
            torch.einsum("ksn,sd->knd", g, m.template_vertices[support].to(self.dtype)),
            persistent=False,
        )
        self.register_buffer(
            "_kp_rest_blend",
            torch.einsum("ksn,csd->cknd", g, m.blendshapes[:, support].to(self.dtype)),
            persistent=False,
        )

    def blendshape_coefficients(self, shape: torch.Tensor) -> torch.Tensor:
        """Phenotypes (B, 6) → anny blendshape coefficients (B, C); equals anny's own result."""
        from anny.models.phenotype import phenotype_blendshape_weights

        m = self.model
        eye = torch.eye(self._num_variations, dtype=shape.dtype, device=shape.device)
        phens = phenotype_blendshape_weights(
            shape, m.phenotype_labels, m.anchors, eye, m.extrapolate_phenotypes
        )
        phens = torch.cat([phens, phens.new_ones(phens.shape[0], 1)], dim=1)
        weights = phens[:, self._factor_idx].prod(dim=-1)  # (B, K)
        if m.phenotype_blendshape_projection is not None:
            weights = weights @ m.phenotype_blendshape_projection
        return weights

    def _anny_delta(self, rotmats: torch.Tensor) -> torch.Tensor:
        """SMPL-frame local rotations (B, 24, 3, 3) → anny local-ref deltas (B, bones, 4, 4)."""
        c = self.frame
        delta = torch.eye(4, dtype=self.dtype, device=self.device).repeat(
            rotmats.shape[0], self.num_bones, 1, 1
        )
        delta[:, self.bone_idx, :3, :3] = c @ rotmats[:, self.smpl_idx] @ c.T
        return delta

    def forward_keypoints(
        self, rotmats: torch.Tensor, shape: torch.Tensor | None = None, keypoint_set: str = "coco23"
    ) -> torch.Tensor:
        """Keypoints (B, K, 3) of ``keypoint_set`` only: linear-blend skinning folded into the
        regressor, so no vertex is skinned (same numbers as ``regress(forward().vertices)``)."""
        rotmats, shape = self._check_pose(rotmats, shape)
        m = self.model
        coeffs = self.blendshape_coefficients(shape)
        rest = m.get_rest_model(coeffs)
        transforms, _ = m.get_bone_transforms(self._anny_delta(rotmats), rest["rest_bone_poses"])
        p = self._kp_rest0 + torch.einsum(
            "bc,cknd->bknd", coeffs, self._kp_rest_blend
        )  # (B, 23, bones, 3)
        kp = torch.einsum("bnij,bknj->bki", transforms[..., :3, :3], p)
        kp = kp + torch.einsum("bni,kn->bki", transforms[..., :3, 3], self._kp_skin_sum)
        kp = kp @ self.frame
        if keypoint_set == "coco23":
            return kp
        conv, _ = conversion_matrix("coco23", keypoint_set)
        return torch.einsum(
            "kc,bcd->bkd", torch.as_tensor(conv, dtype=kp.dtype, device=kp.device), kp
        )

    def forward(
        self,
        rotmats: torch.Tensor,
        shape: torch.Tensor | None = None,
        transl: torch.Tensor | None = None,
    ) -> BodyOutput:
        rotmats, shape = self._check_pose(rotmats, shape)
        b = rotmats.shape[0]
        c = self.frame
        m = self.model
        rest = m.get_rest_model(self.blendshape_coefficients(shape))
        transforms, bone_poses = m.get_bone_transforms(
            self._anny_delta(rotmats), rest["rest_bone_poses"]
        )
        verts = m.get_skinned_vertices(rest["rest_vertices"], transforms)
        heads = bone_poses[..., :3, 3]
        verts = verts @ c  # row vectors: (Cᵀ v)ᵀ = vᵀ C
        heads = heads @ c
        keypoints = torch.einsum("kv,bvd->bkd", self.coco23_regressor, verts)
        joints = verts.new_zeros(b, 24, 3)
        joints[:, self.smpl_idx] = heads[:, self.bone_idx]
        # Unmapped SMPL joints: feet = toe midpoints; hands = 8 cm beyond the wrist along the forearm.
        for j, (t1, t2) in zip((10, 11), self._toe_idx):
            joints[:, j] = 0.5 * (keypoints[:, t1] + keypoints[:, t2])
        for hand, wrist, elbow in ((22, 20, 18), (23, 21, 19)):
            fore = joints[:, wrist] - joints[:, elbow]
            joints[:, hand] = joints[:, wrist] + 0.08 * fore / fore.norm(
                dim=-1, keepdim=True
            ).clamp(min=1e-6)
        if transl is not None:
            t = transl.to(self.dtype)[:, None]
            verts, joints, keypoints = verts + t, joints + t, keypoints + t
        return BodyOutput(vertices=verts, joints=joints, keypoints=keypoints)
