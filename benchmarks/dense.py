"""oneDNN's products (key2mesh.dense) vs MKL's (F.linear, padded for batch invariance) on this
CPU: the network, the new shape's rest-vertex product and the whole keypoints → mesh path, each
pair interleaved in one process (``KEY2MESH_DENSE=torch`` switches key2mesh to MKL at run time).

    .venv/bin/python benchmarks/dense.py [--threads 2]

Rows (ms unless named otherwise; "onednn" = key2mesh's default, "mkl" = the path before):
- ``network_b{1,512}``: the network's eval path on 1 / 512 rows. With MKL a single detection
  also runs as ``network_b1_padded`` (4 rows): what ``Key2Mesh.predict`` ran for batch
  invariance. oneDNN needs no padding (its rows do not depend on the batch).
- ``cells_b1``: a new shape's rest vertices from its cell basis (oneDNN 1 row, MKL 4 rows).
- ``mesh_new_b1``: keypoints → network (1 row) → full mesh of a new shape (the
  ``mesh_full_b1_ms`` of ``inference.py``); ``predict_mesh_b1``: ``Key2Mesh.predict`` on one
  detection, new shape, full mesh; ``meshes_per_s_b512``: the mesh path at batch 512.
- ``rows_checked``: batch sizes 1..64 and 100, 512, 1000 for which every row of the network's and
  the cell product's output was compared with the same row in a batch of 1,100 (``rows_equal``:
  how many gave the same bits; with oneDNN all of them).
The last line is ``RESULT key=value ...``.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")  # as the key2mesh command sets it
import torch  # noqa: E402
from _common import record_results, result_line, timeit_interleaved  # noqa: E402

from key2mesh import dense  # noqa: E402
from key2mesh.allocator import keep_large_allocations  # noqa: E402


def _backend(name: str) -> None:
    """Switch key2mesh.dense on (oneDNN) or off (MKL) for the calls that follow."""
    if name == "mkl":
        os.environ[dense.ENV] = "torch"
    else:
        os.environ.pop(dense.ENV, None)


def _pair(make, rounds: int, repeats: int) -> dict[str, float]:
    """``make(backend)`` → a zero-argument call; both backends timed interleaved (ms)."""

    def run(name):
        call = make(name)

        def fn():
            _backend(name)
            return call()

        return fn

    t = timeit_interleaved({b: run(b) for b in ("onednn", "mkl")}, rounds, repeats)
    _backend("onednn")
    return {k: 1000 * v for k, v in t.items()}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--checkpoint", default="anny-body25")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    record_results(f"dense_threads{a.threads}", "oneDNN vs MKL products, CPU")
    torch.set_num_threads(a.threads)
    keep_large_allocations()  # as the key2mesh command does
    if not dense.enabled():
        raise SystemExit("oneDNN's linear is not available or not row-invariant here")
    from key2mesh.body.anny_backend import GEMM_ROWS
    from key2mesh.inference.predictor import PAD_ROWS, Key2Mesh

    model = Key2Mesh.from_pretrained(a.checkpoint, device="cpu")
    full, net = model.mesh_body, model.net
    k = model.checkpoint.model_config.num_keypoints
    g = torch.Generator().manual_seed(0)
    print(f"checkpoint {a.checkpoint}, {a.threads} threads; ms, A/B pairs interleaved")
    res: dict[str, float] = {}

    def row(name: str, t: dict[str, float]) -> None:
        print(f"{name:<24} onednn {t['onednn']:9.3f}   mkl {t['mkl']:9.3f}")
        res[f"{name}_onednn"], res[f"{name}_mkl"] = t["onednn"], t["mkl"]

    with torch.no_grad():
        x1 = model.normalize(300 * torch.rand(1, k, 2, generator=g))[0]
        x512 = model.normalize(300 * torch.rand(512, k, 2, generator=g))[0]
        row("network_b1", _pair(lambda b: lambda: net.predict(x1), 9, 40))
        x4 = x1.expand(PAD_ROWS, -1, -1)
        t = _pair(
            lambda b: (lambda: net.predict(x1)) if b == "onednn" else (lambda: net.predict(x4)),
            9,
            40,
        )
        row("network_b1_padded", t)
        row("network_b512", _pair(lambda b: lambda: net.predict(x512), 5, 3))

        # a new shape's rest vertices (one cell), oneDNN on 1 row vs MKL on GEMM_ROWS rows
        cells = full._cells
        shape = torch.rand(1, 6, generator=g)
        cell, tt = cells.locate(shape)
        terms, mix, factors, *_ = cells.basis(int(cell[0]))  # factors: skeleton + vertices
        z1 = cells.monomials(tt, terms)
        z1 = z1 if mix is None else z1 @ mix
        z4 = z1.expand(GEMM_ROWS, -1)
        t = _pair(
            lambda b: (
                (lambda: dense.matmul(z1, factors)) if b == "onednn" else (lambda: z4 @ factors)
            ),
            9,
            40,
        )
        row("cells_b1", t)

        def mesh(x):
            def call():
                full.clear_cache()  # a new shape every call
                return full(*net.predict(x))

            return call

        row("mesh_new_b1", _pair(lambda b: mesh(x1), 9, 20))
        kp1 = 300 * torch.rand(1, k, 2, generator=g)

        def predict_mesh():
            full.clear_cache()
            model.body.clear_cache()
            return model.predict(kp1)

        row("predict_mesh_b1", _pair(lambda b: predict_mesh, 9, 20))
        t = _pair(lambda b: mesh(x512), 5, 2)
        res["meshes_per_s_b512_onednn"] = 512 / (t["onednn"] / 1000)
        res["meshes_per_s_b512_mkl"] = 512 / (t["mkl"] / 1000)
        print(
            f"{'meshes_per_s_b512':<24} onednn {res['meshes_per_s_b512_onednn']:9.0f}   "
            f"mkl {res['meshes_per_s_b512_mkl']:9.0f}"
        )

        # rows: the same bits alone and in any batch (oneDNN, key2mesh's default)
        sizes = [*range(1, 65), 100, 512, 1000]
        big = model.normalize(300 * torch.rand(1100, k, 2, generator=g))[0]
        ref_r, ref_s = net.predict(big)
        mono_big = torch.rand(1100, len(factors), generator=g)
        ref_v = dense.matmul(mono_big, factors)
        equal = 0
        for n in sizes:
            r, s = net.predict(big[:n])
            v = dense.matmul(mono_big[:n], factors)
            same = torch.equal(r, ref_r[:n]) and torch.equal(s, ref_s[:n])
            equal += int(same and torch.equal(v, ref_v[:n]))
        res["rows_checked"], res["rows_equal"] = len(sizes), equal
        print(
            f"rows: {equal} of {len(sizes)} batch sizes gave every row the bits of a batch of 1,100"
        )
    print(result_line(res, 4, threads=a.threads))


if __name__ == "__main__":
    main()
