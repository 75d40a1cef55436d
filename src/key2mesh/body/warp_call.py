"""Warp CPU kernels launched again and again on torch tensors, with little Python per launch.

``wp.launch`` costs ~10 µs, plus ~5 µs for each tensor wrapped in a ``wp.array`` (even by
pointer; ad hoc timings on this project's 2-core CPU), and a batch-1 anny mesh launches three
kernels with 16 arrays between them. :class:`WarpCall` records a kernel's first
launch in each thread (``wp.launch(..., record_cmd=True)``, Warp's public API for re-launching)
and, on later calls, rewrites the recorded launch's packed array descriptors in place (data
pointer, shape and byte strides): a few µs in all. The kernel then runs
exactly as ``wp.launch`` would run it (the same compiled function, the same arguments).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, NamedTuple

import torch

_RECORD_LOCK = threading.Lock()


def _contiguous_strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    """The strides (in elements) of a contiguous array of ``shape``."""
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(step)
        step *= size
    return tuple(reversed(strides))


class _Spec(NamedTuple):
    """An array argument: its element's shape, contiguous strides and scalar torch dtype, and
    the array's own number of dimensions."""

    shape: tuple[int, ...]
    strides: tuple[int, ...]
    dtype: torch.dtype
    ndim: int


class WarpCall:
    """``call(dim, *args)`` = ``wp.launch(kernel, dim=dim, inputs=[...], device="cpu")`` for a
    Warp kernel whose arguments are arrays (given as CPU torch tensors whose trailing
    dimensions are the array's element, e.g. (B, 24, 3, 3) for a 2-d array of mat33) and
    other values (int, float; vectors, matrices and half floats are packed by Warp at each
    call). ``args`` are the arguments not ``fixed`` (argument index → value: a body's constant
    tables, bound once with :meth:`bind` and never checked or rewritten again), in order. A
    tensor must stay alive until the call returns (a fixed one as long as the call); the
    kernel reads and writes its memory directly, through the tensor's strides.
    Thread-safe: each thread keeps its own recorded launch. Anything else (another dtype, an
    element that is not contiguous) goes through ``wp.from_torch`` and ``wp.launch`` (their
    checks and errors)."""

    def __init__(self, kernel, fixed: dict[int, Any] | None = None) -> None:
        import warp as wp

        self.kernel = kernel
        self._local = threading.local()
        # per argument: None (a scalar), or its array's _Spec
        self._specs: list[_Spec | None] = []
        # the other arguments whose value is not its ctypes value (vectors, matrices, structs,
        # half floats: their bits): re-packed by Warp at each relaunch
        self._packed: set[int] = set()
        for k, arg in enumerate(kernel.adj.args):
            if wp.types.is_array(arg.type):
                dtype = arg.type.dtype
                shape = tuple(getattr(dtype, "_shape_", ()))
                scalar = getattr(dtype, "_wp_scalar_type_", dtype)
                strides = _contiguous_strides(shape)
                self._specs.append(_Spec(shape, strides, wp.dtype_to_torch(scalar), arg.type.ndim))
            else:
                self._specs.append(None)
                plain = arg.type is wp.bool or wp.types.type_is_int(arg.type)
                plain = plain or arg.type in (wp.float32, wp.float64)
                if not plain:
                    self._packed.add(k)
        self._fixed = dict(fixed or {})
        if any(not 0 <= k < len(self._specs) for k in self._fixed):
            raise IndexError(f"{kernel.key} has {len(self._specs)} arguments: {sorted(fixed)}")
        self._free = [k for k in range(len(self._specs)) if k not in self._fixed]
        self._fixed_fit = self._fits(self._fixed.items())

    def bind(self, fixed: dict[int, Any]) -> WarpCall:
        """This kernel with more arguments ``fixed`` (index → value), recorded on its own."""
        return WarpCall(self.kernel, {**self._fixed, **fixed})

    def _fits(self, items) -> bool:
        """Whether every tensor of ``items`` ((index, value) pairs) can be described in place: a
        non-empty CPU tensor of the element's scalar type with the element's trailing shape,
        each element contiguous (the array's own strides may be any non-negative ones: a slice
        of rows of a wider matrix, a view of every other row, rows broadcast by ``expand`` (a
        shape's rest model shared by a batch; stride 0, as ``from_torch`` would pass it))."""
        specs = self._specs
        for k, value in items:
            spec = specs[k]
            if spec is None:
                continue
            if not isinstance(value, torch.Tensor) or value.dtype != spec.dtype:
                return False
            nd = spec.ndim
            size, stride = value.shape, value.stride()
            if (
                len(size) != nd + len(spec.shape)
                or not value.is_cpu
                or size[nd:] != spec.shape
                or stride[nd:] != spec.strides
                or value.numel() == 0
            ):
                return False
            for d in range(nd):
                if stride[d] < 0:
                    return False  # reversed rows: from_torch decides
        return True

    def __call__(self, dim: int | tuple[int, ...], *args: Any) -> None:
        import warp as wp

        free = self._free
        if len(args) != len(free):
            raise TypeError(f"{self.kernel.key} takes {len(free)} arguments, got {len(args)}")
        items = list(zip(free, args))
        if not (self._fixed_fit and self._fits(items)):
            self._launch_checked(dim, items)
            return
        launch = getattr(self._local, "launch", None)
        if launch is None:
            values = {**self._fixed, **dict(items)}
            inputs = [
                values[k]
                if spec is None
                else self._wrap(values[k], self.kernel.adj.args[k].type.dtype)
                for k, spec in enumerate(self._specs)
            ]
            with _RECORD_LOCK:  # Warp's first launch loads the kernel's module: one at a time
                launch = wp.launch(
                    self.kernel, dim=dim, inputs=inputs, device="cpu", record_cmd=True
                )
            self._local.launch, self._local.dim = launch, dim
            launch.fwd_args = None  # the first call's wrappers: never read again
            launch.launch()
            return
        if dim != self._local.dim:
            launch.set_dim(dim)
            self._local.dim = dim
        params, specs = launch.params, self._specs
        for k, value in items:
            p = params[k + 1]  # params[0]: the launch bounds
            spec = specs[k]
            if spec is None:
                if k in self._packed:
                    launch.set_param_at_index(k, value)
                else:
                    p.value = value
                continue
            p.data = value.data_ptr()
            size, stride, item = value.shape, value.stride(), value.element_size()
            for d in range(spec.ndim):
                p.shape[d] = size[d]
                p.strides[d] = stride[d] * item
        launch.launch()

    def _launch_checked(self, dim, items) -> None:
        """``wp.launch`` with every tensor through ``wp.from_torch`` (its checks and errors)."""
        import warp as wp

        values = {**self._fixed, **dict(items)}
        # requires_grad=False: from_torch would attach a zero .grad to a tensor that requires
        # grad (a caller's pose under no_grad)
        inputs = [
            values[k]
            if spec is None
            else wp.from_torch(
                values[k], dtype=self.kernel.adj.args[k].type.dtype, requires_grad=False
            )
            for k, spec in enumerate(self._specs)
        ]
        with _RECORD_LOCK:
            wp.launch(self.kernel, dim=dim, inputs=inputs, device="cpu")

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


def _fresh_locks() -> None:
    """In a forked child: new locks (another thread of the parent may have held one at the
    fork, and no thread of the child would ever release it)."""
    global _RECORD_LOCK, _POOL_LOCK
    _RECORD_LOCK, _POOL_LOCK = threading.Lock(), threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_fresh_locks)


def _submit(jobs: Sequence[Callable[[], None]], workers: int) -> list[Future]:
    """``jobs`` submitted to the process' pool for :func:`run_jobs`, with at least ``workers``
    threads: made again in a forked child (a parent's pool threads do not exist there) or when
    more threads are asked for (the old pool is shut down once its queued jobs are done). The
    jobs are submitted under the lock: another thread asking for more threads must not shut
    the pool down between finding it and submitting to it."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL[0] != os.getpid() or _POOL[1]._max_workers < workers:
            if _POOL is not None and _POOL[0] == os.getpid():
                _POOL[1].shutdown(wait=False)
            _POOL = (os.getpid(), ThreadPoolExecutor(workers, thread_name_prefix="key2mesh-warp"))
        pool = _POOL[1]
        return [pool.submit(job) for job in jobs]


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
    futures = _submit(jobs, threads)
    for future in futures:
        future.exception()  # wait for all of them first
    for future in futures:
        future.result()
