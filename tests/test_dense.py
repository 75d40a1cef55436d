"""key2mesh.dense: oneDNN products whose rows do not depend on their batch, and the F.linear
fallback wherever they do not apply."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from key2mesh import dense

needs_onednn = pytest.mark.skipif(
    not dense.enabled(), reason="oneDNN's linear is not available or not row-invariant here"
)


def _weights(seed: int, n: int = 300, k: int = 130):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n, k, generator=g) / k**0.5
    return w, torch.randn(n, generator=g), torch.randn(40, k, generator=g)


@needs_onednn
@pytest.mark.parametrize("layout", ["packed", "transposed", "row-major unpacked"])
def test_rows_do_not_depend_on_the_batch(layout):
    """A row gets the same bits alone, in any batch size and at any position; a row-major weight
    passed with pack=False is packed too (oneDNN's 1-row path on it gives other bits)."""
    w, b, x = _weights(0)
    if layout == "transposed":
        w = w.t().contiguous().t()  # (N, K) view of a row-major (K, N) matrix
    pack = layout == "packed"
    with torch.no_grad():
        whole = dense.linear(x, w, b, pack=pack)
        for lo, hi in ((0, 1), (7, 8), (0, 2), (3, 6), (1, 9), (5, 38)):
            assert torch.equal(dense.linear(x[lo:hi], w, b, pack=pack), whole[lo:hi]), (lo, hi)
    torch.testing.assert_close(whole, F.linear(x, w, b), atol=1e-5, rtol=1e-5)


@needs_onednn
def test_matmul_is_x_times_c_and_writes_out():
    g = torch.Generator().manual_seed(1)
    c, x, bias = torch.randn(45, 500, generator=g), torch.rand(6, 45, generator=g), torch.randn(500)
    with torch.no_grad():
        ref = x @ c + bias
        torch.testing.assert_close(dense.matmul(x, c, bias), ref, atol=1e-5, rtol=1e-5)
        out = torch.full((6, 500), float("nan"))
        assert dense.matmul(x, c, bias, out=out) is out
        assert torch.equal(out, dense.matmul(x, c, bias))
        assert torch.equal(dense.matmul(x[2:3], c), dense.matmul(x, c)[2:3])
        # float64 (not oneDNN's): torch.addmm into out
        out64 = torch.empty(6, 500, dtype=torch.float64)
        got = dense.matmul(x.double(), c.double(), bias.double(), out=out64)
        assert got is out64 and torch.equal(
            out64, torch.addmm(bias.double(), x.double(), c.double())
        )


@needs_onednn
def test_a_changed_weight_is_packed_again():
    """The packed copy follows in-place changes (an optimizer step, load_state_dict)."""
    lin = torch.nn.Linear(64, 32)
    x = torch.randn(3, 64)
    with torch.no_grad():
        first = dense.linear(x, lin.weight, lin.bias)
        lin.weight.mul_(-2.0)
        torch.testing.assert_close(dense.linear(x, lin.weight, lin.bias), lin(x), atol=1e-5, rtol=0)
        other = torch.nn.Linear(64, 32)
        lin.load_state_dict(other.state_dict())
        again = dense.linear(x, lin.weight, lin.bias)
    torch.testing.assert_close(again, other(x), atol=1e-5, rtol=0)
    assert not torch.allclose(again, first)


def test_fallbacks_are_F_linear_to_the_bit(monkeypatch):
    """float64, autograd, autocast and ``KEY2MESH_DENSE=torch`` take F.linear itself."""
    w, b, x = _weights(2)
    assert torch.equal(
        dense.linear(x.double(), w.double(), b.double()),
        F.linear(x.double(), w.double(), b.double()),
    )
    wg = w.clone().requires_grad_(True)
    y = dense.linear(x, wg, b)
    assert torch.equal(y, F.linear(x, w, b))
    y.sum().backward()
    torch.testing.assert_close(wg.grad, x.sum(0).expand_as(w))
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():
        auto = dense.linear(x, w, b)
        assert auto.dtype == torch.bfloat16 and torch.equal(auto, F.linear(x, w, b))
    monkeypatch.setenv(dense.ENV, "torch")
    assert not dense.enabled() and not dense.rows_independent("cpu", torch.float32)
    with torch.no_grad():
        assert torch.equal(dense.linear(x, w, b), F.linear(x, w, b))


def test_rows_independent_only_for_float32_cpu():
    assert not dense.rows_independent("cpu", torch.float64)
    assert not dense.rows_independent("meta", torch.float32)
    assert dense.rows_independent("cpu", torch.float32) == dense.enabled()


def test_traced_graphs_keep_the_portable_op():
    """torch.jit.trace of a module that calls dense.linear records aten::linear (an exported
    model must not depend on oneDNN's private ops)."""

    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(8, 4)

        def forward(self, x):
            return dense.linear(x, self.lin.weight, self.lin.bias)

    with torch.no_grad():
        traced = torch.jit.trace(M().eval(), torch.randn(2, 8))
    kinds = {n.kind() for n in traced.inlined_graph.nodes()}
    assert "aten::linear" in kinds and not any("mkldnn" in k for k in kinds)


def test_network_eval_path_follows_every_parameter_change():
    """The network's folded eval path (BatchNorm folded, kept between calls) is the modules'
    numbers to float precision, and is rebuilt after an optimizer step, a training-mode forward
    (new BatchNorm statistics) and load_state_dict."""
    from key2mesh.model.network import Key2MeshNet, ModelConfig

    torch.manual_seed(0)
    cfg = ModelConfig(hidden=64, num_keypoints=5)
    net = Key2MeshNet(cfg)
    x = torch.randn(6, 5, 2)

    def check():
        net.eval()
        with torch.no_grad():
            fast = net.predict(x)
        slow = net.predict(x)  # autograd on: the modules' functional ops
        for a, b in zip(fast, slow):
            torch.testing.assert_close(a, b.detach(), atol=2e-5, rtol=1e-4)

    check()
    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    loss = sum(t.square().sum() for t in net(x))
    loss.backward()
    opt.step()  # in place: weights, and BatchNorm statistics from the forward above
    check()
    net.load_state_dict(Key2MeshNet(cfg).state_dict())
    check()
    with torch.no_grad():
        net.head.out.bias += 1.0
    check()


def test_prepared_layers_are_linear_then_leaky_relu(monkeypatch):
    """dense.Prepared: the checked call is linear + leaky ReLU (oneDNN or F.linear), fast()
    gives the same bits as the checked call where ready() holds, and ready() refuses what
    fast() cannot take."""
    w, b, x = _weights(3)
    layer = dense.Prepared(w, b, 0.2)
    ref = F.leaky_relu(F.linear(x, w, b), 0.2)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), ref, atol=1e-5, rtol=1e-5)
        if layer.packed is not None:
            assert dense.ready(x) and torch.equal(layer.fast(x), layer(x))
            assert torch.equal(layer.fast(x[2:3]), layer(x)[2:3])
        assert not dense.ready(x.double()) and not dense.ready(x.t())  # dtype, not contiguous
        assert not dense.ready(x[:0])
    assert not dense.ready(x)  # autograd on
    monkeypatch.setenv(dense.ENV, "torch")
    with torch.no_grad():
        assert not dense.ready(x) and torch.equal(layer(x), ref)
