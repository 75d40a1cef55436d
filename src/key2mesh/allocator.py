"""glibc's malloc told to keep large freed CPU arrays for reuse, so that each batch of meshes does
not fault in (and zero) fresh pages for its arrays again.

glibc serves large allocations (above its mmap threshold: 128 KB, growing to at most 32 MB) from
fresh pages and gives them back when freed, so every batch of 512 full meshes faults in its
~84 MB arrays again (the rest vertices, the skinned vertices, oneDNN's outputs), even with
transparent huge pages. :func:`keep_large_allocations` raises the mmap and trim thresholds
(``mallopt``) so that those blocks come from the heap and stay there (``benchmarks/allocator.py``,
``benchmarks/results/allocator_threads2.md``: a fresh 84 MB array and the batch-512 mesh path
with both settings). The price: up to :data:`TRIM_BYTES` of freed memory stays with the process
instead of going back to the system.

The ``key2mesh`` command (and the ``batch`` command's workers) call it at start; API users may
call it once (it is a process-wide setting). ``KEY2MESH_MALLOC=system`` keeps glibc's defaults.
Elsewhere than glibc (macOS, musl) it does nothing.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys

log = logging.getLogger(__name__)

ENV = "KEY2MESH_MALLOC"
# mallopt's parameter numbers (glibc's malloc.h)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
# blocks up to this size come from the heap (a batch of 4096 training-mesh or 512 full-mesh
# vertex arrays is far below it)
MMAP_BYTES = 1 << 30
# free memory at the top of the heap above this goes back to the system
TRIM_BYTES = 1 << 30

_done: bool | None = None


def keep_large_allocations() -> bool:
    """Raise glibc's mmap and trim thresholds once per process (both, or neither: the mmap
    threshold alone makes large allocations slower still). Returns whether it is in effect."""
    global _done
    if _done is not None:
        return _done
    _done = False
    if os.environ.get(ENV, "").strip().lower() == "system" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    if not hasattr(libc, "gnu_get_libc_version"):  # not glibc
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    if mallopt(M_TRIM_THRESHOLD, TRIM_BYTES) != 1:
        return False
    if mallopt(M_MMAP_THRESHOLD, MMAP_BYTES) != 1:
        mallopt(M_TRIM_THRESHOLD, 128 * 1024)  # glibc's default back
        log.debug("glibc refused an mmap threshold of %d bytes", MMAP_BYTES)
        return False
    _done = True
    return True
