"""Checking a requested torch device up front, so an unavailable one is a one-line error; torch's
intra-op thread count for a block of work; the CPU cores this process may use."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from key2mesh.errors import Key2MeshError

_AUTO = (None, "", "auto")


def check_device(name: str | None) -> None:
    """Key2MeshError unless ``name`` is ``auto``/None, ``cpu``, or an available ``cuda[:N]`` / ``mps``."""
    if name in _AUTO or name == "cpu":
        return
    import torch

    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError, TypeError):
        raise Key2MeshError(
            f"device {name!r} is not a device name torch knows; use cpu, cuda, cuda:N or auto"
        ) from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = (
                "this torch build has no CUDA support"
                if torch.version.cuda is None
                else "no CUDA GPU is visible"
            )
            raise Key2MeshError(
                f"device {name!r} requested but CUDA is not available here ({why}); use --device cpu"
            )
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise Key2MeshError(
                f"device {name!r} requested but this machine has {count} CUDA device(s) (cuda:0"
                f"{f'..cuda:{count - 1}' if count > 1 else ''})"
            )
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise Key2MeshError(
                f"device {name!r} requested but Apple MPS is not available here; use --device cpu"
            )
    elif dev.type != "cpu":
        raise Key2MeshError(f"device {name!r}: key2mesh runs on cpu, cuda or mps")


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """torch's intra-op thread count set to ``n`` inside the block (``None``: unchanged).

    Work made of many small ops (fitting, the demo's rasteriser) runs best on one thread: each
    op's OpenMP fork/join costs more than it saves, and collapses when the cores are shared."""
    import torch

    old = torch.get_num_threads()
    if n is None or n == old:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


_CPU_SHARE: int | None = None


def cpu_share() -> int:
    """The CPU cores this process may use for its own threads (the detector's regions searched
    at once, the video encoder): the cores it may run on, or the share a ``key2mesh batch``
    worker was given (:func:`set_cpu_share`)."""
    if _CPU_SHARE is not None:
        return _CPU_SHARE
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return max(1, os.cpu_count() or 1)


def set_cpu_share(n: int | None) -> None:
    """Let this process use ``n`` cores (None: all it may run on); see :func:`cpu_share`."""
    global _CPU_SHARE
    _CPU_SHARE = None if n is None else max(1, int(n))
