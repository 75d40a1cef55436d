"""anny's rest vertices from per-cell multilinear bases: the new-shape mesh without the 22 MB
blendshape product.

anny's rest vertices are ``template + c(p) B`` with ``B`` its (136, 3V) blendshapes and ``c`` the
blendshape coefficients of the phenotypes ``p``. Each coefficient is a product of "hat"
weights of distinct features (projected linearly), and inside one cell of the anchor grid each
hat weight is linear in its feature. So inside a cell the rest vertices are *multilinear* in the
six local coordinates ``t`` ∈ [0, 1]^6 (``t_i`` = the phenotype's position between the cell's
two anchors):

    rest(t) = Σ_S a_S Π_{i∈S} t_i,   S ⊆ {gender, age, muscle, weight, height, proportions}

The 64 coefficients ``a_S`` (3V each) follow from the cell's 64 corner meshes by a Möbius
transform. Many are exactly 0: anny's blendshapes never combine height with proportions, nor
every pair of features in every cell; only the others are kept
(``benchmarks/results/cell_bases.md``: terms per cell, memory, build time, error).
A new shape then costs one (rows, K) × (K, 3V) product instead of (rows, 136) × (136, 3V).
The K coefficient rows of a cell are linearly dependent, so the vertex basis is stored in its
exact low-rank form (K, r) × (r, 3V) (r = 15-34 for K = 18-45; the dropped singular directions
bound the vertex error by :data:`RANK_TOL_M` over the whole cell): (rows, r) × (r, 3V).

Each cell's basis is built on first use in float64 from the body's own (float32) blendshapes,
checked against the blendshape product inside the cell, and stored in the body's dtype: the
rest vertices are anny's to float precision (the terms dropped as 0 are below
:data:`ZERO_TERM_M` at every vertex). anny has 16 cells (age 4 × muscle 2 × weight 2), built
only when a shape falls in them.

Batch invariance: a row's cell and coordinates depend on that row only, and each cell's rows
run one product by :func:`key2mesh.dense.matmul` (oneDNN: the same numbers per row in any
batch) or, where that does not apply, an MKL GEMM padded to a multiple of ``rows_multiple`` rows
(MKL's sgemm gives the same numbers per row from 4 rows on).
"""

from __future__ import annotations

import itertools
import math
from typing import NamedTuple

import torch

from key2mesh import dense

# A monomial whose coefficient is below this in every coordinate (metres; the skeleton's rest
# orientations are unitless) is dropped as zero: the Möbius transform of the float64 corner
# values leaves ~1e-16 where anny has no such term.
ZERO_TERM_M = 1e-9
# The basis must reproduce the blendshape product inside its cell to this (metres, float64).
CHECK_TOL_M = 1e-9
# A vertex basis keeps the singular directions needed for its worst vertex error to stay below
# this (metres; a bound over the whole cell, see CellBases._factor).
RANK_TOL_M = 1e-7


class VertexBasis(NamedTuple):
    """A cell's skeleton features and rest vertices (anny's frame, flat) in one product:
    ``monomials(t, terms) @ mix @ factors + constant``. terms (K,) long: the kept subsets but
    the empty one (indices into the 64); mix (K, r), or None for the identity (r = K); factors
    (r, F + 3V); constant (F + 3V,): the empty subset's term, the values at the cell's lowest
    corner. The first ``skeleton`` (F) columns are the skeleton features (the body's
    ``_skel_rest0 + c _skel_blend``: 885 on anny), the others the vertices; ``skeleton`` is 0
    when those features are not in the vertices' span (another anny release: they then come
    from :meth:`CellBases.skeleton_basis`)."""

    terms: torch.Tensor
    mix: torch.Tensor | None
    factors: torch.Tensor
    constant: torch.Tensor
    skeleton: int = 0


class NotMultilinear(RuntimeError):
    """A cell's rest vertices are not multilinear in its phenotypes (another anny release):
    the body falls back to the blendshape product."""


