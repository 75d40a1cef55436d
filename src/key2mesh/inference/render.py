"""Headless mesh rendering: a small vectorised z-buffer rasteriser in torch (CPU or GPU).

No OpenGL, no display, no system packages. Triangles are projected with a pinhole camera,
binned by the size of their pixel bounding box, and every (triangle, pixel) candidate of a bin is
tested at once with edge functions; a ``scatter_reduce(amin)`` z-buffer keeps the nearest
surface per pixel (perspective-correct depth). Shading is smooth Lambert with interpolated
vertex normals, lit from the camera (two-sided), alpha-blended over the image.

Pixel convention (OpenCV's): the centre of pixel ``(row i, column j)`` is at ``(u, v) = (j, i)``;
``u = fx · x / z + cx``, ``v = fy · y / z + cy`` in camera coordinates (x right, y down, z forward,
metres). Keypoints drawn by :func:`draw_keypoints` use the same convention.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageDraw

from key2mesh.errors import Key2MeshError
from key2mesh.geometry.rotations import rotation_y
from key2mesh.keypoints.sets import keypoint_names

DEFAULT_COLOR = (0.65, 0.74, 0.86)  # light blue, RGB in [0, 1]
# one mesh colour per tracked person (track id modulo the list), RGB in [0, 1]
TRACK_COLORS = (
    (0.65, 0.74, 0.86), (0.95, 0.62, 0.45), (0.60, 0.85, 0.55), (0.85, 0.60, 0.85),
    (0.95, 0.85, 0.45), (0.50, 0.85, 0.85), (0.80, 0.80, 0.80), (0.95, 0.55, 0.60),
)  # fmt: skip


def track_color(track_id: int) -> tuple[float, float, float]:
    """The mesh colour of a track (RGB in [0, 1])."""
    return TRACK_COLORS[int(track_id) % len(TRACK_COLORS)]


NEAR = 1e-2  # metres; triangles with a vertex closer than this are dropped
_BUDGET = 1 << 22  # (triangle, pixel) candidates tested per chunk


@dataclass
class Raster:
    """Per-pixel result of :func:`rasterize`, all (H, W): ``face`` index (-1 = background),
    ``depth`` in metres (inf = background), perspective-correct barycentrics (H, W, 3)."""

    face: torch.Tensor
    depth: torch.Tensor
    bary: torch.Tensor

    @property
    def mask(self) -> torch.Tensor:
        return self.face >= 0


def _as_tensor(x, dtype=torch.float32) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x).to(dtype)


def _focal_pair(focal) -> tuple[float, float]:
    f = np.broadcast_to(np.asarray(focal, dtype=np.float64).reshape(-1), (2,))
    return float(f[0]), float(f[1])


def _edge(a: torch.Tensor, b: torch.Tensor, px: torch.Tensor, py: torch.Tensor) -> torch.Tensor:
    """Edge function of the directed edge a→b at points (px, py); a, b (N, 2), px/py (N, M)."""
    return (b[:, 0:1] - a[:, 0:1]) * (py - a[:, 1:2]) - (b[:, 1:2] - a[:, 1:2]) * (px - a[:, 0:1])


def rasterize(
    vertices_cam,
    faces,
    size: tuple[int, int],
    focal,
    principal,
) -> Raster:
    """Z-buffer rasterisation of a triangle mesh.

    Args:
        vertices_cam: (V, 3) camera coordinates in metres (x right, y down, z forward).
        faces: (F, 3) vertex indices.
        size: (H, W) image size in pixels.
        focal: f or (fx, fy) in pixels. principal: (cx, cy) in pixels.
    """
    box, (x0, y0) = rasterize_box(vertices_cam, faces, size, focal, principal)
    h, w = int(size[0]), int(size[1])
    bh, bw = box.face.shape
    if (bh, bw) == (h, w):
        return box
    face = box.face.new_full((h, w), -1)
    depth = box.depth.new_full((h, w), math.inf)
    bary = box.bary.new_zeros((h, w, 3))
    face[y0 : y0 + bh, x0 : x0 + bw] = box.face
    depth[y0 : y0 + bh, x0 : x0 + bw] = box.depth
    bary[y0 : y0 + bh, x0 : x0 + bw] = box.bary
    return Raster(face, depth, bary)


def rasterize_box(
    vertices_cam,
    faces,
    size: tuple[int, int],
    focal,
    principal,
    align: int = 1,
    cull_back: bool = False,
) -> tuple[Raster, tuple[int, int]]:
    """:func:`rasterize` into the bounding box of the visible triangles only: the box's
    :class:`Raster` and its top-left pixel (x0, y0) in the image (the rest of the image is
    background). Same numbers as the full image, without per-pixel work where no mesh is.
    ``align``: the box's corners fall on multiples of it (pooling a supersampled raster).
    ``cull_back``: triangles seen from behind are dropped (half the work for a closed mesh wound
    counter-clockwise seen from outside, as anny's and SMPL's: in the image, y down, their front
    faces have a negative edge-function area)."""
    v = _as_tensor(vertices_cam)
    f = (
        torch.as_tensor(np.asarray(faces) if not torch.is_tensor(faces) else faces)
        .long()
        .to(v.device)
    )
    if v.ndim != 2 or v.shape[1] != 3 or f.ndim != 2 or f.shape[1] != 3:
        raise Key2MeshError(
            f"rasterize expects vertices (V, 3) and faces (F, 3), got {tuple(v.shape)} and {tuple(f.shape)}"
        )
    h, w = int(size[0]), int(size[1])
    fx, fy = _focal_pair(focal)
    cx, cy = float(principal[0]), float(principal[1])
    dev = v.device

    def empty() -> tuple[Raster, tuple[int, int]]:
        face_buf = torch.full((0, 0), -1, dtype=torch.long, device=dev)
        zbuf = torch.full((0, 0), math.inf, dtype=v.dtype, device=dev)
        return Raster(face_buf, zbuf, torch.zeros((0, 0, 3), dtype=v.dtype, device=dev)), (0, 0)

    if f.numel() == 0:
        return empty()
    z = v[:, 2]
    uv = torch.stack(
        [fx * v[:, 0] / z.clamp(min=NEAR) + cx, fy * v[:, 1] / z.clamp(min=NEAR) + cy], dim=-1
    )
    tri = uv[f]  # (F, 3, 2)
    tz = z[f]  # (F, 3)
    lo = tri.amin(dim=1).ceil()
    hi = tri.amax(dim=1).floor()
    lo = torch.maximum(lo, lo.new_zeros(2))
    hi = torch.minimum(hi, hi.new_tensor([w - 1.0, h - 1.0]))
    area = _edge(tri[:, 0], tri[:, 1], tri[:, 2, 0:1], tri[:, 2, 1:2])[:, 0]
    keep = (tz.amin(dim=1) > NEAR) & (hi >= lo).all(dim=1) & (area.abs() > 1e-12)
    if cull_back:
        keep &= area < 0
    ids = torch.nonzero(keep).squeeze(1)
    if ids.numel() == 0:
        return empty()
    # the box: every pixel a kept triangle may cover, corners on multiples of ``align``
    x0, y0 = (int(c) // align * align for c in lo[ids].amin(dim=0).tolist())
    x1, y1 = (
        min(-(-(int(c) + 1) // align) * align, n)
        for c, n in zip(hi[ids].amax(dim=0).tolist(), (w, h))
    )
    bw, bh = x1 - x0, y1 - y0
    face_buf = torch.full((bh * bw,), -1, dtype=torch.long, device=dev)
    zbuf = torch.full((bh * bw,), math.inf, dtype=v.dtype, device=dev)
    bary_buf = torch.zeros((bh * bw, 3), dtype=v.dtype, device=dev)
    corner = v.new_tensor([float(x0), float(y0)])
    # triangles binned by their bounding box's power-of-two width and height (each tests the
    # pixels of a 2^lx x 2^ly grid at its box's corner)
    log_side = torch.ceil(torch.log2(hi[ids] - lo[ids] + 1)).long()  # (N, 2)
    level = log_side[:, 0] * 64 + log_side[:, 1]

    cand_pix, cand_z, cand_face, cand_bary = [], [], [], []
    for lvl in torch.unique(level).tolist():
        side_x, side_y = 1 << (lvl // 64), 1 << (lvl % 64)
        grid_y, grid_x = torch.meshgrid(
            torch.arange(side_y, device=dev), torch.arange(side_x, device=dev), indexing="ij"
        )
        offs = torch.stack([grid_x.reshape(-1), grid_y.reshape(-1)], dim=-1).to(v.dtype)  # (M, 2)
        group = ids[level == lvl]
        step = max(1, _BUDGET // (side_x * side_y))
        for start in range(0, group.numel(), step):
            g = group[start : start + step]
            t, a = tri[g], area[g, None]
            px = lo[g, 0:1] + offs[None, :, 0]  # (N, M)
            py = lo[g, 1:2] + offs[None, :, 1]
            b0 = _edge(t[:, 1], t[:, 2], px, py) / a
            b1 = _edge(t[:, 2], t[:, 0], px, py) / a
            b2 = 1.0 - b0 - b1
            eps = -1e-6
            inside = (
                (b0 >= eps) & (b1 >= eps) & (b2 >= eps) & (px <= hi[g, 0:1]) & (py <= hi[g, 1:2])
            )
            if not bool(inside.any()):
                continue
            # one nonzero, then 1D index_select (cheaper than 2D advanced indexing)
            flat = torch.nonzero(inside.view(-1)).squeeze(1)
            rows = torch.div(flat, inside.shape[1], rounding_mode="floor")

            def pick(x: torch.Tensor, flat: torch.Tensor = flat) -> torch.Tensor:
                return x.reshape(-1).index_select(0, flat)

            bs = torch.stack([pick(b0), pick(b1), pick(b2)], dim=-1)
            bz = bs / tz[g].index_select(0, rows)
            inv_z = bz.sum(dim=-1)  # 1/z is affine in screen space
            cand_z.append(1.0 / inv_z)
            cand_bary.append(bz / inv_z[:, None])  # perspective-correct
            cand_pix.append(((pick(py) - corner[1]) * bw + pick(px) - corner[0]).long())
            cand_face.append(g.index_select(0, rows))
    if cand_pix:
        pix, depth = torch.cat(cand_pix), torch.cat(cand_z)
        zbuf.scatter_reduce_(0, pix, depth, reduce="amin")
        win = torch.nonzero(depth <= zbuf[pix]).squeeze(1)
        pix, face = pix[win], torch.cat(cand_face)[win]
        # equal depths (a pixel on a shared edge): the lowest face index, in any order
        face_buf.fill_(torch.iinfo(torch.long).max).scatter_reduce_(0, pix, face, reduce="amin")
        face_buf[face_buf == torch.iinfo(torch.long).max] = -1
        first = face == face_buf[pix]
        bary_buf[pix[first]] = torch.cat(cand_bary)[win[first]]
    raster = Raster(face_buf.view(bh, bw), zbuf.view(bh, bw), bary_buf.view(bh, bw, 3))
    return raster, (x0, y0)


def wound_outward(vertices: torch.Tensor, faces: torch.Tensor) -> bool:
    """Whether a closed mesh (V, 3), (F, 3) is wound counter-clockwise seen from outside (its
    signed volume is positive): then ``cull_back`` drops exactly its hidden side."""
    tri = vertices[faces.long()].double()
    return bool(torch.linalg.cross(tri[:, 1], tri[:, 2]).mul(tri[:, 0]).sum() > 0)


def vertex_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Area-weighted unit vertex normals (V, 3) of a triangle mesh."""
    tri = vertices[faces]
    fn = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    vn = torch.zeros_like(vertices).index_add_(0, faces.reshape(-1), fn.repeat_interleave(3, dim=0))
    return torch.nn.functional.normalize(vn, dim=-1)


