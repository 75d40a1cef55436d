"""On-the-fly variety for a bank of real poses: mirroring, small joint perturbations, limb mixing.

Poses are 24 local rotations in SMPL's layout (any backend convention whose rest pose is
left/right symmetric, e.g. anny's A-pose or SMPL's T-pose), batched in torch on any device:

- mirroring through the x = 0 plane (x is the body's left): swap left/right joints and conjugate
  every rotation by ``M = diag(-1, 1, 1)``: ``R' = M R M``;
- perturbation: ``R' = R exp(v)`` with ``v ~ N(0, σ_j² I)`` per joint, its angle clamped;
- limb mixing: the local rotations of whole subtrees (arms, legs, spine + head) come from other
  frames of the bank, so a limb keeps its pose relative to the torso.

:func:`pose_coverage` and :func:`nearest_pose_distance` measure what the sampler adds.
"""

from __future__ import annotations

import math

import numpy as np
import roma
import torch

from key2mesh.errors import Key2MeshError
from key2mesh.keypoints.sets import SMPL24

_IDX = {n: i for i, n in enumerate(SMPL24)}


def _partner(name: str) -> str:
    if "_left_" in name:
        return name.replace("_left_", "_right_")
    if "_right_" in name:
        return name.replace("_right_", "_left_")
    return name


MIRROR_PERMUTATION: tuple[int, ...] = tuple(_IDX[_partner(n)] for n in SMPL24)
_MIRROR_SIGNS = torch.tensor([-1.0, 1.0, 1.0])

LIMB_GROUPS: dict[str, tuple[int, ...]] = {
    side + "_" + limb: tuple(_IDX[f"smpl_{side}_{j}"] for j in joints)
    for side in ("left", "right")
    for limb, joints in (
        ("arm", ("collar", "shoulder", "elbow", "wrist", "hand")),
        ("leg", ("hip", "knee", "ankle", "foot")),
    )
}
LIMB_GROUPS["spine"] = tuple(
    _IDX[n] for n in ("smpl_spine1", "smpl_spine2", "smpl_spine3", "smpl_neck", "smpl_head")
)


def _check_rotmats(rotmats: torch.Tensor, what: str) -> torch.Tensor:
    rotmats = torch.as_tensor(rotmats)
    if rotmats.ndim < 3 or rotmats.shape[-3:] != (24, 3, 3):
        raise Key2MeshError(f"{what} must have shape (..., 24, 3, 3), got {tuple(rotmats.shape)}")
    return rotmats


def mirror_poses(rotmats: torch.Tensor) -> torch.Tensor:
    """Left/right mirror image (..., 24, 3, 3) of poses (..., 24, 3, 3): joints swapped and
    ``R' = M R M`` with ``M = diag(-1, 1, 1)``; applying it twice gives the input back."""
    rotmats = _check_rotmats(rotmats, "poses to mirror")
    s = _MIRROR_SIGNS.to(rotmats.device, rotmats.dtype)
    swapped = rotmats[..., list(MIRROR_PERMUTATION), :, :]
    return swapped * s[:, None] * s[None, :]


def _as_per_joint(value: float | np.ndarray | torch.Tensor, name: str) -> torch.Tensor:
    t = torch.as_tensor(value, dtype=torch.float32).flatten()
    if t.numel() == 1:
        t = t.expand(24).clone()
    if t.shape != (24,) or (t < 0).any() or not torch.isfinite(t).all():
        raise Key2MeshError(
            f"{name} must be one non-negative number or 24 of them, got {tuple(t.shape)}"
        )
    return t


