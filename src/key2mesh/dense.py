"""Dense products for inference: ``x Wᵀ + b`` through oneDNN on the CPU, so that a row's numbers
do not depend on the other rows of its batch, and small batches run at memory speed.

torch's float32 ``F.linear``/``mm`` on the CPU calls MKL, which takes other code paths (other
last bits) for 1–3 rows than for 4 and more: batch invariance then needs every batch padded to
4 rows, and MKL's 4-row product costs about twice its 1-row GEMV on this AMD CPU. oneDNN's
inner-product kernels, with the weights packed once into its blocked layout (or given as the
transpose of a row-major (K, N) matrix), give the same numbers for a row whatever the batch, 1
row included, and small batches read the weights at memory speed (``benchmarks/dense.py``,
``benchmarks/results/dense_threads2.md``: ``network_b1*`` and ``rows_equal``).

:func:`linear` takes this path for float32 CPU tensors without autograd or autocast; otherwise it
is ``F.linear``. :func:`rows_independent` says whether it applies to a device and dtype: the
callers (the network's eval path, anny's rest model, the predictor) pad batches to
``PAD_ROWS`` only where it does not. Whether the kernels are row-invariant on this machine is
checked once per process (:func:`_probe`); a CPU where they are not gets ``F.linear`` and the
padding. Unlike MKL's, oneDNN's numbers depend on torch's thread count (last bits); with
``KEY2MESH_DENSE=torch`` they do not.
"""

from __future__ import annotations

import logging
import os
import threading
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch.utils.weak import WeakIdKeyDictionary

log = logging.getLogger(__name__)

# the environment switch that turns this path off (``KEY2MESH_DENSE=torch``: F.linear everywhere,
# and the callers pad batches as before)
ENV = "KEY2MESH_DENSE"
# the batch size oneDNN packs the weights for (its blocked layout; any batch size runs on it)
PACK_ROWS = 4

_LOCK = threading.Lock()
# weight tensor → (its data pointer, its version, the packed copy); entries go with the weight
_PACKED = WeakIdKeyDictionary()  # by identity: a tensor's == is elementwise


@lru_cache(maxsize=1)
def _ops():
    """oneDNN's linear and weight-packing ops, or None where this torch build lacks them."""
    try:
        if not torch.backends.mkldnn.is_available():
            return None
        ops = torch.ops.mkldnn
        return ops._linear_pointwise, ops._reorder_linear_weight
    except (AttributeError, RuntimeError):
        return None


@lru_cache(maxsize=1)
def _probe() -> bool:
    """True when oneDNN's product gives each row the same numbers alone and in batches of every
    size here (packed and transposed weights; a few sizes, ~1 ms): the premise of this module."""
    ops = _ops()
    if ops is None:
        return False
    lin, reorder = ops

    # fixed, irregular values (no random state touched)
    def wave(rows: int, cols: int, phase: float) -> torch.Tensor:
        return torch.sin(0.37 * torch.arange(rows * cols, dtype=torch.float32) + phase).view(
            rows, cols
        )

    w, t, x, b = wave(300, 96, 1.0), wave(96, 300, 2.0), wave(40, 96, 3.0), wave(1, 300, 4.0)[0]
    try:
        with torch.no_grad():
            for dense, weight in ((w, reorder(w, PACK_ROWS)), (t.t(), t.t())):
                whole = lin(x, weight, b, "none", [], "")
                for lo, hi in ((0, 1), (0, 2), (0, 3), (5, 10), (1, 18), (3, 4)):
                    if not torch.equal(lin(x[lo:hi], weight, b, "none", [], ""), whole[lo:hi]):
                        log.info("oneDNN's rows depend on their batch here: using F.linear")
                        return False
                if not torch.allclose(whole, F.linear(x, dense, b), atol=1e-4):
                    log.info("oneDNN's product disagrees with F.linear here: using F.linear")
                    return False
    except RuntimeError as exc:  # a build whose oneDNN refuses these shapes or this CPU
        log.info("oneDNN's linear failed (%s): using F.linear", exc)
        return False
    return True


def enabled() -> bool:
    """Whether this process uses oneDNN for float32 CPU products (available, row-invariant here,
    not switched off by ``KEY2MESH_DENSE=torch``)."""
    return os.environ.get(ENV, "").strip().lower() != "torch" and _probe()


def rows_independent(device: torch.device | str, dtype: torch.dtype) -> bool:
    """Whether :func:`linear` (without autograd) gives a row of ``dtype`` on ``device`` the same
    numbers in any batch, 1 row included, so its callers need not pad."""
    return torch.device(device).type == "cpu" and dtype == torch.float32 and enabled()


def _modes_allow() -> bool:
    """The process-wide conditions: no autocast, not tracing, exporting or compiling, oneDNN
    enabled."""
    if torch.is_autocast_enabled("cpu"):
        return False  # F.linear would run in the autocast dtype
    if torch.jit.is_tracing() or torch.compiler.is_compiling() or torch.onnx.is_in_onnx_export():
        return False  # an exported or compiled graph keeps the portable op
    return enabled()


