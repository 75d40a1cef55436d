"""Where the batch-1 mesh of a new shape spends its time, and what each way of computing the
rest-vertex product costs on this CPU (issue #25's goal: ≤ 3 ms for the whole mesh).

A new shape's rest vertices are ``rest0 + c B`` with ``c`` (1, 136) blendshape coefficients and
``B`` anny's (136, 41,154) float32 blendshapes (22 MB). Without autograd the body now takes them
from the per-cell multilinear bases of ``key2mesh.body.anny_cells`` (a (1, r ≤ 34) × (r, 41,154)
product in the shape's cell of anny's phenotype grid, through oneDNN: ``key2mesh.dense``); the
blendshape product is what it used before and still uses with gradients. Neither is padded
(oneDNN's rows do not depend on their batch); the ``*gemm4*`` rows are MKL's 4-row products,
what batch invariance needed before. Rows:

- the whole batch-1 mesh, new shape (network included, as ``inference.py``'s
  ``mesh_full_b1_ms``), with the cell bases and with the blendshape product, interleaved in one
  run (``_product`` rows), and the same for the body alone; the tracked shape;
- the cell path's parts: the rest vertices of one new shape (cell lookup, monomials, product)
  and MKL's 4-row GEMM of its factors alone, the number of terms K of that cell and the rank r
  of its stored form;
- batch 512 (new shapes, network included): meshes/s with the cell bases and with the product,
  interleaved;
- the blendshape product as a 1-row GEMV, the 4-row GEMM, MKL's packed 4-row GEMM
  (``torch.ops.mkl._mkl_linear``), the transposed product (B^T c^T), and a per-row sparse CSR
  product over the 64 corner meshes of the shape's grid cell, at batch 1, 16 and 512, against the
  dense GEMM at 512;
- the share of coefficients that are non-zero (a sparse product needs zeros: anny's
  projection makes all 136 non-zero);
- the body's Warp kernels (forward kinematics with the posed body's readout, nearest rotations)
  against their torch versions, interleaved: the new-shape and tracked body at batch 1 and each
  part (``*_kernels_ms`` vs ``*_torch_ms``), each part and the meshes/s at batch 512.

    .venv/bin/python benchmarks/rest_product.py [--threads 2] [--checkpoint anny-body25]

The last line is ``RESULT mesh_new_b1_ms=... mesh_new_b1_product_ms=... ...``.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")  # as the key2mesh command sets it
import torch  # noqa: E402
from _common import record_results, result_line, timeit, timeit_interleaved  # noqa: E402

from key2mesh.allocator import keep_large_allocations  # noqa: E402


def _cell_weights(rows: int, counts: list[int], g: torch.Generator) -> torch.Tensor:
    """(rows, corners) CSR weights of random shapes on anny's corner grid (``counts`` anchors
    per phenotype): each row's 2^6 non-zeros are the corners of a random cell, as a shape's
    multilinear weights."""
    import itertools

    strides = [int(torch.tensor(counts[i + 1 :]).prod()) for i in range(len(counts))]
    cols = []
    for _ in range(rows):
        cell = [int(torch.randint(0, n - 1, (1,), generator=g)) for n in counts]
        cols += sorted(
            sum((c + o) * s for c, o, s in zip(cell, off, strides))
            for off in itertools.product((0, 1), repeat=len(counts))
        )
    per_row = 2 ** len(counts)
    crow = torch.arange(0, per_row * rows + 1, per_row)
    values = torch.rand(per_row * rows, generator=g)
    size = (rows, int(torch.tensor(counts).prod()))
    return torch.sparse_csr_tensor(crow, torch.tensor(cols), values, size, check_invariants=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--checkpoint", default="anny-body25")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    keep_large_allocations()  # as the key2mesh command does
    record_results(f"rest_product_threads{a.threads}", "The new-shape mesh at batch 1, CPU")
    from key2mesh.inference.predictor import Key2Mesh

    model = Key2Mesh.from_pretrained(a.checkpoint, device="cpu")
    body = model.mesh_body
    g = torch.Generator().manual_seed(0)
    k = model.checkpoint.model_config.num_keypoints
    x = 300 * torch.rand(1, k, 2, generator=g)
    conf = torch.ones(x.shape[:2])
    res: dict[str, float] = {}
    cells = body._cells

    def use_cells(on: bool) -> None:
        body._cells = cells if on else None
        body.clear_cache()  # a new shape every call

    with torch.no_grad():
        rot, shape = model.net.predict(model.normalize(x, conf)[0])

        def new_mesh(on: bool):
            use_cells(on)
            return body(*model.net.predict(model.normalize(x, conf)[0]))

        def new_body(on: bool):
            use_cells(on)
            return body(rot, shape)

        ab = timeit_interleaved(
            {
                "mesh_new_b1_ms": lambda: new_mesh(True),
                "mesh_new_b1_product_ms": lambda: new_mesh(False),
                "body_new_b1_ms": lambda: new_body(True),
                "body_new_b1_product_ms": lambda: new_body(False),
            },
            rounds=15,
            repeats=10,
        )
        res.update({k: 1000 * v for k, v in ab.items()})
        use_cells(True)
        res["mesh_tracked_b1_ms"] = 1000 * timeit(
            lambda: body(model.net.predict(model.normalize(x, conf)[0])[0], shape), 30
        )
        res["network_b1_ms"] = 1000 * timeit(
            lambda: model.net.predict(model.normalize(x, conf)[0]), 30
        )
        res["body_tracked_b1_ms"] = 1000 * timeit(lambda: body(rot, shape), 30)
        res["cells_rest_b1_ms"] = 1000 * timeit(lambda: cells.rest_vertices(shape), 30)
        cell, t = cells.locate(shape)
        terms, mix, factors, *_ = cells.basis(int(cell[0]))  # factors: skeleton + vertices
        z = cells.monomials(t, terms)
        z4 = (z if mix is None else z @ mix).expand(4, -1).contiguous()
        res["cell_terms"] = float(len(terms))
        res["cell_rank"] = float(len(factors))
        res["cells_gemm4_ms"] = 1000 * timeit(lambda: z4 @ factors, 30)
        x512 = 300 * torch.rand(512, k, 2, generator=g)
        conf512 = torch.ones(x512.shape[:2])
        ab = timeit_interleaved(
            {
                "cells": lambda: (
                    use_cells(True),
                    body(*model.net.predict(model.normalize(x512, conf512)[0])),
                ),
                "product": lambda: (
                    use_cells(False),
                    body(*model.net.predict(model.normalize(x512, conf512)[0])),
                ),
            },
            rounds=5,
            repeats=1,
        )
        use_cells(True)
        res["meshes_per_s_b512"] = 512 / ab["cells"]
        res["meshes_per_s_b512_product"] = 512 / ab["product"]
        res.update(_kernel_rows(body, rot, shape, new_body, model, x512, conf512))

        c = body.blendshape_coefficients(shape.to(body.dtype)).float()
        blend = body.model.blendshapes.reshape(body._vert_blend_shape).float().contiguous()
        c4 = c.expand(4, -1).contiguous()
        res["coefficients_nonzero"] = float((c != 0).float().mean())
        res["gemv_ms"] = 1000 * timeit(lambda: c @ blend, 30)
        res["gemm4_ms"] = 1000 * timeit(lambda: c4 @ blend, 30)
        weight = blend.T.contiguous()  # (3V, C): linear's layout
        try:
            packed = torch.ops.mkl._mkl_reorder_linear_weight(weight, 4)
            res["gemm4_mkl_packed_ms"] = 1000 * timeit(
                lambda: torch.ops.mkl._mkl_linear(c4, packed, weight, None, 4), 30
            )
        except (AttributeError, RuntimeError):
            pass
        res["transposed_gemm4_ms"] = 1000 * timeit(lambda: weight @ c4.T.contiguous(), 30)
        source = body._phen_source.tolist()  # anchors of the features the 6 phenotypes feed
        counts = [int(body._phen_count[source.index(j)]) for j in range(body.shape_dim)]
        corners = torch.randn(int(torch.tensor(counts).prod()), blend.shape[1])  # their meshes
        for rows, reps in ((1, 30), (16, 5), (512, 3)):
            sparse = _cell_weights(rows, counts, g)
            res[f"corner_csr_b{rows}_ms"] = 1000 * timeit(lambda: sparse @ corners, reps)
        c512 = torch.rand(512, blend.shape[0], generator=g)
        res["gemm_b512_ms"] = 1000 * timeit(lambda: c512 @ blend, 3)
    print(
        f"checkpoint {a.checkpoint}, {a.threads} threads; times: median of 30 calls, the A/B "
        "pairs (cells vs _product) interleaved in rounds\n"
    )
    width = max(len(k) for k in res)
    for key, v in res.items():
        print(f"{key:<{width}}  {v:8.3f}")
    print(result_line(res, threads=a.threads))


def _kernel_rows(body, rot, shape, new_body, model, x512, conf512) -> dict[str, float]:
    """The Warp kernels of the body's forward kinematics (with the posed body's readout) and
    rest orientations (nearest rotations) against their torch versions, interleaved: the
    new-shape and tracked body at batch 1, each part at batch 1 and 512, and meshes/s at
    batch 512."""
    from key2mesh.body import anny_backend

    kernel_nearest = anny_backend._nearest_rotation

    def use_kernels(on: bool) -> None:
        anny_backend._nearest_rotation = (
            kernel_nearest if on else anny_backend._nearest_rotation_torch
        )
        if on:
            body.__dict__.pop("_fk_launch", None)
        else:  # no kinematics kernel: torch's chain and readout (forward, forward_keypoints)
            body._fk_launch = lambda rotmats, poses: None

    def timed(fn, on: bool):
        return lambda: (use_kernels(on), fn())

    r512, s512 = model.net.predict(model.normalize(x512, conf512)[0])
    poses1 = body._rest(shape, vertices=False)[0]
    poses512 = body._rest(s512, vertices=False)[0]
    nb, npair = body.num_bones, len(body._pair_kp)
    blended = {
        n: body._cells.rest(s, 4, vertices=False)[2][:, (nb + npair) * 3 :].reshape(n, nb, 3, 3)
        for n, s in ((1, shape), (512, s512))
    }
    out: dict[str, float] = {}
    try:
        b1 = timeit_interleaved(
            {
                f"{name}{suffix}": timed(fn, on)
                for name, fn in (
                    ("body_new_b1", lambda: new_body(True)),
                    ("body_tracked_b1", lambda: body(rot, shape)),
                    ("fk_b1", lambda: body._bone_transforms(rot, poses1)),
                    ("nearest_b1", lambda: anny_backend._nearest_rotation(blended[1])),
                )
                for suffix, on in (("_kernels_ms", True), ("_torch_ms", False))
            },
            rounds=15,
            repeats=10,
        )
        out.update({k: 1000 * v for k, v in b1.items()})
        b512 = timeit_interleaved(
            {
                f"{name}{suffix}": timed(fn, on)
                for name, fn in (
                    ("fk_b512", lambda: body._bone_transforms(r512, poses512)),
                    ("nearest_b512", lambda: anny_backend._nearest_rotation(blended[512])),
                    (
                        "mesh_b512",
                        lambda: body(*model.net.predict(model.normalize(x512, conf512)[0])),
                    ),
                )
                for suffix, on in (("_kernels", True), ("_torch", False))
            },
            rounds=5,
            repeats=1,
        )
    finally:
        use_kernels(True)
    for key, v in b512.items():
        if key.startswith("mesh_b512"):
            out["meshes_per_s_b512" + key.removeprefix("mesh_b512")] = 512 / v
        else:
            out[key + "_ms"] = 1000 * v
    return out


if __name__ == "__main__":
    main()
