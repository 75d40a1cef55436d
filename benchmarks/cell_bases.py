"""The per-cell multilinear bases of anny's rest vertices (``key2mesh.body.anny_cells``) for
both meshes: terms kept per cell (of 64), the rank of the stored low-rank form per cell
(``RANK_TOL_M``), memory, build time, and the largest vertex error against anny's float64
blendshape product over random shapes in every cell.

    .venv/bin/python benchmarks/cell_bases.py [--shapes 2000]

The last line is ``RESULT full_terms_min=... full_terms_max=... full_mb_all=... ...``.
"""

from __future__ import annotations

import argparse
import time

import torch
from _common import record_results


def measure(body, shapes: torch.Tensor) -> dict[str, float]:
    from key2mesh.body.anny_cells import CellBases

    cells = CellBases(body)
    t0 = time.perf_counter()
    for c in range(cells.num_cells):
        cells.basis(c)
    build_s = time.perf_counter() - t0
    terms = list(cells.built().values())
    ranks = list(cells.ranks().values())
    nbytes = sum(
        sum(t.numel() * t.element_size() for t in (b.mix, b.factors, b.constant) if t is not None)
        for b in cells._bases.values()
    )
    with torch.no_grad():
        flat, rows = cells.rest_vertices(shapes)
        m = body.model
        coeffs = body.blendshape_coefficients(shapes.double())
        blend = m.blendshapes.reshape(body._vert_blend_shape).double()
        ref = m.template_vertices.reshape(-1).double() + coeffs @ blend
    got = (flat if rows is None else flat[rows]).double()
    err = (got - ref).reshape(len(shapes), -1, 3).norm(dim=-1).max()
    return {
        "cells": cells.num_cells,
        "terms_min": min(terms),
        "terms_max": max(terms),
        "rank_min": min(ranks),
        "rank_max": max(ranks),
        "terms_all": sum(terms),
        "rank_all": sum(ranks),
        "mb_all": nbytes / 1e6,
        "build_ms_per_cell": 1000 * build_s / cells.num_cells,
        "max_err_m": float(err),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shapes", type=int, default=2000)
    a = p.parse_args()
    record_results("cell_bases", "anny's per-cell rest-vertex bases: size, build time, error")
    from key2mesh.body.anny_backend import FULL_TOPOLOGY, TRAIN_TOPOLOGY, AnnyBody

    g = torch.Generator().manual_seed(0)
    shapes = torch.rand(a.shapes, 6, generator=g)
    shapes[:, 1] = shapes[:, 1] * 4 / 3 - 1 / 3  # age's anchors span [-1/3, 1]: every cell
    res: dict[str, float] = {}
    print(f"{a.shapes} random shapes over every cell; error vs anny's float64 product\n")
    print(
        f"{'mesh':<6} {'cells':>5} {'terms/cell':>11} {'rank/cell':>10} {'terms':>6} {'rank':>5} "
        f"{'MB (all)':>9} {'build ms/cell':>14} {'max err m':>10}"
    )
    for name, topology in (("full", FULL_TOPOLOGY), ("train", TRAIN_TOPOLOGY)):
        r = measure(AnnyBody(topology=topology), shapes)
        print(
            f"{name:<6} {r['cells']:>5} {r['terms_min']:>5}-{r['terms_max']:<5} "
            f"{r['rank_min']:>4}-{r['rank_max']:<5} {r['terms_all']:>6} {r['rank_all']:>5} "
            f"{r['mb_all']:>9.1f} {r['build_ms_per_cell']:>14.1f} {r['max_err_m']:>10.2e}"
        )
        res.update({f"{name}_{k}": v for k, v in r.items()})
    print("RESULT " + " ".join(f"{k}={v:.3g}" for k, v in res.items()))


if __name__ == "__main__":
    main()