def shade(raster: Raster, vertices_cam, faces, ambient: float = 0.3) -> torch.Tensor:
    """Lambert intensity (H, W) in [0, 1] of the covered pixels (0 elsewhere), lit from the camera
    (slightly above it); two-sided so face winding does not matter."""
    v = _as_tensor(vertices_cam).to(raster.depth.device)
    f = (
        torch.as_tensor(np.asarray(faces) if not torch.is_tensor(faces) else faces)
        .long()
        .to(v.device)
    )
    vn = vertex_normals(v, f)
    pix = torch.nonzero(raster.mask.view(-1)).squeeze(1)  # covered pixels, flat
    corners = f.index_select(0, raster.face.view(-1).index_select(0, pix))  # (P, 3)
    bary = raster.bary.view(-1, 3).index_select(0, pix)
    n = (vn.index_select(0, corners.view(-1)).view(-1, 3, 3) * bary[..., None]).sum(dim=1)
    n = torch.nn.functional.normalize(n, dim=-1)
    light = torch.nn.functional.normalize(
        v.new_tensor([0.2, -0.4, -1.0]), dim=0
    )  # towards the light
    out = torch.zeros(raster.face.shape, dtype=v.dtype, device=v.device)
    out.view(-1)[pix] = ambient + (1.0 - ambient) * (n @ light).abs()
    return out


