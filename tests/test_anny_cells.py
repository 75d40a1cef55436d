"""anny's rest vertices from per-cell multilinear bases (``key2mesh.body.anny_cells``): the same
vertices as the blendshape product, rows independent of their batch, a fallback when the
premise fails."""

from __future__ import annotations

import logging

import pytest
import roma
import torch

from key2mesh.body import anny_cells
from key2mesh.body.anny_cells import CellBases


def _shapes(n: int, seed: int) -> torch.Tensor:
    """Random phenotypes over every cell (age's anchors span [-1/3, 1]), plus anchors, the
    range's ends and values beyond."""
    g = torch.Generator().manual_seed(seed)
    random = torch.rand(n, 6, generator=g)
    random[:, 1] = random[:, 1] * 4 / 3 - 1 / 3
    edge = torch.tensor(
        [
            [0.0] * 6,
            [1.0] * 6,
            [0.5, 2 / 3, 0.5, 0.5, 0.5, 0.5],  # on the inner anchors of age, muscle, weight
            [0.3, 1 / 3, 0.0, 1.0, 0.9, 0.1],
            [-0.2, 1.3, 0.25, 0.75, 1.5, 1 / 3],  # age, height clamped to the anchors' range
        ]
    )
    return torch.cat([random, edge])


def _product64(body, shape: torch.Tensor) -> torch.Tensor:
    """Rest vertices (B, 3V) by anny's blendshape product in float64 (the reference)."""
    m = body.model
    c = body.blendshape_coefficients(shape.double())
    blend = m.blendshapes.reshape(body._vert_blend_shape).double()
    return m.template_vertices.reshape(-1).double() + c @ blend


def test_monomials_are_products_of_the_chosen_coordinates(anny_body):
    """Monomial S ↔ its bit pattern (gender first): Π_{i∈S} t_i, hand-computed."""
    cells = CellBases(anny_body)
    t = torch.tensor([[2.0, 3.0, 5.0, 7.0, 11.0, 13.0], [1.0, 1.0, 1.0, 1.0, 1.0, 0.5]])
    # terms as indices into the 64 bit patterns: 0 = ∅, 0b100101 = {gender, weight, prop.}
    terms = torch.tensor([0, 0b100101, 0b000001, 0b111111])
    got = cells.monomials(t, terms)
    expected = torch.tensor(
        [[1.0, 2 * 7 * 13, 13.0, 2 * 3 * 5 * 7 * 11 * 13], [1.0, 0.5, 0.5, 0.5]]
    )
    assert torch.equal(got, expected)


def test_locate_finds_the_cell_and_its_local_coordinates(anny_body):
    """Age anchors -1/3, 0, 1/3, 2/3, 1; muscle and weight 0, 0.5, 1: 16 cells. A phenotype
    lands in the interval ``phenotype_weights`` interpolates in, at its relative position."""
    cells = CellBases(anny_body)
    assert cells.num_cells == 16
    shape = torch.tensor([[0.25, 0.8, 0.35, 0.75, 0.4, 1.0], [0.0, -1.0, 2.0, 0.5, 0.0, 0.0]])
    cell, t = cells.locate(shape)
    # shape 0: age in [2/3, 1] (cell 3 of 4), muscle [0, .5] (0), weight [.5, 1] (1)
    assert cell.tolist() == [3 * 4 + 0 * 2 + 1, 0 * 4 + 1 * 2 + 0]
    torch.testing.assert_close(
        t[0], torch.tensor([0.25, 0.4, 0.7, 0.5, 0.4, 1.0]), atol=1e-6, rtol=0
    )
    # shape 1: clamped (age to -1/3, muscle to 1); 0.5 is the first weight interval's end
    torch.testing.assert_close(t[1], torch.tensor([0.0, 0.0, 1.0, 1.0, 0.0, 0.0]))


@pytest.mark.parametrize("topology", ["notoes_collapse10pc", "anny"])
def test_cell_bases_give_the_blendshape_product(topology, anny_body):
    """Over every cell (random shapes, anchors, range ends, clamped values) the cell bases give
    anny's float64 blendshape product to float32 precision, with fewer than 64 terms per cell
    (those anny never combines are dropped)."""
    from key2mesh.body.anny_backend import AnnyBody

    body = anny_body if topology == anny_body.topology else AnnyBody(topology=topology)
    cells = CellBases(body)
    shape = _shapes(200, seed=1)
    with torch.no_grad():
        flat, rows = cells.rest_vertices(shape)
        ref = _product64(body, shape)
    assert flat.dtype == torch.float32 and rows.shape == (len(shape),)
    err = (flat[rows].double() - ref).reshape(len(shape), -1, 3).norm(dim=-1).max()
    assert err < 2e-6  # metres
    built = cells.built()
    assert len(built) == 16  # 200 random shapes visit every cell
    assert all(8 <= k < 64 for k in built.values())


