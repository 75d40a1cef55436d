"""Shape sampling: anny phenotypes from a realistic adult distribution, SMPL betas from N(0, I)."""

from __future__ import annotations

import warnings

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
    gen = torch.Generator().manual_seed(seed)
    if body.name != "anny":
        return randn((n, body.shape_dim), gen).numpy().astype(np.float32)
    from anny.shape_distribution import SimpleShapeDistribution

    model = body.model
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
    cols = [torch.as_tensor(sample[label]).reshape(n) for label in body.phenotype_labels]
    return torch.stack(cols, dim=1).clamp(0, 1).float().numpy()