def _check_image(image) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise Key2MeshError(f"expected an RGB image (H, W, 3) uint8, got {img.shape} {img.dtype}")
    return img


def render_overlay(
    image,
    vertices_cam,
    faces,
    focal,
    principal=None,
    color: tuple[float, float, float] = DEFAULT_COLOR,
    alpha: float = 0.8,
    supersample: int = 1,
    cull_back: bool = False,
) -> np.ndarray:
    """Render a mesh over an image.

    Args:
        image: (H, W, 3) uint8 RGB.
        vertices_cam: (V, 3) camera coordinates in metres (x right, y down, z forward).
        faces: (F, 3). focal: f or (fx, fy) pixels. principal: (cx, cy) pixels (default: centre).
        color: RGB in [0, 1], one (3,) or one per face (F, 3) (several people in one mesh). alpha: mesh opacity. supersample: render at k× resolution and
            average down (anti-aliasing; costs ~k² time). cull_back: skip the triangles seen
            from behind (closed meshes wound like anny's; see :func:`rasterize_box`).

    Returns:
        (H, W, 3) uint8 image with the shaded mesh blended in.
    """
    img = _check_image(image)
    h, w = img.shape[:2]
    if principal is None:
        principal = ((w - 1) / 2.0, (h - 1) / 2.0)
    k = max(1, int(supersample))
    fx, fy = _focal_pair(focal)
    # pixel centres of the k× grid: u_k = k·u + (k−1)/2
    pr = (k * float(principal[0]) + (k - 1) / 2.0, k * float(principal[1]) + (k - 1) / 2.0)
    # only the box of the visible triangles is rasterised, shaded and blended
    raster, (bx, by) = rasterize_box(
        vertices_cam, faces, (h * k, w * k), (k * fx, k * fy), pr, align=k, cull_back=cull_back
    )
    out = img.copy()
    if raster.face.numel() == 0:
        return out
    bx, by = bx // k, by // k
    inten = shade(raster, vertices_cam, faces)
    col = torch.as_tensor(np.asarray(color, dtype=np.float64)).to(inten) * 255.0
    if k == 1:
        return _blend_covered(out, raster, inten, col, alpha, bx, by)
    cover = raster.mask.to(inten.dtype)
    if col.ndim == 2:  # one colour per face
        face_col = col.index_select(0, raster.face.clamp(min=0).view(-1)).view(*inten.shape, 3)
        rgb = inten[..., None] * face_col
    else:
        rgb = inten[..., None] * col
    if k > 1:
        pool = torch.nn.functional.avg_pool2d
        rgb = pool(rgb.permute(2, 0, 1)[None], k)[0].permute(1, 2, 0)
        cover = pool(cover[None, None], k)[0, 0]
        rgb = torch.where(cover[..., None] > 0, rgb / cover.clamp(min=1e-6)[..., None], rgb)
    rows = torch.nonzero(cover.any(dim=1)).squeeze(1)
    cols = torch.nonzero(cover.any(dim=0)).squeeze(1)
    if rows.numel() == 0:
        return out
    r0, r1, c0, c1 = (
        int(rows[0]),
        int(rows[-1]) + 1,
        int(cols[0]),
        int(cols[-1]) + 1,
    )  # blend the covered pixels' box only
    mesh_rgb = rgb[r0:r1, c0:c1]
    a = (alpha * cover[r0:r1, c0:c1])[..., None]
    r0, r1, c0, c1 = r0 + by, r1 + by, c0 + bx, c1 + bx  # in the image
    base = torch.as_tensor(img[r0:r1, c0:c1], dtype=inten.dtype, device=inten.device)
    out[r0:r1, c0:c1] = (
        (base * (1.0 - a) + mesh_rgb * a).round().clamp(0, 255).to(torch.uint8).cpu().numpy()
    )
    return out


