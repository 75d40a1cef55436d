"""Shape sampling: anny phenotypes from a realistic adult distribution, SMPL betas from N(0, I)."""

from __future__ import annotations

import numpy as np
import torch

from key2mesh.body.base import BodyModel
from key2mesh.train.random import randn


def sample_shapes(
    body: BodyModel, n: int, seed: int = 0, min_age: float = 18.0, max_age: float = 70.0
) -> np.ndarray:
    """(n, S) float32 shape parameters.

    anny: ``anny.shape_distribution.SimpleShapeDistribution`` (height/weight/muscle/proportions
    conditioned on age and gender, calibrated on WHO growth data) restricted to adults of
    morphological age in [min_age, max_age]. SMPL: betas ~ N(0, I).
    """
    if body.traits.has_shape_prior:
        return body.sample_prior_shapes(n, seed=seed, min_age=min_age, max_age=max_age)
    gen = torch.Generator().manual_seed(seed)
    return randn((n, body.shape_dim), gen).numpy().astype(np.float32)
