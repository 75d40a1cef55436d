"""The anny body model (Apache-2.0, assets bundled in the ``anny`` wheel) behind the
:class:`~key2mesh.body.base.BodyModel` interface.

anny is z-up and faces -y; its ``local-ref`` pose convention equals SMPL's local rotations after
the frame change ``C = Rx(+90°)``. This backend takes SMPL-frame rotations ``R``, feeds anny
``C R Cᵀ`` on the bones of :data:`~key2mesh.body.joint_map.SMPL_TO_ANNY_BONE` (identity on the
others), and returns vertices in the SMPL frame (``v = Cᵀ v_anny``).

The first build of a rig/topology takes ~35 s and writes ~0.8 GB under ``ANNY_CACHE_DIR``.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import threading
import warnings
from collections import OrderedDict

import numpy as np
import torch

from key2mesh import dense
from key2mesh.body.anny_cells import CellBases, NotMultilinear
from key2mesh.body.base import BodyModel, BodyOutput
from key2mesh.body.joint_map import SMPL_TO_ANNY_BONE
from key2mesh.body.warp_call import WarpCall, run_jobs, split
from key2mesh.errors import Key2MeshError
from key2mesh.keypoints.sets import COCO23, SMPL24
from key2mesh.paths import key2mesh_cache_dir
from key2mesh.safe_paths import atomic_path

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

# Without autograd, where :mod:`key2mesh.dense` does not apply (its oneDNN products give a row
# the same numbers in any batch), the shape GEMMs run on a multiple of this many rows: MKL's
# sgemm takes another code path (other last bits) for 1-3 rows and for row counts 5-7 and 9-11,
# so a mesh's numbers would depend on how many distinct shapes share its batch.
GEMM_ROWS = 4

log = logging.getLogger(__name__)


def _frame_change(dtype=torch.float64) -> torch.Tensor:
    """C = Rx(+90°): SMPL (y-up) coordinates → anny (z-up) coordinates."""
    c, s = math.cos(math.pi / 2), math.sin(math.pi / 2)
    return torch.tensor([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]], dtype=dtype).round(
        decimals=12
    )


def _check_dtype(dtype: torch.dtype) -> None:
    """The anny body's kernels, cell bases and rest cache run in float32 or float64 only."""
    if dtype not in (torch.float32, torch.float64):
        raise Key2MeshError(f"the anny body runs in float32 or float64, not {dtype} (use .float())")


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
    # atomically: torchrun ranks or batch workers building the body at once on a fresh cache
    # must never read a half-written file
    with atomic_path(path) as tmp:
        np.save(tmp, w_low)
    return torch.from_numpy(w_low)


# Guards the bodies' rest caches and scratch-buffer tables: a body serves several threads (batch
# workers), and an OrderedDict's lookup, LRU update and eviction interleave badly between them.
_CACHE_LOCK = threading.Lock()

_LBS_KERNELS: dict = {}
SKIN_BLOCK = 128  # vertices per Warp thread (benchmarks/skinning.py: 1 → 128 is ~1.5x faster)


POLAR_ITERS = 6  # scaled Newton iterations of the polar factor (see _nearest_rotation_torch)
POLAR_TOL = 1e-5  # largest |XᵀX - I| entry accepted from them; the others go to roma
POLAR_BLOCK = 64  # matrices per Warp thread (a thread's call costs about one matrix's work)
# Polar factors and forward kinematics run in parallel torch threads from this many matrices
# (bones × samples) on: a launch in a pool thread costs ~20 µs more than one in the caller's.
PARALLEL_MATRICES = 1024
_POLAR_KERNELS: dict = {}


_IOTA = torch.arange(16, dtype=torch.int32)  # never written: launches read it


def _iota(n: int) -> torch.Tensor:
    """0, 1, ..., n - 1 as an int32 CPU tensor (a view of a shared one for n ≤ 16)."""
    return _IOTA[:n] if n <= len(_IOTA) else torch.arange(n, dtype=torch.int32)


def _warp_types(dtype: torch.dtype):
    """Warp's (scalar, vec3, mat33, mat44) types for a float32 / float64 torch dtype, with Warp
    initialised quietly (a kernel may be the first Warp use of the process: no banner)."""
    import warp as wp

    _quiet_warp()
    wp.init()  # once per process (a no-op after)
    if dtype == torch.float32:
        return wp.float32, wp.vec3f, wp.mat33f, wp.mat44f
    return wp.float64, wp.vec3d, wp.mat33d, wp.mat44d


