"""Batched inverse kinematics: fit a body model's 24 SMPL-layout rotations to 3D joint positions.

MoCap sources that ship joint positions only (holosoma's climbing markers, ...) become poses by
optimising, for every frame at once, 6D rotation parameters (Zhou et al.) so that a fast forward
kinematics (FK) of the body's 24 SMPL-layout joints matches the targets after the optimal
per-frame translation (centroid alignment). The FK never skins the mesh: joint j sits at

    p_j = p_parent + s_j G_parent (rest_j - rest_parent),      G_j = G_parent R_j,

from the body's rest joints (``body(identity).joints``), computed level by level along
:data:`~key2mesh.keypoints.sets.SMPL24_PARENTS`; ``s_j`` are optional per-bone scales that give
the skeleton the target's bone lengths (so rotations carry the target's bone *directions*).

Only targets named with SMPL-24 names (``smpl_*``) drive the fit; other names (COCO landmarks,
source-specific points) are ignored with a log line. The returned rotations follow the body's
own convention (identity = its rest pose: anny's A-pose, SMPL's T-pose).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import roma
import torch

from key2mesh.errors import Key2MeshError
from key2mesh.geometry.rotations import matrix_to_rot6d, rot6d_to_matrix
from key2mesh.keypoints.sets import SMPL24, SMPL24_CHILD, SMPL24_HINGES, SMPL24_PARENTS

log = logging.getLogger(__name__)

_INDEX = {n: i for i, n in enumerate(SMPL24)}
# Joints whose offsets hang on the root alone: they give its orientation exactly.
_ROOT_RIGID = ("smpl_pelvis", "smpl_left_hip", "smpl_right_hip", "smpl_spine1")
# Torso joints used for the Kabsch initialisation of the global orientation when those are missing.
_TORSO = ("smpl_pelvis", "smpl_left_hip", "smpl_right_hip", "smpl_spine1", "smpl_spine2", "smpl_spine3",
          "smpl_neck", "smpl_left_collar", "smpl_right_collar", "smpl_left_shoulder", "smpl_right_shoulder")  # fmt: skip
# Default confidence in a target joint: limb joints are well defined across skeletons; the axial
# chain, collars and hands differ in placement from one rig to another.
DEFAULT_JOINT_WEIGHTS: dict[str, float] = {
    "smpl_spine1": 0.5, "smpl_spine2": 0.5, "smpl_spine3": 0.5, "smpl_neck": 0.5, "smpl_head": 0.5,
    "smpl_left_collar": 0.1, "smpl_right_collar": 0.1, "smpl_left_hand": 0.5, "smpl_right_hand": 0.5,
    "smpl_left_foot": 0.5, "smpl_right_foot": 0.5,
}  # fmt: skip
# Loose per-joint maximum rotation angle (degrees) away from the rest pose (joint-limit penalty).
MAX_ANGLE_DEG: dict[str, float] = {
    "smpl_spine1": 50, "smpl_spine2": 40, "smpl_spine3": 40, "smpl_neck": 50, "smpl_head": 50,
    "smpl_left_collar": 35, "smpl_right_collar": 35, "smpl_left_wrist": 90, "smpl_right_wrist": 90,
    "smpl_left_ankle": 60, "smpl_right_ankle": 60, "smpl_left_foot": 45, "smpl_right_foot": 45,
    "smpl_left_hand": 30, "smpl_right_hand": 30, "smpl_left_knee": 160, "smpl_right_knee": 160,
    "smpl_left_elbow": 160, "smpl_right_elbow": 160,
}  # fmt: skip
_HYPEREXTENSION_TOL = math.radians(10.0)


def kinematic_levels(parents: tuple[int, ...] | list[int] = SMPL24_PARENTS) -> list[list[int]]:
    """Joint indices grouped by depth in the tree (level 0 = the root)."""
    depth = [0] * len(parents)
    for j, p in enumerate(parents):
        if p >= j and p != -1:
            raise ValueError("parents must come before their children")
        depth[j] = 0 if p < 0 else depth[p] + 1
    return [[j for j in range(len(parents)) if depth[j] == d] for d in range(max(depth) + 1)]


class KinematicSkeleton:
    """Fast FK of the 24 SMPL-layout joints of one body shape (no mesh skinning).

    rest_joints: (24, 3) rest-pose joint positions in metres (``body(identity, shape).joints``).
    """

    def __init__(self, rest_joints: torch.Tensor, parents: tuple[int, ...] = SMPL24_PARENTS):
        rest_joints = torch.as_tensor(rest_joints)
        if rest_joints.shape != (len(parents), 3):
            raise Key2MeshError(
                f"rest joints must have shape ({len(parents)}, 3), got {tuple(rest_joints.shape)}"
            )
        self.parents = tuple(parents)
        self.rest = rest_joints
        par = torch.tensor([max(p, 0) for p in parents])
        self.offsets = rest_joints - rest_joints[par]  # (24, 3); root: 0
        self.levels = kinematic_levels(parents)
        order = [j for lvl in self.levels for j in lvl]
        pos = {j: i for i, j in enumerate(order)}
        self._parent_pos = [torch.tensor([pos[parents[j]] for j in lvl]) for lvl in self.levels[1:]]
        self._level_idx = [torch.tensor(lvl) for lvl in self.levels]
        self._inverse = torch.tensor([pos[j] for j in range(len(parents))])

    @classmethod
    def from_body(cls, body, shape: torch.Tensor | None = None) -> KinematicSkeleton:
        """Skeleton of ``body`` with ``shape`` (1, S) (default: the body's default shape)."""
        eye = torch.eye(3, dtype=body.dtype, device=body.device).expand(1, 24, 3, 3)
        with torch.no_grad():
            rest = body(eye, shape).joints[0]
        return cls(rest)

    def to(
        self, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> KinematicSkeleton:
        """A copy on ``device`` / in ``dtype``."""
        return KinematicSkeleton(self.rest.to(device=device, dtype=dtype), self.parents)

    def bone_lengths(self) -> torch.Tensor:
        """(24,) rest length of the offset joint ← parent (0 for the root)."""
        return self.offsets.norm(dim=-1)

    def forward(
        self, rotmats: torch.Tensor, bone_scale: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Local rotations (B, 24, 3, 3) [+ per-bone scales (24,) or (B, 24)] → world joints
        (B, 24, 3) in metres (root at its rest position) and global rotations (B, 24, 3, 3)."""
        if rotmats.ndim != 4 or rotmats.shape[1:] != (len(self.parents), 3, 3):
            raise Key2MeshError(
                f"FK expects rotations of shape (B, {len(self.parents)}, 3, 3), got {tuple(rotmats.shape)}"
            )
        dev, dt = rotmats.device, rotmats.dtype
        offsets = self.offsets.to(dev, dt)
        if bone_scale is not None:
            offsets = offsets * bone_scale.to(dev, dt)[..., None]
        offsets = offsets.expand(rotmats.shape[0], -1, -1)
        b = rotmats.shape[0]
        g_levels = [rotmats[:, :1]]
        p_levels = [self.rest[:1].to(dev, dt).expand(b, 1, 3)]
        for lvl, ppos in zip(self._level_idx[1:], self._parent_pos):
            lvl, ppos = lvl.to(dev), ppos.to(dev)
            g_all, p_all = torch.cat(g_levels, 1), torch.cat(p_levels, 1)
            g_par, p_par = g_all[:, ppos], p_all[:, ppos]
            p_levels.append(p_par + torch.einsum("blij,blj->bli", g_par, offsets[:, lvl]))
            g_levels.append(g_par @ rotmats[:, lvl])
        inv = self._inverse.to(dev)
        return torch.cat(p_levels, 1)[:, inv], torch.cat(g_levels, 1)[:, inv]

    __call__ = forward


@dataclass
class IKResult:
    """Result of :func:`fit_joints`.

    rotmats: (F, 24, 3, 3) local rotations in the body's convention; joints: (F, 24, 3) fitted FK
    joints in the targets' world frame (after the optimal translation); bone_scale: (24,) the
    per-bone scales used; error: (F,) weighted mean per-joint distance (m) to the used targets;
    used_names: the target names that drove the fit.
    """

    rotmats: torch.Tensor
    joints: torch.Tensor
    bone_scale: torch.Tensor
    error: torch.Tensor
    used_names: tuple[str, ...]


def _check_inputs(
    target, target_names, weights, init
) -> tuple[torch.Tensor, list[str], torch.Tensor]:
    target = torch.as_tensor(np.asarray(target) if not torch.is_tensor(target) else target)
    if target.ndim != 3 or target.shape[-1] != 3 or target.shape[0] == 0:
        raise Key2MeshError(
            f"IK targets must have shape (F, J, 3) with F > 0, got {tuple(target.shape)}"
        )
    names = list(target_names)
    if len(names) != target.shape[1]:
        raise Key2MeshError(f"IK got {len(names)} target names for {target.shape[1]} target joints")
    if isinstance(weights, dict):  # overrides of the defaults by target name
        bad = {n: v for n, v in weights.items() if not (math.isfinite(v) and v >= 0)}
        if bad:
            raise Key2MeshError(f"IK weights must be finite and non-negative, got {bad}")
        table = {**DEFAULT_JOINT_WEIGHTS, **weights}
        weights = torch.tensor([table.get(n, 1.0) for n in names], dtype=torch.float64)
    elif weights is not None:
        weights = torch.as_tensor(
            np.asarray(weights) if not torch.is_tensor(weights) else weights, dtype=torch.float64
        )
        if (
            weights.shape != (len(names),)
            or (weights < 0).any()
            or not torch.isfinite(weights).all()
        ):
            raise Key2MeshError(
                f"IK weights must be {len(names)} finite non-negative values, got shape {tuple(weights.shape)}"
            )
    else:
        weights = torch.tensor(
            [DEFAULT_JOINT_WEIGHTS.get(n, 1.0) for n in names], dtype=torch.float64
        )
    if init is not None:
        shape = tuple(init.shape)
        if shape != (target.shape[0], 24, 3, 3):
            raise Key2MeshError(
                f"IK init must have shape ({target.shape[0]}, 24, 3, 3), got {shape}"
            )
    return target, names, weights


def estimate_bone_scale(
    skeleton: KinematicSkeleton, target: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """(24,) per-bone scales giving the skeleton the targets' bone lengths.

    target: (F, 24, 3) in SMPL-24 order; mask: (F, 24) which targets are valid. A bone whose two
    ends are both targeted takes the median length ratio; a chain of untargeted joints between two
    targeted ones takes the chord ratio; every other bone the median of the known ratios."""
    parents = skeleton.parents
    rest = skeleton.rest.to(target.dtype)
    has = mask.any(0)
    scale = torch.full((24,), float("nan"), dtype=target.dtype)
    for j in range(1, 24):  # 23 scalar medians, once per clip (not a hot path)
        if not has[j]:
            continue
        a = parents[j]
        chain = [j]
        while a > 0 and not has[a]:
            chain.append(a)
            a = parents[a]
        if not has[a]:
            continue
        both = mask[:, j] & mask[:, a]
        rest_len = (rest[j] - rest[a]).norm()
        if both.sum() == 0 or rest_len < 1e-6:
            continue
        ratio = (target[both, j] - target[both, a]).norm(dim=-1).median() / rest_len
        scale[chain] = ratio
    known = scale[torch.isfinite(scale)]
    fill = known.median() if known.numel() else torch.tensor(1.0, dtype=target.dtype)
    scale = torch.where(torch.isfinite(scale), scale, fill)
    scale[0] = 1.0
    return scale


def _hinge_frames(
    skeleton: KinematicSkeleton,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Joint indices (H,), flexion axes (H, 3), sideways axes (H, 3) and allowed hyperextension (H,)."""
    idx, axes, side, tol = [], [], [], []
    rest = skeleton.rest.double()
    for joint, child, parent, forward in SMPL24_HINGES:
        j, c, p = _INDEX[joint], _INDEX[child], _INDEX[parent]
        d = rest[c] - rest[j]
        d = d / d.norm()
        u = rest[j] - rest[p]
        u = u / u.norm()
        f = torch.tensor([0.0, 0.0, forward], dtype=rest.dtype)
        a = torch.linalg.cross(d, f)
        a = a / a.norm()
        idx.append(j)
        axes.append(a)
        side.append(torch.linalg.cross(a, d))
        tol.append(torch.arccos((u * d).sum().clamp(-1, 1)) + _HYPEREXTENSION_TOL)
    return torch.tensor(idx), torch.stack(axes), torch.stack(side), torch.stack(tol)


def _limit_tables(skeleton: KinematicSkeleton) -> dict[str, torch.Tensor]:
    """Cached tensors of :func:`limit_penalty` for ``skeleton``."""
    cache = skeleton.__dict__.setdefault("_limit_cache", {})
    if not cache:
        limited = [_INDEX[n] for n in MAX_ANGLE_DEG]
        cache["limited"] = torch.tensor(limited)
        cache["cos_max"] = torch.tensor([math.cos(math.radians(d)) for d in MAX_ANGLE_DEG.values()])
        idx, axes, side, tol = _hinge_frames(skeleton)
        cache.update(hinge=idx, axes=axes, side=side, sin_tol=torch.sin(tol.clamp(max=math.pi / 2)))
    return cache


def limit_penalty(rotmats: torch.Tensor, skeleton: KinematicSkeleton) -> torch.Tensor:
    """(B,) joint-limit-ish penalty of local rotations (B, 24, 3, 3): rotation angles beyond
    :data:`MAX_ANGLE_DEG` (in ``cos``), sideways bending of knees and elbows and their
    hyperextension (in ``sin θ`` times the axis component, from the skew part of R)."""
    t = {k: v.to(rotmats.device) for k, v in _limit_tables(skeleton).items()}
    r = rotmats[:, t["limited"]]
    cos = (r.diagonal(dim1=-2, dim2=-1).sum(-1) - 1.0) / 2.0
    pen = torch.relu(t["cos_max"].to(r.dtype) - cos).square().sum(-1)
    h = rotmats[:, t["hinge"]]
    # vee(R - Rᵀ) / 2 = sin(θ) · axis
    v = (
        torch.stack(
            [h[..., 2, 1] - h[..., 1, 2], h[..., 0, 2] - h[..., 2, 0], h[..., 1, 0] - h[..., 0, 1]],
            -1,
        )
        / 2.0
    )
    flex = (v * t["axes"].to(v.dtype)).sum(-1)
    sideways = (v * t["side"].to(v.dtype)).sum(-1)
    return (
        pen
        + sideways.square().sum(-1)
        + torch.relu(-flex - t["sin_tol"].to(v.dtype)).square().sum(-1)
    )


def _centred(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """x (F, J, 3) minus its per-frame weighted centroid (weights w (F, J))."""
    c = (x * w[..., None]).sum(1, keepdim=True) / w.sum(1, keepdim=True)[..., None].clamp(min=1e-12)
    return x - c


def fit_joints(
    body,
    target: torch.Tensor | np.ndarray,
    target_names: list[str] | tuple[str, ...],
    weights: torch.Tensor | np.ndarray | dict[str, float] | None = None,
    iters: int = 100,
    init: torch.Tensor | None = None,
    shape: torch.Tensor | None = None,
    scale_bones: bool = True,
    lr: float = 0.01,
    prior: float | dict[str, float] = 1e-5,
    limits: float = 1e-3,
    smooth: float = 0.0,
    chunk_size: int = 8192,
    progress: bool | None = None,
) -> IKResult:
    """Fit local rotations of ``body`` to target joint positions, all frames at once.

    target: (F, J, 3) metres, y up (NaN = missing); target_names: J names, ``smpl_*`` ones are used;
    weights: (J,) per-target confidence, or a dict of target name → weight over the defaults
    (default :data:`DEFAULT_JOINT_WEIGHTS`, else 1);
    init: (F, 24, 3, 3) starting rotations (default: analytic, see :func:`_analytic_init`);
    shape: (1, S) body shape (default the body's); scale_bones: give the skeleton the targets'
    bone lengths; prior / limits / smooth: weights of the pull toward rest (per |R - I|²; a float
    for every joint, or a dict of SMPL-24 names → weight with ``"default"`` for the rest), the
    joint-limit penalty (rad²) and the temporal smoothness (|R_t - R_{t-1}|², frames in order),
    relative to the squared position error in m². Adam with cosine decay for ``iters`` steps over
    chunks of ``chunk_size`` frames; ``progress`` shows a tqdm bar (default: when F > 2000).
    """
    target, names, weights = _check_inputs(target, target_names, weights, init)
    cols = [(i, _INDEX[n]) for i, n in enumerate(names) if n in _INDEX]
    ignored = [n for n in names if n not in _INDEX]
    if ignored:
        log.info(
            "IK ignores %d target(s) without an SMPL-24 name: %s",
            len(ignored),
            ", ".join(ignored[:6]) + (" ..." if len(ignored) > 6 else ""),
        )
    dupes = {n for n in names if n in _INDEX and names.count(n) > 1}
    if dupes:
        raise Key2MeshError(f"IK target names repeat SMPL-24 joints: {sorted(dupes)}")
    if len(cols) < 4:
        raise Key2MeshError(
            f"IK needs at least 4 targets named with SMPL-24 names (smpl_*), got {len(cols)} of {names[:8]}"
        )
    dev, dt = body.device, body.dtype
    n_frames = target.shape[0]
    src, dst = zip(*cols)
    tgt = torch.full((n_frames, 24, 3), float("nan"), dtype=dt)
    tgt[:, list(dst)] = target[:, list(src)].to(dt)
    w = torch.zeros(24, dtype=dt)
    w[list(dst)] = weights[list(src)].to(dt)
    mask = torch.isfinite(tgt).all(-1) & (w > 0)
    if mask.any(0).sum() < 4:
        raise Key2MeshError("IK needs at least 4 finite, positively weighted SMPL-24 targets")
    wf = w * mask  # (F, 24)
    tgt = torch.nan_to_num(tgt)

    skel = KinematicSkeleton.from_body(body, shape).to(dtype=dt)
    scale = estimate_bone_scale(skel, tgt, mask) if scale_bones else torch.ones(24, dtype=dt)

    prior_w = _prior_weights(prior, dt)
    if init is None:
        init = _analytic_init(skel, scale, tgt, wf)
    init = torch.as_tensor(init, dtype=dt)

    from tqdm.auto import tqdm

    show = progress if progress is not None else n_frames > 2000
    starts = list(range(0, n_frames, chunk_size))
    bar = tqdm(total=iters * len(starts), desc="IK", unit="it", disable=not show, leave=False)
    out_rot, out_err, out_joints = [], [], []
    for s in starts:
        sl = slice(s, s + chunk_size)
        rot, joints, err = _fit_chunk(
            skel,
            scale.to(dev),
            tgt[sl].to(dev),
            wf[sl].to(dev),
            init[sl].to(dev),
            iters,
            lr,
            prior_w.to(dev),
            limits,
            smooth,
            bar,
        )
        out_rot.append(rot.cpu())
        out_joints.append(joints.cpu())
        out_err.append(err.cpu())
    bar.close()
    return IKResult(
        rotmats=torch.cat(out_rot),
        joints=torch.cat(out_joints),
        bone_scale=scale,
        error=torch.cat(out_err),
        used_names=tuple(names[i] for i in src),
    )


def _prior_weights(prior: float | dict[str, float], dtype) -> torch.Tensor:
    """(23,) weights of the pull toward rest of joints 1..23 from a float or a name → weight dict."""
    if not isinstance(prior, dict):
        return torch.full((23,), float(prior), dtype=dtype)
    unknown = [n for n in prior if n != "default" and n not in _INDEX]
    if unknown or any(not math.isfinite(v) or v < 0 for v in prior.values()):
        raise Key2MeshError(
            f"IK prior: unknown joints {unknown} or negative/non-finite weights in {prior}"
        )
    default = float(prior.get("default", 0.0))
    return torch.tensor([float(prior.get(n, default)) for n in SMPL24[1:]], dtype=dtype)


def fit_pose_to_joints(
    body, target, target_names, weights=None, iters: int = 100, init=None, **kwargs
) -> torch.Tensor:
    """Rotations (F, 24, 3, 3) of ``body`` fitted to joint positions (F, J, 3); see :func:`fit_joints`."""
    return fit_joints(
        body, target, target_names, weights=weights, iters=iters, init=init, **kwargs
    ).rotmats


# The child whose direction a joint's rotation aims (the chain continues through untargeted joints).
_AIM_CHILD = SMPL24_CHILD


_CHILDREN: dict[int, tuple[int, ...]] = {
    j: tuple(c for c, p in enumerate(SMPL24_PARENTS) if p == j)
    for j in range(24)
    if SMPL24_PARENTS.count(j) > 1
}


def _align_vectors(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) minimal rotations taking directions a (..., 3) onto b (..., 3)."""
    a = torch.nn.functional.normalize(a, dim=-1)
    b = torch.nn.functional.normalize(b, dim=-1)
    axis = torch.linalg.cross(a, b, dim=-1)
    sin, cos = axis.norm(dim=-1), (a * b).sum(-1)
    # antiparallel: any axis perpendicular to a
    perp = torch.linalg.cross(a, torch.tensor([1.0, 0.0, 0.0], dtype=a.dtype).expand_as(a), dim=-1)
    perp = torch.where(
        perp.norm(dim=-1, keepdim=True) < 1e-3,
        torch.linalg.cross(a, torch.tensor([0.0, 1.0, 0.0], dtype=a.dtype).expand_as(a), dim=-1),
        perp,
    )
    axis = torch.where((sin < 1e-6)[..., None], perp, axis)
    axis = torch.nn.functional.normalize(axis, dim=-1)
    return roma.rotvec_to_rotmat(axis * torch.atan2(sin, cos)[..., None])


def _analytic_init(
    skel: KinematicSkeleton, scale: torch.Tensor, tgt: torch.Tensor, wf: torch.Tensor
) -> torch.Tensor:
    """(F, 24, 3, 3) starting rotations: per-frame Kabsch of the rest torso for the root, then
    joint by joint (parents first) the rotation aiming each bone at its nearest targeted
    descendant; hips and shoulders also turn the knee/elbow hinge axis into the limb's bending
    plane (weighted by how bent it is). Runs once per fit (a loop over joints, batched over frames)."""
    n_frames, dt = tgt.shape[0], tgt.dtype
    has = wf > 0  # (F, 24)
    eye = torch.eye(3, dtype=dt).expand(1, 24, 3, 3)
    rest, _ = skel(eye, scale)
    rest = rest[0]  # (24, 3) scaled rest joints
    # per frame, the first set with >= 3 targets: joints rigid with the root, the torso, all
    root_rot, root_t, chosen = None, None, torch.zeros(n_frames, dtype=torch.bool)
    for names in (_ROOT_RIGID, _TORSO, SMPL24):
        torso = torch.tensor([_INDEX[n] for n in names])
        wt = wf[:, torso]
        use = ~chosen & ((wt > 0).sum(1) >= 3) if names is not SMPL24 else ~chosen
        if not use.any():
            continue
        r, t = roma.rigid_points_registration(
            rest[torso].expand(n_frames, -1, -1), tgt[:, torso], weights=wt + 1e-9
        )
        root_rot = r if root_rot is None else torch.where(use[:, None, None], r, root_rot)
        root_t = t if root_t is None else torch.where(use[:, None], t, root_t)
        chosen |= use
    glob: list[torch.Tensor] = [root_rot]
    pos: list[torch.Tensor] = [root_rot @ rest[0] + root_t]
    local = eye.repeat(n_frames, 1, 1, 1)
    local[:, 0] = root_rot
    hinge_idx, hinge_axes, _, _ = _hinge_frames(skel)
    hinge_of_parent = {
        skel.parents[int(j)]: (int(j), hinge_axes[k].to(dt)) for k, j in enumerate(hinge_idx)
    }
    for j in range(1, 24):
        par = skel.parents[j]
        g_par = glob[par]
        pos.append(pos[par] + g_par @ (rest[j] - rest[par]))
        name = SMPL24[j]
        aim = _INDEX[_AIM_CHILD[name]] if name in _AIM_CHILD else None
        while aim is not None and not has[:, aim].any() and SMPL24[aim] in _AIM_CHILD:
            aim = _INDEX[_AIM_CHILD[SMPL24[aim]]]
        if aim is None or not has[:, aim].any():
            glob.append(g_par)
            continue
        v_rest = (rest[aim] - rest[j]).expand(n_frames, 3)
        d = tgt[:, aim] - pos[j]
        swing = _align_vectors((g_par @ v_rest[..., None])[..., 0], d)
        swing = torch.where(has[:, aim, None, None], swing, torch.eye(3, dtype=dt))
        g = swing @ g_par
        kids = [c for c in _CHILDREN.get(j, ()) if has[:, c].any()]
        if len(kids) >= 2:  # several targeted children (spine3: neck + collars): Kabsch on them
            x = torch.stack([rest[c] - rest[j] for c in kids]).expand(n_frames, -1, -1)
            y = torch.stack([tgt[:, c] - pos[j] for c in kids], 1)
            w = torch.stack([wf[:, c] for c in kids], 1)
            full = roma.rigid_vectors_registration(x, y, weights=w + 1e-9)
            g = torch.where(((w > 0).sum(1) >= 2)[:, None, None], full, g)
        if j in hinge_of_parent:
            k, axis = hinge_of_parent[j]
            child = _INDEX[_AIM_CHILD[SMPL24[k]]]
            if has[:, k].any() and has[:, child].any():
                d1 = tgt[:, k] - tgt[:, j]
                d2 = tgt[:, child] - tgt[:, k]
                n = torch.linalg.cross(d1, d2, dim=-1)
                bend = n.norm(dim=-1) / (d1.norm(dim=-1) * d2.norm(dim=-1)).clamp(min=1e-9)
                ok = has[:, j] & has[:, k] & has[:, child]
                x = torch.stack(
                    [
                        torch.nn.functional.normalize(v_rest, dim=-1),  # 0 if bone scale is 0
                        axis.expand(n_frames, 3),
                        axis.expand(n_frames, 3),
                    ],
                    1,
                )
                y = torch.stack(
                    [
                        torch.nn.functional.normalize(d, dim=-1),
                        torch.nn.functional.normalize(n, dim=-1),
                        (g @ axis),
                    ],
                    1,
                )
                w = torch.stack([torch.ones_like(bend), bend * ok, 0.05 * torch.ones_like(bend)], 1)
                g = roma.rigid_vectors_registration(x, y, weights=w)
        local[:, j] = g_par.transpose(-1, -2) @ g
        glob.append(g)
    return local


def _fit_chunk(skel, scale, tgt, wf, init, iters, lr, prior, limits, smooth, bar):
    """Adam on (F, 24, 6) parameters of one chunk; returns rotations, joints and per-frame error."""
    skel = skel.to(device=tgt.device)
    params = matrix_to_rot6d(init).clone().requires_grad_(True)
    opt = torch.optim.Adam([params], lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(iters, 1), eta_min=lr * 0.02)
    wsum = wf.sum(1).clamp(min=1e-12)
    t_c = _centred(tgt, wf)
    eye = torch.eye(3, dtype=tgt.dtype, device=tgt.device)
    for _ in range(iters):
        opt.zero_grad(set_to_none=True)
        rot = rot6d_to_matrix(params)
        joints, _ = skel(rot, scale)
        err = ((_centred(joints, wf) - t_c).square().sum(-1) * wf).sum(1) / wsum
        loss = err.mean()
        if bool((prior > 0).any()):
            loss = loss + (prior * (rot[:, 1:] - eye).square().sum((-1, -2))).mean(1).mean()
        if limits > 0:
            loss = loss + limits * limit_penalty(rot, skel).mean()
        if smooth > 0 and rot.shape[0] > 1:
            loss = loss + smooth * (rot[1:] - rot[:-1]).square().sum((-1, -2)).mean(1).mean()
        loss.backward()
        opt.step()
        sched.step()
        bar.update(1)
    with torch.no_grad():
        rot = rot6d_to_matrix(params)
        joints, _ = skel(rot, scale)
        c_j = (joints * wf[..., None]).sum(1, keepdim=True) / wsum[:, None, None]
        c_t = (tgt * wf[..., None]).sum(1, keepdim=True) / wsum[:, None, None]
        joints = joints - c_j + c_t
        dist = ((joints - tgt).norm(dim=-1) * wf).sum(1) / wsum
    return rot.detach(), joints, dist