def _blend_covered(
    out: np.ndarray,
    raster: Raster,
    inten: torch.Tensor,
    col: torch.Tensor,
    alpha: float,
    bx: int,
    by: int,
) -> np.ndarray:
    """Blend the shaded colour into ``out`` (in place) at the covered pixels of a box raster
    whose corner is (bx, by) in the image: the numbers of :func:`render_overlay`'s box blend
    without its work on the uncovered pixels (where alpha is 0 and the image stays as it is)."""
    pix = torch.nonzero(raster.mask.view(-1)).squeeze(1)
    if pix.numel() == 0:
        return out
    value = inten.view(-1).index_select(0, pix)[:, None]
    if col.ndim == 2:  # one colour per face
        rgb = value * col.index_select(0, raster.face.view(-1).index_select(0, pix))
    else:
        rgb = value * col
    a = alpha * torch.ones_like(value)  # as alpha x coverage (1) in the box blend
    bw = raster.face.shape[1]
    ys = (torch.div(pix, bw, rounding_mode="floor") + by).cpu().numpy()
    xs = (pix % bw + bx).cpu().numpy()
    base = torch.as_tensor(out[ys, xs], dtype=inten.dtype, device=inten.device)
    out[ys, xs] = (base * (1.0 - a) + rgb * a).round().clamp(0, 255).to(torch.uint8).cpu().numpy()
    return out


