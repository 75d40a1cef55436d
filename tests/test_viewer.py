"""The browser viewer's scene data (no browser): tracks on the shared clock, the ground, the
camera, bone poses and skinning; the live pipeline's latency table. Slow: the viewer on the
sports2d demo output in headless Chromium, both bodies drawn where they stand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from key2mesh.errors import Key2MeshError
from key2mesh.inference.motion_export.skeleton import Skeleton
from key2mesh.viewer.bodies import bone_poses, quaternions_wxyz
from key2mesh.viewer.scene import (
    VideoScene,
    find_results,
    load_params_scene,
    overlay_crop,
)

FPS = 30.0


def _rot_x(deg: float) -> np.ndarray:
    a = np.deg2rad(deg)
    c, s = np.cos(a), np.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def _motion(pitch_deg: float = 10.0, cam_height: float = 1.6):
    """Two walkers seen by a camera ``cam_height`` m above the ground, pitched down by
    ``pitch_deg``: track 0 in frames 0..28 (every 4th), track 1 from frame 40 (1.33 s) with
    frame 52 missing; a ground world frame whose origin is under track 0's first pelvis."""
    from key2mesh.inference.motion import Motion
    from key2mesh.inference.world import World

    rows = [(f, 0) for f in range(0, 60, 4)] + [(f, 1) for f in range(40, 60, 4) if f != 52]
    frame = np.array([r[0] for r in rows])
    track = np.array([r[1] for r in rows])
    n = len(rows)
    # world: y up, ground y = 0; pelvis 0.95 m up; track 0 walks along +x at z = -6, track 1 at z = -8
    x = np.where(track == 0, -1 + 0.05 * frame, 1 - 0.03 * frame)
    z = np.where(track == 0, -6.0, -8.0)
    pelvis_w = np.stack([x, np.full(n, 0.95), z], 1)
    # camera at (0, cam_height, 0) looking along -z pitched down: X_w = R_wc X_c + c
    r_wc = _rot_x(-pitch_deg) @ np.diag([1.0, -1.0, -1.0])  # OpenCV camera → world
    c = np.array([0.0, cam_height, 0.0])
    transl = (pelvis_w - c) @ r_wc  # camera frame (R^T (X - c))
    # the world frame of the file: X_world = R (X_cam - origin), origin = track 0's first pelvis
    # dropped to the ground (in the camera frame)
    origin = (np.array([pelvis_w[0, 0], 0.0, pelvis_w[0, 2]]) - c) @ r_wc
    rot = r_wc
    world = World("ground", rot, origin, np.zeros((n, 2), bool), np.zeros((n, 3)))
    rotmats = np.tile(np.eye(3, dtype=np.float32), (n, 24, 1, 1))
    motion = Motion(
        frame_index=frame,
        time_s=frame / FPS,
        track_id=track,
        rotmats=rotmats,
        shape=np.full((n, 6), 0.5, np.float32),
        transl=transl,
        focal_length=np.full(n, 1000.0),
        keypoints2d=np.zeros((n, 17, 2), np.float32),
        confidence=np.ones((n, 17), np.float32),
        joints3d=np.zeros((n, 24, 3)),
        keypoints3d=np.zeros((n, 17, 3)),
        reprojection_error=np.zeros(n),
        fps=FPS,
        image_size=(720, 1280),
        body="anny",
        shape_names=[f"p{i}" for i in range(6)],
        keypoint_set="coco17",
        world=world,
    )
    return motion, pelvis_w, c


@pytest.fixture
def result(tmp_path):
    from key2mesh.inference.motion import write_params

    motion, pelvis_w, cam = _motion()
    write_params(motion, tmp_path / "clip_params.npz", source="clip.mp4")
    return tmp_path, motion, pelvis_w, cam


def test_tracks_on_the_shared_clock(result):
    folder, motion, pelvis_w, _ = result
    scene = load_params_scene(find_results(folder))
    names = [t.name for t in scene.tracks]
    assert names == ["track0", "track1"]
    t0, t1 = scene.tracks
    assert t0.start_s == 0.0 and t1.start_s == pytest.approx(40 / FPS)  # enters at 1.33 s
    assert t0.end_s == pytest.approx(56 / FPS) and t1.end_s == pytest.approx(56 / FPS)
    # one clock: every 4th frame 0..56, the union of both tracks' samples
    np.testing.assert_allclose(scene.clock, np.arange(0, 60, 4) / FPS, atol=1e-6)
    assert scene.interval_s == pytest.approx(4 / FPS)
    # the missed frame 52 is filled in (interpolated), so track 1 is shown there
    assert t1.interpolated.tolist() == [f == 52 for f in range(40, 60, 4)]
    assert scene.visible(0.5) == {"track0": 4}  # 0.5 s is nearest frame 16 (0.533 s)
    assert scene.visible(40 / FPS) == {"track0": 10, "track1": 0}
    assert set(scene.visible(52 / FPS)) == {"track0", "track1"}
    assert scene.visible(10.0) == {}  # after everyone's last sample
    # root positions on the ground frame: pelvis 0.95 m above y = 0, track 0 starts over the origin
    np.testing.assert_allclose(t0.root[:, 1], 0.95, atol=1e-5)
    np.testing.assert_allclose(t0.root[0], [0.0, 0.95, 0.0], atol=1e-5)
    # track 1's root moves as built (x = 1 - 0.03 f), relative to track 0's first pelvis
    expect = pelvis_w[motion.track_id == 1][:, 0] - pelvis_w[0, 0]
    np.testing.assert_allclose(t1.root[~t1.interpolated, 0], expect, atol=1e-5)


