"""Conversion between keypoint sets, as linear maps with confidence propagation.

A point of the target set is taken from the source set by name if present, else derived by a
fixed linear formula of other named points (e.g. ``neck`` = mid-shoulders). A point that cannot
be derived gets confidence 0 (and coordinates 0). The map is a (K_dst, K_src) matrix, so it also
turns a per-set vertex regressor into another: ``W_dst = M @ W_src``.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import torch

from key2mesh.errors import Key2MeshError
from key2mesh.keypoints.sets import canonical_set_name, keypoint_names

# name -> list of (source name, weight). Approximations are documented inline.
DERIVED: dict[str, tuple[tuple[str, float], ...]] = {
    "neck": (("left_shoulder", 0.5), ("right_shoulder", 0.5)),
    "mid_hip": (("left_hip", 0.5), ("right_hip", 0.5)),
    "pelvis": (("mid_hip", 1.0),),
    "thorax": (("neck", 1.0),),
    "spine": (("mid_hip", 0.5), ("neck", 0.5)),
    "neck_nose": (("neck", 0.5), ("nose", 0.5)),
    # head top: above the ear midpoint, half the neck→ears distance further up.
    "head_top": (("left_ear", 0.75), ("right_ear", 0.75), ("neck", -0.5)),
    # MediaPipe face/hand points: the closest point a body-only model has (1-8 cm off).
    "left_eye_inner": (("left_eye", 1.0),),
    "left_eye_outer": (("left_eye", 1.0),),
    "right_eye_inner": (("right_eye", 1.0),),
    "right_eye_outer": (("right_eye", 1.0),),
    "mouth_left": (("nose", 1.0),),
    "mouth_right": (("nose", 1.0),),
    "left_pinky": (("left_wrist", 1.0),),
    "left_index": (("left_wrist", 1.0),),
    "left_thumb": (("left_wrist", 1.0),),
    "right_pinky": (("right_wrist", 1.0),),
    "right_index": (("right_wrist", 1.0),),
    "right_thumb": (("right_wrist", 1.0),),
    "left_foot_index": (("left_big_toe", 1.0),),
    "right_foot_index": (("right_big_toe", 1.0),),
    # and back: a MediaPipe foot index is the nearest thing to a big toe.
    "left_big_toe": (("left_foot_index", 1.0),),
    "right_big_toe": (("right_foot_index", 1.0),),
}


def _resolve(name: str, available: dict[str, int], depth: int = 0) -> dict[int, float] | None:
    if name in available:
        return {available[name]: 1.0}
    if depth > 4 or name not in DERIVED:
        return None
    out: dict[int, float] = {}
    for src, w in DERIVED[name]:
        sub = _resolve(src, available, depth + 1)
        if sub is None:
            return None
        for i, v in sub.items():
            out[i] = out.get(i, 0.0) + w * v
    return out


@cache
def _matrix_for_names(src: tuple[str, ...], dst: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    available = {n: i for i, n in enumerate(src)}
    m = np.zeros((len(dst), len(src)), dtype=np.float64)
    ok = np.zeros(len(dst), dtype=bool)
    for k, name in enumerate(dst):
        coeffs = _resolve(name, available)
        if coeffs is not None:
            ok[k] = True
            for i, w in coeffs.items():
                m[k, i] = w
    return m, ok


def conversion_matrix(src: str, dst: str) -> tuple[np.ndarray, np.ndarray]:
    """Linear map (K_dst, K_src) and the (K_dst,) mask of target points that can be derived."""
    m, ok = _matrix_for_names(keypoint_names(src), keypoint_names(dst))
    return m.copy(), ok.copy()


def convert_keypoints(
    keypoints: torch.Tensor | np.ndarray,
    confidence: torch.Tensor | np.ndarray | None,
    src: str,
    dst: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Convert (..., K_src, D) keypoints and (..., K_src) confidences (or a shape that broadcasts
    to it, e.g. one (K_src,) for all) to set ``dst``.

    A derived point's confidence is the minimum of its sources'; underivable points get 0.
    """
    kp = torch.as_tensor(keypoints)
    if not kp.is_floating_point():
        kp = kp.float()
    k_src = len(keypoint_names(src))
    if kp.ndim < 2 or kp.shape[-2] != k_src:
        raise Key2MeshError(
            f"keypoints of set {canonical_set_name(src)!r} need {k_src} points, got shape {tuple(kp.shape)}"
        )
    conf = (
        torch.ones(kp.shape[:-1], dtype=kp.dtype, device=kp.device)
        if confidence is None
        else torch.as_tensor(confidence, dtype=kp.dtype, device=kp.device)
    )
    try:
        fits = torch.broadcast_shapes(conf.shape, kp.shape[:-1]) == kp.shape[:-1]
    except RuntimeError:
        fits = False
    if not fits:
        raise Key2MeshError(
            f"confidence must be {tuple(kp.shape[:-1])} to match keypoints {tuple(kp.shape)}, "
            f"got shape {tuple(conf.shape)}"
        )
    conf = conf.expand(kp.shape[:-1])  # a (K,) confidence shared by every sample
    m_np, ok_np = conversion_matrix(src, dst)
    m = torch.as_tensor(m_np, dtype=kp.dtype, device=kp.device)
    ok = torch.as_tensor(ok_np, device=kp.device)
    out = torch.einsum("ks,...sd->...kd", m, kp)
    used = m != 0  # (K_dst, K_src)
    big = torch.finfo(kp.dtype).max
    c = torch.where(used, conf.unsqueeze(-2), torch.full_like(m, big)).amin(dim=-1)
    c = torch.where(ok, c, torch.zeros_like(c))
    return out, c
