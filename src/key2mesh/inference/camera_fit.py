"""Fit a perspective camera translation that puts a predicted body onto its detected 2D keypoints.

Key2Mesh predicts the body in the world frame, oriented as seen by its fixed virtual camera
(Fig. 5 of the paper overlays the mesh on the image): what is left to find for an overlay is
where the body sits in front of the real camera. With the rotation fixed to the virtual
camera's (``X_cam = diag(1, -1, -1) · X + t``) and a known or assumed focal length, the
translation ``t`` enters the pinhole equations linearly once multiplied by the depth:

    f·(x + t_x) − (u − c_x)·(z + t_z) = 0,   f·(y + t_y) − (v − c_y)·(z + t_z) = 0,

so a confidence-weighted linear least-squares solve gives ``t`` in closed form; a few damped
Gauss-Newton steps on the true reprojection error (pixels) then refine it. Batched over frames.

Default focal length: ``f = max(H, W)`` pixels, i.e. a horizontal field of view of ~53° on a
landscape image (typical of phone and webcam lenses); pass the real one when it is known.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from key2mesh.errors import Key2MeshError

# world (y up, body faces +z) → camera (x right, y down, z forward): the virtual camera's R.
WORLD_TO_CAMERA = torch.diag(torch.tensor([1.0, -1.0, -1.0]))
MIN_DEPTH = 0.1  # metres


def check_image_size(image_size) -> tuple[float, float]:
    """``image_size`` as (H, W) pixels, two positive numbers, else a one-line error (a frame's
    ``shape`` (H, W, 3) or a negative height gave a TypeError or a camera fit far off)."""
    try:
        h, w = (float(v) for v in image_size)
    except (TypeError, ValueError):
        h = w = float("nan")
    if not (np.isfinite(h) and np.isfinite(w) and h > 0 and w > 0):
        raise Key2MeshError(
            f"image_size must be (H, W): two positive numbers of pixels (e.g. frame.shape[:2]), "
            f"got {image_size!r}"
        )
    return h, w


def default_focal(height: int, width: int) -> float:
    """Assumed focal length in pixels when none is known: ``max(H, W)`` (~53° FOV)."""
    return float(max(height, width))


def default_principal(height: int, width: int) -> tuple[float, float]:
    """Image centre in the OpenCV pixel convention (pixel centres at integers)."""
    return ((width - 1) / 2.0, (height - 1) / 2.0)


@dataclass
class CameraFit:
    """Fitted cameras for B frames: ``X_cam = X @ rotation.T + translation``.

    translation (B, 3) metres; focal (B,) pixels; principal (B, 2) pixels; rotation (3, 3);
    error (B,) confidence-weighted mean reprojection error in pixels; valid (B,) frames with at
    least two usable keypoints (translation is NaN elsewhere)."""

    translation: torch.Tensor
    focal: torch.Tensor
    principal: torch.Tensor
    rotation: torch.Tensor
    error: torch.Tensor
    valid: torch.Tensor

    def to_camera(self, points: torch.Tensor) -> torch.Tensor:
        """World points (B, N, 3) → camera coordinates (B, N, 3) in metres."""
        r = self.rotation.to(points)
        return points @ r.T + self.translation.to(points)[:, None, :]

    def project(self, points: torch.Tensor) -> torch.Tensor:
        """World points (B, N, 3) → pixels (B, N, 2)."""
        return _project(self.to_camera(points), self.focal.to(points), self.principal.to(points))


def _project(cam: torch.Tensor, focal: torch.Tensor, principal: torch.Tensor) -> torch.Tensor:
    z = cam[..., 2:3].clamp(min=1e-6)
    return focal[:, None, None] * cam[..., :2] / z + principal[:, None, :]


def _batched(x, name: str, dims: int) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x)
    if not t.is_floating_point():
        t = t.to(torch.get_default_dtype())
    if t.ndim == dims - 1:
        t = t.unsqueeze(0)
    if t.ndim != dims:
        raise Key2MeshError(
            f"camera fit: {name} has shape {tuple(t.shape)}, expected {dims - 1} or {dims} dims"
        )
    return t


def fit_camera(
    points3d,
    keypoints2d,
    confidence=None,
    image_size: tuple[int, int] | None = None,
    focal=None,
    principal=None,
    rotation: torch.Tensor | None = None,
    iterations: int = 5,
    min_confidence: float = 0.1,
) -> CameraFit:
    """Fit the camera translation per frame.

    Args:
        points3d: (B, K, 3) or (K, 3) body keypoints in metres, world frame (model output).
        keypoints2d: (B, K, 2) or (K, 2) detected keypoints in pixels, same keypoint set.
        confidence: (B, K) or (K,) weights; points below ``min_confidence`` are ignored.
        image_size: (H, W), needed when ``focal`` or ``principal`` is not given.
        focal: scalar or (B,) pixels (default :func:`default_focal`).
        principal: (2,) or (B, 2) pixels (default: image centre).
        rotation: (3, 3) world → camera rotation (default: the virtual camera's, y/z flipped).
        iterations: Gauss-Newton refinement steps after the linear solve.

    Returns:
        :class:`CameraFit`.
    """
    x3 = _batched(points3d, "points3d", 3)
    out_dtype = x3.dtype
    x3 = x3.double()  # solved in float64: the normal equations square pixel-scale numbers
    x2 = _batched(keypoints2d, "keypoints2d", 3).to(x3)
    b, k = x3.shape[:2]
    if x3.shape[-1] != 3 or x2.shape != (b, k, 2):
        raise Key2MeshError(
            f"camera fit: points3d (B, K, 3) and keypoints2d (B, K, 2) must match, got {tuple(x3.shape)} and {tuple(x2.shape)}"
        )
    conf = (
        torch.ones(b, k, dtype=x3.dtype, device=x3.device)
        if confidence is None
        else _batched(confidence, "confidence", 2).to(x3)
    )
    if conf.shape != (b, k):
        raise Key2MeshError(
            f"camera fit: confidence must be (B, K) = {(b, k)}, got {tuple(conf.shape)}"
        )
    if (focal is None or principal is None) and image_size is None:
        raise Key2MeshError("camera fit: give image_size=(H, W) or both focal and principal")
    if image_size is not None:
        image_size = check_image_size(image_size)
    f = _per_frame(default_focal(*image_size) if focal is None else focal, b, (), "focal", x3)
    c = _per_frame(
        default_principal(*image_size) if principal is None else principal,
        b,
        (2,),
        "principal",
        x3,
    )
    if not (torch.isfinite(f).all() and (f > 0).all() and torch.isfinite(c).all()):
        raise Key2MeshError(
            "camera fit: focal must be finite and > 0 pixels and principal finite, got "
            f"focal {f.unique()[:4].tolist()}, principal {c.unique(dim=0)[:2].tolist()}"
        )
    rot = (WORLD_TO_CAMERA if rotation is None else torch.as_tensor(rotation)).to(x3)

    w = torch.where(
        (conf >= min_confidence) & torch.isfinite(x2).all(-1) & torch.isfinite(x3).all(-1),
        conf,
        torch.zeros_like(conf),
    )
    valid = (w > 0).sum(dim=1) >= 2
    # ignored points at 0 (an infinite pixel times its weight 0 would be NaN, not 0)
    x2 = torch.where(w[..., None] > 0, x2, torch.zeros_like(x2))
    # rotated, not yet translated (B, K, 3)
    p = torch.where(w[..., None] > 0, x3, torch.zeros_like(x3)) @ rot.T
    d = x2 - c[:, None, :]  # centred pixels (B, K, 2)

    # Linear system A t = r, two rows per keypoint: [f, 0, -du] t = du·z − f·x (and for y).
    fk = f[:, None, None].expand(b, k, 2)
    a = torch.zeros(b, k, 2, 3, dtype=x3.dtype, device=x3.device)
    a[..., 0, 0] = f[:, None]
    a[..., 1, 1] = f[:, None]
    a[..., :, 2] = -d
    rhs = d * p[..., 2:3] - fk * p[..., :2]
    sw = w.sqrt()[..., None]  # weight each row by the confidence
    # (rows are pixel residuals times depth; Gauss-Newton below fixes the weighting)
    a = (a * sw[..., None]).reshape(b, 2 * k, 3)
    rhs = (rhs * sw).reshape(b, 2 * k)
    ata = a.transpose(1, 2) @ a
    ata = ata + _ridge(ata)
    atb = (a.transpose(1, 2) @ rhs[..., None])[..., 0]
    t = torch.linalg.solve(ata, atb)
    # keep the body in front of the camera
    t[:, 2] = torch.maximum(t[:, 2], MIN_DEPTH - p[..., 2].amin(dim=1))

    # Gauss-Newton (Levenberg-damped) on the pixel residuals.
    for _ in range(max(0, iterations)):
        q = p + t[:, None, :]
        z = q[..., 2].clamp(min=1e-6)
        res = f[:, None, None] * q[..., :2] / z[..., None] - d  # (B, K, 2)
        jac = torch.zeros(b, k, 2, 3, dtype=x3.dtype, device=x3.device)
        jac[..., 0, 0] = f[:, None] / z
        jac[..., 1, 1] = f[:, None] / z
        jac[..., :, 2] = -f[:, None, None] * q[..., :2] / (z * z)[..., None]
        jw = (jac * sw[..., None]).reshape(b, 2 * k, 3)
        rw = (res * sw).reshape(b, 2 * k)
        h = jw.transpose(1, 2) @ jw
        h = h + 1e-6 * torch.diag_embed(h.diagonal(dim1=1, dim2=2)) + _ridge(h)
        step = torch.linalg.solve(h, (jw.transpose(1, 2) @ rw[..., None])[..., 0])
        t = t - step
        t[:, 2] = torch.maximum(t[:, 2], MIN_DEPTH - p[..., 2].amin(dim=1))

    q = p + t[:, None, :]
    err_px = (f[:, None, None] * q[..., :2] / q[..., 2:3].clamp(min=1e-6) - d).norm(dim=-1)
    error = (err_px * w).sum(1) / w.sum(1).clamp(min=1e-12)
    valid = valid & torch.isfinite(t).all(-1) & torch.isfinite(error)  # (overflowing pixels)
    t = torch.where(valid[:, None], t, torch.full_like(t, float("nan")))
    error = torch.where(valid, error, torch.full_like(error, float("nan")))
    return CameraFit(
        translation=t.to(out_dtype),
        focal=f.to(out_dtype),
        principal=c.to(out_dtype),
        rotation=rot.to(out_dtype),
        error=error.to(out_dtype),
        valid=valid,
    )


def _per_frame(value, b: int, tail: tuple, name: str, like: torch.Tensor) -> torch.Tensor:
    """A scalar / (*tail) value or one per frame (B, *tail) → (B, *tail), one-line errors."""
    try:
        v = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise Key2MeshError(f"camera fit: {name} must be numeric ({exc})") from None
    if tuple(v.shape) in (tail, (1, *tail)):
        v = v.reshape(1, *tail)
    if tuple(v.shape) not in ((1, *tail), (b, *tail)):
        raise Key2MeshError(
            f"camera fit: {name} must be {tail or 'a scalar'} or one per frame {(b, *tail)}, "
            f"got {tuple(v.shape)}"
        )
    return v.expand(b, *tail).clone()


def _ridge(m: torch.Tensor) -> torch.Tensor:
    """Tiny Tikhonov term (B, 3, 3), relative to the matrix scale, so degenerate frames (no or
    collinear points) still solve; it does not bias well-posed ones measurably."""
    scale = m.diagonal(dim1=1, dim2=2).mean(-1).clamp(min=1.0)
    return 1e-10 * scale[:, None, None] * torch.eye(3, dtype=m.dtype, device=m.device)