def test_ground_and_camera(result):
    folder, _, pelvis_w, cam = result
    scene = load_params_scene(find_results(folder))
    g = scene.ground
    assert g.estimated and g.height == 0.0 and g.levels == {}
    roots = np.concatenate([t.root for t in scene.tracks])
    half = g.size / 2
    assert (np.abs(roots[:, 0] - g.center[0]) < half - 1).all()
    assert (np.abs(roots[:, 2] - g.center[1]) < half - 1).all()
    (c,) = scene.cameras
    # the camera stands cam_height above the ground, at its place relative to the origin
    origin_w = np.array([pelvis_w[0, 0], 0.0, pelvis_w[0, 2]])
    np.testing.assert_allclose(c.position, cam - origin_w, atol=1e-5)
    # it looks along -z pitched 10° down; its image y axis points down (OpenCV)
    np.testing.assert_allclose(
        c.forward, [0, -np.sin(np.deg2rad(10)), -np.cos(np.deg2rad(10))], atol=1e-6
    )
    assert c.rotation[:, 1] @ np.array([0.0, 1.0, 0.0]) < -0.9
    np.testing.assert_allclose(c.rotation.T @ c.rotation, np.eye(3), atol=1e-9)
    assert c.yfov == pytest.approx(2 * np.arctan(360 / 1000))
    assert c.aspect == pytest.approx(1280 / 720)
    # the quaternion is the same rotation
    w, x, y, z = c.wxyz
    from scipy.spatial.transform import Rotation

    np.testing.assert_allclose(Rotation.from_quat([x, y, z, w]).as_matrix(), c.rotation, atol=1e-9)
    # each track's root projects in front of the camera
    for t in scene.tracks:
        depth = (t.root - c.position) @ c.forward
        assert (depth > 4).all()


def test_camera_frame_results_get_a_guide_plane(tmp_path):
    from key2mesh.inference.motion import write_params
    from key2mesh.inference.world import camera_world

    motion, _, _ = _motion()
    motion.world = camera_world(len(motion))
    write_params(motion, tmp_path / "cam_params.npz")
    scene = load_params_scene([tmp_path / "cam_params.npz"])
    lowest = min(t.root[:, 1].min() for t in scene.tracks)
    assert not scene.ground.estimated
    assert scene.ground.height == pytest.approx(lowest - 0.95 - 0.08)
    assert any("camera frame" in n for n in scene.notes)
    # in the camera's frame the video camera is the origin looking along -z
    np.testing.assert_allclose(scene.cameras[0].position, 0, atol=1e-9)
    np.testing.assert_allclose(scene.cameras[0].forward, [0, 0, -1], atol=1e-9)


def test_several_files_are_named_apart(tmp_path):
    from key2mesh.inference.motion import write_params

    motion, _, _ = _motion()
    write_params(motion, tmp_path / "a_params.npz")
    write_params(motion, tmp_path / "b_params.npz")
    scene = load_params_scene(find_results(tmp_path))
    assert [t.name for t in scene.tracks] == ["a/track0", "a/track1", "b/track0", "b/track1"]
    assert [c.name for c in scene.cameras] == ["a/video camera", "b/video camera"]


def test_find_results_errors(tmp_path):
    with pytest.raises(Key2MeshError, match="does not exist"):
        find_results(tmp_path / "nope")
    with pytest.raises(Key2MeshError, match="no <stem>_params.npz"):
        find_results(tmp_path)
    bad = tmp_path / "x_params.npz"
    np.savez(bad, a=np.zeros(3))
    with pytest.raises(Key2MeshError, match="not a key2mesh params file"):
        load_params_scene([bad])


