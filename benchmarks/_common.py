"""Shared helpers of the benchmarks: timing with warm-up, a random pose batch."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch


def timeit(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` in seconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def random_poses(n: int, scale: float = 0.3, seed: int = 0) -> torch.Tensor:
    from key2mesh.geometry.rotations import axis_angle_to_matrix

    g = torch.Generator().manual_seed(seed)
    return axis_angle_to_matrix(scale * torch.randn(n, 24, 3, generator=g))
