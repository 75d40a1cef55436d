"""Detector-like corruption of clean 2D keypoints (the shift between MoCap and real detections).

Profiles model what real detectors do that a clean projection does not: per-joint localisation
noise that grows towards the extremities, confidences that drop with that noise, left/right
swaps of whole limbs, and truncation by the image border. Everything is batched.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from key2mesh.keypoints.sets import flip_permutation, keypoint_names
from key2mesh.train.random import rand, randn


@dataclass(frozen=True)
class NoiseProfile:
    """Parameters of a detector-like noise model.

    sigma: localisation std as a fraction of the person's box height, for a torso point;
        ``extremity_scale`` multiplies it for wrists/ankles/hands/feet (elbows/knees get half of that).
    swap_prob: probability per sample of swapping the left/right labels of the whole body.
    truncation_prob: probability per sample of cutting the body at a random height (the part
        below is dropped, as when the image ends at the knees).
    conf_noise: confidences are multiplied by ``1 - conf_noise * |ε| / 2``, clipped to
        [0.05, 1], where ε is the point's standard-normal 2D draw (its displacement divided by
        its own sigma, so relative to the point's noise scale, not the box), so noisier points
        get lower scores (as real detectors roughly do).
    """

    name: str = "detector"
    sigma: float = 0.015
    extremity_scale: float = 2.5
    swap_prob: float = 0.02
    truncation_prob: float = 0.05
    conf_noise: float = 0.15


PROFILES: dict[str, NoiseProfile | None] = {
    "none": None,
    "detector": NoiseProfile(),
    "strong": NoiseProfile(
        name="strong", sigma=0.03, extremity_scale=3.0, swap_prob=0.05, truncation_prob=0.1
    ),
}


def _extremity_weights(keypoint_set: str, scale: float) -> torch.Tensor:
    w = []
    for n in keypoint_names(keypoint_set):
        extremity = ("wrist", "ankle", "foot", "toe", "heel", "hand", "pinky", "index", "thumb")
        if any(t in n for t in extremity):
            w.append(scale)
        elif any(t in n for t in ("elbow", "knee")):
            w.append(0.5 * (1 + scale))
        else:
            w.append(1.0)
    return torch.tensor(w)


def apply_noise_profile(
    keypoints: torch.Tensor,
    confidence: torch.Tensor,
    keypoint_set: str,
    profile: NoiseProfile,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Corrupt (B, K, 2) pixel keypoints and (B, K) confidences with ``profile``.

    The person's box (noise scale, truncation height) spans the points of confidence > 0 only:
    a point without a pixel (behind the camera: confidence 0) must not stretch it."""
    b, k, _ = keypoints.shape
    dev, dt = keypoints.device, keypoints.dtype
    present = confidence > 0
    big = torch.finfo(dt).max / 4
    any_present = present.any(-1)
    top = torch.where(present, keypoints[..., 1], big).amin(-1)  # (B,)
    bottom = torch.where(present, keypoints[..., 1], -big).amax(-1)
    top = torch.where(any_present, top, torch.zeros_like(top))
    bottom = torch.where(any_present, bottom, torch.zeros_like(bottom))
    height = (bottom - top).clamp(min=1.0)  # (B,)
    scale = _extremity_weights(keypoint_set, profile.extremity_scale).to(dev, dt)
    sigma = profile.sigma * height[:, None] * scale[None]  # (B, K)
    eps = randn((b, k, 2), generator, dev, dt)
    noisy = keypoints + eps * sigma[..., None]
    conf = confidence * (1 - profile.conf_noise * eps.norm(dim=-1) / 2).clamp(0.05, 1.0)
    # left/right swap of the whole body
    perm = torch.as_tensor(flip_permutation(keypoint_set), device=dev)
    swap = rand(b, generator, dev) < profile.swap_prob
    noisy = torch.where(swap[:, None, None], noisy[:, perm], noisy)
    conf = torch.where(swap[:, None], conf[:, perm], conf)
    # truncation: drop everything below a random cut between 40% and 90% of the height
    trunc = rand(b, generator, dev) < profile.truncation_prob
    cut = top + height * (0.4 + 0.5 * rand(b, generator, dev, dt))
    # a swapped sample's slot i holds the point of slot perm[i]: cut by where the points are
    y = torch.where(swap[:, None], keypoints[:, perm, 1], keypoints[..., 1])
    below = y > cut[:, None]
    conf = torch.where(trunc[:, None] & below, torch.zeros_like(conf), conf)
    return noisy, conf