def render_view(
    vertices,
    faces,
    size: int | tuple[int, int] = 512,
    yaw_deg: float = 0.0,
    color: tuple[float, float, float] = DEFAULT_COLOR,
    background: tuple[int, int, int] = (255, 255, 255),
    fill: float = 0.85,
    supersample: int = 1,
    cull_back: bool = False,
    resolution: float = 1.0,
) -> np.ndarray:
    """Render a world-frame mesh (V, 3) metres (y up, body faces +z) rotated by ``yaw_deg`` about
    the vertical axis, seen from the front (+z) and auto-framed to ``fill`` of the image.
    ``size`` is an int (square) or (H, W). ``resolution`` < 1: rendered at that fraction of
    the size and scaled up (bilinear): the rasteriser's work falls with its square."""
    h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if resolution < 1.0:
        small = (max(1, round(h * resolution)), max(1, round(w * resolution)))
        low = render_view(
            vertices, faces, small, yaw_deg, color, background, fill, supersample, cull_back
        )
        return np.asarray(Image.fromarray(low).resize((w, h), Image.Resampling.BILINEAR))
    v = _as_tensor(vertices)
    if v.ndim != 2 or v.shape[1] != 3:
        raise Key2MeshError(f"render_view expects vertices (V, 3), got {tuple(v.shape)}")
    rot = rotation_y(torch.tensor(math.radians(yaw_deg), dtype=v.dtype))
    cam = (v @ rot.T) * v.new_tensor([1.0, -1.0, -1.0])  # camera looks along -z of the world
    centre = 0.5 * (cam.amin(dim=0) + cam.amax(dim=0))
    cam = cam - centre
    radius = cam.norm(dim=-1).max().clamp(min=1e-6)
    cam = cam + v.new_tensor([0.0, 0.0, 4.0 * float(radius)])  # narrow field of view
    uv = cam[:, :2] / cam[:, 2:3]
    lo, hi = uv.amin(dim=0), uv.amax(dim=0)
    span = (hi - lo).clamp(min=1e-9)
    f = fill * min(w / float(span[0]), h / float(span[1]))
    mid = 0.5 * (lo + hi)
    principal = ((w - 1) / 2.0 - f * float(mid[0]), (h - 1) / 2.0 - f * float(mid[1]))
    bg = np.empty((h, w, 3), dtype=np.uint8)
    bg[:] = np.asarray(background, dtype=np.uint8)
    return render_overlay(
        bg,
        cam,
        faces,
        f,
        principal,
        color=color,
        alpha=1.0,
        supersample=supersample,
        cull_back=cull_back,
    )


def render_side_view(vertices, faces, size: int | tuple[int, int] = 512, **kwargs) -> np.ndarray:
    """:func:`render_view` with the mesh turned 90° about the vertical axis (profile view)."""
    return render_view(vertices, faces, size, yaw_deg=90.0, **kwargs)


# Skeleton edges by point name; an edge is drawn when both points exist in the keypoint set.
SKELETON: tuple[tuple[str, str], ...] = (
    ("nose", "left_eye"), ("nose", "right_eye"), ("left_eye", "left_ear"), ("right_eye", "right_ear"),
    ("nose", "neck"), ("neck", "left_shoulder"), ("neck", "right_shoulder"),
    ("left_shoulder", "right_shoulder"), ("left_hip", "right_hip"),
    ("left_shoulder", "left_hip"), ("right_shoulder", "right_hip"),
    ("neck", "mid_hip"), ("mid_hip", "left_hip"), ("mid_hip", "right_hip"),
    ("left_shoulder", "left_elbow"), ("left_elbow", "left_wrist"),
    ("right_shoulder", "right_elbow"), ("right_elbow", "right_wrist"),
    ("left_wrist", "left_index"), ("left_wrist", "left_pinky"), ("left_wrist", "left_thumb"),
    ("right_wrist", "right_index"), ("right_wrist", "right_pinky"), ("right_wrist", "right_thumb"),
    ("left_hip", "left_knee"), ("left_knee", "left_ankle"),
    ("right_hip", "right_knee"), ("right_knee", "right_ankle"),
    ("left_ankle", "left_heel"), ("left_heel", "left_foot_index"), ("left_ankle", "left_foot_index"),
    ("right_ankle", "right_heel"), ("right_heel", "right_foot_index"), ("right_ankle", "right_foot_index"),
    ("left_ankle", "left_big_toe"), ("left_big_toe", "left_small_toe"), ("left_ankle", "left_heel"),
    ("right_ankle", "right_big_toe"), ("right_big_toe", "right_small_toe"),
    ("pelvis", "left_hip"), ("pelvis", "right_hip"), ("pelvis", "spine"), ("spine", "thorax"),
    ("thorax", "neck_nose"), ("neck_nose", "head_top"), ("thorax", "left_shoulder"),
    ("thorax", "right_shoulder"),
)  # fmt: skip