def _chain() -> Skeleton:
    """A 3-joint chain: root (SMPL 0) → SMPL 3 (0.5 m up) → SMPL 6 (0.5 m up)."""
    offsets = np.array([[0.0, 1.0, 0.0], [0.0, 0.5, 0.0], [0.0, 0.5, 0.0]])
    rest = np.cumsum(offsets, axis=0)
    return Skeleton(
        np.array([0, 3, 6]), ["pelvis", "spine1", "spine2"], np.array([-1, 0, 1]), offsets, {}, rest
    )


def test_bone_poses_by_hand():
    sk = _chain()
    rot = np.tile(np.eye(3), (2, 24, 1, 1))
    rot[1, 3] = _rot_x(90)  # bend the middle joint 90° about x: the last bone points along +z
    root = np.array([[0.0, 1.0, 0.0], [2.0, 1.0, 0.0]])
    g, p = bone_poses(sk, rot, root)
    np.testing.assert_allclose(p[0], sk.rest)  # rest pose at the rest root
    np.testing.assert_allclose(p[1], [[2, 1, 0], [2, 1.5, 0], [2, 1.5, 0.5]], atol=1e-12)
    np.testing.assert_allclose(g[1, 2], _rot_x(90), atol=1e-12)  # inherits its parent's turn
    q = quaternions_wxyz(g[1])
    np.testing.assert_allclose(q[0], [1, 0, 0, 0], atol=1e-12)
    np.testing.assert_allclose(q[1], [np.cos(np.pi / 4), np.sin(np.pi / 4), 0, 0], atol=1e-12)


def test_skinned_bodies_match_the_body_model(tmp_path):
    """The browser's skinning inputs (rest mesh, weights, bone poses) give the body model's own
    mesh at each sample, placed at the root (the same rows as the glTF export)."""
    import torch

    from key2mesh.inference.motion import write_params
    from key2mesh.viewer import load_bodies
    from key2mesh.viewer.bodies import body_kit, skin

    motion, _, _ = _motion()
    rng = np.random.default_rng(0)
    from scipy.spatial.transform import Rotation

    aa = 0.3 * rng.standard_normal((len(motion), 24, 3))
    aa[:, [10, 11, 22, 23]] = 0  # joints anny's rig does not drive
    motion.rotmats = (
        Rotation.from_rotvec(aa.reshape(-1, 3)).as_matrix().reshape(-1, 24, 3, 3).astype(np.float32)
    )
    write_params(motion, tmp_path / "m_params.npz")
    scene = load_params_scene([tmp_path / "m_params.npz"])
    kit = body_kit("anny")
    bodies = load_bodies(scene, kit)
    tr = scene.tracks[1]
    b = bodies[tr.name]
    k = 2
    got = skin(b, k)
    with torch.no_grad():
        out = kit.mesh_body(
            torch.as_tensor(tr.rotmats[k : k + 1], dtype=torch.float32),
            torch.as_tensor(tr.shape[None]),
        )
    verts = out.vertices[0].double().numpy()
    want = verts - out.joints[0, 0].double().numpy() + tr.root[k]
    err = np.linalg.norm(got - want, axis=1)
    assert np.median(err) < 1e-4 and err.max() < 0.03, (np.median(err), err.max())


def test_overlay_crop_and_video_clock():
    # the demo's [input | overlay | side view] panels of a 1768 x 994 video at 994 px
    assert overlay_crop(2 * 1768 + 497, 994, (994, 1768)) == (1768, 3536)
    assert overlay_crop(2 * 884 + 248, 497, (994, 1768)) == (884, 1768)  # scaled by half
    assert overlay_crop(700, 994, (994, 1768)) == (0, 700)  # not a demo panel: whole frame
    v = VideoScene(Path("x.mp4"), start_s=0.4, interval_s=0.1)
    assert v.frame_at(0.4) == 0 and v.frame_at(0.71) == 3 and v.frame_at(0.3) is None
    assert v.frame_at(5.0, num_frames=10) is None


def test_overview_sees_every_root(result):
    from key2mesh.viewer.app import overview

    folder = result[0]
    scene = load_params_scene(find_results(folder))
    view = overview(scene)
    fwd = view.look_at - view.position
    fwd /= np.linalg.norm(fwd)
    for t in scene.tracks:
        d = t.root - view.position
        angle = np.arccos(np.clip((d @ fwd) / np.linalg.norm(d, axis=1), -1, 1))
        assert (angle < view.fov / 2).all()
    assert view.position[1] > view.look_at[1]  # from above


# --- slow: the page in a headless browser -------------------------------------------------


def _hue_mask(image: np.ndarray, color) -> np.ndarray:
    """Pixels whose chromaticity is within 0.035 of ``color``'s and that are not grey."""
    im = image.astype(np.float64)
    chroma = im / (im.sum(-1, keepdims=True) + 1e-6)
    c = np.asarray(color) / np.sum(color)
    return (np.linalg.norm(chroma - c, axis=-1) < 0.035) & (np.ptp(im, axis=-1) > 25)


