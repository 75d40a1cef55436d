"""Bounding-box normalisation of 2D keypoints (Key2Mesh's input convention)."""

from __future__ import annotations

import torch


def bbox_normalize(
    keypoints: torch.Tensor,
    confidence: torch.Tensor,
    threshold: float = 0.1,
    missing_value: float = -1.0,
    valid: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale keypoints so the longest side of their box spans [0, 1], box centred at 0.5.

    Args:
        keypoints: (..., K, 2) pixels.
        confidence: (..., K) in [0, 1]; joints below ``threshold``, of confidence 0 (not
            detected: also with threshold 0), or without a finite position, are missing.
        threshold: minimum confidence of a joint used for the box (official code: 0.1).
        missing_value: value written to both coordinates of missing joints.
        valid: optional (..., K) bool mask overriding ``confidence >= threshold``.

    Returns:
        normalised (..., K, 2) and the valid mask (..., K). Samples with no valid joint come
        out all ``missing_value``. Differentiable w.r.t. ``keypoints``.
    """
    if keypoints.shape[-1] != 2 or keypoints.shape[:-1] != confidence.shape:
        raise ValueError(
            f"expected keypoints (..., K, 2) and confidence (..., K), got "
            f"{tuple(keypoints.shape)} and {tuple(confidence.shape)}"
        )
    if valid is None:
        valid = (confidence >= threshold) & (confidence > 0) & torch.isfinite(keypoints).all(-1)
    big = torch.finfo(keypoints.dtype).max / 4
    m = valid.unsqueeze(-1)
    lo = torch.where(m, keypoints, big).amin(dim=-2, keepdim=True)
    hi = torch.where(m, keypoints, -big).amax(dim=-2, keepdim=True)
    any_valid = valid.any(dim=-1)[..., None, None]
    lo = torch.where(any_valid, lo, torch.zeros_like(lo))
    hi = torch.where(any_valid, hi, torch.ones_like(hi))
    size = (hi - lo).amax(dim=-1, keepdim=True).clamp(min=1e-6)
    centre = 0.5 * (lo + hi)
    # a missing joint's position (NaN, inf) must not reach the arithmetic: masked out below, it
    # would still give the box's size and centre NaN gradients (0 · NaN), spoiling every joint's
    safe = torch.where(m, keypoints, centre.detach())
    out = (safe - centre) / size + 0.5
    out = torch.where(m, out, torch.full_like(out, missing_value))
    return out, valid