def _nearest_rotation(m: torch.Tensor) -> torch.Tensor:
    """The rotation nearest to each matrix ``m`` (..., 3, 3), without autograd: roma's
    ``special_procrustes`` result (see :func:`_nearest_rotation_torch`), on the CPU in one Warp
    kernel (:data:`POLAR_BLOCK` matrices per thread, instead of dozens of small torch ops;
    timings in ``benchmarks/results/rest_product_threads2.md``, ``nearest_*``); elsewhere, or
    without Warp, in torch."""
    if m.device.type != "cpu" or m.dtype not in (torch.float32, torch.float64) or m.numel() == 0:
        return _nearest_rotation_torch(m)
    try:
        call = _polar_kernel(m.dtype)
    except ImportError:
        return _nearest_rotation_torch(m)
    import roma

    flat = m.reshape(-1, 3, 3).contiguous()
    out = torch.empty_like(flat)
    ok = torch.empty(len(flat), dtype=torch.int32)
    n = len(flat)
    parts = min(torch.get_num_threads(), max(1, n // PARALLEL_MATRICES))
    block = POLAR_BLOCK  # the launch grid and the kernel's runs from one value
    run_jobs(
        [
            functools.partial(call, -(-(j - i) // block), flat[i:j], block, out[i:j], ok[i:j])
            for i, j in split(n, parts)
        ]
    )
    bad = ok == 0
    if bool(bad.any()):
        out[bad] = roma.special_procrustes(flat[bad])
    return out.view(m.shape)


def _polar_kernel(dtype: torch.dtype):
    """Warp kernel (a :class:`~key2mesh.body.warp_call.WarpCall`): the scaled Newton polar
    iteration of :func:`_nearest_rotation_torch` on
    ``block`` consecutive matrices per thread, with each one's convergence flag (0: det ≤ 0 or
    not orthonormal to ``tol``).
    Scalar code with +, ×, / and sqrt only: a matrix's result does not depend on its batch."""
    if dtype not in _POLAR_KERNELS:
        import warp as wp

        scalar, _, mat33, _ = _warp_types(dtype)

        def polar(m, iters: int, tol: float, block: int, out, ok):
            first = wp.tid() * block
            for i in range(first, wp.min(first + block, m.shape[0])):
                x = m[i]
                zero, one, half = scalar(0.0), scalar(1.0), scalar(0.5)
                first_det = wp.determinant(x)
                for _ in range(iters):
                    a, b, c = x[0], x[1], x[2]
                    cof = wp.matrix_from_rows(wp.cross(b, c), wp.cross(c, a), wp.cross(a, b))
                    det = wp.dot(a, cof[0])
                    if det <= zero:  # not a polar factor's start: flagged below
                        det = one
                    inv_t = cof * (one / det)  # reciprocals: 2 divisions, not 19
                    ratio = wp.ddot(inv_t, inv_t) / wp.ddot(x, x)
                    gamma = wp.sqrt(wp.sqrt(ratio))
                    x = half * (gamma * x + inv_t * (one / gamma))
                e = wp.mul(wp.transpose(x), x) - wp.identity(n=3, dtype=scalar)
                worst = zero
                for r in range(3):
                    for k in range(3):
                        worst = wp.max(worst, wp.abs(e[r, k]))
                flag = 0
                if first_det > zero and worst <= scalar(tol):
                    flag = 1
                out[i] = x
                ok[i] = flag

        polar.__annotations__ = {
            "m": wp.array(dtype=mat33),
            "iters": int,
            "tol": float,
            "block": int,
            "out": wp.array(dtype=mat33),
            "ok": wp.array(dtype=wp.int32),
        }
        kernel = wp.kernel(polar, enable_backward=False, module="unique")
        _POLAR_KERNELS[dtype] = WarpCall(kernel, {1: POLAR_ITERS, 2: POLAR_TOL})
    return _POLAR_KERNELS[dtype]


def _nearest_rotation_torch(
    m: torch.Tensor, iters: int = POLAR_ITERS, tol: float = POLAR_TOL
) -> torch.Tensor:
    """The rotation nearest to each matrix ``m`` (..., 3, 3): ``roma.special_procrustes``'s
    result, ~2x faster on anny's blended rest orientations (no autograd needed).

    The scaled Newton iteration for the polar factor, X ← ½(γX + X⁻ᵀ/γ) with X⁻ᵀ = cof(X)/det(X)
    and Frobenius scaling γ = sqrt(‖X⁻¹‖/‖X‖), converges quadratically from any matrix with
    det > 0 (6 iterations reach float32 rounding on anny's, whose condition numbers go up to
    ~650). Only +, ×, / and sqrt are used, which round the same in torch's vectorised and scalar
    loops, so a matrix's result does not depend on how many others share the call (a cube-root
    scaling, pow(det, -1/3), did). The matrices with det ≤ 0 (their nearest rotation is not the
    polar factor; 30 of 18,432 in a batch of 512 bodies) or not orthonormal to ``tol`` after
    ``iters`` iterations go to roma."""
    import roma

    x = m
    first_det = None
    for _ in range(iters):
        a, b, c = x[..., 0, :], x[..., 1, :], x[..., 2, :]
        cof = torch.stack(
            [torch.linalg.cross(b, c), torch.linalg.cross(c, a), torch.linalg.cross(a, b)], -2
        )
        det = (a * cof[..., 0, :]).sum(-1)[..., None, None]
        if first_det is None:
            first_det = det
        det = torch.where(det > 0, det, torch.ones_like(det))  # those are replaced below
        inv_t = cof / det
        ratio = (inv_t * inv_t).flatten(-2).sum(-1) / (x * x).flatten(-2).sum(-1)
        gamma = torch.sqrt(torch.sqrt(ratio))[..., None, None]
        x = 0.5 * (gamma * x + inv_t / gamma)
    eye = torch.eye(3, dtype=x.dtype, device=x.device)
    residual = (x.transpose(-1, -2) @ x - eye).abs().flatten(-2)
    ok = (first_det[..., 0, 0] > 0) & (residual <= tol).all(-1)
    if not bool(ok.all()):
        x = x.clone()
        x[~ok] = roma.special_procrustes(m[~ok])
    return x


def _lbs_kernel(scalar, vec3, mat44):
    """Warp kernel (a :class:`~key2mesh.body.warp_call.WarpCall`):
    out[b, v] = Σ_i w[v, i] T[b, j[v, i]] (rest[rows[k], v], 1) over the first
    ``count[v]`` slots, for the samples b = samples[k] of the launch (anny's ``warp_skinning``
    kernel, without its zero-weight slots; the rest vertices read through a row index, so
    samples sharing a shape share its rest mesh, and a launch may skin any subset of the batch).

    One Warp thread skins a run of ``block`` consecutive vertices of one sample (anny's kernel:
    one vertex): Warp's CPU backend calls the kernel function once per thread, and that call
    cost as much as the vertex's arithmetic. Each vertex's sum is the same, so are its bits. A
    vertex on one bone with weight 1 (9,207 of the full mesh's 13,718) is that bone's transform
    of it: anny's 0 + 1 · T x without the ×1 and the +0 (the same value; ~11 % faster)."""
    key = (scalar, vec3, mat44)
    if key not in _LBS_KERNELS:
        import warp as wp

        def lbs(rest, rows, samples, weights, indices, counts, transforms, out, block: int):
            i, run = wp.tid()
            b = samples[i]
            first = run * block
            last = wp.min(first + block, rest.shape[1])
            r = rows[i]
            for v in range(first, last):
                x = rest[r, v]
                n = counts[v]
                if n == 1 and weights[v, 0] == scalar(1.0):  # 2 of 3 vertices: one bone
                    out[b, v] = wp.transform_point(transforms[b, indices[v, 0]], x)
                else:
                    result = vec3(scalar(0.0), scalar(0.0), scalar(0.0))
                    for i in range(n):
                        t = transforms[b, indices[v, i]]
                        result += weights[v, i] * wp.transform_point(t, x)
                    out[b, v] = result

        # the argument types as objects (this module's annotations are strings)
        lbs.__annotations__ = {
            "rest": wp.array2d(dtype=vec3),
            "rows": wp.array(dtype=wp.int32),
            "samples": wp.array(dtype=wp.int32),
            "weights": wp.array2d(dtype=scalar),
            "indices": wp.array2d(dtype=wp.int32),
            "counts": wp.array(dtype=wp.int32),
            "transforms": wp.array2d(dtype=mat44),
            "out": wp.array2d(dtype=vec3),
            "block": int,
        }
        _LBS_KERNELS[key] = WarpCall(wp.kernel(lbs, enable_backward=False, module="unique"))
    return _LBS_KERNELS[key]


_FK_KERNELS: dict = {}


def _fk_kernel(dtype: torch.dtype):
    """Warp kernel (a :class:`~key2mesh.body.warp_call.WarpCall`): anny's 'local-ref' forward
    kinematics with reference orientations for one
    sample per thread, bones in topological order (``AnnyBody._bone_transforms_torch``'s
    formulas, bone by bone), and with ``points`` = 1 the readout of the posed body
    (:meth:`AnnyBody._readout_torch`'s formulas, point by point).

    Inputs: SMPL-frame local rotations (B, 24), rest orientations (B, bones) and heads
    (B, bones), the keypoint pairs' rest points (B, P), the reference orientations U (bones),
    each bone's parent, the order, its SMPL joint (-1: none, identity), the frame change C (1,),
    each pair's bone, keypoint and skin-weight sum (P,), each SMPL joint's bone (24,; -1: none)
    and the toe keypoints (4,: big left, big right, small left, small right).
    Outputs: world rotations W (B, bones; scratch), skinning rotations W Rᵀ and translations
    w - W Rᵀ h, the posed heads w (anny's frame); with ``points``, the skinning transforms in
    the SMPL frame Cᵀ [W Rᵀ | w - W Rᵀ h] (B, bones, 4x4), the COCO-23 keypoints (B, 23) and
    the SMPL-24 joints (B, 24), SMPL frame."""
    if dtype not in _FK_KERNELS:
        import warp as wp

        scalar, vec3, mat33, mat44 = _warp_types(dtype)

        def fk(
            rot,
            rest_rot,
            heads,
            pairs,
            u,
            parent,
            order,
            smpl,
            frame,
            pair_bone,
            pair_kp,
            pair_scale,
            joint_bone,
            toes,
            points: int,
            w_rot,
            t_rot,
            t_trans,
            w_trans,
            skin,
            kp,
            joints,
        ):
            b = wp.tid()
            c = frame[0]
            ct = wp.transpose(c)
            zero = scalar(0.0)
            for i in range(order.shape[0]):
                j = order[i]
                d = wp.identity(n=3, dtype=scalar)
                if smpl[j] >= 0:
                    d = wp.mul(wp.mul(c, rot[b, smpl[j]]), ct)
                h = heads[b, j]
                if i == 0:  # the root: W = Uᵀ D U, w = 0
                    wr = wp.mul(wp.transpose(u[j]), wp.mul(d, u[j]))
                    wt = vec3(zero, zero, zero)
                else:
                    p = parent[j]
                    # the head offset in the parent's reference frame: A_p (h - h_p),
                    # A_p = U_p R_pᵀ (A_0 = I)
                    off = h - heads[b, p]
                    if p != 0:
                        off = wp.mul(wp.mul(u[p], wp.transpose(rest_rot[b, p])), off)
                    up_t = wp.transpose(u[p])
                    k_rot = wp.mul(up_t, wp.mul(d, u[j]))
                    k_trans = wp.mul(up_t, off)
                    pr = w_rot[b, p]
                    wr = wp.mul(pr, k_rot)
                    wt = wp.mul(pr, k_trans) + w_trans[b, p]
                w_rot[b, j] = wr
                w_trans[b, j] = wt
                tr = wp.mul(wr, wp.transpose(rest_rot[b, j]))
                tt = wt - wp.mul(tr, h)
                t_rot[b, j] = tr
                t_trans[b, j] = tt
                if points != 0:
                    sr = wp.mul(ct, tr)
                    st = wp.mul(ct, tt)
                    one = scalar(1.0)
                    skin[b, j] = mat44(
                        sr[0, 0], sr[0, 1], sr[0, 2], st[0],
                        sr[1, 0], sr[1, 1], sr[1, 2], st[1],
                        sr[2, 0], sr[2, 1], sr[2, 2], st[2],
                        zero, zero, zero, one,
                    )  # fmt: skip
            if points != 0:
                # keypoints: Σ over each point's pairs of T_n p_n + t_n s_n, in pair order
                for k in range(kp.shape[1]):
                    kp[b, k] = vec3(zero, zero, zero)
                for n in range(pair_bone.shape[0]):
                    j = pair_bone[n]
                    q = pair_kp[n]
                    kp[b, q] = kp[b, q] + (
                        wp.mul(t_rot[b, j], pairs[b, n]) + t_trans[b, j] * pair_scale[n]
                    )
                for k in range(kp.shape[1]):
                    kp[b, k] = wp.mul(ct, kp[b, k])
                for s in range(joint_bone.shape[0]):
                    if joint_bone[s] >= 0:
                        joints[b, s] = wp.mul(ct, w_trans[b, joint_bone[s]])
                # feet (10, 11): toe midpoints; hands (22, 23): 8 cm beyond the wrists (20, 21)
                # along the forearms (from the elbows 18, 19)
                half = scalar(0.5)
                joints[b, 10] = half * (kp[b, toes[0]] + kp[b, toes[2]])
                joints[b, 11] = half * (kp[b, toes[1]] + kp[b, toes[3]])
                for side in range(2):
                    wrist = joints[b, 20 + side]
                    fore = wrist - joints[b, 18 + side]
                    length = wp.max(wp.length(fore), scalar(1e-6))
                    joints[b, 22 + side] = wrist + (scalar(0.08) * fore) / length

        fk.__annotations__ = {
            "rot": wp.array2d(dtype=mat33),
            "rest_rot": wp.array2d(dtype=mat33),
            "heads": wp.array2d(dtype=vec3),
            "pairs": wp.array2d(dtype=vec3),
            "u": wp.array(dtype=mat33),
            "parent": wp.array(dtype=wp.int32),
            "order": wp.array(dtype=wp.int32),
            "smpl": wp.array(dtype=wp.int32),
            "frame": wp.array(dtype=mat33),
            "pair_bone": wp.array(dtype=wp.int32),
            "pair_kp": wp.array(dtype=wp.int32),
            "pair_scale": wp.array(dtype=scalar),
            "joint_bone": wp.array(dtype=wp.int32),
            "toes": wp.array(dtype=wp.int32),
            "points": int,
            "w_rot": wp.array2d(dtype=mat33),
            "t_rot": wp.array2d(dtype=mat33),
            "t_trans": wp.array2d(dtype=vec3),
            "w_trans": wp.array2d(dtype=vec3),
            "skin": wp.array2d(dtype=mat44),
            "kp": wp.array2d(dtype=vec3),
            "joints": wp.array2d(dtype=vec3),
        }
        _FK_KERNELS[dtype] = WarpCall(wp.kernel(fk, enable_backward=False, module="unique"))
    return _FK_KERNELS[dtype]


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
        batch_invariant: bool = True,
    ):
        super().__init__()
        _check_dtype(dtype)
        self.rig, self.topology = rig, topology
        # True: a body's numbers do not depend on the other rows of its batch (oneDNN's products,
        # key2mesh.dense; where those do not apply, the shape GEMMs run on multiples of
        # GEMM_ROWS distinct shapes; skinning is per vertex), so callers need not pad batches;
        # float32 only (see batch_invariant). False: without oneDNN, a single new shape's GEMMs
        # run on 1 row (a little faster), whose last bits differ from the batched GEMM's.
        self.batch_invariant = batch_invariant
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
        regressor = _coco23_regressor(model, rig, topology)
        self.register_buffer("coco23_regressor", regressor.to(dtype), persistent=False)
        self.register_buffer("frame", _frame_change(dtype), persistent=False)
        self.register_buffer("faces", model.get_triangular_faces().long(), persistent=False)
        # The folds are computed from anny's float64 arrays, then stored in ``dtype``.
        self.model = model.to(torch.float64)
        self._init_fast_paths(regressor.to(torch.float64))
        self._init_mesh_path()
        self.model = model.to(dtype)
        cidx = {n: i for i, n in enumerate(COCO23)}
        # Unmapped SMPL joints: feet (10, 11) = toe midpoints; hands (22, 23) beyond the wrists
        # (20, 21) along the forearms (from the elbows 18, 19).
        self._toe_idx = (
            [cidx["left_big_toe"], cidx["right_big_toe"]],
            [cidx["left_small_toe"], cidx["right_small_toe"]],
        )
        # Rest models of recently seen shapes (inference only): a tracked person's shape repeats.
        self._rest_cache: OrderedDict = OrderedDict()
        # Per thread, the rest-vertex buffer of the last large uncached batch (see _rest).
        self._scratch: dict[int, torch.Tensor] = {}
        # A new shape's rest vertices without autograd: per-cell multilinear bases (anny_cells).
        self._cells: CellBases | None = CellBases(self)

    @property
    def batch_invariant(self) -> bool:  # type: ignore[override]
        """Whether a row's outputs are the same bits whatever else shares its batch: as asked at
        construction, and only in float32. MKL's dgemm gives a row other last bits at odd
        positions of the GEMM for many term counts (18 and 136 among them), which no padding of
        the row count fixes, so a float64 body is not batch-invariant (2e-16 m)."""
        return self._invariant and self.dtype == torch.float32

    @batch_invariant.setter
    def batch_invariant(self, value: bool) -> None:
        self._invariant = bool(value)

    def config(self) -> dict:
        return {"name": "anny", "rig": self.rig, "topology": self.topology}

    def _check_pose(
        self, rotmats: torch.Tensor, shape: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        _check_dtype(self.dtype)  # e.g. after .half()
        return super()._check_pose(rotmats, shape)

    def default_shape(self, batch_size: int = 1) -> torch.Tensor:
        """The mean adult of :func:`key2mesh.data.shapes.sample_shapes` (1.70 m tall)."""
        values = [DEFAULT_PHENOTYPES[label] for label in self.phenotype_labels]
        return (
            torch.tensor(values, dtype=self.dtype, device=self.device)
            .expand(batch_size, -1)
            .clone()
        )

    def sample_prior_shapes(
        self, n: int, seed: int = 0, min_age: float = 18.0, max_age: float = 70.0
    ) -> np.ndarray:
        """(n, 6) float32 phenotypes from ``anny.shape_distribution.SimpleShapeDistribution``
        (height/weight/muscle/proportions conditioned on age and gender, calibrated on WHO growth
        data) restricted to adults of morphological age in [min_age, max_age] years."""
        from anny.shape_distribution import SimpleShapeDistribution

        model = self.model
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ages = torch.distributions.Uniform(
                torch.tensor(min_age, dtype=model.dtype), torch.tensor(max_age, dtype=model.dtype)
            )
            dist = SimpleShapeDistribution(model, morphological_age_distribution=ages)
            state = torch.get_rng_state()
            torch.manual_seed(seed)  # torch.distributions only draw from the global generator
            try:
                _, sample = dist.sample(n)
            finally:
                torch.set_rng_state(state)
        cols = [torch.as_tensor(sample[label]).reshape(n) for label in self.phenotype_labels]
        return torch.stack(cols, dim=1).clamp(0, 1).float().numpy()

    def joint_skin_weights(self, smpl_index: np.ndarray) -> np.ndarray:
        """(V, J) float64: each anny bone's skin weight goes to the nearest of its ancestors
        (itself included) that an SMPL joint of ``smpl_index`` (J,) drives."""
        m = self.model
        labels = list(m.bone_labels)
        parents = list(m.bone_parents)
        driven = {labels.index(SMPL_TO_ANNY_BONE[SMPL24[s]]): k for k, s in enumerate(smpl_index)}
        target = np.empty(len(labels), dtype=int)
        for b in range(len(labels)):
            a = b
            while a not in driven:
                a = parents[a]
            target[b] = driven[a]
        idx = m.vertex_bone_indices.long().cpu().numpy()
        w = m.vertex_bone_weights.double().cpu().numpy()
        out = np.zeros((len(idx), len(smpl_index)))
        np.add.at(
            out,
            (np.repeat(np.arange(len(idx)), idx.shape[1]), target[idx].reshape(-1)),
            w.reshape(-1),
        )
        return out

    # ------------------------------------------------------------------ fast paths
    def _init_fast_paths(self, regressor: torch.Tensor) -> None:
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
        self._init_phenotype_table()
        support = torch.nonzero(regressor.abs().sum(0) > 0).squeeze(1)
        # Keypoints are linear in LBS: k = sum_b T_b · sum_v W_kv w_vb [rest_v; 1]. g (23, S, bones)
        # folds the regressor into the skinning weights of the S supporting vertices; only the
        # (keypoint, bone) pairs with a non-zero fold are kept (151 of 23 × 36 on anny).
        f64 = torch.float64
        skin = torch.zeros(len(support), self.num_bones, dtype=f64)
        skin.scatter_add_(
            1, m.vertex_bone_indices[support].long(), m.vertex_bone_weights[support].to(f64)
        )
        g = regressor[:, support, None] * skin[None]
        kp_idx, bone_idx = torch.nonzero(g.abs().sum(1) > 0, as_tuple=True)
        g = g[kp_idx, :, bone_idx]  # (P, S)
        self.register_buffer("_pair_kp", kp_idx, persistent=False)
        self.register_buffer("_pair_bone", bone_idx, persistent=False)
        self.register_buffer("_pair_skin_sum", g.sum(1).to(self.dtype), persistent=False)
        # ... and into the rest shape, which is linear in the blendshape coefficients: one
        # (C, F) matrix maps coefficients to every shape-dependent quantity of the skeleton path
        # (bone heads, rest-orientation matrices, the pairs' rest points), so it is one GEMM.
        rest0 = [
            m.template_bone_heads.reshape(-1),
            torch.einsum("ps,sd->pd", g, m.template_vertices[support].to(f64)).reshape(-1),
        ]
        blend = [
            m.bone_heads_blendshapes.reshape(len(m.blendshapes), -1),
            torch.einsum("ps,csd->cpd", g, m.blendshapes[:, support].to(f64)).reshape(
                len(m.blendshapes), -1
            ),
        ]
        self._cached_orientation = m.bone_orientation == "cached"
        if self._cached_orientation:
            rest0.append(m.bone_template_orientation_matrices.reshape(-1))
            blend.append(m.bone_orientation_blendshapes.reshape(len(m.blendshapes), -1))
        self.register_buffer("_skel_rest0", torch.cat(rest0).to(self.dtype), persistent=False)
        self.register_buffer("_skel_blend", torch.cat(blend, 1).to(self.dtype), persistent=False)

    def _init_mesh_path(self) -> None:
        c = self.model.blendshapes.shape[0]
        self.register_buffer(
            "_vert_rest0",
            self.model.template_vertices.reshape(-1).to(self.dtype),
            persistent=False,
        )
        # anny's own (C, V, 3) buffer viewed flat: no copy of the largest array.
        self._vert_blend_shape = (c, -1)

    def _init_phenotype_table(self) -> None:
        """Tables of anny's phenotype → variation weights (``phenotype_blendshape_weights``) for
        all features at once: each variation is a linear-interpolation "hat" of one feature
        (gender, age, ...) at one anchor, or a race weight (constant: the race phenotypes are not
        exposed, so anny sets them to 0.5 each)."""
        from anny.models.model_data import PHENOTYPE_VARIATIONS

        m = self.model
        features = [f for f in PHENOTYPE_VARIATIONS if f != "race"]
        n = [len(PHENOTYPE_VARIATIONS[f]) for f in features]
        anchors = torch.full((len(features), max(n)), math.inf, dtype=self.dtype)
        for i, f in enumerate(features):
            anchors[i, : n[i]] = m.anchors[f].to(self.dtype)
        labels = list(m.phenotype_labels)
        # the value of each feature: a column of the shape, or anny's default 0.5 (last column)
        source = [labels.index(f) if f in labels else len(labels) for f in features]
        feat, slot, race = [], [], []
        for key, variations in PHENOTYPE_VARIATIONS.items():
            for j, _ in enumerate(variations):
                race.append(key == "race")
                feat.append(0 if key == "race" else features.index(key))
                slot.append(j)
        self.register_buffer("_phen_anchors", anchors, persistent=False)
        self.register_buffer("_phen_count", torch.tensor(n), persistent=False)
        self.register_buffer("_phen_source", torch.tensor(source), persistent=False)
        self.register_buffer("_phen_feature", torch.tensor(feat), persistent=False)
        self.register_buffer("_phen_slot", torch.tensor(slot), persistent=False)
        self.register_buffer("_phen_race", torch.tensor(race), persistent=False)
        if any(r for r in ("african", "asian", "caucasian") if r in labels):
            raise Key2MeshError("key2mesh's anny backend does not expose race phenotypes")

    def clamp_shape(self, shape: torch.Tensor) -> torch.Tensor:
        """Phenotypes (B, 6) clamped to the range anny's forward uses (its anchors; nothing
        without ``extrapolate_phenotypes``)."""
        if self.model.extrapolate_phenotypes:
            return shape
        n = shape.shape[1]
        src = self._phen_source
        anchors = self._phen_anchors.to(shape.dtype)
        first = anchors[:, 0]
        last = anchors.gather(1, (self._phen_count - 1)[:, None])[:, 0]
        low = torch.full((n,), -math.inf, dtype=shape.dtype, device=shape.device)
        high = torch.full((n,), math.inf, dtype=shape.dtype, device=shape.device)
        own = src < n  # features read from a shape column (not anny's fixed 0.5)
        low = low.scatter_reduce(0, src[own], first[own].to(low), "amax")
        high = high.scatter_reduce(0, src[own], last[own].to(high), "amin")
        return torch.minimum(torch.maximum(shape, low), high)

    def phenotype_intervals(self, shape: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Phenotypes (B, 6) → for each of anny's features (B, F): the upper anchor's index of
        the interval its value interpolates in, and its position alpha in [0, 1] there (the
        value clamped to the anchors unless ``extrapolate_phenotypes``); features the shape does
        not set read anny's fixed 0.5."""
        b = shape.shape[0]
        x = torch.cat([shape, shape.new_full((b, 1), 0.5)], 1)[:, self._phen_source]  # (B, F)
        anchors = self._phen_anchors.to(shape.dtype)
        first = anchors[:, 0]
        last = anchors.gather(1, (self._phen_count - 1)[:, None])[:, 0]
        if not self.model.extrapolate_phenotypes:
            x = torch.where(x < first, first, x)
            x = torch.where(x > last, last, x)
        idx = torch.searchsorted(anchors, x.T.contiguous(), side="left").T
        idx = torch.minimum(idx.clamp(min=1), self._phen_count - 1)
        rows = torch.arange(len(anchors), device=shape.device).expand(b, -1)
        lower, upper = anchors[rows, idx - 1], anchors[rows, idx]
        return idx, (x - lower) / (upper - lower)

    def phenotype_weights(self, shape: torch.Tensor) -> torch.Tensor:
        """Phenotypes (B, 6) → anny's variation weights (B, 26), the numbers of anny's
        ``phenotype_blendshape_weights`` in a few batched operations instead of per feature."""
        idx, alpha = self.phenotype_intervals(shape)
        f = self._phen_feature
        hit = idx[:, f]  # (B, NV): the upper anchor of each variation's feature
        zero = alpha.new_zeros(())
        w = torch.where(
            self._phen_slot == hit - 1,
            1.0 - alpha[:, f],
            torch.where(self._phen_slot == hit, alpha[:, f], zero),
        )
        half = alpha.new_full((), 0.5)
        return torch.where(self._phen_race, half / (half + half + half), w)

    def blendshape_coefficients(self, shape: torch.Tensor) -> torch.Tensor:
        """Phenotypes (B, 6) → anny blendshape coefficients (B, C); equals anny's own result."""
        m = self.model
        phens = self.phenotype_weights(shape)
        phens = torch.cat([phens, phens.new_ones(phens.shape[0], 1)], dim=1)
        # the product of each blendshape's few factors, written out: torch.prod's backward takes a
        # slow cumprod path whenever a factor is 0 (most hat weights are)
        # (B, K, width); index_select: ~3x faster than phens[:, idx] with a 2-D index
        factors = phens.index_select(1, self._factor_idx.reshape(-1)).view(
            -1, *self._factor_idx.shape
        )
        weights = factors[..., 0]
        for i in range(1, factors.shape[-1]):
            weights = weights * factors[..., i]
        if m.phenotype_blendshape_projection is not None:
            weights = dense.matmul(weights, m.phenotype_blendshape_projection.to(weights.dtype))
        return weights

    def _anny_delta(self, rotmats: torch.Tensor) -> torch.Tensor:
        """SMPL-frame local rotations (B, 24, 3, 3) → anny local-ref deltas (B, bones, 4, 4)."""
        c = self.frame
        delta = torch.eye(4, dtype=self.dtype, device=self.device).repeat(
            rotmats.shape[0], self.num_bones, 1, 1
        )
        delta[:, self.bone_idx, :3, :3] = c @ rotmats[:, self.smpl_idx] @ c.T
        return delta

    def _bone_transforms(
        self, rotmats: torch.Tensor, poses: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """SMPL-frame local rotations (B, 24, 3, 3) and rest bone poses (B, bones, 4, 4) →
        skinning rotations (B, bones, 3, 3), translations (B, bones, 3) and posed bone heads
        (B, bones, 3) in anny's frame: :meth:`_bone_transforms_torch`'s numbers, without
        autograd on the CPU in one Warp kernel (one thread per sample walks the chain instead of
        dozens of small torch ops; timings in ``benchmarks/results/rest_product_threads2.md``,
        ``fk_*``)."""
        launch = self._fk_launch(rotmats, poses)
        if launch is None:
            return self._bone_transforms_torch(rotmats, poses)
        return launch(rotmats.to(self.dtype), poses.to(self.dtype))[:3]

    def _fk_launch(self, rotmats: torch.Tensor, poses: torch.Tensor):
        """The Warp forward kinematics' launcher (:meth:`_fk_launcher`) where it applies (no
        autograd through the pose or rest model, CPU, float32/64, anny's 'local-ref' chain with
        its root first), else None (the torch version)."""
        m = self.model
        if (
            (torch.is_grad_enabled() and (rotmats.requires_grad or poses.requires_grad))
            or rotmats.device.type != "cpu"
            or self.dtype not in (torch.float32, torch.float64)
            or m.pose_parameterization != "local-ref"
            or m.reference_bone_orientations is None
            or int(m.kinematic_chain_indices[1][0]) != 0  # the kernel's root is bone 0
        ):
            return None
        try:
            return self._fk_launcher()
        except ImportError:
            return None

    def _readout_launch(self, rotmats: torch.Tensor, poses: torch.Tensor, pairs: torch.Tensor):
        """The kinematics launcher (:meth:`_fk_launch`) where it may also read the posed body out
        (no autograd through the keypoint pairs' rest points either), else None."""
        if pairs.requires_grad and torch.is_grad_enabled():
            return None
        return self._fk_launch(rotmats, poses)

    def _posed(
        self, rotmats: torch.Tensor, poses: torch.Tensor, pairs: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor]:
        """SMPL-frame local rotations (B, 24, 3, 3), rest bone poses (B, bones, 4, 4) and the
        keypoint pairs' rest points (B, P, 3) → skinning rotations (B, bones, 3, 3) and
        translations (B, bones, 3) (anny's frame), the skinning transforms folded into the SMPL
        frame (B, bones, 4, 4) or None (then :meth:`_skin` folds them), COCO-23 keypoints
        (B, 23, 3) and SMPL-24 joints (B, 24, 3) (SMPL frame): without autograd on the CPU
        all in one Warp kernel (:func:`_fk_kernel`), else :meth:`_bone_transforms_torch` and
        :meth:`_readout_torch` (the same formulas; the kernel's sums may round differently,
        ~1e-7 m)."""
        launch = self._readout_launch(rotmats, poses, pairs)
        if launch is None:
            rot, trans, heads = self._bone_transforms_torch(rotmats, poses)
            keypoints, joints = self._readout_torch(rot, trans, heads, pairs)
            return rot, trans, None, keypoints, joints
        rot, trans, _, folded, keypoints, joints = launch(
            rotmats.to(self.dtype), poses.to(self.dtype), pairs.to(self.dtype)
        )
        return rot, trans, folded, keypoints, joints

    def _readout_torch(
        self, rot: torch.Tensor, trans: torch.Tensor, heads: torch.Tensor, pairs: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Skinning transforms [R | t] (B, bones, 3, 3), (B, bones, 3), posed heads
        (B, bones, 3) (anny's frame) and the pairs' rest points (B, P, 3) → COCO-23 keypoints
        (B, 23, 3) and SMPL-24 joints (B, 24, 3), SMPL frame. SMPL joints on anny bones are the
        posed bone heads; the feet (10, 11) are the toe midpoints and the hands (22, 23) lie
        8 cm beyond the wrists along the forearms."""
        keypoints = self._folded_keypoints(rot, trans, pairs) @ self.frame
        heads = heads @ self.frame  # row vectors: (Cᵀ v)ᵀ = vᵀ C
        joints = heads.new_zeros(heads.shape[0], 24, 3)
        joints[:, self.smpl_idx] = heads[:, self.bone_idx]
        big, small = self._toe_idx
        joints[:, [10, 11]] = 0.5 * (keypoints[:, big] + keypoints[:, small])
        fore = joints[:, [20, 21]] - joints[:, [18, 19]]
        joints[:, [22, 23]] = joints[:, [20, 21]] + 0.08 * fore / fore.norm(
            dim=-1, keepdim=True
        ).clamp(min=1e-6)
        return keypoints, joints

    def _bone_transforms_torch(
        self, rotmats: torch.Tensor, poses: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """SMPL-frame local rotations (B, 24, 3, 3) and rest bone poses (B, bones, 4, 4) →
        skinning transforms [R | t] as rotations (B, bones, 3, 3) and translations (B, bones, 3),
        and the posed bone heads (B, bones, 3), all in anny's frame.

        anny's ``forward_kinematic`` for its 'local-ref' parameterisation with reference
        orientations (the same chain, level by level), on 3x3 rotations and translations instead
        of 4x4 matrices, with batched matmuls instead of broadcast sums (the deltas have no
        translation): ~2x faster forward and backward, the same numbers to float precision."""
        m = self.model
        u = m.reference_bone_orientations
        if m.pose_parameterization != "local-ref" or u is None:
            transforms, bone_poses = m.get_bone_transforms(self._anny_delta(rotmats), poses)
            return transforms[..., :3, :3], transforms[..., :3, 3], bone_poses[..., :3, 3]
        c = self.frame
        b = rotmats.shape[0]
        d = torch.eye(3, dtype=rotmats.dtype, device=rotmats.device).repeat(b, self.num_bones, 1, 1)
        d[:, self.bone_idx] = c @ rotmats[:, self.smpl_idx] @ c.T
        levels = m.kinematic_chain_levels
        local, order, inverse, parent = m.kinematic_chain_indices
        rest_rot, heads = poses[..., :3, :3], poses[..., :3, 3]
        # reference head offsets q_c - q_p = A_p (h_c - h_p), A_p = U_p R_pᵀ (A_0 = I)
        a = u[1:] @ rest_rot[:, 1:].transpose(-1, -2)
        a = torch.cat([torch.eye(3, dtype=a.dtype, device=a.device).expand(b, 1, 3, 3), a], 1)
        offsets = (a[:, parent] @ (heads - heads[:, parent])[..., None])[..., 0]
        u_pt = u[parent].transpose(-1, -2)
        k_rot = (u_pt @ (d @ u))[:, order]
        k_trans = (u_pt @ offsets[..., None])[:, order, :, 0]
        w_rot = [u[0].T @ d[:, :1] @ u[:1]]
        w_trans = [heads.new_zeros(b, 1, 3)]
        for first, last in levels[1:]:
            parent_rot = w_rot[-1][:, local[first:last]]
            w_rot.append(parent_rot @ k_rot[:, first:last])
            w_trans.append(
                (parent_rot @ k_trans[:, first:last, :, None])[..., 0]
                + w_trans[-1][:, local[first:last]]
            )
        w_rot = torch.cat(w_rot, 1)[:, inverse]
        w_trans = torch.cat(w_trans, 1)[:, inverse]
        # T_c = W_c P_c⁻¹ = [V_c R_cᵀ | w_c - V_c R_cᵀ h_c]
        t_rot = w_rot @ rest_rot.transpose(-1, -2)
        return t_rot, w_trans - (t_rot @ heads[..., None])[..., 0], w_trans

    def _fk_launcher(self):
        """A function (rotmats (B, 24, 3, 3), poses (B, bones, 4, 4), pairs (B, P, 3) or None)
        → (rotations, translations, heads, folded transforms, keypoints, joints) running
        :func:`_fk_kernel` on the CPU (its tables built once per dtype); the last three are None
        without ``pairs``."""
        key = self.dtype
        cache = self.__dict__.setdefault("_warp_launchers", {})
        if ("fk", key) in cache:
            return cache[("fk", key)]

        m = self.model
        _, order, _, parent = m.kinematic_chain_indices
        smpl_of_bone = torch.full((self.num_bones,), -1, dtype=torch.int32)
        smpl_of_bone[self.bone_idx] = self.smpl_idx.to(torch.int32)
        bone_of_joint = torch.full((24,), -1, dtype=torch.int32)
        bone_of_joint[self.smpl_idx] = self.bone_idx.to(torch.int32)
        big, small = self._toe_idx
        i32 = torch.int32
        tables = {
            "u": m.reference_bone_orientations.to(key).contiguous(),
            "parent": parent.to(i32).contiguous(),
            "order": order.to(i32).contiguous(),
            "smpl": smpl_of_bone,
            "frame": self.frame.to(key).reshape(1, 3, 3).contiguous(),
            "pair_bone": self._pair_bone.to(i32).contiguous(),
            "pair_kp": self._pair_kp.to(i32).contiguous(),
            "pair_scale": self._pair_skin_sum.to(key).contiguous(),
            "joint_bone": bone_of_joint,
            "toes": torch.tensor([*big, *small], dtype=i32),
            # stand-ins for the readout's arrays when it is not asked for (never read)
            "none3": torch.zeros(1, 1, 3, dtype=key),
            "none44": torch.zeros(1, 1, 4, 4, dtype=key),
        }
        names = (
            "u", "parent", "order", "smpl", "frame",
            "pair_bone", "pair_kp", "pair_scale", "joint_bone", "toes",
        )  # fmt: skip
        # the body's tables bound once (arguments 4-13); without the readout, its arrays are
        # stand-ins bound too (never read)
        with_points = _fk_kernel(key).bind({4 + i: tables[name] for i, name in enumerate(names)})
        none3, none44 = tables["none3"], tables["none44"]
        no_points = with_points.bind({3: none3, 14: 0, 19: none44, 20: none3, 21: none3})
        with_points = with_points.bind({14: 1})
        nb = self.num_bones

        def launch(rotmats: torch.Tensor, poses: torch.Tensor, pairs: torch.Tensor | None = None):
            b = rotmats.shape[0]
            rot = rotmats.contiguous()
            rest_rot = poses[..., :3, :3].contiguous()
            heads = poses[..., :3, 3].contiguous()
            t_rot = rot.new_empty(b, nb, 3, 3)
            w_rot = rot.new_empty(b, nb, 3, 3)
            t_trans = rot.new_empty(b, nb, 3)
            w_trans = rot.new_empty(b, nb, 3)
            if pairs is None:
                call, folded, keypoints, joints = no_points, None, None, None
                arrays = (rot, rest_rot, heads, w_rot, t_rot, t_trans, w_trans)
            else:
                call = with_points
                folded = rot.new_empty(b, nb, 4, 4)
                keypoints = rot.new_empty(b, len(COCO23), 3)
                joints = rot.new_empty(b, 24, 3)
                arrays = (rot, rest_rot, heads, pairs, w_rot, t_rot, t_trans, w_trans)
                arrays += (folded, keypoints, joints)
            parts = min(torch.get_num_threads(), max(1, b * nb // PARALLEL_MATRICES))
            run_jobs(
                [
                    functools.partial(call, j - i, *(a[i:j] for a in arrays))
                    for i, j in split(b, parts)
                ]
            )
            return t_rot, t_trans, w_trans, folded, keypoints, joints

        cache[("fk", key)] = launch
        return launch

    # ------------------------------------------------------------------ shape → rest model
    def _skeleton_rest(
        self,
        coeffs: torch.Tensor | None,
        rows: int | None = None,
        feats: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Blendshape coefficients (B, C) → rest bone poses (rows, bones, 4, 4) and the folded
        keypoint pairs' rest points (rows, P, 3), without anny's rest vertices (one GEMM, on all
        B rows; the per-bone work on the first ``rows`` only, default all). ``feats`` (rows, F):
        that GEMM's result, already computed (the cell bases'; ``coeffs`` may then be None)."""
        nb, npair = self.num_bones, len(self._pair_kp)
        if feats is None:
            feats = dense.matmul(coeffs, self._skel_blend, self._skel_rest0)[:rows]
            coeffs = coeffs[:rows]
        b = feats.shape[0]
        heads = feats[:, : nb * 3].reshape(b, nb, 3)
        pairs = feats[:, nb * 3 : (nb + npair) * 3].reshape(b, npair, 3)
        m = self.model
        if not self._cached_orientation:  # anny's other rest-orientation rules: its own code
            return m.get_rest_model(coeffs)["rest_bone_poses"], pairs
        import roma

        blended = feats[:, (nb + npair) * 3 :].reshape(b, nb, 3, 3)
        if torch.is_grad_enabled() and blended.requires_grad:
            rot = roma.special_procrustes(blended)  # its derivatives, for training
        else:
            rot = _nearest_rotation(blended)
        if m.rest_orientation_refiner is not None:
            rot = m.rest_orientation_refiner(rot, heads)
        poses = rot.new_zeros(b, nb, 4, 4)  # [R | h; 0 0 0 1]
        poses[..., :3, :3] = rot
        poses[..., :3, 3] = heads
        poses[..., 3, 3] = 1.0
        if m.root_identity_orientation:
            poses[:, 0, :3, :3] = torch.eye(3, dtype=poses.dtype, device=poses.device)
        return poses, pairs

    def _rest(
        self, shape: torch.Tensor, vertices: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Shapes (B, 6) → rest bone poses (B, bones, 4, 4), keypoint pairs' rest points (B, P, 3)
        and, with ``vertices``, anny's rest vertices (R, V, 3) (anny's frame) with each shape's
        row in them (B,) long, or None when the rows are the batch's own (R = B).

        Without autograd, repeated shapes are computed once (a tracked person's shape, a padded
        batch), the rest models of the last few shape sets are kept (a rest mesh is a function of
        the shape only), and the rest vertices and skeleton come from the per-cell bases of
        :mod:`~key2mesh.body.anny_cells` (a (rows, ≤45) GEMM instead of anny's (rows, 136) one,
        and no blendshape coefficients).
        Every GEMM runs on a multiple of :data:`GEMM_ROWS` rows, so a shape's numbers do not
        depend on which others share its batch.
        """
        b = shape.shape[0]
        tracked = shape.requires_grad and torch.is_grad_enabled()
        inverse = None
        if not tracked and b > 1:
            uniq, inverse = torch.unique(shape, dim=0, return_inverse=True)
            if len(uniq) == b:
                inverse = None
            else:
                shape = uniq
        key = None
        if not tracked and len(shape) <= 16:
            key = (
                vertices,
                self.batch_invariant,
                bool(self.model.extrapolate_phenotypes),
                # inference tensors cannot serve autograd (nor be written) outside that mode
                torch.is_inference_mode_enabled(),
                shape.dtype,
                str(shape.device),
                shape.detach().cpu().numpy().tobytes(),
            )
            with _CACHE_LOCK:  # other threads look up, add and evict entries too
                hit = self._rest_cache.get(key)
                if hit is not None:
                    self._rest_cache.move_to_end(key)
            if hit is not None:
                return self._expand_rest(hit, inverse, b)
        n = shape.shape[0]
        padded = not dense.rows_independent(shape.device, self.dtype)
        multiple = GEMM_ROWS if self.batch_invariant and not tracked and padded else 1
        pad = -n % multiple
        verts = rows = feats = None
        # A large batch that is not cached writes its rest vertices (an intermediate: only
        # skinning reads them) into a buffer kept for the next call: a fresh (B, 3V) array
        # costs more in page faults than the GEMM that fills it (~30 ms at batch 512). Not with
        # autograd: anny's skinning keeps the rest vertices for its backward.
        large = vertices and key is None and not tracked and n > 16 and not torch.is_grad_enabled()
        width = self._vert_rest0.shape[0]
        cells = self._cells if not tracked and not self.model.extrapolate_phenotypes else None
        if cells is not None:
            try:
                # at most GEMM_ROWS - 1 padding rows per cell; oneDNN writes its own arrays (one
                # per cell: skinning reads them as they are, without a copy into one buffer)
                extra = (multiple - 1) * cells.num_cells
                buf = (
                    self._rest_buffer(n + extra, width, self._vert_rest0)
                    if large and padded
                    else None
                )
                flat, rows, feats = cells.rest(
                    shape,
                    multiple,
                    buf,
                    vertices=vertices,
                    skeleton=self._cached_orientation,
                    groups=large and not padded,
                )
                if vertices and isinstance(flat, list):
                    verts = [f.view(-1, width // 3, 3) for f in flat]
                elif vertices:
                    verts = (flat if rows is not None else flat[:n]).view(-1, width // 3, 3)
            except NotMultilinear as exc:
                log.warning("%s", exc)
                self._cells = None
                feats = verts = rows = None
        if feats is not None:
            poses, pairs = self._skeleton_rest(None, feats=feats)
        else:
            padded = torch.cat([shape, shape[-1:].expand(pad, -1)]) if pad else shape
            coeffs = self.blendshape_coefficients(padded)
            poses, pairs = self._skeleton_rest(coeffs, n)  # procrustes on the real rows only
            if vertices and verts is None:
                blend = self.model.blendshapes.reshape(self._vert_blend_shape)
                buf = self._rest_buffer(coeffs.shape[0], width, self._vert_rest0) if large else None
                verts = dense.matmul(coeffs, blend, self._vert_rest0, out=buf)[:n].view(n, -1, 3)
        out = (poses, pairs, verts, rows)
        if key is not None:
            with _CACHE_LOCK:
                self._rest_cache[key] = out
                while len(self._rest_cache) > 8:
                    self._rest_cache.popitem(last=False)
        return self._expand_rest(out, inverse, b)

    def _rest_buffer(self, rows: int, width: int, like: torch.Tensor) -> torch.Tensor:
        """A (rows, width) buffer of ``like``'s dtype and device, reused by this thread's next
        uncached batch (so the caller must not keep it: skinning reads and forgets it)."""
        scratch = self._scratch
        buf = scratch.get(threading.get_ident())
        if (
            buf is None
            or buf.numel() < rows * width
            or buf.dtype != like.dtype
            or buf.device != like.device
            or (buf.is_inference() and not torch.is_inference_mode_enabled())  # not writable
        ):
            buf = torch.empty(rows * width, dtype=like.dtype, device=like.device)
            with _CACHE_LOCK:
                scratch[threading.get_ident()] = buf
                while len(scratch) > 4:  # threads come and go (e.g. a pool): keep the last few
                    scratch.pop(next(iter(scratch)))
        return buf[: rows * width].view(rows, width)

    @staticmethod
    def _expand_rest(rest, inverse: torch.Tensor | None, b: int):
        """The rest model of the distinct shapes → the batch's: poses and pairs per row; the
        vertices stay as they are, only their row index is mapped (skinning reads by row)."""
        if inverse is None:
            return rest
        poses, pairs, verts, rows = rest
        if len(poses) == 1:  # one shape for the whole batch: broadcast, no copy
            poses, pairs = poses.expand(b, *poses.shape[1:]), pairs.expand(b, *pairs.shape[1:])
        else:
            poses, pairs = poses[inverse], pairs[inverse]
        if verts is not None:
            rows = inverse if rows is None else rows[inverse]
        return poses, pairs, verts, rows

    def _folded_keypoints(
        self, rot: torch.Tensor, trans: torch.Tensor, pairs: torch.Tensor
    ) -> torch.Tensor:
        """COCO-23 keypoints (B, 23, 3), anny's frame, from the skinning transforms [R | t]
        and the folded pairs' rest points: k = Σ_pairs R_n p + t_n s (no vertex skinned)."""
        contrib = (rot[:, self._pair_bone] @ pairs[..., None])[..., 0] + trans[
            :, self._pair_bone
        ] * self._pair_skin_sum[:, None].to(trans.dtype)
        kp = contrib.new_zeros(rot.shape[0], len(COCO23), 3)
        return kp.index_add(1, self._pair_kp, contrib)

    def clear_cache(self) -> None:
        """Forget the cached rest models (they are also keyed by device and dtype); the cell
        bases, which depend on the model only, are kept."""
        with _CACHE_LOCK:
            self._rest_cache.clear()

    def __getstate__(self) -> dict:
        """Copies and pickles leave out the Warp launchers (closures, not picklable; rebuilt on
        first use) and this body's scratch buffers."""
        state = self.__dict__.copy()
        state.pop("_skin_pool", None)  # bodies pickled before the pool was shared (warp_call)
        state.pop("_warp_launchers", None)
        state["_scratch"] = {}
        return state

    def __setstate__(self, state: dict) -> None:
        """Bodies pickled before ``batch_invariant`` became a property (float32 only) stored it
        as a plain attribute: it becomes the setting the property reads."""
        state = dict(state)
        state.setdefault("_invariant", state.pop("batch_invariant", True))
        super().__setstate__(state)

    def _apply(self, fn, *args, **kwargs):  # .to()/.cuda()/.double(): cached tensors are stale
        with _CACHE_LOCK:
            self.__dict__.get("_rest_cache", {}).clear()
        self.__dict__["_scratch"] = {}
        if self.__dict__.get("_cells") is not None:
            self.__dict__["_cells"].clear()
        self.__dict__.pop("_warp_launchers", None)  # they hold the skinning weights' arrays
        return super()._apply(fn, *args, **kwargs)

    def forward_keypoints(
        self, rotmats: torch.Tensor, shape: torch.Tensor | None = None, keypoint_set: str = "coco23"
    ) -> torch.Tensor:
        """Keypoints (B, K, 3) of ``keypoint_set`` only: linear-blend skinning folded into the
        regressor, so no vertex is skinned (same numbers as ``regress(forward().vertices)``).
        Without autograd on the CPU the kinematics kernel reads them out (:meth:`_posed`: the
        same as the torch readout to float precision)."""
        rotmats, shape = self._check_pose(rotmats, shape)
        if rotmats.shape[0] == 0:  # an empty batch (the rest model needs a shape)
            kp = self._empty_output().keypoints
        else:
            poses, pairs, _, _ = self._rest(shape, vertices=False)
            launch = self._readout_launch(rotmats, poses, pairs)
            if launch is not None:
                kp = launch(rotmats.to(self.dtype), poses.to(self.dtype), pairs.to(self.dtype))[4]
            else:
                rot, trans, _ = self._bone_transforms(rotmats, poses)
                kp = self._folded_keypoints(rot, trans, pairs) @ self.frame
        if keypoint_set == "coco23":
            return kp
        return torch.einsum("kc,bcd->bkd", self._conversion(keypoint_set, kp), kp)

    def _conversion(self, keypoint_set: str, like: torch.Tensor) -> torch.Tensor:
        """The (K, 23) COCO-23 → ``keypoint_set`` map (:meth:`_from_coco23`, which raises for
        points without a source) in ``like``'s dtype and device, kept per set (and per
        inference mode: an inference tensor cannot be saved for autograd's backward)."""
        key = (keypoint_set, like.dtype, like.device, torch.is_inference_mode_enabled())
        cache = self.__dict__.setdefault("_conversions", {})
        hit = cache.get(key)
        if hit is None:
            conv = self._from_coco23(keypoint_set)
            hit = cache[key] = torch.as_tensor(conv, dtype=like.dtype, device=like.device)
        return hit

    def _skin(
        self,
        rest: torch.Tensor | list[torch.Tensor],
        rot: torch.Tensor,
        trans: torch.Tensor,
        rows: torch.Tensor | None = None,
        folded: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Linear-blend skinning of anny's rest vertices (R, V, 3) by the bone transforms
        [R | t] (B, bones, 3, 3) and (B, bones, 3), returned (B, V, 3) in the SMPL frame: the
        frame change is folded into the transforms (Cᵀ [R | t]; ``folded`` (B, bones, 4, 4):
        those already, from :meth:`_posed`), so no extra pass over the vertices. Sample b skins
        ``rest[rows[b]]`` (default: ``rest[b]``, or ``rest[0]`` when R = 1); shared rest meshes
        are not copied per sample. ``rest`` may also be a list of arrays (one per cell of a
        large batch, :meth:`_rest`): ``rows`` then index their concatenation, which is never
        built on this path.

        anny's fused per-vertex kernel (NVIDIA Warp) does the skinning: each (sample, vertex) is
        computed on its own, so a mesh's numbers do not depend on its batch; it beat every
        vectorised torch formulation tried here above batch 8 (those are memory-bound on the
        (B, V, 12) blended transforms). Without autograd the kernel is built once and launched
        directly (anny rebuilds it every call), on slices of the batch in parallel threads (one
        per torch thread: Warp's CPU kernels are single-threaded and release the GIL)."""
        if folded is None:
            ct = self.frame.T
            top = torch.cat([ct @ rot, (ct @ trans[..., None])], -1)  # (B, bones, 3, 4)
            bottom = top.new_tensor([0.0, 0.0, 0.0, 1.0]).expand(*top.shape[:2], 1, 4)
            folded = torch.cat([top, bottom], -2)
        b = folded.shape[0]
        groups = rest if isinstance(rest, list) else [rest]
        if rows is None:
            rows = torch.zeros(b, dtype=torch.long) if groups[0].shape[0] != b else None
        m = self.model

        def per_sample() -> torch.Tensor:  # (B, V, 3) for anny's own skinning
            whole = groups[0] if len(groups) == 1 else torch.cat(groups)
            return (whole if rows is None else whole[rows.to(whole.device)]).contiguous()

        if (
            (torch.is_grad_enabled() and (groups[0].requires_grad or folded.requires_grad))
            or folded.device.type != "cpu"
            or m._skinning_method_parameter not in (None, "warp_lbs")
        ):
            return m.get_skinned_vertices(per_sample(), folded)
        try:
            launch = self._warp_launcher()
        except ImportError:  # no Warp: anny's own fallback
            return m.get_skinned_vertices(per_sample(), folded)
        folded = folded.contiguous()
        out = groups[0].new_empty(b, *groups[0].shape[1:])
        if len(groups) == 1 and rows is None and b <= 16:  # a small batch, each its own mesh
            iota = _iota(b)
            launch(groups[0], iota, iota, folded, out)  # Warp reads it through its strides
            return out
        rows = torch.arange(b) if rows is None else rows
        # (rest array, its samples' rows in it, the samples) per launch
        calls = []
        start = 0
        for group in groups:
            if len(groups) == 1:
                samples, local = torch.arange(b), rows
            else:
                samples = torch.nonzero((rows >= start) & (rows < start + len(group))).squeeze(1)
                local = rows[samples] - start
            start += len(group)
            calls.append((group, local.to(torch.int32), samples.to(torch.int32)))
        parts = min(torch.get_num_threads(), max(1, b // 16))
        run_jobs(
            [
                functools.partial(launch, group, local[i:j], samples[i:j], folded, out)
                for group, local, samples in calls
                for i, j in split(len(samples), parts)
            ]
        )
        return out

    def _warp_launcher(self):
        """A function (rest (R,V,3), rows (N,) int32, samples (N,) int32, transforms
        (B,bones,4,4), out (B,V,3)) → None skinning samples[k] from rest[rows[k]] on the CPU
        with Warp (built once per dtype).

        anny's kernel visits all 9 weight slots of every vertex, most of them 0 (1.95 bones per
        vertex on the full mesh); this one visits each vertex's non-zero weights only, in anny's
        slot order. A skipped term adds exactly 0, so the numbers are anny's kernel's, bit for bit
        (tested), ~3x faster."""
        key = self.dtype
        cache = self.__dict__.setdefault("_warp_launchers", {})
        if key in cache:
            return cache[key]

        m = self.model
        scalar, vec3, _, mat44 = _warp_types(self.dtype)
        weights = m.vertex_bone_weights.to(self.dtype)
        indices = m.vertex_bone_indices.long()
        used = weights != 0
        # non-zero slots first, in their order (a stable sort of the "used" flags)
        slots = torch.argsort((~used).to(torch.int8), dim=1, stable=True)
        weights = weights.gather(1, slots).contiguous()
        indices = indices.gather(1, slots).to(torch.int32).contiguous()
        counts = used.sum(1).to(torch.int32).contiguous()
        call = _lbs_kernel(scalar, vec3, mat44).bind({3: weights, 4: indices, 5: counts})

        def launch(
            rest: torch.Tensor,
            rows: torch.Tensor,
            samples: torch.Tensor,
            transforms: torch.Tensor,
            out: torch.Tensor,
        ) -> None:
            runs = -(-rest.shape[1] // SKIN_BLOCK)
            call((samples.shape[0], runs), rest, rows, samples, transforms, out, SKIN_BLOCK)

        cache[key] = launch
        return launch

    def forward(
        self,
        rotmats: torch.Tensor,
        shape: torch.Tensor | None = None,
        transl: torch.Tensor | None = None,
    ) -> BodyOutput:
        """Vertices, joints and keypoints (anny's forward, the same numbers to float precision:
        vectorised skinning, the shape-only rest model computed once per distinct shape)."""
        rotmats, shape = self._check_pose(rotmats, shape)
        b = rotmats.shape[0]
        self._check_transl(transl, b)
        if b == 0:  # an empty batch (the rest model needs a shape)
            return self._empty_output()
        poses, pairs, rest, rows = self._rest(shape, vertices=True)
        rot, trans, folded, keypoints, joints = self._posed(rotmats, poses, pairs)
        verts = self._skin(rest, rot, trans, rows, folded)
        if transl is not None:
            t = transl.to(self.dtype)[:, None]
            verts, joints, keypoints = verts + t, joints + t, keypoints + t
        return BodyOutput(vertices=verts, joints=joints, keypoints=keypoints)