class CellBases:
    """Per-cell multilinear bases of an :class:`~key2mesh.body.anny_backend.AnnyBody`'s rest
    vertices (built lazily, one per cell of anny's phenotype anchor grid)."""

    def __init__(self, body) -> None:
        self.body = body
        src = body._phen_source.tolist()
        # the anchor-table row of each shape column (cupsize/firmness read anny's fixed 0.5 and
        # are folded into the corners)
        self._feature = [src.index(j) for j in range(body.shape_dim)]
        counts = [int(body._phen_count[f]) for f in self._feature]
        self._cells_per_dim = [n - 1 for n in counts]
        strides = [1] * len(counts)
        for i in range(len(counts) - 2, -1, -1):
            strides[i] = strides[i + 1] * self._cells_per_dim[i + 1]
        self._strides = strides
        dims = body.shape_dim
        # (64, 6) bit patterns: monomial S ↔ its features; also the corners' low/high anchors
        self._bits = torch.tensor(list(itertools.product((0, 1), repeat=dims)), dtype=torch.bool)
        # built lazily; two threads may both build a missing cell (the same numbers, kept once)
        self._bases: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self._skeleton: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self._located: dict[tuple, tuple[torch.Tensor, ...]] = {}  # see _tables

    @property
    def num_cells(self) -> int:
        return math.prod(self._cells_per_dim)

    def built(self) -> dict[int, int]:
        """{cell: number of kept terms} of the bases built so far."""
        return {c: len(basis.terms) + 1 for c, basis in self._bases.items()}  # + the constant

    def ranks(self) -> dict[int, int]:
        """{cell: rank of its vertex basis' non-constant terms (rows of ``factors``)} of the
        bases built so far."""
        return {c: len(basis.factors) for c, basis in self._bases.items()}

    def clear(self) -> None:
        """Forget the built bases (the body moved to another device or dtype)."""
        self._bases.clear()
        self._skeleton.clear()
        self._located.clear()

    def locate(self, shape: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Phenotypes (B, 6) → cell index (B,) long and local coordinates t (B, 6) in [0, 1]
        (``shape``'s dtype): the interval ``phenotype_weights`` interpolates in
        (:meth:`~key2mesh.body.anny_backend.AnnyBody.phenotype_intervals`, values clamped to
        the anchors: the bases serve bodies without ``extrapolate_phenotypes``)."""
        anchors, count, first, last, strides = self._tables(shape.dtype, shape.device)
        # phenotype_intervals' arithmetic on the six shape columns only (the same numbers)
        x = torch.minimum(torch.maximum(shape, first), last)
        idx = torch.searchsorted(anchors, x.T.contiguous(), side="left").T
        idx = torch.minimum(idx.clamp(min=1), count - 1)
        lower, upper = anchors.gather(1, (idx - 1).T).T, anchors.gather(1, idx.T).T
        return ((idx - 1) * strides).sum(1), (x - lower) / (upper - lower)

    def _tables(self, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, ...]:
        """The shape columns' anchors (6, A) (padded with inf), anchor counts (6,), first and
        last anchors (6,) and the cell index strides (6,), for :meth:`locate`."""
        key = (dtype, str(device))
        hit = self._located.get(key)
        if hit is None:
            body = self.body
            anchors = body._phen_anchors[self._feature].to(device, dtype).contiguous()
            count = body._phen_count[self._feature].to(device)
            last = anchors.gather(1, (count - 1)[:, None])[:, 0]
            strides = torch.tensor(self._strides, device=device)
            hit = self._located.setdefault(key, (anchors, count, anchors[:, 0], last, strides))
        return hit

    def monomials(self, t: torch.Tensor, terms: torch.Tensor) -> torch.Tensor:
        """Local coordinates (B, 6) → the kept monomials Π_{i∈S} t_i (B, K) of ``terms`` (K,)
        (indices into the 64 subsets): each a product of six factors (t_i or 1) in a fixed order,
        the same numbers for a row whatever its batch."""
        bits = self._bits.to(t.device)[terms]  # (K, 6)
        return torch.where(bits, t[:, None, :], 1.0).prod(-1)

    def basis(self, cell: int) -> VertexBasis:
        """``cell``'s skeleton-and-vertex basis (:class:`VertexBasis`), built on first use."""
        hit = self._bases.get(cell)
        if hit is None:
            terms, coeffs = self._build(cell, self._rest64, "rest vertices", keep64=True)
            skeleton = None
            if self.body._cached_orientation:  # the skeleton features of _skeleton_rest
                s_terms, s_coeffs = self._build(
                    cell, self._skeleton64, "skeleton features", keep64=True
                )
                skeleton = s_coeffs if torch.equal(s_terms, terms) else None
            hit = self._bases.setdefault(cell, self._factor(terms, coeffs, skeleton))
        return hit

    def _factor(
        self, terms: torch.Tensor, coeffs64: torch.Tensor, skeleton64: torch.Tensor | None = None
    ) -> VertexBasis:
        """Coefficients (K, 3V) float64 → the constant term (the cell's lowest corner) and the
        others' exact low-rank form ``mix @ factors``, keeping the singular directions whose
        sum bounds the vertex error by :data:`RANK_TOL_M` (a cell's terms are linearly
        dependent), in the body's dtype. ``skeleton64`` (K, F): the skeleton features'
        coefficients on the same terms; when the kept directions reproduce them within
        :data:`RANK_TOL_M` over the whole cell (anny's are linear in its vertices: ~1e-15),
        they become the first F columns (``H = mixᵀ S``, ``mix`` orthonormal), so one product
        gives both."""
        if int(terms[0]) != 0:  # the empty set's term (the corner mesh) is never 0
            raise NotMultilinear("a cell basis without its constant term")
        dtype = self.body.dtype
        constant, rest = coeffs64[0], coeffs64[1:]
        u, s, vh = torch.linalg.svd(rest, full_matrices=False)
        k = len(rest)
        # |m(t) (A - A_r)| per vertex ≤ |m| Σ_{i>r} s_i √3, |m| ≤ √K (monomials in [0, 1])
        tail = torch.cat([s.flip(0).cumsum(0).flip(0), s.new_zeros(1)])  # Σ_{j≥i} s_j
        rank = int(torch.nonzero(math.sqrt(3 * k) * tail <= RANK_TOL_M)[0, 0])
        if rank == k:
            mix, factors = None, rest
        else:
            mix, factors = u[:, :rank], s[:rank, None] * vh[:rank]
        width = 0
        if skeleton64 is not None:
            h = skeleton64[1:] if mix is None else mix.T @ skeleton64[1:]
            residual = skeleton64[1:] - (h if mix is None else mix @ h)
            # |m(t) (S - U H)| per feature ≤ |m| |column| ≤ √K max column norm
            if math.sqrt(k) * float(residual.norm(dim=0).max()) <= RANK_TOL_M:
                factors = torch.cat([h, factors], 1)
                constant = torch.cat([skeleton64[0], constant])
                width = skeleton64.shape[1]
        mix = None if mix is None else mix.to(dtype).contiguous()
        return VertexBasis(
            terms[1:], mix, factors.to(dtype).contiguous(), constant.to(dtype), width
        )

    def skeleton_basis(self, cell: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The kept terms (K,) and their coefficients (K, F) of ``cell``'s skeleton features
        (the body's ``_skel_rest0 + c _skel_blend``: bone heads, the keypoint pairs' rest points,
        the blended rest orientations), built on first use (64 corners × F = 885: ~ms)."""
        hit = self._skeleton.get(cell)
        if hit is None:
            built = self._build(cell, self._skeleton64, "skeleton features")
            hit = self._skeleton.setdefault(cell, built)
        return hit

    def _corners(self, cell: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The cell's low and high anchors (6,) and its 64 corner phenotypes (64, 6), float64."""
        body = self.body
        index = []
        for stride, n in zip(self._strides, self._cells_per_dim):
            index.append(cell // stride % n)
        anchors = body._phen_anchors.to(torch.float64)
        lo = torch.stack([anchors[f, i] for f, i in zip(self._feature, index)])
        hi = torch.stack([anchors[f, i + 1] for f, i in zip(self._feature, index)])
        bits = self._bits.to(anchors.device, torch.float64)
        return lo, hi, lo + bits * (hi - lo)

    def _rest64(self, shape: torch.Tensor) -> torch.Tensor:
        """Rest vertices (B, 3V) of float64 phenotypes by the blendshape product, float64."""
        body = self.body
        m = body.model
        coeffs = body.blendshape_coefficients(shape)
        blend = m.blendshapes.reshape(body._vert_blend_shape).to(torch.float64)
        return torch.addmm(m.template_vertices.reshape(-1).to(torch.float64), coeffs, blend)

    def _skeleton64(self, shape: torch.Tensor) -> torch.Tensor:
        """Skeleton features (B, F) of float64 phenotypes by the blendshape product, float64."""
        body = self.body
        coeffs = body.blendshape_coefficients(shape)
        f64 = torch.float64
        return torch.addmm(body._skel_rest0.to(f64), coeffs, body._skel_blend.to(f64))

    def _build(
        self, cell: int, values64, what: str, keep64: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The multilinear basis of ``values64`` (float64 phenotypes (B, 6) → (B, D)) in
        ``cell``: kept terms (K,) long and coefficients (K, D) in the body's dtype (float64
        with ``keep64``)."""
        body = self.body
        lo, hi, corners = self._corners(cell)
        with torch.no_grad():
            a = values64(corners)  # (64, D): corner values, bit pattern order
            dims = body.shape_dim
            a = a.reshape(*(2,) * dims, -1)
            for d in range(dims):  # Möbius transform: corner values → monomial coefficients
                low, high = a.narrow(d, 0, 1), a.narrow(d, 1, 1)
                a = torch.cat([low, high - low], d)
            a = a.reshape(2**dims, -1)
            # a term is kept if it moves one coordinate by more than ZERO_TERM_M
            terms = torch.nonzero(a.abs().amax(1) > ZERO_TERM_M).squeeze(1)
            coeffs = a[terms]
            # the multilinear premise, checked at an interior point of the cell
            t = torch.linspace(0.2, 0.7, dims, dtype=torch.float64, device=a.device)[None]
            ref = values64(lo + t * (hi - lo))
            err = (self.monomials(t, terms) @ coeffs - ref).abs().max()
            if not bool(err <= CHECK_TOL_M):
                raise NotMultilinear(
                    f"anny's {what} are not multilinear in cell {cell} "
                    f"(error {float(err):.3g}): the cell bases do not apply to this model"
                )
        return terms.to(torch.long), coeffs if keep64 else coeffs.to(body.dtype).contiguous()

    def rest_vertices(
        self,
        shape: torch.Tensor,
        rows_multiple: int = 1,
        out: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Phenotypes (B, 6) → rest vertices (R, 3V) (anny's frame, flat) and each shape's row
        (B,) long in them (:meth:`rest` without the skeleton)."""
        verts, rows, _ = self.rest(shape, rows_multiple, out, skeleton=False)
        return verts, rows

    def rest(
        self,
        shape: torch.Tensor,
        rows_multiple: int = 1,
        out: torch.Tensor | None = None,
        vertices: bool = True,
        skeleton: bool = True,
        groups: bool = False,
    ) -> tuple[torch.Tensor | list[torch.Tensor] | None, torch.Tensor | None, torch.Tensor | None]:
        """Phenotypes (B, 6) → with ``vertices``, rest vertices (R, 3V) (anny's frame, flat) and
        each shape's row (B,) long in them; with ``skeleton``, the skeleton features (B, F) (the
        body's ``_skel_rest0 + c _skel_blend``); None for those not asked for.

        The shapes are grouped by cell; each group's products (:func:`key2mesh.dense.matmul`) run
        on a multiple of ``rows_multiple`` rows (the last row repeated), the vertices written
        into ``out`` (≥ R rows) when given. Rows None: shape i is row i (one cell; padding
        rows, if any, follow the B). With ``groups`` (and no ``out``) the vertices of several
        cells are a list of arrays, one per cell, and the rows index their concatenation (a
        large batch: no copy into one array)."""
        b = shape.shape[0]
        cell, t = self.locate(shape)
        cells = [int(cell[0])] if b == 1 else torch.unique(cell).tolist()
        sizes = []
        members = []
        for c in cells:
            idx = torch.nonzero(cell == c).squeeze(1) if len(cells) > 1 else None
            members.append(idx)
            n = b if idx is None else len(idx)
            sizes.append(n + (-n % rows_multiple))
        dtype = self.body.dtype
        verts = feats = row_of = None
        own = vertices and out is None and len(cells) == 1
        split = vertices and out is None and groups and len(cells) > 1
        parts: list[torch.Tensor] = []
        if vertices and not own and not split:
            first = self.basis(cells[0])
            total, width = sum(sizes), first.factors.shape[1] - first.skeleton
            verts = shape.new_empty(total, width, dtype=dtype) if out is None else out[:total]
        if vertices and len(cells) > 1:
            row_of = torch.empty(b, dtype=torch.long, device=shape.device)
        if skeleton and len(cells) > 1:
            in_joint = self.basis(cells[0]).skeleton if vertices else 0  # its width, or 0
            width = in_joint or self.skeleton_basis(cells[0])[1].shape[1]
            feats = shape.new_empty(b, width, dtype=dtype)
        start = 0
        for c, idx, size in zip(cells, members, sizes):
            tc = t if idx is None else t[idx]
            n = tc.shape[0]
            if size > n:
                tc = torch.cat([tc, tc[-1:].expand(size - n, -1)])
            part = None  # this cell's skeleton features (n, F)
            if vertices:
                terms, mix, factors, constant, sk = self.basis(c)
                z = self.monomials(tc, terms).to(dtype)
                z = z if mix is None else dense.matmul(z, mix)
                if own or split or sk:  # the product's own array: skeleton, then vertices
                    joint = dense.matmul(z, factors, constant)
                    flat = joint[:, sk:]
                    if own:
                        verts = flat
                    elif split:
                        parts.append(flat)
                    else:
                        verts[start : start + size] = flat
                    part = joint[:n, :sk] if sk and skeleton else None
                else:  # vertices only (no skeleton columns): written where they go
                    dense.matmul(z, factors, constant, out=verts[start : start + size])
                if row_of is not None:
                    row_of[idx] = torch.arange(start, start + n, device=shape.device)
            if skeleton and part is None:
                skel_terms, coeffs = self.skeleton_basis(c)
                mono = self.monomials(tc, skel_terms).to(dtype)
                part = dense.matmul(mono, coeffs)[:n]
            if skeleton:
                if idx is None:
                    feats = part
                else:
                    feats[idx] = part
            start += size
        return (parts if split else verts), row_of, feats
