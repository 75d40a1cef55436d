"""Multi-view geometry for calibrated pinhole cameras: lens distortion, projection, triangulation.

Cameras follow OpenCV's conventions (``X_cam = R X + t``, pixels ``u = K · distort(x / z)``) with
the Brown–Conrady distortion ``(k1, k2, p1, p2)``; see
:class:`key2mesh.data.demo_inputs.MultiCameraCalibration`. Everything is vectorised over
points and cameras (NumPy, float64).

Robust triangulation (:func:`triangulate_robust`) tries every subset of at least ``min_views``
confident views of each point with a confidence-weighted linear (DLT) solve, and keeps the
largest subset whose worst reprojection error stays under a threshold (ties: lowest mean error).
With C cameras that is 2^C − C − 1 solves (11 for 4 cameras), batched in one SVD.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np


def distort(normalized: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """Ideal normalised image points (..., 2) → distorted ones, OpenCV's (k1, k2, p1, p2) model.

    ``dist`` is (4,) or broadcastable to (..., 4) (e.g. (C, 1, 4) for points (C, N, 2)).
    """
    x, y = normalized[..., 0], normalized[..., 1]
    dist = np.asarray(dist, dtype=np.float64)
    k1, k2, p1, p2 = (dist[..., i] for i in range(4))
    r2 = x * x + y * y
    radial = 1.0 + k1 * r2 + k2 * r2 * r2
    xd = x * radial + 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x)
    yd = y * radial + p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * x * y
    return np.stack([xd, yd], axis=-1)


def undistort_points(
    pixels: np.ndarray, K: np.ndarray, dist: np.ndarray, iterations: int = 20
) -> np.ndarray:
    """Pixels (..., 2) of one camera → ideal normalised coordinates (..., 2) (``x/z, y/z``).

    Inverts :func:`distort` by fixed-point iteration (as ``cv2.undistortPoints`` does); exact to
    ~1e-9 for the small distortions of real lenses. ``K`` (3, 3), ``dist`` (4,).
    """
    K = np.asarray(K, dtype=np.float64)
    pts = np.asarray(pixels, dtype=np.float64)
    xd = np.stack(
        [
            (pts[..., 0] - K[0, 2] - K[0, 1] * (pts[..., 1] - K[1, 2]) / K[1, 1]) / K[0, 0],
            (pts[..., 1] - K[1, 2]) / K[1, 1],
        ],
        axis=-1,
    )
    x = xd.copy()
    for _ in range(iterations):
        x = x + (xd - distort(x, dist))
    return x


def project_points(
    points: np.ndarray, R: np.ndarray, t: np.ndarray, K: np.ndarray, dist: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """World points (N, 3) → pixels (C, N, 2) in each of C cameras and depths (C, N) (metres).

    ``R`` (C, 3, 3), ``t`` (C, 3), ``K`` (C, 3, 3), ``dist`` (C, 4) or None (no distortion).
    Points behind a camera get a negative depth (their pixels are meaningless).
    """
    cam = np.einsum("cij,nj->cni", R, np.asarray(points, dtype=np.float64)) + t[:, None, :]
    depth = cam[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        xy = cam[..., :2] / depth[..., None]
    if dist is not None:
        xy = distort(xy, np.asarray(dist)[:, None, :])
    pix = np.einsum("cij,cnj->cni", K[:, :2, :2], xy) + K[:, None, :2, 2]
    return pix, depth


def triangulate_dlt(
    normalized: np.ndarray, extrinsics: np.ndarray, weights: np.ndarray
) -> np.ndarray:
    """Weighted linear triangulation: (C, N, 2) normalised points, (C, 3, 4) ``[R | t]``, (C, N)
    weights (0 = view unused) → (N, 3) world points; NaN where fewer than 2 views have weight.

    Each view contributes ``w·(x·P₃ − P₁)`` and ``w·(y·P₃ − P₂)``; the point is the right singular
    vector of the stacked (N, 2C, 4) system with the smallest singular value.
    """
    rows = np.stack(
        [
            normalized[..., 0:1] * extrinsics[:, None, 2] - extrinsics[:, None, 0],
            normalized[..., 1:2] * extrinsics[:, None, 2] - extrinsics[:, None, 1],
        ],
        axis=2,
    )  # (C,N,2,4)
    rows = rows * weights[..., None, None]
    system = rows.transpose(1, 0, 2, 3).reshape(normalized.shape[1], -1, 4)
    _, _, vt = np.linalg.svd(system)
    homog = vt[:, -1]
    with np.errstate(divide="ignore", invalid="ignore"):
        points = homog[:, :3] / homog[:, 3:4]
    points[(weights > 0).sum(0) < 2] = np.nan
    return points


@dataclass
class Triangulation:
    """Result of :func:`triangulate_robust` for N points seen by C cameras.

    points (N, 3) metres, NaN where no subset of views passed; views (C, N) bool, the views used;
    error (N,) mean reprojection error over the used views in pixels (NaN where failed).
    """

    points: np.ndarray
    views: np.ndarray
    error: np.ndarray

    @property
    def valid(self) -> np.ndarray:
        """(N,) bool: the point was triangulated."""
        return np.isfinite(self.points).all(-1)


def triangulate_robust(
    pixels: np.ndarray,
    confidence: np.ndarray,
    K: np.ndarray,
    dist: np.ndarray,
    R: np.ndarray,
    t: np.ndarray,
    min_views: int = 2,
    conf_threshold: float = 0.3,
    max_error: float = 25.0,
) -> Triangulation:
    """Triangulate N points from C calibrated views, rejecting inconsistent views.

    pixels (C, N, 2), confidence (C, N) in [0, 1] (views below ``conf_threshold`` are never
    used, nor are views of confidence 0); cameras ``K`` (C, 3, 3), ``dist`` (C, 4), ``R`` (C, 3, 3),
    ``t`` (C, 3). Every camera subset of size ≥ ``min_views`` is solved (confidence-weighted
    DLT); a subset is acceptable
    when all its views are confident, the point lies in front of them and its worst reprojection
    error is ≤ ``max_error`` pixels. The largest acceptable subset wins (then the lowest mean
    error).
    """
    pixels = np.asarray(pixels, dtype=np.float64)
    confidence = np.nan_to_num(np.asarray(confidence, dtype=np.float64))
    c, n = confidence.shape
    if pixels.shape != (c, n, 2):
        raise ValueError(f"pixels must be (C, N, 2) = {(c, n, 2)}, got {pixels.shape}")
    finite = np.isfinite(pixels).all(-1)  # a non-finite pixel is a missing view, not a NaN system
    confidence = np.where(finite, confidence, 0.0)
    pixels = np.where(finite[..., None], pixels, 0.0)
    if min_views < 2 or min_views > c:
        raise ValueError(f"min_views must be in [2, {c}], got {min_views}")
    normalized = np.stack(
        [undistort_points(pixels[i], K[i], dist[i]) for i in range(c)]
    )  # C is small
    extrinsics = np.concatenate([R, t[..., None]], axis=-1)
    subsets = [s for k in range(min_views, c + 1) for s in itertools.combinations(range(c), k)]
    masks = np.zeros((len(subsets), c), dtype=bool)
    for i, s in enumerate(subsets):
        masks[i, list(s)] = True
    # a view of confidence 0 (no detection) has no weight in the solve: never count it as used,
    # even with conf_threshold=0 (its reprojection error against a placeholder pixel is noise)
    usable = (confidence >= conf_threshold) & (confidence > 0)  # (C,N)
    # all subsets at once: (S, C, N) weights → (S·N, 3) points
    weights = np.where(masks[:, :, None] & usable[None], confidence[None], 0.0)
    flat_w = weights.transpose(1, 0, 2).reshape(c, -1)
    flat_norm = np.broadcast_to(normalized[:, None], (c, len(subsets), n, 2)).reshape(c, -1, 2)
    points = triangulate_dlt(flat_norm, extrinsics, flat_w).reshape(len(subsets), n, 3)
    proj, depth = project_points(points.reshape(-1, 3), R, t, K, dist)  # (C, S·N, 2)
    err = np.linalg.norm(proj.reshape(c, len(subsets), n, 2) - pixels[:, None], axis=-1).transpose(
        1, 0, 2
    )  # (S,C,N)
    front = depth.reshape(c, len(subsets), n).transpose(1, 0, 2) > 0
    in_subset = masks[:, :, None]
    complete = (~in_subset | usable[None]).all(1)  # every view of the subset is confident
    ok_views = ~in_subset | (front & (err <= max_error))
    acceptable = complete & ok_views.all(1) & np.isfinite(points).all(-1)  # (S,N)
    mean_err = np.where(in_subset, err, 0.0).sum(1) / masks.sum(1)[:, None]
    size = masks.sum(1)[:, None].astype(np.float64)
    score = np.where(acceptable, size * 1e6 - np.nan_to_num(mean_err, nan=1e5), -np.inf)
    best = score.argmax(0)  # (N,)
    found = np.isfinite(score.max(0))
    cols = np.arange(n)
    out = np.where(found[:, None], points[best, cols], np.nan)
    views = masks[best].T & found[None]
    error = np.where(found, mean_err[best, cols], np.nan)
    return Triangulation(out, views, error)