def test_cell_skeleton_gives_the_blendshape_product(anny_body):
    """The skeleton features (bone heads, keypoint pairs' rest points, blended rest orientations)
    from the cell bases are the float64 blendshape product's to float32 precision in every cell,
    in the shapes' order; keypoints without gradients (cells) and with them (product) agree."""
    body = anny_body
    cells = CellBases(body)
    shape = _shapes(200, seed=11)
    with torch.no_grad():
        verts, rows, feats = cells.rest(shape, rows_multiple=4, vertices=False)
        c = body.blendshape_coefficients(shape.double())
        ref = body._skel_rest0.double() + c @ body._skel_blend.double()
    assert verts is None and rows is None and feats.shape == ref.shape
    assert (feats.double() - ref).abs().max() < 2e-6
    assert len(cells._skeleton) == 16 and not cells.built()  # no vertex basis was needed
    rot = roma.rotvec_to_rotmat(0.4 * torch.randn(len(shape), 24, 3))
    body.clear_cache()
    with torch.no_grad():
        fast = body.forward_keypoints(rot, shape)
    tracked = shape.clone().requires_grad_(True)
    torch.testing.assert_close(
        body.forward_keypoints(rot, tracked).detach(), fast, atol=4e-6, rtol=0
    )


def test_cell_rows_do_not_depend_on_their_batch(anny_body):
    """A shape's rest vertices are the same bits alone, in a small mixed-cell batch (the cached
    path) and in a large one (the reused buffer), and the mesh rows follow."""
    shape = _shapes(40, seed=2)
    g = torch.Generator().manual_seed(2)
    rot = roma.rotvec_to_rotmat(0.4 * torch.randn(len(shape), 24, 3, generator=g))
    anny_body.clear_cache()
    with torch.no_grad():
        large = anny_body(rot, shape).vertices.clone()
        small = anny_body(rot[:12], shape[:12]).vertices
        for i in (0, 5, 11, 40, 44):
            alone = anny_body(rot[i : i + 1], shape[i : i + 1]).vertices[0]
            assert torch.equal(alone, large[i]), i
        cells = anny_body._cells
        flat, rows = cells.rest_vertices(shape, rows_multiple=4)
        for i in (3, 17, 42):
            one, row = cells.rest_vertices(shape[i : i + 1], rows_multiple=4)
            assert row is None and one.shape[0] == 4  # one cell: row 0, 3 padding rows
            assert torch.equal(one[0], flat[rows[i]])
    assert torch.equal(small, large[:12])
    assert len(torch.unique(anny_body._cells.locate(shape)[0])) > 4  # several cells mixed
    from key2mesh import dense

    if dense.rows_independent("cpu", torch.float32):  # a large batch: one array per cell
        with torch.no_grad():
            anny_body.clear_cache()
            _, _, verts, rows = anny_body._rest(shape, vertices=True)
        assert isinstance(verts, list) and len(verts) > 4 and rows.shape == (len(shape),)
        one, _ = cells.rest_vertices(shape[42:43])
        assert torch.equal(torch.cat(verts)[rows[42]].flatten(), one[0])


def test_repeated_shapes_share_one_rest_mesh(anny_body):
    """A batch with one shape repeated (a tracked person) or a few repeated skins each sample
    from the shared rest rows: the same vertices as distinct copies of the shape."""
    g = torch.Generator().manual_seed(4)
    rot = roma.rotvec_to_rotmat(0.4 * torch.randn(20, 24, 3, generator=g))
    one = anny_body.default_shape(1)
    mixed = _shapes(3, seed=4)[torch.tensor([0, 1, 2, 1, 0] * 4)]
    with torch.no_grad():
        _, _, verts, rows = anny_body._rest(one.expand(20, -1), vertices=True)
        assert verts.shape[0] < 20 and rows.shape == (20,)  # not copied per sample
        shared = anny_body(rot, one.expand(20, -1)).vertices
        mixed_out = anny_body(rot, mixed).vertices
        for i in (0, 7, 19):
            assert torch.equal(shared[i], anny_body(rot[i : i + 1], one).vertices[0])
            assert torch.equal(
                mixed_out[i], anny_body(rot[i : i + 1], mixed[i : i + 1]).vertices[0]
            )


def test_autograd_takes_the_blendshape_product_and_agrees(anny_body):
    """With gradients (training) the rest vertices come from the blendshape product; both paths
    give the same mesh to float precision."""
    shape = _shapes(6, seed=5)
    rot = torch.eye(3).expand(len(shape), 24, 3, 3)
    with torch.no_grad():
        cell = anny_body(rot, shape).vertices
    tracked = shape.clone().requires_grad_(True)
    grad = anny_body(rot, tracked).vertices
    grad.sum().backward()
    assert tracked.grad is not None
    torch.testing.assert_close(grad.detach(), cell, atol=2e-6, rtol=0)