def _applies(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> bool:
    tensors = (x, weight) if bias is None else (x, weight, bias)
    if any(t.device.type != "cpu" or t.dtype != torch.float32 for t in tensors):
        return False
    if x.dim() != 2 or x.shape[0] == 0 or x.is_mkldnn:
        return False
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return False  # oneDNN's linear has no backward: autograd keeps F.linear
    return _modes_allow()


def _packed(weight: torch.Tensor) -> torch.Tensor:
    """``weight`` (N, K) in oneDNN's blocked layout, packed on first use and again after any
    change of the weight (its data pointer or version: an optimizer step, ``load_state_dict``)."""
    key = (weight.data_ptr(), weight._version)
    hit = _PACKED.get(weight)
    if hit is not None and hit[0] == key:
        return hit[1]
    with torch.no_grad():
        packed = _ops()[1](weight.detach(), PACK_ROWS)  # type: ignore[index]
    with _LOCK:
        _PACKED[weight] = (key, packed)
    return packed


def linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    pack: bool = True,
    slope: float | None = None,
) -> torch.Tensor:
    """``F.linear(x, weight, bias)``: x (M, K), weight (N, K), bias (N,) → (M, N); with
    ``slope``, followed by a leaky ReLU of that negative slope (a one-slope PReLU), fused into
    oneDNN's call.

    float32 CPU tensors without autograd go through oneDNN (rows independent of their batch):
    with ``pack`` the weight is packed once into oneDNN's layout (kept beside the weight, ~its
    size; for weights used many times, e.g. a network's); without it ``weight`` should be the
    transpose of a contiguous (K, N) matrix (``c.t()``: anny's cell bases), which oneDNN reads as
    it is (any other weight is packed: oneDNN's 1-row path differs on those). Anything else is
    ``F.linear``."""
    if not _applies(x, weight, bias):
        y = F.linear(x, weight, bias)
        return y if slope is None else F.leaky_relu(y, slope)
    lin = _ops()[0]  # type: ignore[index]
    w = weight if not pack and weight.t().is_contiguous() else _packed(weight)
    b = None if bias is None else bias.contiguous()
    if slope is None:
        return lin(x.contiguous(), w, b, "none", [], "")
    return lin(x.contiguous(), w, b, "leaky_relu", [slope], "")


def matmul(
    x: torch.Tensor,
    c: torch.Tensor,
    bias: torch.Tensor | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """x (M, K) @ c (K, N) (+ bias (N,)) → (M, N), by :func:`linear` on ``c.t()`` unpacked (a
    row-major ``c`` is read as it is: no copy of a large basis). ``out`` (M, N): written and
    returned (``torch.addmm``'s ``out`` where oneDNN does not apply; oneDNN writes a new array,
    copied into it)."""
    if out is not None and not _applies(x, c, bias):
        if bias is None:
            return torch.mm(x, c, out=out)
        return torch.addmm(bias, x, c, out=out)
    y = linear(x, c.t(), bias, pack=False)
    return y if out is None else out.copy_(y)


class Prepared:
    """A layer ``x ↦ linear(x, weight, bias, slope=slope)`` for inference, its weight (N, K)
    packed for oneDNN once (when oneDNN is enabled and the weight is a float32 CPU tensor; the
    weights are detached). A stack of them (a network's layers) checks its input once per call
    with :func:`ready` and then runs :meth:`fast`, with nothing else between oneDNN's calls: at
    batch 1 each µs of Python between them costs about as much again in oneDNN's threads."""

    __slots__ = ("weight", "bias", "slope", "packed", "_post", "_scalars")

    def __init__(
        self, weight: torch.Tensor, bias: torch.Tensor | None = None, slope: float | None = None
    ):
        self.weight = weight.detach()
        self.bias = None if bias is None else bias.detach().contiguous()
        self.slope = slope
        self._post = "none" if slope is None else "leaky_relu"
        self._scalars = [] if slope is None else [slope]
        self.packed = None
        cpu32 = (self.weight,) if bias is None else (self.weight, self.bias)
        if enabled() and all(t.device.type == "cpu" and t.dtype == torch.float32 for t in cpu32):
            with torch.no_grad():
                self.packed = _ops()[1](self.weight, PACK_ROWS)  # type: ignore[index]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """The layer on x (M, K), checked (:func:`linear`'s rules)."""
        if self.packed is not None and ready(x):
            return self.fast(x)
        y = F.linear(x, self.weight, self.bias)
        return y if self.slope is None else F.leaky_relu(y, self.slope)

    def fast(self, x: torch.Tensor) -> torch.Tensor:
        """The layer through oneDNN, unchecked: only after :func:`ready` (x) held, with
        :attr:`packed` set, for x or a float32 CPU output of such a layer (or a sum of them)."""
        return _ops()[0](x, self.packed, self.bias, self._post, self._scalars, "")  # type: ignore[index]


def ready(x: torch.Tensor) -> bool:
    """Whether layers prepared with packed weights (:class:`Prepared`) may run :meth:`~Prepared.fast`
    on x now: a contiguous non-empty float32 CPU matrix, no autograd, autocast, tracing, export
    or compilation, oneDNN enabled."""
    return (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and x.dim() == 2
        and x.shape[0] > 0
        and x.is_contiguous()
        and not x.is_mkldnn
        and not torch.is_grad_enabled()
        and _modes_allow()
    )
