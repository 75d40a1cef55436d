"""Optimisation baseline: SMPLify-style fitting of the body model to 2D keypoints, batched.

The fitted body is compared with the detections in the bounding-box-normalised image space,
because real detections come from an unknown camera: the input is normalised with
:func:`~key2mesh.geometry.bbox_normalize`, the body's keypoints (root at the origin) are
projected with the fixed :class:`~key2mesh.geometry.VirtualCamera`, normalised over the SAME
valid joints and then aligned to the input by the per-sample 2D similarity (scale + offset)
that minimises the weighted squared error (closed form, differentiable).

Objective per sample (all terms averaged so one sample's loss does not depend on the batch)::

    E = w_2d · Σ_k c_k ω_k ρ(‖x̂_k − x_k‖²) / Σ_k c_k ω_k           robust re-projection
      + w_pose · Σ_{j≥1} (3 − tr R_j)                                 ≈ Σ θ_j², angle from rest
      + w_hinge · Σ_{elbows, knees} relu(−sin θ_j k_j·n_j)²           hyper-extension
      + w_shape · ‖β − β₀‖²                                           shape toward the default

with ρ the Geman-McClure function ρ(r²) = r² / (σ² + r²) (≈ (r/σ)² for small r, → 1 for
outliers), c the detector confidence, ω the paper's joint weights (:func:`joint_weights`) and n
the hinge axis of each elbow/knee (flexion positive). Rotations are optimised in the 6D
representation. Without an initialisation the global orientation starts from several yaw
candidates (0° and 180°, as SMPLify tries the flipped body); after a short first stage the best
candidate of each sample is kept. Every step is batched over the samples; with Adam the samples
are independent (the per-sample losses are summed, Adam's update is element-wise).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from key2mesh.body.base import BodyModel
from key2mesh.devices import torch_threads
from key2mesh.errors import Key2MeshError
from key2mesh.geometry.camera import VirtualCamera
from key2mesh.geometry.normalize import bbox_normalize
from key2mesh.geometry.rotations import DEG, matrix_to_rot6d, rot6d_to_matrix, rotation_y
from key2mesh.keypoints.sets import SMPL24, SMPL24_HINGES, canonical_set_name, num_keypoints
from key2mesh.keypoints.weights import joint_weights
from key2mesh.options import rule

__all__ = [
    "FitWeights",
    "FitResult",
    "fit_to_keypoints",
    "joint_weights",
    "hinge_axes",
    "hinge_flexion",
]

# the knees and elbows of the SMPL-24 skeleton table (keypoints.sets.SMPL24_HINGES)
HINGE_JOINTS = tuple(SMPL24.index(j) for j, _, _, _ in SMPL24_HINGES)


@dataclass
class FitWeights:
    """Weights of the fitting objective (see the module docstring); ``sigma`` is the
    Geman-McClure scale in bbox-normalised units (fraction of the box's longest side)."""

    reprojection: float = field(default=1.0, metadata=rule(ge=0))
    sigma: float = field(default=0.1, metadata=rule(gt=0))
    pose: float = field(default=1e-3, metadata=rule(ge=0))
    hinge: float = field(default=1.0, metadata=rule(ge=0))
    shape: float = field(default=1e-2, metadata=rule(ge=0))

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class FitResult:
    """Fitted bodies, batch of B. Metres, world frame, root at the origin.

    rotmats (B,24,3,3); shape (B,S); vertices (B,V,3); keypoints3d (B,K,3) of the fitted set;
    loss_history (T,B) per-sample objective at every step (both stages; the first stage reports
    the best candidate); reprojection_error (B,) final mean distance over valid joints between
    the aligned projection and the input, in bbox-normalised units (NaN for a sample without a
    valid joint: nothing to fit, only the priors); reprojection_error_px (B,)
    the same in the input's units (pixels); projected2d (B,K,2) and target2d (B,K,2) the aligned
    projection and the normalised input (missing joints of the target = -1); valid (B,K).
    """

    rotmats: torch.Tensor
    shape: torch.Tensor
    vertices: torch.Tensor
    keypoints3d: torch.Tensor
    loss_history: torch.Tensor
    reprojection_error: torch.Tensor
    reprojection_error_px: torch.Tensor
    projected2d: torch.Tensor
    target2d: torch.Tensor
    valid: torch.Tensor


def hinge_axes(body: BodyModel) -> torch.Tensor:
    """(4, 3) unit flexion axes of the left/right knees and elbows (:data:`HINGE_JOINTS` order).

    From the body's rest pose: with ``d`` the rest direction of the bone below the hinge, a knee
    flexes (shin backwards, −z) about ``z × d`` and an elbow flexes (forearm forwards, +z) about
    ``d × z``; for SMPL's T-pose these are +x for knees and ∓y for the left/right elbows, the signs
    SMPLify's hyper-extension prior uses.
    """
    with torch.no_grad():
        eye = torch.eye(3, dtype=body.dtype, device=body.device).expand(1, 24, 3, 3)
        joints = body(eye, body.default_shape(1)).joints[0]
    z = joints.new_tensor([0.0, 0.0, 1.0])
    axes = []
    for joint, child, _, forward in SMPL24_HINGES:  # knees swing backwards (-1), elbows forwards
        d = joints[SMPL24.index(child)] - joints[SMPL24.index(joint)]
        axis = torch.linalg.cross(z, d) if forward < 0 else torch.linalg.cross(d, z)
        axes.append(axis / axis.norm().clamp(min=1e-8))
    return torch.stack(axes)


def hinge_flexion(rotmats: torch.Tensor, axes: torch.Tensor) -> torch.Tensor:
    """Signed flexion ``sin θ · (k · n)`` (B, 4) of the knees and elbows of a pose (B,24,3,3), with
    θ, k the local rotation's angle and axis and n :func:`hinge_axes`; < 0 is hyper-extension."""
    r = rotmats[:, list(HINGE_JOINTS)]
    skew = r - r.transpose(-1, -2)
    sin_axis = 0.5 * torch.stack([skew[..., 2, 1], skew[..., 0, 2], skew[..., 1, 0]], dim=-1)
    return (sin_axis * axes.to(sin_axis)).sum(-1)


def _as_tensor(x, name: str, device, dtype) -> torch.Tensor:
    try:
        return torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x).to(
            device=device, dtype=dtype
        )
    except (TypeError, ValueError, RuntimeError) as exc:
        raise Key2MeshError(f"fit_to_keypoints: {name} must be a numeric array ({exc})") from exc


