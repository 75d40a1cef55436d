"""How far a cheaper rest-vertex basis for anny's full mesh (13,718 vertices, 136 blendshapes,
22 MB in float32) lands from anny's own: the worst vertex error over every body anny can make.

anny's blendshape coefficients are products of per-phenotype "hat" weights (one factor per
feature), so inside each cell of the phenotype anchor grid the rest vertices are multilinear in
the phenotypes: every rest mesh is a convex combination of the meshes at the grid's corners
(2 x 5 x 3 x 3 x 2 x 2 = 360 here). The error of any linear approximation is multilinear too,
so its largest vertex norm over all phenotypes is reached at a corner: the maxima below are
exact bounds, not samples (random phenotypes are checked to stay under them). Skinning is a
convex blend of rigid transforms, so a rest-vertex error bounds the posed mesh's error.

Rows: a rank-r PCA of the corner meshes (rest ≈ mean + ((c B - mean) V_rᵀ) V_r: reads
r x 41,154 numbers instead of 136 x 41,154), and the blendshape matrix stored in float16 or
bfloat16 (float32 arithmetic). The goal of issue #25 is a new-shape mesh in ≤ 3 ms with an
error ≤ 0.5 mm.

    .venv/bin/python benchmarks/shape_basis.py
"""

from __future__ import annotations

import torch
from _common import record_results


def main() -> None:
    record_results(
        "shape_basis", "Cheaper rest-vertex bases for anny's full mesh: exact error bounds"
    )
    from key2mesh.body.anny_backend import AnnyBody

    body = AnnyBody(topology="anny").double()
    m = body.model
    f64 = torch.float64
    blend = m.blendshapes.to(f64).reshape(m.blendshapes.shape[0], -1)  # (C, 3V)
    counts = body._phen_count.tolist()
    grid = [body._phen_anchors[i, : counts[i]].to(f64) for i in range(len(counts))]
    source = body._phen_source.tolist()
    # the anchors of the features read from the 6 shape columns (the others are fixed at 0.5)
    columns = [grid[source.index(j)] for j in range(body.shape_dim)]
    corners = torch.cartesian_prod(*columns)
    with torch.no_grad():
        coeffs = body.blendshape_coefficients(corners)  # (N, C)
        offsets = coeffs @ blend  # (N, 3V): rest vertices minus the template
        g = torch.Generator().manual_seed(0)
        probe = body.blendshape_coefficients(
            torch.rand(2000, body.shape_dim, generator=g, dtype=f64)
        )
        probe_offsets = probe @ blend
    n, c = coeffs.shape

    def worst(err: torch.Tensor) -> float:
        return 1000 * err.reshape(len(err), -1, 3).norm(dim=-1).max().item()  # mm

    print(f"{n} grid corners, {c} blendshapes, {blend.shape[1] // 3} vertices")
    print(f"{'basis':<22} {'MB read':>8} {'bound mm':>9} {'random max mm':>14}")
    print(f"{'float32 (today)':<22} {4 * blend.numel() / 1e6:>8.1f} {'0':>9} {'0':>14}")
    mean = offsets.mean(0)
    _, _, vt = torch.linalg.svd(offsets - mean, full_matrices=False)
    res: dict[str, float] = {}
    for r in (16, 32, 64, 96, 128):
        v = vt[:r]

        def approx(x, v=v):
            return mean + ((x - mean) @ v.T) @ v

        bound, rand = worst(offsets - approx(offsets)), worst(probe_offsets - approx(probe_offsets))
        mb = 4 * (r * blend.shape[1] + c * r) / 1e6
        print(f"{f'rank {r} PCA':<22} {mb:>8.1f} {bound:>9.3f} {rand:>14.3f}")
        res[f"pca{r}_bound_mm"] = bound
    for name, dtype in (("float16", torch.float16), ("bfloat16", torch.bfloat16)):
        err = blend - blend.to(dtype).to(f64)
        bound, rand = worst(coeffs @ err), worst(probe @ err)
        print(
            f"{name + ' storage':<22} {2 * blend.numel() / 1e6:>8.1f} {bound:>9.3f} {rand:>14.3f}"
        )
        res[f"{name}_bound_mm"] = bound
    print("RESULT " + " ".join(f"{k}={v:.3g}" for k, v in res.items()))


if __name__ == "__main__":
    main()