class PoseSampler:
    """Draws augmented poses (B, 24, 3, 3) from a bank of real poses (N, 24, 3, 3).

    p_mirror: probability of mirroring a sample; p_perturb: probability of perturbing a sample,
    perturb_deg: σ (degrees) of each component of the axis-angle noise, one value or 24 (the root
    gets 0 unless ``perturb_root``), max_perturb_deg: clamp of the noise angle; p_mix: probability
    that a sample mixes limbs, p_mix_group: then, the probability of each group of
    :data:`LIMB_GROUPS` coming from another random frame. ``seed`` seeds a torch.Generator on
    ``device``.
    """

    def __init__(
        self,
        bank: torch.Tensor | np.ndarray,
        p_mirror: float = 0.5,
        p_perturb: float = 0.5,
        perturb_deg: float | np.ndarray = 5.0,
        max_perturb_deg: float = 15.0,
        p_mix: float = 0.3,
        p_mix_group: float = 0.5,
        perturb_root: bool = False,
        device: str | torch.device | None = None,
        seed: int = 0,
    ):
        bank = _check_rotmats(
            torch.as_tensor(np.asarray(bank)) if not torch.is_tensor(bank) else bank, "pose bank"
        )
        if bank.ndim != 4 or bank.shape[0] == 0:
            raise Key2MeshError(
                f"pose bank must have shape (N, 24, 3, 3) with N > 0, got {tuple(bank.shape)}"
            )
        if not torch.isfinite(bank).all():
            raise Key2MeshError("pose bank contains NaN/inf rotations")
        for name, p in (
            ("p_mirror", p_mirror),
            ("p_perturb", p_perturb),
            ("p_mix", p_mix),
            ("p_mix_group", p_mix_group),
        ):
            if not 0.0 <= p <= 1.0:
                raise Key2MeshError(f"{name} must be a probability in [0, 1], got {p}")
        if max_perturb_deg < 0:
            raise Key2MeshError(f"max_perturb_deg must be >= 0, got {max_perturb_deg}")
        self.device = torch.device(device) if device is not None else bank.device
        self.bank = bank.to(self.device, torch.float32)
        self.p_mirror, self.p_perturb, self.p_mix, self.p_mix_group = (
            p_mirror,
            p_perturb,
            p_mix,
            p_mix_group,
        )
        sigma = _as_per_joint(perturb_deg, "perturb_deg") * (math.pi / 180.0)
        if not perturb_root:
            sigma[0] = 0.0
        self.sigma = sigma.to(self.device)
        self.max_angle = math.radians(max_perturb_deg)
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self._groups = list(LIMB_GROUPS.values())
        joint_group = torch.full((24,), -1, dtype=torch.long)
        for g, joints in enumerate(self._groups):
            joint_group[list(joints)] = g
        self._joint_group = joint_group.to(self.device)

    def __len__(self) -> int:
        return int(self.bank.shape[0])

    def _rand(self, *shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=self.generator, device=self.device)

    def sample(self, batch_size: int, return_info: bool = False):
        """(B, 24, 3, 3) augmented poses drawn uniformly from the bank; with ``return_info`` also
        a dict: ``index`` (B,) base frames, ``sources`` (B, G) the frame each limb group came from,
        ``mirrored`` (B,) and ``perturbed`` (B,) flags."""
        if batch_size <= 0:
            raise Key2MeshError(f"batch size must be > 0, got {batch_size}")
        index = torch.randint(
            len(self), (batch_size,), generator=self.generator, device=self.device
        )
        return self.augment(self.bank[index], index=index, return_info=return_info)

    def augment(
        self, rotmats: torch.Tensor, index: torch.Tensor | None = None, return_info: bool = False
    ):
        """Augment given poses (B, 24, 3, 3) (mix limbs from the bank, mirror, perturb)."""
        rot = _check_rotmats(rotmats, "poses to augment").to(self.device, torch.float32)
        b = rot.shape[0]
        own = index if index is not None else torch.full((b,), -1, device=self.device)
        # (a) limb mixing: per sample and group, a source frame (own pose where not mixed)
        mix = (self._rand(b, 1) < self.p_mix) & (
            self._rand(b, len(self._groups)) < self.p_mix_group
        )
        other = torch.randint(
            len(self), (b, len(self._groups)), generator=self.generator, device=self.device
        )
        sources = torch.where(mix, other, own[:, None])
        group = self._joint_group  # (24,) group of each joint, -1 = never mixed
        per_joint = group.clamp(min=0).expand(b, 24)
        use_bank = torch.gather(mix, 1, per_joint) & (group >= 0)  # (B, 24)
        src = torch.gather(other, 1, per_joint)
        gathered = self.bank[src, torch.arange(24, device=self.device)]  # (B, 24, 3, 3)
        out = torch.where(use_bank[..., None, None], gathered, rot)
        # (b) mirroring
        mirrored = self._rand(b) < self.p_mirror
        out = torch.where(mirrored[:, None, None, None], mirror_poses(out), out)
        # (c) perturbation: R exp(v), v ~ N(0, σ² I), angle clamped
        perturbed = self._rand(b) < self.p_perturb
        v = (
            torch.randn(b, 24, 3, generator=self.generator, device=self.device)
            * self.sigma[:, None]
        )
        angle = v.norm(dim=-1, keepdim=True)
        v = v * torch.clamp(self.max_angle / angle.clamp(min=1e-12), max=1.0)
        v = v * perturbed[:, None, None]
        out = out @ roma.rotvec_to_rotmat(v)
        if not return_info:
            return out
        return out, {"index": own, "sources": sources, "mirrored": mirrored, "perturbed": perturbed}


