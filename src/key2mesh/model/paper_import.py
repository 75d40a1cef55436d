"""Import the paper's released checkpoints (official code, github.com/swampxx/Key2Mesh).

The official ``best-model.ckpt`` is a PyTorch-Lightning checkpoint of ``models/key2mesh.py``;
its ``state_dict`` holds (``X`` = ``s`` source / ``t`` target extractor, hidden width d):

- ``feature_extractor_X.block.{0,1,2}``: Linear(36 → d), BatchNorm1d(d), PReLU; then
  ``block.{4,5}.block.{0,1,2,4,5,6}``: two residual ``BasicBlock`` s
  (x + [Linear-BN-PReLU-Dropout] × 2);
- ``smpl_head.block.0.block.*``: one residual block; ``smpl_head.block.1``: Linear(d → 10 + 144),
  output ``[betas (10), 24 × 6D]``;
- ``domain_head.*`` (the critic; not needed for inference and dropped here).

After adaptation (``mode: target``, the released runs) the network used for inference is
``feature_extractor_t`` + ``smpl_head``; a pre-training checkpoint only has ``feature_extractor_s``.

What is identical to ours, so needs no change (checked against the official code):

- layer structure (our :class:`~key2mesh.model.network.Key2MeshNet` with ``extractor_blocks=2``,
  ``head_blocks=1``), PReLU with one parameter, eval-mode BatchNorm with running statistics;
- the 6D layout: official ``rot6d_to_rotmat`` views (…, 6) as (3, 2) and Gram-Schmidts its two
  columns, stacking ``b1, b2, b1 × b2`` as columns — exactly :func:`~key2mesh.geometry.rotations.rot6d_to_matrix`;
- the frame: official camera ``P = K [I | (0, 0, -6)]`` with the image x negated gives
  ``u = 256 X / (6 - Z)``, ``v = -256 Y / (6 - Z)``: a camera on +z at 6 m looking at the origin
  with image y down, SMPL's y-up world; 3DPW poses are brought there by a 180° turn about x from
  the OpenCV camera frame. That is :class:`~key2mesh.geometry.camera.VirtualCamera` (focal 256,
  principal point 0, distance 6), so the global orientation is taken over unchanged;
- input: 18 OpenPose COCO-18 keypoints (``openpose_coco18``), bounding-box normalisation over the
  joints of confidence ≥ 0.1 (longest side → [0, 1], box centre → 0.5).

What changes: key names, the output rows (betas first there, last here: the rows of the last
Linear are permuted), the value of missing joints (0.5 there, stored in the checkpoint's
:class:`~key2mesh.model.checkpoint.InputNormalization`), and the body (SMPL neutral, user-supplied
files; our SMPL body is root-centred, which moves the mesh, not the rotations or betas).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import torch

from key2mesh.errors import Key2MeshError
from key2mesh.geometry.camera import VirtualCamera
from key2mesh.model.checkpoint import Checkpoint, InputNormalization
from key2mesh.model.network import Key2MeshNet, ModelConfig

NUM_KEYPOINTS = 18
NUM_JOINTS = 24
NUM_BETAS = 10
KEYPOINT_SET = "openpose_coco18"
CAMERA = VirtualCamera(focal=256.0, cx=0.0, cy=0.0, distance=6.0)
NORMALIZATION = InputNormalization(conf_threshold=0.1, missing_value=0.5, method="bbox")

# The tensors of each layer kind, and the kind at each position of an official
# Sequential(Linear, BN, PReLU, Dropout, Linear, BN, PReLU, Dropout) (position mod 4).
_PARAMS = {
    "Linear": ("weight", "bias"),
    "BatchNorm": ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"),
    "PReLU": ("weight",),
}
_KIND = {0: "Linear", 1: "BatchNorm", 2: "PReLU"}


def paper_state_dict(obj: object) -> dict[str, torch.Tensor] | None:
    """The official network's state dict inside ``obj`` (a Lightning checkpoint dict with a
    ``state_dict`` entry, or that state dict itself), or None when ``obj`` is not one."""
    if not isinstance(obj, Mapping):
        return None
    sd = obj.get("state_dict", obj)
    if not isinstance(sd, Mapping):
        return None
    if not any(isinstance(k, str) and "smpl_head.block." in k for k in sd):
        return None
    return strip_prefix({str(k): v for k, v in sd.items()})


def _extractor_prefix(sd: Mapping[str, torch.Tensor]) -> str:
    for prefix in ("feature_extractor_t.", "feature_extractor_s."):
        if any(k.startswith(prefix) for k in sd):
            return prefix
    raise Key2MeshError(
        "not an official Key2Mesh state dict: no feature_extractor_t.* or feature_extractor_s.* weights"
    )


def _key_map(ext: str) -> dict[str, str]:
    """Official key → our key for every tensor the inference network needs.

    Official ``BasicBlock.block`` index i ∈ {0,1,2,4,5,6} → our ``ResidualBlock.body.{i // 4}.{i % 4}``."""
    m: dict[str, str] = {}

    def add(src: str, dst: str, index: int) -> None:
        for p in _PARAMS[_KIND[index % 4]]:
            m[f"{src}.{p}"] = f"{dst}.{p}"

    for i in (0, 1, 2):
        add(f"{ext}block.{i}", f"extractor.inp.{i}", i)
    blocks = [(f"{ext}block.{k}", f"extractor.blocks.{n}") for n, k in enumerate((4, 5))]
    blocks.append(("smpl_head.block.0", "head.blocks.0"))
    for src, dst in blocks:
        for i in (0, 1, 2, 4, 5, 6):
            add(f"{src}.block.{i}", f"{dst}.body.{i // 4}.{i % 4}", i)
    add("smpl_head.block.1", "head.out", 0)
    return m


def convert_paper_state_dict(
    state_dict: Mapping[str, torch.Tensor],
    smpl_dir: str | Path | None = None,
    gender: str = "neutral",
) -> Checkpoint:
    """Official (Lightning) state dict → our :class:`Checkpoint` (SMPL body, COCO-18 input).

    Args:
        state_dict: official key names (``feature_extractor_t.block.0.weight`` …), any prefix
            such as ``model.`` already removed; ``domain_head.*`` and the unused extractor are ignored.
        smpl_dir: stored as the body's ``model_dir`` (None: ``$KEY2MESH_SMPL_DIR`` at load time).
        gender: SMPL model the official code used: neutral.

    The head's last Linear (10 + 144, d) → rows permuted to (144 + 10, d): ``[6D (24×6), betas]``.
    Missing or mis-shaped tensors raise :class:`Key2MeshError`.
    """
    sd = {k: v for k, v in state_dict.items() if torch.is_tensor(v)}
    ext = _extractor_prefix(sd)
    keys = _key_map(ext)
    missing = [k for k in keys if k not in sd]
    if missing:
        raise Key2MeshError(
            f"official Key2Mesh state dict lacks {len(missing)} tensor(s), first {missing[0]!r}"
        )
    w_in = sd[f"{ext}block.0.weight"]
    if w_in.ndim != 2 or w_in.shape[1] != NUM_KEYPOINTS * 2:
        raise Key2MeshError(
            f"{ext}block.0.weight has shape {tuple(w_in.shape)}, expected (hidden, {NUM_KEYPOINTS * 2}) "
            "(18 OpenPose COCO-18 keypoints)"
        )
    hidden = int(w_in.shape[0])
    out_dim = NUM_BETAS + 6 * NUM_JOINTS
    cfg = ModelConfig(
        num_keypoints=NUM_KEYPOINTS,
        num_joints=NUM_JOINTS,
        shape_dim=NUM_BETAS,
        hidden=hidden,
        extractor_blocks=2,
        head_blocks=1,
        shape_init=[0.0] * NUM_BETAS,
    )
    ours = {
        dst: (sd[src].float() if sd[src].is_floating_point() else sd[src]).detach().cpu().clone()
        for src, dst in keys.items()
    }
    perm = torch.cat([torch.arange(NUM_BETAS, out_dim), torch.arange(NUM_BETAS)])
    if ours["head.out.weight"].shape != (out_dim, hidden):
        raise Key2MeshError(
            f"smpl_head.block.1.weight has shape {tuple(ours['head.out.weight'].shape)}, "
            f"expected ({out_dim}, {hidden}) (10 betas + 24 × 6D)"
        )
    ours["head.out.weight"] = ours["head.out.weight"][perm].contiguous()
    ours["head.out.bias"] = ours["head.out.bias"][perm].contiguous()
    expected = Key2MeshNet(cfg).state_dict()
    bad = [
        f"{k} {tuple(ours[k].shape)} (expected {tuple(v.shape)})"
        for k, v in expected.items()
        if k in ours and ours[k].shape != v.shape
    ]
    absent = [k for k in expected if k not in ours]
    if bad or absent:
        raise Key2MeshError(
            "official Key2Mesh weights do not fit the network: "
            + "; ".join(bad[:3] + [f"no {k}" for k in absent[:3]])
        )
    nonfinite = [
        k for k, v in ours.items() if v.is_floating_point() and not torch.isfinite(v).all()
    ]
    if nonfinite:
        raise Key2MeshError(f"official Key2Mesh weights have NaN/inf (first {nonfinite[0]!r})")
    body = {
        "name": "smpl",
        "model_dir": None if smpl_dir is None else str(Path(smpl_dir).expanduser().resolve()),
        "gender": gender,
    }
    return Checkpoint(
        model_config=cfg,
        model=ours,
        keypoint_set=KEYPOINT_SET,
        body=body,
        camera=CAMERA,
        normalization=NORMALIZATION,
        stage="paper-import",
        versions={},
        config={"source": "official Key2Mesh checkpoint (github.com/swampxx/Key2Mesh)"},
        extra={"imported_from": "official", "official_extractor": ext.rstrip(".")},
    )


def strip_prefix(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop a leading ``model.`` / ``module.`` (wrappers around the LightningModule)."""
    out = dict(state_dict)
    while out and all(re.match(r"(model|module)\.", k) for k in out):
        out = {k.split(".", 1)[1]: v for k, v in out.items()}
    return out
