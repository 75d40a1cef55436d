"""Warp CPU kernels launched again and again on torch tensors, with little Python per launch.

``wp.launch`` costs ~10 µs, plus ~5 µs for each tensor wrapped in a ``wp.array`` (even by
pointer), on this project's 2-core CPU; a batch-1 anny mesh launches three kernels with 16
arrays between them (~90 µs of a ~2.5 ms mesh). :class:`WarpCall` records a kernel's first
launch in each thread (``wp.launch(..., record_cmd=True)``, Warp's public API for re-launching)
and, on later calls, rewrites the recorded launch's packed array descriptors in place (data
pointer, shape and byte strides): ~3 µs plus well under 1 µs per array. The kernel then runs
exactly as ``wp.launch`` would run it (the same compiled function, the same arguments).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch

_RECORD_LOCK = threading.Lock()


def _contiguous_strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    """The strides (in elements) of a contiguous array of ``shape``."""
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(step)
        step *= size
    return tuple(reversed(strides))


class WarpCall:
    """``call(dim, *args)`` = ``wp.launch(kernel, dim=dim, inputs=args, device="cpu")`` for a
    Warp kernel whose arguments are arrays (given as CPU torch tensors whose trailing
    dimensions are the array's element, e.g. (B, 24, 3, 3) for a 2-d array of mat33) and
    scalars (int or float). A tensor must stay alive until the call returns; the kernel reads
    and writes its memory directly. Thread-safe: each thread keeps its own recorded launch.
    A tensor that is not a contiguous CPU array of the element's scalar type goes through
    ``wp.from_torch`` and ``wp.launch`` (their checks and errors)."""

    def __init__(self, kernel) -> None:
        import warp as wp

        self.kernel = kernel
        self._local = threading.local()
        # per argument: None (a scalar), or (element shape, element scalar's torch dtype, ndim)
        self._arrays: list[tuple[tuple[int, ...], torch.dtype, int] | None] = []
        for arg in kernel.adj.args:
            if wp.types.is_array(arg.type):
                dtype = arg.type.dtype
                shape = tuple(getattr(dtype, "_shape_", ()))
                scalar = getattr(dtype, "_wp_scalar_type_", dtype)
                self._arrays.append((shape, wp.dtype_to_torch(scalar), arg.type.ndim))
            else:
                self._arrays.append(None)

    def _fits(self, args: tuple) -> bool:
        """Whether every tensor argument can be described in place: a non-empty CPU tensor of
        the element's scalar type with the element's trailing shape, each element contiguous
        (the array's own strides may be any positive ones: a slice of rows of a wider matrix, a
        view of every other row)."""
        for value, spec in zip(args, self._arrays):
            if spec is None:
                continue
            shape, scalar, ndim = spec
            if (
                not isinstance(value, torch.Tensor)
                or value.device.type != "cpu"
                or value.dtype != scalar
                or value.dim() != ndim + len(shape)
                or tuple(value.shape[ndim:]) != shape
                or value.numel() == 0
                or value.stride()[ndim:] != _contiguous_strides(shape)
                or any(
                    st < 0 or (st == 0 and n > 1)  # broadcast rows: from_torch decides
                    for st, n in zip(value.stride()[:ndim], value.shape[:ndim])
                )
            ):
                return False
        return True

    def __call__(self, dim: int | tuple[int, ...], *args: Any) -> None:
        import warp as wp

        if len(args) != len(self._arrays):
            raise TypeError(
                f"{self.kernel.key} takes {len(self._arrays)} arguments, got {len(args)}"
            )
        if not self._fits(args):
            # requires_grad=False: from_torch would attach a zero .grad to a tensor that
            # requires grad (a caller's pose under no_grad)
            inputs = [
                a
                if spec is None
                else wp.from_torch(a, dtype=self.kernel.adj.args[i].type.dtype, requires_grad=False)
                for i, (a, spec) in enumerate(zip(args, self._arrays))
            ]
            with _RECORD_LOCK:
                wp.launch(self.kernel, dim=dim, inputs=inputs, device="cpu")
            return
        launch = getattr(self._local, "launch", None)
        if launch is None:
            inputs = [
                a if spec is None else self._wrap(a, self.kernel.adj.args[i].type.dtype)
                for i, (a, spec) in enumerate(zip(args, self._arrays))
            ]
            with _RECORD_LOCK:  # Warp's first launch loads the kernel's module: one at a time
                launch = wp.launch(
                    self.kernel, dim=dim, inputs=inputs, device="cpu", record_cmd=True
                )
            self._local.launch, self._local.dim = launch, dim
            launch.fwd_args = None  # the first call's wrappers: never read again
        else:
            if dim != self._local.dim:
                launch.set_dim(dim)
                self._local.dim = dim
            params = launch.params
            for i, (value, spec) in enumerate(zip(args, self._arrays)):
                p = params[i + 1]  # params[0]: the launch bounds
                if spec is None:
                    p.value = value
                    continue
                ndim = spec[2]
                p.data = value.data_ptr()
                size = value.element_size()
                for d in range(ndim):
                    p.shape[d] = value.shape[d]
                    p.strides[d] = value.stride(d) * size
        launch.launch()

    @staticmethod
    def _wrap(t: torch.Tensor, dtype):
        """``t`` (checked by :meth:`_fits`) as a Warp array viewing its memory."""
        import warp as wp

        shape = tuple(getattr(dtype, "_shape_", ()))
        lead = tuple(t.shape[: t.dim() - len(shape)])
        strides = tuple(t.stride(d) * t.element_size() for d in range(len(lead)))
        return wp.array(ptr=t.data_ptr(), dtype=dtype, shape=lead, strides=strides, device="cpu")


_POOL: tuple[int, ThreadPoolExecutor] | None = None  # (the creating process' id, the pool)
_POOL_LOCK = threading.Lock()


def _pool(workers: int) -> ThreadPoolExecutor:
    """The process' pool for :func:`run_jobs`, with at least ``workers`` threads: made again in
    a forked child (a parent's pool threads do not exist there) or when more threads are
    asked for (the old pool is shut down once its queued jobs are done)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL[0] != os.getpid() or _POOL[1]._max_workers < workers:
            if _POOL is not None and _POOL[0] == os.getpid():
                _POOL[1].shutdown(wait=False)
            _POOL = (os.getpid(), ThreadPoolExecutor(workers, thread_name_prefix="key2mesh-warp"))
        return _POOL[1]


def split(n: int, parts: int) -> list[tuple[int, int]]:
    """``range(n)`` in ``parts`` contiguous, non-empty (start, stop) pieces of near-equal size."""
    bounds = [n * i // parts for i in range(parts + 1)]
    return [(i, j) for i, j in zip(bounds, bounds[1:]) if j > i]


def run_jobs(jobs: Sequence[Callable[[], None]]) -> None:
    """Runs ``jobs`` (Warp CPU launches: single-threaded kernels that release the GIL) in
    parallel on a pool of ``torch.get_num_threads()`` threads shared by the process (serially
    with one torch thread or one job) and returns when all are done; a job's exception is
    raised after every job has finished. Jobs must not wait on other jobs."""
    threads = torch.get_num_threads()
    if len(jobs) <= 1 or threads <= 1:
        for job in jobs:
            job()
        return
    futures = [_pool(threads).submit(job) for job in jobs]
    for future in futures:
        future.exception()  # wait for all of them first
    for future in futures:
        future.result()
