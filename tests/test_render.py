"""The headless rasteriser, overlays, side views, keypoint drawing, and video/image IO."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from key2mesh.errors import Key2MeshError
from key2mesh.inference.render import (
    draw_keypoints,
    rasterize,
    rasterize_box,
    render_overlay,
    render_side_view,
    render_view,
    skeleton_edges,
    wound_outward,
)

F, CX, CY = 100.0, 40.0, 30.0  # focal and principal point of the test camera
SIZE = (64, 96)  # H, W


def _lift(uv: np.ndarray, z: float) -> torch.Tensor:
    """Pixels (N, 2) at depth z → camera points (N, 3) that project exactly there."""
    uv = np.asarray(uv, dtype=np.float64)
    return torch.tensor(
        np.c_[(uv[:, 0] - CX) * z / F, (uv[:, 1] - CY) * z / F, np.full(len(uv), z)],
        dtype=torch.float32,
    )


def test_triangle_covers_expected_pixels():
    # right triangle with legs 40 px: pixels (10,10), (50,10), (10,50)
    verts = _lift([[10, 10], [50, 10], [10, 50]], z=2.0)
    r = rasterize(verts, [[0, 1, 2]], SIZE, F, (CX, CY))
    vv, uu = np.mgrid[: SIZE[0], : SIZE[1]]
    inside = (uu > 10.5) & (vv > 10.5) & (uu + vv < 59.5)  # surely inside
    outside = (uu < 9.5) | (vv < 9.5) | (uu + vv > 60.5)  # surely outside
    mask = r.mask.numpy()
    assert mask[inside].all() and not mask[outside].any()
    # pixel count ≈ area 800 + half the perimeter's pixels (edge pixels are included)
    assert 800 <= mask.sum() <= 800 + 70
    assert torch.allclose(r.depth[r.mask], torch.tensor(2.0), atol=1e-5)
    assert torch.isinf(r.depth[~r.mask]).all() and (r.face[~r.mask] == -1).all()
    # barycentrics at a vertex pixel and their sum
    assert torch.allclose(r.bary[10, 10], torch.tensor([1.0, 0.0, 0.0]), atol=1e-5)
    assert torch.allclose(r.bary[r.mask].sum(-1), torch.tensor(1.0), atol=1e-5)


@pytest.mark.parametrize("near_first", [True, False])
def test_depth_order_nearest_wins(near_first):
    # two overlapping squares (2 triangles each): the near one covers cols 10-40, the far one 25-60
    def square(u0, u1, z):
        return _lift([[u0, 10], [u1, 10], [u1, 50], [u0, 50]], z)

    near, far = square(10, 40, 2.0), square(25, 60, 3.0)
    quads = [near, far] if near_first else [far, near]
    verts = torch.cat(quads)
    faces = [[0, 1, 2], [0, 2, 3], [4, 5, 6], [4, 6, 7]]
    r = rasterize(verts, faces, SIZE, F, (CX, CY))
    near_faces = {0, 1} if near_first else {2, 3}
    overlap = r.face[20:40, 27:38].flatten().tolist()
    assert set(overlap) <= near_faces
    assert torch.allclose(r.depth[20:40, 27:38], torch.tensor(2.0), atol=1e-5)
    assert torch.allclose(r.depth[20:40, 45:58], torch.tensor(3.0), atol=1e-5)


@pytest.mark.parametrize("align", [1, 4])
def test_box_raster_is_the_full_raster_cropped(align):
    """rasterize_box works on the visible triangles' box only: the full raster is background
    outside it and the same numbers inside; a depth tie goes to the lower face index."""
    verts = torch.cat([_lift([[13, 9], [47, 9], [47, 41], [13, 41]], 2.0), _lift([[30, 20]], 1.0)])
    faces = [[0, 1, 2], [0, 2, 3], [1, 2, 4]]
    full = rasterize(verts, faces, SIZE, F, (CX, CY))
    box, (x0, y0) = rasterize_box(verts, faces, SIZE, F, (CX, CY), align=align)
    bh, bw = box.face.shape
    assert x0 % align == 0 and y0 % align == 0 and bw % align == 0 and bh % align == 0
    assert x0 <= 13 and y0 <= 9 and x0 + bw >= 48 and y0 + bh >= 42
    assert torch.equal(full.face[y0 : y0 + bh, x0 : x0 + bw], box.face)
    assert torch.equal(full.depth[y0 : y0 + bh, x0 : x0 + bw], box.depth)
    assert torch.equal(full.bary[y0 : y0 + bh, x0 : x0 + bw], box.bary)
    assert int(full.mask.sum()) == int(box.mask.sum()) > 0
    # the same triangle twice: every pixel is a depth tie, the lower face index wins
    r = rasterize(verts[:3], [[0, 1, 2], [0, 1, 2]], SIZE, F, (CX, CY))
    assert r.mask.sum() > 100 and (r.face[r.mask] == 0).all()


def test_perspective_correct_depth_on_tilted_plane():
    # plane z = 2 + 0.5 x (camera coords); a pixel's ray x = z (u - cx)/f hits it at
    # z = 2 / (1 - 0.5 (u - cx) / f)
    xs = np.array([-0.5, 0.5, 0.5, -0.5])
    ys = np.array([-0.4, -0.4, 0.4, 0.4])
    verts = torch.tensor(np.c_[xs, ys, 2 + 0.5 * xs], dtype=torch.float32)
    r = rasterize(verts, [[0, 1, 2], [0, 2, 3]], SIZE, F, (CX, CY))
    u = torch.arange(SIZE[1], dtype=torch.float32)
    expected = 2.0 / (1.0 - 0.5 * (u - CX) / F)
    row, covered = r.depth[int(CY)], r.mask[int(CY)]
    assert covered.sum() > 30
    assert torch.allclose(row[covered], expected[covered], rtol=1e-4)


def test_cube_silhouette_is_front_face():
    # unit cube centred 5 m ahead: the silhouette is the front face (z = 4.5), ±f·0.5/4.5 px
    import trimesh

    box = trimesh.creation.box(extents=(1, 1, 1))
    verts = torch.as_tensor(box.vertices, dtype=torch.float32) + torch.tensor([0.0, 0.0, 5.0])
    faces = box.faces
    img = np.zeros((200, 200, 3), np.uint8)
    f = 450.0
    out = render_overlay(img, verts, faces, f, (99.5, 99.5), color=(1, 1, 1), alpha=1.0)
    mask = out.sum(-1) > 0
    rows, cols = np.nonzero(mask)
    half = f * 0.5 / 4.5  # 50 px
    assert rows.min() == pytest.approx(99.5 - half, abs=1) and rows.max() == pytest.approx(
        99.5 + half, abs=1
    )
    assert cols.min() == pytest.approx(99.5 - half, abs=1) and cols.max() == pytest.approx(
        99.5 + half, abs=1
    )
    assert mask.sum() == pytest.approx((2 * half) ** 2, rel=0.05)
    # the cube is closed and wound outward: culling its back faces leaves the same image
    assert wound_outward(verts, torch.as_tensor(faces)) and not wound_outward(
        verts, torch.as_tensor(faces[:, ::-1].copy())
    )
    rot = torch.tensor([[0.8, 0.0, 0.6], [0.0, 1.0, 0.0], [-0.6, 0.0, 0.8]])  # turned: 2 sides seen
    turned = (verts - torch.tensor([0.0, 0.0, 5.0])) @ rot.T + torch.tensor([0.2, -0.1, 5.0])
    both = render_overlay(img, turned, faces, f, (99.5, 99.5), color=(1, 1, 1), alpha=1.0)
    culled = render_overlay(img, turned, faces, f, (99.5, 99.5), (1, 1, 1), 1.0, cull_back=True)
    assert (both.sum(-1) > 0).sum() > 1000 and np.array_equal(both, culled)
    inside_out = render_overlay(img, turned, faces[:, ::-1].copy(), f, (99.5, 99.5), cull_back=True)
    assert not np.array_equal(inside_out, both)  # its far, inner walls are drawn instead


def test_overlay_shading_and_alpha_blend():
    # a flat triangle facing the camera: intensity = 0.3 + 0.7 |n·l|, l ∝ (0.2, -0.4, -1)
    verts = _lift([[5, 5], [90, 5], [5, 60]], z=2.0)
    img = np.full((*SIZE, 3), 100, np.uint8)
    inten = 0.3 + 0.7 / math.sqrt(0.2**2 + 0.4**2 + 1.0)
    out = render_overlay(img, verts, [[0, 1, 2]], F, (CX, CY), color=(1.0, 0.5, 0.0), alpha=0.5)
    expected = np.round(0.5 * 100 + 0.5 * 255 * inten * np.array([1.0, 0.5, 0.0]))
    assert np.array_equal(out[20, 20], expected.astype(np.uint8))
    assert np.array_equal(out[60, 90], [100, 100, 100])  # untouched background
    # anti-aliased render: same interior colour, fractional coverage on the hypotenuse
    aa = render_overlay(
        img, verts, [[0, 1, 2]], F, (CX, CY), color=(1.0, 0.5, 0.0), alpha=0.5, supersample=2
    )
    assert np.abs(aa[20, 20].astype(int) - out[20, 20]).max() <= 1
    partial = ((aa[..., 0] > 100) & (aa[..., 0] < expected[0] - 2)).sum()
    assert partial > 20


def test_render_view_side_turns_the_mesh():
    import trimesh

    # a slab 0.2 wide (x), 1.8 tall (y), 0.6 deep (z): front view narrow, side view wide
    slab = trimesh.creation.box(extents=(0.2, 1.8, 0.6))
    front = render_view(slab.vertices, slab.faces, 200, background=(0, 0, 0))
    side = render_side_view(slab.vertices, slab.faces, 200, background=(0, 0, 0))

    def bbox(img):
        r, c = np.nonzero(img.sum(-1) > 0)
        return r.max() - r.min() + 1, c.max() - c.min() + 1

    (hf, wf), (hs, ws) = bbox(front), bbox(side)
    assert hf == pytest.approx(0.85 * 200, abs=3) and hs == pytest.approx(0.85 * 200, abs=3)
    assert wf / hf == pytest.approx(0.2 / 1.8, rel=0.15)
    assert ws / hs == pytest.approx(0.6 / 1.8, rel=0.15)


def test_bad_inputs_raise():
    with pytest.raises(Key2MeshError):
        render_overlay(np.zeros((10, 10), np.uint8), torch.zeros(3, 3), [[0, 1, 2]], 10.0)
    with pytest.raises(Key2MeshError):
        rasterize(torch.zeros(3, 2), [[0, 1, 2]], (10, 10), 10.0, (5, 5))
    # mesh behind the camera: nothing drawn
    r = rasterize(_lift([[10, 10], [50, 10], [10, 50]], z=-2.0), [[0, 1, 2]], SIZE, F, (CX, CY))
    assert not r.mask.any()


def test_draw_keypoints_marks_points_and_skips_low_confidence():
    img = np.zeros((100, 100, 3), np.uint8)
    kp = np.zeros((17, 2))
    kp[5], kp[7] = (20, 20), (20, 80)  # left shoulder, left elbow
    kp[6] = (80, 50)  # right shoulder, low confidence
    conf = np.zeros(17)
    conf[[5, 7]] = 1.0
    conf[6] = 0.1
    out = draw_keypoints(img, kp, conf, "coco17", radius=3, width=2)
    assert out[20, 20].any() and out[80, 20].any() and out[50, 20].any()  # both points and the bone
    assert not out[50, 80].any()  # skipped point
    assert not out[50, 50].any()  # no edge to the skipped point
    assert (0, 5) not in skeleton_edges("coco17")
    assert (5, 7) in skeleton_edges("coco17")
    with pytest.raises(Key2MeshError):
        draw_keypoints(img, kp[:10], conf[:10], "coco17")


# ------------------------------------------------------------------------------ image / video IO
def test_image_and_folder_io(tmp_path):
    from key2mesh.media.video import (
        VideoWriter,
        read_frame,
        read_frames,
        source_info,
        write_image,
    )

    frames = [np.full((16, 24, 3), 20 * i, np.uint8) for i in range(3)]
    with VideoWriter(tmp_path / "frames") as w:
        for f in frames:
            w.write(f)
    info = source_info(tmp_path / "frames")
    assert (info.kind, info.num_frames, info.width, info.height) == ("folder", 3, 24, 16)
    assert np.array_equal(read_frames(tmp_path / "frames"), np.stack(frames))
    assert np.array_equal(read_frame(tmp_path / "frames", 2), frames[2])
    write_image(tmp_path / "one.png", frames[1])
    assert np.array_equal(read_frame(tmp_path / "one.png"), frames[1])
    with pytest.raises(Key2MeshError, match="no frame 5"):
        read_frame(tmp_path / "frames", 5)
    with pytest.raises(Key2MeshError, match="no such file"):
        read_frame(tmp_path / "missing.mp4")
    (tmp_path / "bad.png").write_text("not an image")
    with pytest.raises(Key2MeshError, match="not a readable image"):
        read_frame(tmp_path / "bad.png")
    with pytest.raises(Key2MeshError, match="unknown input type"):
        (tmp_path / "x.txt").write_text("x")
        read_frame(tmp_path / "x.txt")


@pytest.mark.parametrize("suffix", [".mp4", ".avi"])
def test_video_round_trip(tmp_path, suffix):
    pytest.importorskip("cv2")
    from key2mesh.media.video import read_frames, source_info, write_video

    colors = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (120, 120, 120)]
    frames = [np.tile(np.array(c, np.uint8), (48, 64, 1)) for c in colors]
    path = write_video(tmp_path / f"clip{suffix}", frames, fps=10)
    info = source_info(path)
    assert (info.kind, info.num_frames, info.width, info.height) == ("video", 4, 64, 48)
    assert info.fps == pytest.approx(10)
    back = read_frames(path)
    assert back.shape == (4, 48, 64, 3)
    # lossy codecs: mean colour of each frame within a few levels, channel order preserved (RGB)
    assert np.abs(back.reshape(4, -1, 3).mean(1) - np.array(colors)).max() < 12
    assert np.array_equal(read_frames(path, start=1, step=2).shape, (2, 48, 64, 3))


def test_unreadable_video_raises(tmp_path):
    pytest.importorskip("cv2")
    from key2mesh.media.video import VideoWriter, read_frames

    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(Key2MeshError, match="cannot open"):
        read_frames(bad)
    with pytest.raises(Key2MeshError, match="cannot write .mkv"):
        VideoWriter(tmp_path / "out.mkv")
    with VideoWriter(tmp_path / "out.mp4") as w:
        w.write(np.zeros((8, 8, 3), np.uint8))
        with pytest.raises(Key2MeshError, match="earlier frames"):
            w.write(np.zeros((10, 8, 3), np.uint8))


def test_render_view_at_half_resolution_matches_the_full_one():
    """The demo's side view is rendered at half resolution and scaled up: same size, the same
    silhouette up to its edge pixels."""
    import trimesh

    slab = trimesh.creation.box(extents=(0.2, 1.8, 0.6))
    full = render_side_view(slab.vertices, slab.faces, (200, 120), background=(0, 0, 0))
    half = render_side_view(
        slab.vertices, slab.faces, (200, 120), background=(0, 0, 0), resolution=0.5
    )
    assert half.shape == full.shape == (200, 120, 3)
    a, b = full.sum(-1) > 0, half.sum(-1) > 30
    assert (a & b).sum() / (a | b).sum() > 0.93
    assert np.abs(full.astype(int) - half.astype(int))[a & b].mean() < 12


def test_draw_keypoints_in_place_draws_the_same_pixels_only_near_the_points():
    rng = np.random.default_rng(3)
    img = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
    kp = np.array([[20.0, 30.0]] * 17) + rng.uniform(0, 40, (17, 2))
    kp[5] = [158.0, 118.0]  # a point at the corner: its strokes are clipped by the image
    copy = draw_keypoints(img, kp, None, "coco17")
    inplace = img.copy()
    assert draw_keypoints(inplace, kp, None, "coco17", inplace=True) is inplace
    assert np.array_equal(copy, inplace) and not np.array_equal(copy, img)
    changed = np.nonzero((copy != img).any(-1))
    assert changed[0].min() >= 30 - 5 and changed[1].min() >= 20 - 5  # nothing far from them