@pytest.mark.slow
def test_viewer_draws_both_people_in_headless_chromium(tmp_path):
    pytest.importorskip("viser")
    pytest.importorskip("mediapipe")
    from key2mesh.viewer.screenshot import find_chromium

    if find_chromium() is None:
        pytest.skip("no headless Chromium (apt-get install chromium-headless-shell)")
    from key2mesh.cli import main
    from key2mesh.inference.render import track_color
    from key2mesh.media.video import read_image
    from key2mesh.viewer import load_scene
    from key2mesh.viewer.app import overview, project

    out = tmp_path / "sports2d"
    assert (
        main(["demo", "sports2d", "--frames", "0:120:4", "--export", "glb", "--out", str(out)]) == 0
    )
    png = tmp_path / "view.png"
    t = 2.0
    assert main(["view", str(out), "--screenshot", str(png), "--time", str(t), "--port", "0"]) == 0
    image = read_image(png)
    assert image.shape == (540, 960, 3)
    scene = load_scene(out)
    view = overview(scene)
    shown = scene.visible(t)
    assert len(shown) == 2
    for tr in scene.tracks:
        mask = _hue_mask(image, track_color(tr.track))
        assert mask.sum() > 200, (tr.name, mask.sum())  # the body is drawn
        ys, xs = np.nonzero(mask)
        u, v = project(view, tr.root[shown[tr.name]][None], (960, 540))[0]
        # ... around where its pelvis projects (pixels)
        assert abs(np.median(xs) - u) < 40 and abs(np.median(ys) - v) < 60, (tr.name, u, v)


def test_kabsch_recovers_a_rigid_motion():
    from key2mesh.viewer.adapt_run import kabsch

    rng = np.random.default_rng(1)
    src = rng.normal(size=(40, 3))
    r = _rot_x(35) @ np.array([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]])  # 35° about x after 90° about z
    t = np.array([0.5, -2.0, 3.0])
    got_r, got_t = kabsch(src, src @ r.T + t)
    np.testing.assert_allclose(got_r, r, atol=1e-10)
    np.testing.assert_allclose(got_t, t, atol=1e-10)
    # a mirror image is not a rotation: the best proper rotation is returned
    got_r, _ = kabsch(src, src * np.array([1.0, 1.0, -1.0]))
    assert np.linalg.det(got_r) == pytest.approx(1.0)


def test_live_stats_and_table():
    from key2mesh.viewer.live import FrameTiming, LiveStats, RecentStats

    stats = LiveStats(wall_s=2.0, source_frames=8)
    recent = RecentStats()
    for i, lat in enumerate([0.5, 0.1, 0.2, 0.3]):
        stages = {
            "read": 0.0,
            "detect": 0.05 * (i + 1),
            "track": 0.001,
            "predict": 0.02,
            "view": 0.0,
        }
        timing = FrameTiming(2 * i, stages, lat, people=2)
        stats.add(timing)
        recent.add(timing)
    s = stats.summary(skip=1)  # the first frame is warm-up
    assert s["latency_ms"] == pytest.approx(200.0)
    assert s["latency_p50_ms"] == pytest.approx(200.0)
    assert s["detect_ms"] == pytest.approx(1000 * (0.10 + 0.15 + 0.20) / 3)
    assert s["fps"] == pytest.approx(4 / 2.0)  # every processed frame over the wall time
    assert s["dropped"] == pytest.approx(0.5)  # 4 of the source's 8 frames processed
    table = recent.table()
    assert "| detect | 125.0 |" in table and "**275**" in table


def test_file_stream_plays_in_order_or_drops(tmp_path):
    from key2mesh.media.video import VideoWriter
    from key2mesh.viewer.live import FileStream

    path = tmp_path / "clip.mp4"
    with VideoWriter(path, 30.0) as w:
        for i in range(12):
            w.write(np.full((64, 96, 3), 20 * i, np.uint8))
    every = FileStream(path, realtime=False)
    got = []
    while (item := every.latest()) is not None:
        got.append(item[0])
        assert item[3] == 0
    assert got == list(range(12))
    live = FileStream(path, realtime=True, repeat=2)
    seen = []
    while (item := live.latest()) is not None:
        seen.append(item)
        import time

        time.sleep(0.1)  # a slow consumer: about 3 frames pass while one is processed
    index = [s[0] for s in seen]
    assert index == sorted(index) and index[-1] <= 23 and len(index) < 16
    assert sum(s[3] for s in seen) + len(seen) == index[-1] + 1  # dropped + taken = delivered