def geodesic_deg(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Angle (degrees) between rotations a and b (..., 3, 3)."""
    cos = ((a.transpose(-1, -2) @ b).diagonal(dim1=-2, dim2=-1).sum(-1) - 1.0) / 2.0
    return torch.rad2deg(torch.arccos(cos.clamp(-1.0, 1.0)))


# Joints compared by the metrics: all but the root (global orientation is randomised in
# training anyway) and the hands (not driven on anny's training rig).
METRIC_JOINTS: tuple[int, ...] = tuple(range(1, 22))


def nearest_pose_distance(
    query: torch.Tensor,
    bank: torch.Tensor,
    joints: tuple[int, ...] = METRIC_JOINTS,
    chunk: int = 2048,
) -> torch.Tensor:
    """(Q,) mean per-joint rotation angle (degrees) from each query pose (Q, 24, 3, 3) to its
    nearest bank pose (N, 24, 3, 3); nearest by the chordal distance over ``joints``."""
    query = _check_rotmats(query, "query poses").float()
    bank = _check_rotmats(bank, "bank poses").float().to(query.device)
    jq, jb = query[:, list(joints)], bank[:, list(joints)]
    flat_b = jb.reshape(len(jb), -1)
    out = []
    for s in range(0, len(jq), chunk):
        q = jq[s : s + chunk]
        nn = torch.cdist(q.reshape(len(q), -1), flat_b).argmin(1)
        out.append(geodesic_deg(q, jb[nn]).mean(-1))
    return torch.cat(out)


def pose_coverage(
    rotmats: torch.Tensor, cell_deg: float = 20.0, joints: tuple[int, ...] = METRIC_JOINTS
) -> float:
    """Mean over ``joints`` of the fraction of cubic cells (``cell_deg`` wide) of the axis-angle
    ball (radius 180°) that the poses (N, 24, 3, 3) occupy: how many distinct rotations per joint
    the set holds, independent of how often each is repeated."""
    rotmats = _check_rotmats(rotmats, "poses").float()
    cell = math.radians(cell_deg)
    rv = roma.rotmat_to_rotvec(rotmats[:, list(joints)])  # (N, J, 3)
    cells = torch.floor(rv / cell).long()
    n_side = int(math.ceil(math.pi / cell))
    grid = torch.arange(-n_side, n_side)
    centres = (
        torch.stack(torch.meshgrid(grid, grid, grid, indexing="ij"), -1).reshape(-1, 3).float()
        + 0.5
    ) * cell
    total = int((centres.norm(dim=-1) <= math.pi).sum())
    occupied = [
        torch.unique(cells[:, j], dim=0).shape[0] for j in range(cells.shape[1])
    ]  # one unique per joint
    return float(np.mean(occupied) / total)