def _similarity_align(pred: torch.Tensor, target: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Per-sample scale s ≥ 0 and offset t minimising Σ w ‖s·pred + t − target‖²; returns s·pred + t.

    pred, target (B,K,2); w (B,K) ≥ 0. Closed form (weighted means, 1D regression of the
    centred points), differentiable; a sample with no weight is returned unchanged. The scale
    is never negative: s < 0 would turn the projection 180° in the image, matching an upright
    body to a person upside down (a handstand) with no error.
    """
    wsum = w.sum(-1, keepdim=True).clamp(min=1e-8)[..., None]  # (B,1,1)
    wk = w[..., None]
    mp = (wk * pred).sum(-2, keepdim=True) / wsum
    mt = (wk * target).sum(-2, keepdim=True) / wsum
    pc, tc = pred - mp, target - mt
    num = (wk * pc * tc).sum((-2, -1), keepdim=True)
    den = (wk * pc * pc).sum((-2, -1), keepdim=True).clamp(min=1e-12)
    scale = (num / den).clamp(min=0.0)
    return scale * pc + mt


class _Objective:
    """Per-sample fitting objective for fixed targets (B,K,2), weights (B,K), valid (B,K)."""

    def __init__(
        self,
        body: BodyModel,
        keypoint_set: str,
        camera: VirtualCamera,
        target: torch.Tensor,
        weight: torch.Tensor,
        valid: torch.Tensor,
        weights: FitWeights,
        shape0: torch.Tensor,
    ):
        self.body, self.keypoint_set, self.camera = body, keypoint_set, camera
        self.target, self.weight, self.valid, self.weights = target, weight, valid, weights
        self.shape0 = shape0
        self.axes = hinge_axes(body)

    def keypoints(self, rotmats: torch.Tensor, shape: torch.Tensor) -> torch.Tensor:
        return self.body.forward_keypoints(rotmats, shape, self.keypoint_set)

    def project(self, kp3d: torch.Tensor) -> torch.Tensor:
        """(B,K,3) → aligned bbox-normalised projection (B,K,2)."""
        proj = self.camera.project(kp3d)
        norm, _ = bbox_normalize(proj, self.valid.to(proj.dtype), valid=self.valid)
        return _similarity_align(norm, self.target, self.weight)

    def __call__(self, rotmats: torch.Tensor, shape: torch.Tensor) -> torch.Tensor:
        """(B,) objective."""
        w = self.weights
        pred = self.project(self.keypoints(rotmats, shape))
        r2 = ((pred - self.target) ** 2).sum(-1)  # (B,K)
        rho = r2 / (w.sigma**2 + r2)
        data = (self.weight * rho).sum(-1) / self.weight.sum(-1).clamp(min=1e-8)
        local = rotmats[:, 1:]
        pose = (3.0 - local.diagonal(dim1=-2, dim2=-1).sum(-1)).sum(-1)
        hinge = torch.relu(-hinge_flexion(rotmats, self.axes)).pow(2).sum(-1)
        shape_term = ((shape - self.shape0) ** 2).sum(-1)
        return w.reprojection * data + w.pose * pose + w.hinge * hinge + w.shape * shape_term


def _optimise(
    objective: _Objective,
    rot6d: torch.Tensor,
    shape: torch.Tensor,
    iters: int,
    lr: float,
    optimizer: str,
    fit_shape: bool,
    shape_bounds: tuple[float, float] | None,
) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """Run ``iters`` steps from (rot6d (B,24,6), shape (B,S)); returns the final values and the
    per-sample objective (B,) before each step."""
    rot6d = rot6d.detach().clone().requires_grad_(True)
    shape = shape.detach().clone().requires_grad_(fit_shape)
    params = [rot6d] + ([shape] if fit_shape else [])
    history: list[torch.Tensor] = []
    if iters <= 0:
        return rot6d.detach(), shape.detach(), history

    def evaluate() -> torch.Tensor:
        return objective(rot6d_to_matrix(rot6d), shape)

    if optimizer == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam(params, lr=lr)
        # Cosine decay to 10 % of lr: large steps first, fine convergence at the end.
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda t: 0.1 + 0.45 * (1 + math.cos(math.pi * t / iters))
        )

        def closure() -> torch.Tensor:
            opt.zero_grad(set_to_none=True)
            per_sample = evaluate()
            history.append(per_sample.detach())
            per_sample.sum().backward()
            return per_sample.sum()
    else:
        opt = torch.optim.LBFGS(
            params, lr=lr, max_iter=1, max_eval=8, history_size=10, line_search_fn="strong_wolfe"
        )
        first: list[bool] = []

        def closure() -> torch.Tensor:
            opt.zero_grad(set_to_none=True)
            per_sample = evaluate()
            if not first:  # record the first evaluation of each step (the line search adds more)
                history.append(per_sample.detach())
                first.append(True)
            per_sample.sum().backward()
            return per_sample.sum()

    for _ in range(iters):
        if optimizer == "lbfgs":
            first.clear()
        opt.step(closure)
        if optimizer == "adam":
            sched.step()
        if shape_bounds is not None and fit_shape:
            with torch.no_grad():
                shape.clamp_(*shape_bounds)
    bad = ~(torch.isfinite(rot6d).flatten(1).all(1) & torch.isfinite(shape).flatten(1).all(1))
    if bool(bad.any()):  # a step size far too large: NaN parameters must not be written
        raise Key2MeshError(
            f"the {optimizer} fit diverged: {int(bad.sum())} of {len(bad)} fits ended with "
            f"non-finite parameters at lr={lr:g}; use a smaller --lr"
        )
    return rot6d.detach(), shape.detach(), history


def fit_to_keypoints(
    body: BodyModel,
    keypoints2d: torch.Tensor,
    confidence: torch.Tensor,
    keypoint_set: str = "openpose_body25",
    camera: VirtualCamera | None = None,
    init_rotmats: torch.Tensor | None = None,
    init_shape: torch.Tensor | None = None,
    iters: int = 100,
    lr: float | None = None,
    optimizer: str = "adam",
    weights: FitWeights | None = None,
    yaw_candidates: Sequence[float] | None = None,
    select_iters: int = 20,
    fit_shape: bool = True,
    conf_threshold: float = 0.1,
    num_threads: int | None = 1,
) -> FitResult:
    """Fit pose and shape of ``body`` to a batch of 2D detections (SMPLify-style, batched).

    Args:
        body: the body model (anny's fast training body is the intended one).
        keypoints2d: (B,K,2) pixels or normalised coordinates of ``keypoint_set`` (any camera:
            only the shape of the skeleton in the image matters after bbox normalisation).
        confidence: (B,K) in [0,1]; joints below ``conf_threshold`` are ignored.
        camera: the fixed virtual camera (default :class:`VirtualCamera`).
        init_rotmats: (B,24,3,3) start pose (e.g. a Key2Mesh prediction: "Key2Mesh + refinement");
            default the rest pose.
        init_shape: (B,S) start shape; default ``body.default_shape``. The shape prior always pulls
            toward ``body.default_shape`` (anny phenotypes are kept in [0,1]).
        iters: optimisation steps after candidate selection.
        lr: step size; Adam (cosine-decayed to 10 % over each stage) defaults to 0.05 from the
            rest pose and 0.01 from ``init_rotmats``; L-BFGS to 1.0.
        optimizer: "adam" (samples independent; recommended for batches) or "lbfgs" (one shared
            line search for the batch).
        weights: :class:`FitWeights`.
        yaw_candidates: global yaw offsets (degrees) tried for every sample; default (0, 180)
            without ``init_rotmats`` and (0,) with it.
        select_iters: steps of the first stage, run on every candidate, after which the
            lowest-objective candidate of each sample is kept (skipped with a single candidate;
            0 picks the best candidate at its starting pose).
        fit_shape: optimise the shape as well as the pose.
        conf_threshold: minimum confidence of a used joint (a joint of confidence 0, or without a
            finite position, is never used).
        num_threads: torch intra-op threads while fitting (restored afterwards; None: leave
            torch's setting). Each step is ~1,000 small tensor ops; an OpenMP fork/join per op
            costs more than it saves at these sizes, and collapses when the cores are shared:
            on 2 cores, 152 inputs took 37.6 s with 2 threads (idle) and 55 s (3 trainings
            running), 2.2 s with one (3 trainings running).

    Returns:
        :class:`FitResult`.
    """
    with torch_threads(num_threads):
        kset = canonical_set_name(keypoint_set)
        k = num_keypoints(kset)
        dev, dt = body.device, body.dtype
        camera = camera or VirtualCamera()
        weights = weights or FitWeights()
        optimizer = optimizer.lower()
        if optimizer not in ("adam", "lbfgs"):
            raise Key2MeshError(
                f"fit_to_keypoints: optimizer must be 'adam' or 'lbfgs', got {optimizer!r}"
            )
        if iters < 0 or select_iters < 0:
            raise Key2MeshError(
                f"fit_to_keypoints: iters and select_iters must be >= 0, got {iters} and {select_iters}"
            )
        if weights.sigma <= 0:
            raise Key2MeshError(
                f"fit_to_keypoints: FitWeights.sigma must be > 0, got {weights.sigma}"
            )
        kp = _as_tensor(keypoints2d, "keypoints2d", dev, dt)
        if kp.ndim != 3 or kp.shape[1:] != (k, 2):
            raise Key2MeshError(
                f"fit_to_keypoints: keypoints2d must have shape (B, {k}, 2) for {kset}, got {tuple(kp.shape)}"
            )
        b = kp.shape[0]
        conf = _as_tensor(confidence, "confidence", dev, dt)
        if conf.shape != (b, k):
            raise Key2MeshError(
                f"fit_to_keypoints: confidence must have shape ({b}, {k}), got {tuple(conf.shape)}"
            )
        if init_rotmats is not None:
            init_rotmats = _as_tensor(init_rotmats, "init_rotmats", dev, dt)
            if init_rotmats.shape != (b, 24, 3, 3):
                raise Key2MeshError(
                    f"fit_to_keypoints: init_rotmats must have shape ({b}, 24, 3, 3), got {tuple(init_rotmats.shape)}"
                )
        if init_shape is not None:
            init_shape = _as_tensor(init_shape, "init_shape", dev, dt)
            if init_shape.shape != (b, body.shape_dim):
                raise Key2MeshError(
                    f"fit_to_keypoints: init_shape must have shape ({b}, {body.shape_dim}), got {tuple(init_shape.shape)}"
                )
        for name, start in (("init_rotmats", init_rotmats), ("init_shape", init_shape)):
            if start is not None and not bool(torch.isfinite(start).all()):
                bad = ~torch.isfinite(start).flatten(1).all(1)
                raise Key2MeshError(
                    f"fit_to_keypoints: {name} is not finite for {int(bad.sum())} of {b} samples "
                    f"(first: {int(bad.nonzero()[0, 0])}); a fit cannot start from NaN/inf"
                )
        if lr is None:
            lr = 1.0 if optimizer == "lbfgs" else 0.05 if init_rotmats is None else 0.01

        # Targets: missing / non-finite joints get no weight and cannot influence anything.
        conf = torch.nan_to_num(conf, nan=0.0).clamp(0, 1)
        finite = torch.isfinite(kp).all(-1)
        conf = torch.where(finite, conf, torch.zeros_like(conf))
        kp = torch.where(finite[..., None], kp, torch.zeros_like(kp))
        # confidence 0 is a missing point whatever the threshold (conf_threshold=0 must not make
        # the (0, 0) written for a NaN or undetected point a valid one)
        valid = (conf >= conf_threshold) & (conf > 0)
        target, _ = bbox_normalize(kp, conf, valid=valid)
        weight = conf * valid * joint_weights(kset).to(dev, dt)
        big = torch.finfo(dt).max / 4
        lo = torch.where(valid[..., None], kp, big).amin(-2)
        hi = torch.where(valid[..., None], kp, -big).amax(-2)
        box = torch.where(valid.any(-1), (hi - lo).amax(-1), torch.ones(b, dtype=dt, device=dev))

        shape_bounds = body.traits.shape_bounds
        shape0 = body.default_shape(b).to(dev, dt)
        rot = (
            init_rotmats
            if init_rotmats is not None
            else torch.eye(3, dtype=dt, device=dev).repeat(b, 24, 1, 1)
        )
        shape = init_shape if init_shape is not None else shape0
        if shape_bounds is not None:
            shape = shape.clamp(*shape_bounds)
        if yaw_candidates is None:
            yaw_candidates = (0.0,) if init_rotmats is not None else (0.0, 180.0)
        yaws = torch.as_tensor(list(yaw_candidates), dtype=dt, device=dev)
        c = len(yaws)
        if c == 0:
            raise Key2MeshError("fit_to_keypoints: yaw_candidates must not be empty")

        history: list[torch.Tensor] = []
        rot6d = matrix_to_rot6d(rot)
        if c > 1:
            # Stage 1: every candidate orientation, all samples at once (candidate-major batch).
            rot_c = rot.repeat(c, 1, 1, 1).clone()
            rot_c[:, 0] = rotation_y(yaws * DEG).to(dt).repeat_interleave(b, 0) @ rot_c[:, 0]
            obj = _Objective(
                body,
                kset,
                camera,
                target.repeat(c, 1, 1),
                weight.repeat(c, 1),
                valid.repeat(c, 1),
                weights,
                shape0.repeat(c, 1),
            )
            r6, sh, hist = _optimise(
                obj,
                matrix_to_rot6d(rot_c),
                shape.repeat(c, 1),
                select_iters,
                lr,
                optimizer,
                fit_shape,
                shape_bounds,
            )
            with torch.no_grad():
                final = obj(rot6d_to_matrix(r6), sh).view(c, b)
            best = final.argmin(0)  # (B,)
            pick = best * b + torch.arange(b, device=dev)
            rot6d, shape = r6[pick], sh[pick]
            history += [h.view(c, b).gather(0, best[None])[0] for h in hist]
        elif c == 1:
            rot6d = matrix_to_rot6d(rotation_y(yaws[0] * DEG).to(dt) @ rot[:, 0]).unsqueeze(1)
            rot6d = torch.cat([rot6d, matrix_to_rot6d(rot[:, 1:])], dim=1)

        obj = _Objective(body, kset, camera, target, weight, valid, weights, shape0)
        rot6d, shape, hist = _optimise(
            obj, rot6d, shape, iters, lr, optimizer, fit_shape, shape_bounds
        )
        history += hist

        with torch.no_grad():
            rotmats = rot6d_to_matrix(rot6d)
            out = body(rotmats, shape)
            kp3d = body.regress(out.vertices, kset)
            history.append(obj(rotmats, shape))
            pred = obj.project(kp3d)
            dist = (pred - target).norm(dim=-1)
            n_valid = valid.sum(-1)
            err = (dist * valid).sum(-1) / n_valid.clamp(min=1)
            # no valid joint: nothing was fitted, and an error of 0 would read as a perfect fit
            err = torch.where(n_valid > 0, err, torch.full_like(err, float("nan")))
            pred = torch.where(valid[..., None], pred, torch.full_like(pred, -1.0))
        return FitResult(
            rotmats=rotmats,
            shape=shape,
            vertices=out.vertices,
            keypoints3d=kp3d,
            loss_history=torch.stack(history),
            reprojection_error=err,
            reprojection_error_px=err * box,
            projected2d=pred,
            target2d=target,
            valid=valid,
        )