SIDE_COLORS = {"left": (255, 140, 0), "right": (30, 144, 255), "centre": (50, 205, 50)}


def _side(name: str) -> str:
    return (
        "left" if name.startswith("left_") else "right" if name.startswith("right_") else "centre"
    )


def skeleton_edges(keypoint_set: str) -> list[tuple[int, int]]:
    """Index pairs (i, j) of :data:`SKELETON` edges present in ``keypoint_set``."""
    names = keypoint_names(keypoint_set)
    index = {n: i for i, n in enumerate(names)}
    return list(
        dict.fromkeys((index[a], index[b]) for a, b in SKELETON if a in index and b in index)
    )


def draw_keypoints(
    image,
    keypoints,
    confidence=None,
    keypoint_set: str = "coco17",
    threshold: float = 0.3,
    radius: int | None = None,
    width: int | None = None,
    inplace: bool = False,
) -> np.ndarray:
    """Draw 2D keypoints (K, 2) pixels and their skeleton on a copy of ``image`` (H, W, 3) uint8
    (``inplace``: on ``image`` itself, a writable array; only the keypoints' box is copied).

    Points with ``confidence`` (K,) below ``threshold`` (and edges touching them) are skipped.
    Left side orange, right side blue, centre green. Radius/width default to ~0.4% / 0.3% of the
    image diagonal."""
    img = _check_image(image)
    kp = np.asarray(
        keypoints.detach().cpu() if torch.is_tensor(keypoints) else keypoints, dtype=np.float64
    )
    names = keypoint_names(keypoint_set)
    if kp.shape != (len(names), 2):
        raise Key2MeshError(
            f"keypoints of set {keypoint_set!r} need shape ({len(names)}, 2), got {kp.shape}"
        )
    conf = (
        np.ones(len(names))
        if confidence is None
        else np.asarray(
            confidence.detach().cpu() if torch.is_tensor(confidence) else confidence,
            dtype=np.float64,
        )
    )
    ok = (conf >= threshold) & np.isfinite(kp).all(axis=1)
    diag = math.hypot(*img.shape[:2])
    r = radius if radius is not None else max(2, round(0.004 * diag))
    lw = width if width is not None else max(1, round(0.003 * diag))
    out = img if inplace else img.copy()
    if not ok.any():
        return out
    # drawn on the keypoints' box only (a stroke reaches r + lw beyond a point)
    h, w = img.shape[:2]
    lo = np.clip(np.floor(kp[ok].min(axis=0)) - r - lw - 1, 0, [w, h]).astype(int)
    hi = np.clip(np.ceil(kp[ok].max(axis=0)) + r + lw + 2, 0, [w, h]).astype(int)
    pil = Image.fromarray(np.ascontiguousarray(out[lo[1] : hi[1], lo[0] : hi[0]]))
    draw = ImageDraw.Draw(pil)
    at = kp - lo
    for i, j in skeleton_edges(keypoint_set):
        if ok[i] and ok[j]:
            side = _side(names[i]) if _side(names[i]) == _side(names[j]) else "centre"
            draw.line([tuple(at[i]), tuple(at[j])], fill=SIDE_COLORS[side], width=lw)
    for i in np.flatnonzero(ok):
        x, y = at[i]
        draw.ellipse(
            [x - r, y - r, x + r, y + r], fill=SIDE_COLORS[_side(names[i])], outline=(0, 0, 0)
        )
    out[lo[1] : hi[1], lo[0] : hi[0]] = np.asarray(pil)
    return out
