"""Seeded random draws that work on every device.

Training draws every random number from one CPU ``torch.Generator`` (exact ``--resume``, the same
numbers on CPU and CUDA). torch refuses a CPU generator for a CUDA tensor, so each draw is made on
the generator's device and then moved to the tensor's device; with no generator the draw is made
on the target device directly. Every seeded draw in synthesis, noise, losses and the training loops
goes through these three functions.
"""

from __future__ import annotations

import torch


def _draw_device(generator: torch.Generator | None, device) -> torch.device:
    return (
        generator.device
        if generator is not None
        else torch.device(device if device is not None else "cpu")
    )


def rand(
    shape, generator: torch.Generator | None = None, device=None, dtype=torch.float32
) -> torch.Tensor:
    """Uniform [0, 1) of ``shape`` on ``device``, drawn from ``generator``."""
    out = torch.rand(
        shape, generator=generator, device=_draw_device(generator, device), dtype=dtype
    )
    return out if device is None else out.to(device)


def randn(
    shape, generator: torch.Generator | None = None, device=None, dtype=torch.float32
) -> torch.Tensor:
    """Standard normal of ``shape`` on ``device``, drawn from ``generator``."""
    out = torch.randn(
        shape, generator=generator, device=_draw_device(generator, device), dtype=dtype
    )
    return out if device is None else out.to(device)


def randint(
    high: int, shape, generator: torch.Generator | None = None, device=None
) -> torch.Tensor:
    """Integers in [0, high) of ``shape`` on ``device``, drawn from ``generator``."""
    out = torch.randint(high, shape, generator=generator, device=_draw_device(generator, device))
    return out if device is None else out.to(device)


def choose(pool, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """The one batch-sampling recipe: ``n`` entries of ``pool`` drawn uniformly with replacement
    (``pool``: a 1-D array/tensor, e.g. frame indices of a split; an int ``m`` for ``range(m)``)."""
    if isinstance(pool, int):
        return randint(pool, (n,), generator)
    pool = torch.as_tensor(pool)
    return pool[randint(len(pool), (n,), generator)]