def test_view_command_errors_are_one_line(tmp_path, capsys):
    from key2mesh.cli import main

    assert main(["view", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["view", str(tmp_path), "--size", "10x10"]) == 2
    assert "64..4096" in capsys.readouterr().err
    assert main(["view", str(tmp_path), "--port", "70000"]) == 2
    assert "--port" in capsys.readouterr().err


def test_demo_view_wraps_both_passes(tmp_path):
    """demo --view: the first pass shows the frames read; the second, with no motion written,
    passes the frames through unchanged (the demo's output never depends on the viewer)."""
    pytest.importorskip("viser")
    from key2mesh.viewer.demo_view import DemoView

    frames = [np.full((40, 60, 3), v, np.uint8) for v in (10, 20, 30)]
    view = DemoView(tmp_path, "clip", [0, 4, 8], 30.0, port=0, open_browser=False)
    try:
        source = view.frames(lambda: iter(frames))
        first = list(source())
        assert [f[0, 0, 0] for f in first] == [10, 20, 30]
        assert view.g_status.content == "detecting and tracking: frame 3 of 3"
        assert view.g_frame is not None
        second = list(source())
        assert [f[0, 0, 0] for f in second] == [10, 20, 30] and view.viewer is None
    finally:
        view.server.stop()


@pytest.mark.slow
def test_live_command_on_a_video_file(capsys):
    pytest.importorskip("mediapipe")
    from key2mesh.cli import main

    args = ["live", "--camera", "sports2d", "--no-viewer", "--as-fast-as-possible"]
    assert main([*args, "--max-frames", "20"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("20 frames:") and "frames/s processed" in out and "detect" in out


def _within(seconds: float, fn):
    """fn()'s result or exception, run in a thread; a TimeoutError when it is still running
    after ``seconds`` (a hang fails the test instead of blocking the suite)."""
    import threading

    out = {}

    def go():
        try:
            out["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            out["error"] = exc

    th = threading.Thread(target=go, daemon=True)
    th.start()
    th.join(seconds)
    if th.is_alive():
        raise TimeoutError(f"still running after {seconds} s")
    if "error" in out:
        raise out["error"]
    return out["value"]


def test_an_address_not_on_this_machine_is_a_one_line_error(tmp_path):
    """viser retries 1000 ports on any bind error, then waits forever: the viewers check the
    address first (203.0.113.5 is TEST-NET-3, never a local address)."""
    pytest.importorskip("viser")
    from key2mesh.viewer.app import LiveViewer
    from key2mesh.viewer.demo_view import DemoView

    def demo():
        return DemoView(tmp_path, "clip", [0], 30.0, host="203.0.113.5", port=0, open_browser=False)

    with pytest.raises(Key2MeshError, match="cannot serve on 203.0.113.5"):
        _within(10, demo)
    with pytest.raises(Key2MeshError, match="cannot serve on 203.0.113.5"):
        _within(10, lambda: LiveViewer(None, host="203.0.113.5", port=0))


def _triangle_bodies(scene) -> dict:
    """{track name: SkinnedBody}: one triangle on a one-joint skeleton following the root (no
    body model needed: for the page's GUI and clock)."""
    from key2mesh.viewer.bodies import SkinnedBody

    sk = Skeleton(np.array([0]), ["pelvis"], np.array([-1]), np.zeros((1, 3)), {}, np.zeros((1, 3)))
    tri = np.array([[0.0, 0, 0], [0.3, 0, 0], [0, 0.3, 0]])
    return {
        tr.name: SkinnedBody(
            tri,
            np.array([[0, 1, 2]]),
            np.ones((3, 1)),
            sk,
            np.tile(np.eye(3), (len(tr.times), 1, 1, 1)),
            tr.root[:, None].copy(),
        )  # fmt: skip
        for tr in scene.tracks
    }


def test_file_names_reach_the_page_as_text_not_html(tmp_path):
    """viser renders raw HTML inside markdown: names of files and folders (title, notes, the
    people shown) are escaped, so a result named with HTML cannot run script in the page."""
    pytest.importorskip("viser")
    import re

    from key2mesh.inference.motion import write_params
    from key2mesh.inference.world import camera_world
    from key2mesh.viewer import load_scene
    from key2mesh.viewer.app import Viewer

    folder = tmp_path / "r<iframe srcdoc=x>*b*"
    folder.mkdir()
    motion, _, _ = _motion()
    motion.world = camera_world(len(motion))  # a note names the file
    write_params(motion, folder / "a<img src=x onerror=alert(1)>_params.npz")
    write_params(motion, folder / "b_params.npz")
    scene = load_scene(folder)
    viewer = Viewer(scene, _triangle_bodies(scene), port=0, video=False)
    unescape = lambda s: re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", s)  # noqa: E731
    try:
        info = viewer.g_info.content  # t = 0.00 s · shown: <both people>
        assert not re.search(r"(?<!\\)[<>*]", info), info  # no raw tag, no emphasis
        assert "shown: a<img src=x onerror=alert(1)>/track0, b/track0" in unescape(info)
        title, notes = viewer.g_title.content, viewer.g_notes.content
    finally:
        viewer.close()
    assert title.startswith("**") and title.endswith("**")  # bold markup kept
    for md in (title[2:-2], notes):
        assert not re.search(r"(?<!\\)[<>*]", md), md
    assert unescape(title[2:-2]) == str(folder)
    assert "a<img src=x onerror=alert(1)>_params.npz: camera frame" in unescape(notes)


def test_the_url_of_an_ipv6_address_opens(tmp_path):
    """An IPv6 --host is written in brackets in the URL printed, opened and screenshotted."""
    pytest.importorskip("viser")
    import urllib.request

    from key2mesh.viewer.demo_view import DemoView

    try:
        view = DemoView(tmp_path, "clip", [0], 30.0, host="::1", port=0, open_browser=False)
    except Key2MeshError:
        pytest.skip("no IPv6 loopback here")
    try:
        assert view.url == f"http://[::1]:{view.server.get_port()}"
        with urllib.request.urlopen(view.url, timeout=10) as page:
            assert b"<html" in page.read().lower()
    finally:
        view.server.stop()


def test_people_of_a_coarser_file_do_not_blink(tmp_path):
    """Results sampled at different steps on one clock: each person is shown between their own
    samples (within half their own step), not only at the ticks that are theirs."""
    from key2mesh.inference.motion import write_params

    coarse, _, _ = _motion()  # every 4th frame at 30 fps
    fine, _, _ = _motion()
    fine.frame_index = fine.frame_index // 4  # the same rows every frame: 4x finer in time
    fine.time_s = fine.frame_index / FPS
    write_params(coarse, tmp_path / "coarse_params.npz")
    write_params(fine, tmp_path / "fine_params.npz")
    scene = load_params_scene(find_results(tmp_path))
    assert scene.interval_s == pytest.approx(1 / FPS)
    tr = next(t for t in scene.tracks if t.name == "coarse/track0")
    ticks = scene.clock[(scene.clock >= tr.start_s) & (scene.clock <= tr.end_s)]
    assert len(ticks) == 26  # 15 of its own + 11 of the fine file's only
    got = [scene.visible(t).get(tr.name) for t in ticks]
    assert None not in got, got
    np.testing.assert_array_less(np.abs(tr.times[got] - ticks), 2 / FPS + 1e-6)  # a nearest one
    assert scene.visible(tr.end_s + 3 / FPS) == {}  # after its last sample and half a step


def test_malformed_results_are_one_line_errors(tmp_path):
    """A truncated params file and a frame rate of 0 are one-line errors; a sidecar .json of
    another shape is ignored like an unreadable one."""
    import json

    from key2mesh.inference.motion import write_params

    motion, _, _ = _motion()
    good = tmp_path / "good_params.npz"
    write_params(motion, good)
    cut = tmp_path / "cut_params.npz"
    cut.write_bytes(good.read_bytes()[:300])
    with pytest.raises(Key2MeshError, match="not a readable params file"):
        load_params_scene([cut])
    zero = tmp_path / "zero_params.npz"
    with np.load(good) as z:
        np.savez(zero, **{**{k: z[k] for k in z.files}, "fps": np.float64(0.0)})
    with pytest.raises(Key2MeshError, match="fps"):
        load_params_scene([zero])
    for sidecar in ({"world": ["a", "list"]}, ["not", "an", "object"], {"frame_range": "x"}):
        good.with_suffix(".json").write_text(json.dumps(sidecar))
        (tmp_path / "good_key2mesh.mp4").write_bytes(b"")  # the demo's video beside it
        scene = load_params_scene([good])
        assert [t.name for t in scene.tracks] == ["track0", "track1"]


def test_screenshot_fails_at_once_when_the_browser_exits(result, monkeypatch, tmp_path):
    """A headless browser that exits at once (a broken install) is an error then, not after
    the 60 s wait for it to connect."""
    pytest.importorskip("viser")
    import shutil

    from key2mesh.viewer.app import Viewer
    from key2mesh.viewer.screenshot import screenshot

    if shutil.which("false") is None:
        pytest.skip("no `false` program")
    monkeypatch.setenv("KEY2MESH_CHROMIUM", shutil.which("false"))
    scene = load_params_scene(find_results(result[0]))
    viewer = Viewer(scene, _triangle_bodies(scene), port=0, video=False)
    try:
        with pytest.raises(Key2MeshError, match="exited"):
            _within(15, lambda: screenshot(viewer, tmp_path / "x.png", size=(320, 240)))
    finally:
        viewer.close()
    assert not (tmp_path / "x.png").exists()


def test_other_web_pages_cannot_open_the_viewer_socket():
    """viser checks no ``Origin``: a page on another site could open the viewer's websocket and
    read the scene. The socket now accepts pages of this machine's loopback names or the bound
    address (any port) and clients sending no origin; others get HTTP 403. A wildcard bind
    accepts IP addresses and this machine's host name, no other name (it accepted every
    origin)."""
    pytest.importorskip("viser")
    import socket

    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    from key2mesh.viewer.app import allowed_origins, open_server

    for wildcard in ("0.0.0.0", "::"):  # reached under this machine's addresses: any IP
        pattern = allowed_origins(wildcard)[1]
        for ok in ("http://10.1.2.3:8080", "http://[fe80::1]:80", "http://localhost:1",
                   f"http://{socket.gethostname()}:8080"):  # fmt: skip
            assert pattern.match(ok), ok
        for bad in ("http://evil.example:8080", "http://10.1.2.3.evil.example", "null"):
            assert not pattern.match(bad), bad  # a rebinding page comes under its own name
    pattern = allowed_origins("192.168.1.20")[1]
    assert pattern.match("http://192.168.1.20:8080") and pattern.match("http://[::1]:1")
    assert not pattern.match("http://192.168.1.20.evil.example:8080")
    server = open_server("127.0.0.1", 0, "test")
    try:
        url = f"ws://127.0.0.1:{server.get_port()}"
        version = ["viser-v" + __import__("viser").__version__]
        for origin in ("https://evil.example", "http://localhost.evil.example", "null"):
            with pytest.raises(InvalidStatus) as err:
                connect(url, origin=origin, subprotocols=version, open_timeout=5).close()
            assert err.value.response.status_code == 403, origin
        for origin in (None, f"http://127.0.0.1:{server.get_port()}", "http://localhost:9"):
            connect(url, origin=origin, subprotocols=version, open_timeout=5).close()
    finally:
        server.stop()


@pytest.mark.parametrize(
    "flags",
    [("--size", "320x200"), ("--screenshot", "s.png", "--play"),
     ("--screenshot", "s.png", "--max-seconds", "5")],
)  # fmt: skip
def test_view_options_the_mode_ignores_are_refused(tmp_path, capsys, flags):
    """--size without --screenshot, --play / --max-seconds with it: accepted and ignored before."""
    from key2mesh.cli import main

    assert main(["view", str(tmp_path), "--no-browser", "--port", "0", *flags]) == 2
    assert "would be ignored" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["shot.txt", "shot", "folder"])
def test_a_screenshot_name_that_cannot_be_written_is_refused_first(
    result, tmp_path, capsys, monkeypatch, name
):
    """--screenshot to a name Pillow cannot write (no image suffix, a folder): one line before
    any work; it was a ValueError traceback after the whole headless render."""
    pytest.importorskip("viser")
    from key2mesh.cli import main

    monkeypatch.setenv("KEY2MESH_CHROMIUM", str(tmp_path / "no-browser-here"))
    (tmp_path / "folder").mkdir()
    folder = result[0]
    assert main(["view", str(folder), "--port", "0", "--screenshot", str(tmp_path / name)]) == 2
    err = capsys.readouterr().err
    assert f"--screenshot {tmp_path / name}: " in err and "Chromium" not in err, err
    assert not list(tmp_path.glob("shot*"))


def test_an_unreadable_overlay_video_is_left_out_with_a_note(result):
    """The overlay video is optional: a corrupt one is left out with a note (the viewer used to
    refuse the whole result with its error); a readable one is kept."""
    from key2mesh.media.video import VideoWriter

    folder = result[0]
    video = folder / "clip_key2mesh.mp4"
    video.write_bytes(b"not a video" * 20)
    scene = load_params_scene(find_results(folder))
    assert scene.videos == [] and len(scene.tracks) == 2
    assert any(n.startswith("overlay video left out: ") and str(video) in n for n in scene.notes)
    with VideoWriter(video, FPS / 4) as w:
        for _ in range(3):
            w.write(np.zeros((32, 48, 3), np.uint8))
    scene = load_params_scene(find_results(folder))
    assert [v.path for v in scene.videos] == [video]
    assert not any("overlay video" in n for n in scene.notes)


def test_an_adapt_run_on_several_people_per_frame_loads(tmp_path):
    """An adapt run whose target holds two people per frame: one track per person (every
    detection was track 0 before: 'track 0 has two rows in frame 0')."""
    import torch

    from key2mesh.keypoints.io import Detections, write_npz
    from key2mesh.viewer import load_scene

    base = np.array(
        [[320, 100], [330, 90], [310, 90], [340, 95], [300, 95], [360, 150], [280, 150],
         [380, 220], [260, 220], [390, 290], [250, 290], [350, 300], [290, 300], [355, 400],
         [285, 400], [360, 500], [280, 500]], np.float32,
    )  # fmt: skip
    kp = np.stack([np.stack([base + [5 * f, 0], base + [400 + 5 * f, 0]]) for f in range(6)])
    names = [f"{f:04d}" for f in range(6)]
    det = Detections(
        kp, np.ones(kp.shape[:3], np.float32), "coco17", names, np.tile([0, 1], (6, 1))
    )
    write_npz(det, tmp_path / "target.npz")
    pretrained = Path(__file__).parents[1] / "src/key2mesh/pretrained/anny_coco17.pt"
    ck = torch.load(pretrained, weights_only=False, map_location="cpu")
    torch.save({**ck, "target": str(tmp_path / "target.npz"), "step": 1}, tmp_path / "best.pt")
    scene = load_scene(tmp_path)
    assert [t.name for t in scene.tracks] == ["track0", "track1"]
    assert all(len(t.times) == 6 for t in scene.tracks)
    # the two people stand apart (x), as the detections put them
    assert abs(scene.tracks[1].root[0, 0] - scene.tracks[0].root[0, 0]) > 0.5


def test_views_are_fitted_on_instants_with_one_person_each():
    from key2mesh.viewer.adapt_run import _paired_rows

    a, b = _paired_rows(np.array([3, 1, 1, 2, 5]), np.array([1, 2, 3, 3, 5, 7]))
    np.testing.assert_array_equal(a, [3, 4])  # instants 2 and 5: 1 and 3 are ambiguous
    np.testing.assert_array_equal(b, [1, 4])


def test_closing_the_viewer_releases_the_video_reader(result, monkeypatch):
    """Viewer.close() closes the overlay video's reader (its OpenCV capture stayed open)."""
    pytest.importorskip("viser")
    from tests.helpers.video_readers import record_reader_releases

    from key2mesh.media.video import VideoWriter
    from key2mesh.viewer import load_scene
    from key2mesh.viewer.app import Viewer

    folder = result[0]
    with VideoWriter(folder / "clip_key2mesh.mp4", FPS / 4) as w:
        for i in range(15):
            w.write(np.full((64, 96, 3), 10 * i, np.uint8))
    released = record_reader_releases(monkeypatch)
    scene = load_scene(folder)
    viewer = Viewer(scene, _triangle_bodies(scene), port=0)
    viewer.show(0.4)  # frame 3 read: the reader is open
    assert released == []
    viewer.close()
    assert released == [True]


def test_demo_view_aligns_the_overlay_video_of_a_late_entrant(tmp_path, monkeypatch):
    """demo --view knows the frames it read: the overlay video's frame k is the k-th of them,
    also when nobody was in the first ones (it was taken as the k-th after the first row)."""
    pytest.importorskip("viser")
    from key2mesh.inference.motion import write_params
    from key2mesh.media.video import VideoWriter
    from key2mesh.viewer.demo_view import DemoView

    motion, _, _ = _motion()
    motion.frame_index = motion.frame_index + 8  # first person at frame 8, read from frame 0
    motion.time_s = motion.frame_index / FPS
    write_params(motion, tmp_path / "clip_params.npz")
    with VideoWriter(tmp_path / "clip_key2mesh.mp4", FPS / 4) as w:
        for i in range(17):
            w.write(np.full((64, 96, 3), 10 * i, np.uint8))
    monkeypatch.setattr("key2mesh.viewer.load_bodies", _triangle_bodies)  # no body model
    view = DemoView(tmp_path, "clip", range(0, 68, 4), FPS, port=0, open_browser=False)
    try:
        viewer = view._show_result()
        video = viewer.frames[0].video
        assert video.frame_at(8 / FPS) == 2 and video.frame_at(0.0) == 0
        assert video.frame_at(20 / FPS) == 5
    finally:
        view.server.stop()


def test_play_at_the_end_starts_over(result):
    """Loop off, played to the end: Play again plays from the start (it stopped at once)."""
    pytest.importorskip("viser")
    from key2mesh.viewer import load_scene
    from key2mesh.viewer.app import Viewer

    scene = load_scene(result[0])
    viewer = Viewer(scene, _triangle_bodies(scene), port=0, video=False)
    try:
        viewer.g_loop.value = False
        viewer.playing = True
        viewer.step(10.0)  # past the end: stops there
        assert viewer.time == viewer.clock[-1] and not viewer.playing
        viewer.playing = True  # Play pressed again
        viewer.step(0.05)
        assert viewer.playing and viewer.time == viewer.clock[0]
        viewer.step(0.1)
        assert viewer.time == pytest.approx(viewer.clock[0] + 0.1)
    finally:
        viewer.close()