def test_a_model_that_is_not_multilinear_falls_back(monkeypatch, caplog):
    """When a cell fails the multilinear check (another anny release), the body logs it once and
    uses the blendshape product from then on: the same mesh to float precision."""
    from key2mesh.body.anny_backend import AnnyBody

    body = AnnyBody()
    shape = _shapes(3, seed=6)
    rot = torch.eye(3).expand(len(shape), 24, 3, 3)
    with torch.no_grad():
        expected = body(rot, shape).vertices
        body.clear_cache()
        body._cells.clear()
        monkeypatch.setattr(anny_cells, "CHECK_TOL_M", -1.0)  # every check fails
        with caplog.at_level(logging.WARNING, logger="key2mesh.body.anny_backend"):
            got = body(rot, shape).vertices
            again = body(rot, shape[:1]).vertices
    assert body._cells is None
    assert sum("not multilinear" in r.message for r in caplog.records) == 1
    torch.testing.assert_close(got, expected, atol=2e-6, rtol=0)
    torch.testing.assert_close(again[0], expected[0], atol=2e-6, rtol=0)


def test_moving_the_body_rebuilds_the_bases(anny_body):
    """``.double()`` (or ``.to(device)``) drops the built bases: they are rebuilt in the new
    dtype, and the float64 body's mesh is the float32 one's to float32 precision. A body that
    has skinned in threads (the process' shared pool) can be copied."""
    import copy

    from key2mesh.body import warp_call

    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        with torch.no_grad():
            anny_body(torch.eye(3).expand(40, 24, 3, 3), _shapes(35, seed=9))
    finally:
        torch.set_num_threads(threads)
    assert warp_call._POOL is not None
    body = copy.deepcopy(anny_body)
    shape = _shapes(2, seed=8)
    rot = torch.eye(3).expand(len(shape), 24, 3, 3)
    with torch.no_grad():
        f32 = body(rot, shape).vertices
        assert body._cells.built()
        body.double()
        assert not body._cells.built()
        f64 = body(rot.double(), shape.double()).vertices
    assert f64.dtype == torch.float64
    assert next(iter(body._cells._bases.values()))[1].dtype == torch.float64
    torch.testing.assert_close(f64.float(), f32, atol=2e-6, rtol=0)


def test_vertex_bases_keep_the_exact_rank(anny_body):
    """A cell's non-constant coefficient rows are linearly dependent: the basis keeps only the
    singular directions its error bound needs (a synthetic rank-3 cell: rank 3, the values at
    every corner to 1e-7 m); anny's own cells shrink too (ranks below their term counts)."""
    cells = CellBases(anny_body)
    g = torch.Generator().manual_seed(5)
    terms = torch.tensor([0, 1, 2, 3, 5, 8, 13, 21])  # the empty set first
    low = torch.randn(7, 3, generator=g, dtype=torch.float64) @ torch.randn(
        3, 600, generator=g, dtype=torch.float64
    )
    coeffs = torch.cat([torch.rand(1, 600, generator=g, dtype=torch.float64), 0.1 * low])
    basis = cells._factor(terms, coeffs)
    assert basis.mix.shape == (7, 3) and basis.factors.shape == (3, 600)
    assert torch.equal(basis.terms, terms[1:])
    corners = cells._bits.double()
    ref = cells.monomials(corners, terms) @ coeffs
    got = (
        cells.monomials(corners, basis.terms) @ basis.mix.double() @ basis.factors.double()
        + basis.constant.double()
    )
    assert (got - ref).abs().max() < 1e-6  # float32 storage; the rank cut itself is exact
    with pytest.raises(anny_cells.NotMultilinear, match="constant"):
        cells._factor(terms[1:], coeffs[1:])
    for c in (8, 12):  # adult cells: 44 and 45 terms
        cells.basis(c)
    built, ranks = cells.built(), cells.ranks()
    assert all(ranks[c] < built[c] - 1 for c in (8, 12))


def test_a_large_batch_of_several_cells_skins_in_threads_row_for_row(anny_body):
    """A large batch of several cells (per-cell rest arrays, one skinning launch per cell, split
    over two threads) gives every row the bits of that row alone, with the same thread count."""
    shape = _shapes(60, seed=13)
    g = torch.Generator().manual_seed(13)
    rot = roma.rotvec_to_rotmat(0.4 * torch.randn(len(shape), 24, 3, generator=g))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        with torch.no_grad():
            anny_body.clear_cache()
            whole = anny_body(rot, shape).vertices
            alone = [anny_body(rot[i : i + 1], shape[i : i + 1]).vertices[0] for i in (0, 31, 64)]
    finally:
        torch.set_num_threads(threads)
    for got, i in zip(alone, (0, 31, 64)):
        assert torch.equal(got, whole[i]), i


def test_keypoints_of_many_shapes_reserve_no_vertex_buffer(anny_body, monkeypatch):
    """forward_keypoints on more than 16 distinct shapes needs no rest vertices: with the MKL
    fallback (``KEY2MESH_DENSE=torch``, where large batches write their vertices into a kept
    buffer) it reserved a vertex-sized buffer anyway; the keypoints are unchanged by it."""
    from key2mesh import dense

    monkeypatch.setenv(dense.ENV, "torch")
    shape = _shapes(20, seed=14)
    rot = torch.eye(3).expand(len(shape), 24, 3, 3)
    anny_body.__dict__["_scratch"] = {}
    anny_body.clear_cache()
    with torch.no_grad():
        kp = anny_body.forward_keypoints(rot, shape)
    assert anny_body._scratch == {}
    assert kp.shape == (len(shape), 23, 3) and torch.isfinite(kp).all()
