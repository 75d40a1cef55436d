"""The motion table (params npz + JSON) and its exports, re-read by independent readers:
BVH by bvhio (its forward kinematics against the predicted joints), TRC parsed back, GLB by
pygltflib and trimesh (skin, animation frames)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from key2mesh.errors import Key2MeshError
from key2mesh.model.checkpoint import PRETRAINED, PRETRAINED_DIR

pytestmark = pytest.mark.skipif(
    not (PRETRAINED_DIR / PRETRAINED["anny-coco17"]).exists(), reason="no shipped checkpoint"
)

# a standing person facing the camera, COCO-17, unit box (x right, y down)
_COCO = np.array(
    [[0.5, 0.08], [0.53, 0.06], [0.47, 0.06], [0.56, 0.07], [0.44, 0.07], [0.62, 0.2], [0.38, 0.2],
     [0.66, 0.36], [0.34, 0.36], [0.68, 0.5], [0.32, 0.5], [0.57, 0.52], [0.43, 0.52], [0.58, 0.72],
     [0.42, 0.72], [0.58, 0.92], [0.42, 0.92]]
)  # fmt: skip


@pytest.fixture(scope="module")
def model():
    from key2mesh.inference.predictor import Key2Mesh

    return Key2Mesh.from_pretrained("anny-coco17", device="cpu", full_mesh=False)


@pytest.fixture(scope="module")
def motion(model):
    """Two people over frames 0..36 every 2 (fps 30), person 1 missing at frames 10-14."""
    from key2mesh.inference.motion import MotionSmoothing, build_motion

    rng = np.random.default_rng(0)
    rows = []
    for f in range(0, 38, 2):
        for pid, (x, h) in enumerate(((200.0, 400.0), (700.0, 350.0))):
            if pid == 1 and 10 <= f <= 14:
                continue
            kp = _COCO * [0.45 * h, h] + [x + 4 * f, 150.0] + rng.normal(0, 4, (17, 2))
            kp[9, 1] -= 80 * np.sin(f / 6)  # a waving wrist
            rows.append((f, f / 30.0, pid, kp))
    f, t, pid, kp = (np.array(x) for x in zip(*rows))
    return build_motion(
        model, f, t, pid, kp, np.ones(kp.shape[:2]) * 0.9, (720, 1280), 30.0,
        smoothing=MotionSmoothing("one-euro"),
    )  # fmt: skip


def test_params_npz_has_standard_keys(tmp_path, motion):
    from key2mesh.inference.motion import write_params

    npz, js = write_params(motion, tmp_path / "clip_params.npz", source="synthetic")
    d = np.load(npz)
    n = len(motion)
    assert d["global_orient"].shape == (n, 3) and d["body_pose"].shape == (n, 69)
    assert d["transl"].shape == (n, 3) and d["joints3d"].shape == (n, 24, 3)
    assert d["phenotypes"].shape == (n, 6) and list(d["phenotype_names"])[0] == "gender"
    assert str(d["body_model"]) == "anny" and float(d["fps"]) == 30.0
    assert sorted(np.unique(d["track_id"])) == [0, 1]
    assert np.allclose(d["time_s"], d["frame_index"] / 30.0)
    # people stand in front of the camera, a few metres away; transl is the root joint
    assert (d["transl"][:, 2] > 1).all() and (d["transl"][:, 2] < 20).all()
    assert np.allclose(d["joints3d"][:, 0], d["transl"], atol=1e-5)
    # body_pose is the axis-angle of rotmats 1..23
    from scipy.spatial.transform import Rotation

    r = Rotation.from_rotvec(d["body_pose"].reshape(-1, 3)).as_matrix().reshape(n, 23, 3, 3)
    assert np.abs(r - d["rotmats"][:, 1:]).max() < 1e-4
    meta = json.loads(js.read_text())
    assert set(meta["keys"]) >= {"transl", "global_orient", "body_pose", "phenotypes"}
    assert meta["tracks"]["1"]["rows"] == int((d["track_id"] == 1).sum())
    # one shape per track
    for t in (0, 1):
        assert np.ptp(d["phenotypes"][d["track_id"] == t], axis=0).max() == 0


def test_params_npz_reads_back_as_detections(tmp_path, motion):
    """A motion table is a detections file (e.g. for `adapt --multiview`, one per camera): each row
    lands at its frame and track, absent rows are padding, image size back to (width, height)."""
    from key2mesh.inference.motion import write_params
    from key2mesh.keypoints.io import read_detections

    npz, _ = write_params(motion, tmp_path / "clip_params.npz")
    d = np.load(npz)
    det = read_detections(npz)
    assert det.keypoint_set == "coco17" and det.tracked and tuple(det.image_size) == (1280, 720)
    assert det.keypoints.shape[:2] == (37, 2)  # frames 0..36, two tracks
    kp, conf, index = det.flatten()
    assert len(kp) == len(d["frame_index"])
    order = np.lexsort((d["track_id"], d["frame_index"]))
    assert np.array_equal(index[:, 0], d["frame_index"][order])
    assert np.allclose(kp, d["keypoints2d"][order, :, :2]) and np.allclose(conf, 0.9)
    assert not det.present[12, 1] and not det.present[1].any()  # person 1 missing; odd frames empty
    bad = dict(d)
    bad["frame_index"] = np.zeros_like(d["frame_index"])  # both tracks twice in frame 0
    np.savez(tmp_path / "bad.npz", **bad)
    with pytest.raises(Key2MeshError, match="twice in one frame"):
        read_detections(tmp_path / "bad.npz")


def test_bvh_reread_by_bvhio_matches_the_joints(tmp_path, model, motion):
    bvhio = pytest.importorskip("bvhio")
    from key2mesh.inference.motion_export import export_motion
    from key2mesh.inference.motion_export.skeleton import driven_joints

    paths = export_motion(model, motion, tmp_path, "clip", ["bvh"])
    assert [p.name for p in paths] == ["clip_track0.bvh", "clip_track1.bvh"]
    for track, path in enumerate(paths):
        rows = motion.rows_of(track)
        root = bvhio.readAsHierarchy(str(path))
        joints = {j.Name: j for j, _, _ in root.layout()}
        frames = range(len(root.Keyframes) if root.Keyframes else 0)
        grid = np.arange(motion.frame_index[rows][0], motion.frame_index[rows][-1] + 1, 2)
        assert len(frames) == len(grid)
        want = motion.joints3d[rows] * [1.0, -1.0, -1.0]  # camera → world (y up)
        names = [
            n.removeprefix("smpl_")
            for i, n in enumerate(__import__("key2mesh").keypoints.sets.SMPL24)
            if i in driven_joints("anny")
        ]
        worst = 0.0
        for k, f in enumerate(motion.frame_index[rows]):
            root.loadPose(int(np.searchsorted(grid, f)))
            got = np.array([list(joints[n].PositionWorld) for n in names])
            worst = max(worst, np.abs(got - want[k][driven_joints("anny")]).max())
        assert worst < 1e-3, f"BVH forward kinematics {worst * 1000:.2f} mm off the joints"


def test_trc_parsed_back(tmp_path, model, motion):
    from key2mesh.inference.motion_export import export_motion
    from key2mesh.inference.motion_export.trc import read_trc

    (path,) = export_motion(model, motion, tmp_path, "clip", ["trc"])[:1]
    names, times, xyz, header = read_trc(path)
    assert names[:3] == ["Nose", "LEye", "REye"] and len(names) == 19
    assert names[17:] == ["Neck", "Hip"]  # Pose2Sim's COCO_17 markers: mid-shoulders, mid-hips
    assert header["Units"] == "mm" and float(header["DataRate"]) == 15.0
    rows = motion.rows_of(0)
    assert int(header["NumFrames"]) == len(times) == len(rows)
    want = motion.keypoints3d[rows] * [1.0, -1.0, -1.0] * 1000.0
    assert np.abs(xyz[:, :17] - want).max() < 0.01
    assert np.abs(xyz[:, 17] - 0.5 * (want[:, 5] + want[:, 6])).max() < 0.01
    assert np.abs(xyz[:, 18] - 0.5 * (want[:, 11] + want[:, 12])).max() < 0.01
    assert np.allclose(times, (motion.frame_index[rows] - motion.frame_index[rows][0]) / 30.0)


def test_dotted_stem_keeps_every_track(tmp_path, model, motion):
    """``two.people`` (an input ``two.people.npz``): one file per track, none cut at the dot."""
    from key2mesh.inference.motion_export import export_motion

    paths = export_motion(model, motion, tmp_path, "two.people", ["trc", "bvh"])
    assert sorted(p.name for p in paths) == sorted(
        f"two.people_track{t}.{ext}" for t in (0, 1) for ext in ("bvh", "trc")
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths)


def test_gaps_are_interpolated(motion):
    from key2mesh.inference.motion_export.series import track_series

    s = track_series(motion, 1)
    assert s.interpolated.sum() == 3 and len(s) == 19 and s.fps == 15.0
    # the filled-in frames lie between their neighbours
    k = int(np.flatnonzero(s.interpolated)[1])
    assert np.allclose(s.root[k], 0.5 * (s.root[k - 1] + s.root[k + 1]), atol=1e-9)


def test_unknown_export_format_is_one_line():
    from key2mesh.errors import Key2MeshError
    from key2mesh.inference.motion_export import parse_formats

    assert parse_formats("bvh, TRC,bvh") == ("bvh", "trc")
    with pytest.raises(Key2MeshError, match="unknown format"):
        parse_formats("bvh,fbx")


def _accessor(gltf, blob, index):
    """numpy array of a glTF accessor (pygltflib document + its binary blob)."""
    acc = gltf.accessors[index]
    view = gltf.bufferViews[acc.bufferView]
    dtype = {5126: np.float32, 5123: np.uint16, 5125: np.uint32}[acc.componentType]
    width = {"SCALAR": 1, "VEC3": 3, "VEC4": 4, "MAT4": 16}[acc.type]
    start = view.byteOffset + (acc.byteOffset or 0)
    return np.frombuffer(blob, dtype, acc.count * width, start).reshape(acc.count, width)


def test_glb_reread_by_pygltflib_and_trimesh(tmp_path, model, motion):
    pygltflib = pytest.importorskip("pygltflib")
    trimesh = pytest.importorskip("trimesh")
    from scipy.spatial.transform import Rotation

    from key2mesh.inference.motion_export import export_motion
    from key2mesh.inference.motion_export.series import track_series

    path = export_motion(model, motion, tmp_path, "clip", ["glb"])[1]  # track 1, with a gap
    series = track_series(motion, 1)
    gltf = pygltflib.GLTF2().load(str(path))
    blob = gltf.binary_blob()
    (skin,) = gltf.skins
    n = len(skin.joints)
    assert n == 20 and len(gltf.animations) == 1
    anim = gltf.animations[0]
    times = _accessor(gltf, blob, anim.samplers[0].input)[:, 0]
    assert len(times) == len(series) == 19
    assert np.allclose(times, np.arange(19) / 15.0, atol=1e-6)
    # the mesh, re-skinned from the file's own data, is the model's mesh at that frame
    prim = gltf.meshes[0].primitives[0]
    rest = _accessor(gltf, blob, prim.attributes.POSITION).astype(np.float64)
    joints = _accessor(gltf, blob, prim.attributes.JOINTS_0).astype(int)
    weights = _accessor(gltf, blob, prim.attributes.WEIGHTS_0).astype(np.float64)
    ibm = _accessor(gltf, blob, skin.inverseBindMatrices).reshape(n, 4, 4).transpose(0, 2, 1)
    k = 5
    local = {}
    for ch in anim.channels:
        out = _accessor(gltf, blob, anim.samplers[ch.sampler].output)[k].astype(np.float64)
        local[(ch.target.node, ch.target.path)] = out
    parent = {c: p for p, node in enumerate(gltf.nodes) for c in (node.children or [])}
    glob = np.zeros((n, 4, 4))
    for j in range(n):  # parents come first
        m = np.eye(4)
        m[:3, :3] = Rotation.from_quat(local[(j, "rotation")]).as_matrix()
        m[:3, 3] = local.get((j, "translation"), gltf.nodes[j].translation)
        glob[j] = glob[parent[j]] @ m if j in parent else m
    skinning = glob @ ibm  # (n, 4, 4)
    per = np.einsum("vkij,vj->vki", skinning[joints], np.c_[rest, np.ones(len(rest))])
    got = (weights[..., None] * per[..., :3]).sum(1)
    import torch

    with torch.no_grad():
        want = (
            model.mesh_body(
                torch.from_numpy(series.rotmats[k : k + 1]).float(),
                torch.from_numpy(series.shape[None]).float(),
            )
            .vertices[0]
            .double()
            .numpy()
            + series.root[k]
        )
    err = np.linalg.norm(got - want, axis=1)
    assert np.median(err) < 1e-3 and err.max() < 0.02, (np.median(err), err.max())
    scene = trimesh.load(str(path))
    geom = list(scene.geometry.values())[0]
    assert len(geom.vertices) == len(rest) and len(geom.faces) == len(model.faces)


def test_predict_writes_params_and_exports_for_keypoint_files(tmp_path, capsys):
    """Untracked detections (slots swapped half-way) in an npz: predict tracks them, writes the
    demo's params keys and one BVH/TRC per person."""
    from key2mesh.cli import main
    from key2mesh.keypoints.io import Detections, write_npz

    f = 20
    kp = np.zeros((f, 2, 17, 2), np.float32)
    for t in range(f):
        a = _COCO * [180, 400] + [200 + 3 * t, 100]
        b = _COCO * [160, 350] + [800 - 3 * t, 150]
        kp[t] = (a, b) if t < 10 else (b, a)  # the detector lists them in another order
    det = Detections(kp, np.full((f, 2, 17), 0.9, np.float32), "coco17", [f"f{t}" for t in range(f)],
                     np.tile([0, 1], (f, 1)), image_size=(1280, 720))  # fmt: skip
    src = write_npz(det, tmp_path / "clip.npz")
    out = tmp_path / "out"
    args = ["predict", str(src), "--checkpoint", "anny-coco17", "--out", str(out)]
    assert main([*args, "--export", "bvh,trc", "--fps", "25", "--device", "cpu"]) == 0
    d = np.load(tmp_path / "out" / "clip_params.npz")
    assert sorted(np.unique(d["track_id"])) == [0, 1] and float(d["fps"]) == 25.0
    assert d["foot_contact"].shape == (len(d["track_id"]), 2) and d["transl_world"].shape[1] == 3
    r = d["world_rotation"]
    assert np.allclose(r @ r.T, np.eye(3), atol=1e-6) and np.isclose(np.linalg.det(r), 1.0)
    for t in (0, 1):  # each track stays one person: its root moves smoothly
        x = d["transl"][d["track_id"] == t][:, 0]
        assert np.abs(np.diff(x)).max() < 0.1
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert {"clip_track0.bvh", "clip_track1.trc", "clip_params.json", "clip_params.npz"} <= set(
        names
    )
    assert "2 track(s)" in capsys.readouterr().out


def test_predict_reads_a_tables_fps_options_win_and_reruns_leave_no_stale_outputs(tmp_path):
    """A motion table records its frame rate: predicting from it keeps it (a 25 Hz motion is not
    written at 30 Hz); --fps / --image-size given win over the file's; a rerun into the same
    folder with fewer tracks and frames leaves no track file or mesh of the earlier run."""
    from key2mesh.cli import main
    from key2mesh.keypoints.io import Detections, write_npz

    def clip(tracks: int, f: int) -> Path:
        kp = np.zeros((f, tracks, 17, 2), np.float32)
        for t in range(f):
            kp[t, 0] = _COCO * [180, 400] + [200 + 3 * t, 100]
            if tracks == 2:
                kp[t, 1] = _COCO * [160, 350] + [800 - 3 * t, 150]
        det = Detections(kp, np.full((f, tracks, 17), 0.9, np.float32), "coco17",
                         [f"f{t}" for t in range(f)], np.tile(np.arange(tracks), (f, 1)),
                         image_size=(1280, 720), tracked=True)  # fmt: skip
        return write_npz(det, tmp_path / "clip.npz")

    out, again = tmp_path / "out", tmp_path / "again"
    common = ["--checkpoint", "anny-coco17", "--device", "cpu"]
    src = clip(2, 12)
    assert main(["predict", str(src), "--out", str(out), "--fps", "25", "--export", "bvh",
                 "--meshes", "ply", *common]) == 0  # fmt: skip
    assert {"clip_track0.bvh", "clip_track1.bvh"} <= {p.name for p in out.iterdir()}
    assert len(list((out / "clip_meshes").iterdir())) == 24
    table = out / "clip_params.npz"
    assert main(["predict", str(table), "--out", str(again), "--export", "bvh", *common]) == 0
    d = np.load(again / "clip_params_params.npz")
    assert float(d["fps"]) == 25.0 and d["image_size"].tolist() == [720, 1280]
    assert "Frame Time: 0.04" in (again / "clip_params_track0.bvh").read_text()
    assert main(["predict", str(table), "--out", str(again), "--fps", "50",
                 "--image-size", "640x480", *common]) == 0  # fmt: skip
    d = np.load(again / "clip_params_params.npz")
    assert float(d["fps"]) == 50.0 and d["image_size"].tolist() == [480, 640]
    src = clip(1, 5)  # the same name, one person, fewer frames
    assert main(["predict", str(src), "--out", str(out), "--fps", "25", "--export", "bvh",
                 "--meshes", "ply", *common]) == 0  # fmt: skip
    names = {p.name for p in out.iterdir()}
    assert "clip_track0.bvh" in names and "clip_track1.bvh" not in names
    assert len(list((out / "clip_meshes").iterdir())) == 5


def test_amass_export_of_an_smpl_track(tmp_path):
    """With a synthetic SMPL-format body: SMPL(poses, betas) + trans is the z-up track body."""
    pytest.importorskip("smplx")
    import torch
    from scipy.spatial.transform import Rotation

    from helpers.synthetic_smpl import write_synthetic_smpl
    from key2mesh.body import load_body_model
    from key2mesh.inference.motion_export.amass import Y_UP_TO_Z_UP, write_amass
    from key2mesh.inference.motion_export.series import TrackSeries

    write_synthetic_smpl(tmp_path / "SMPL_NEUTRAL.pkl")
    body = load_body_model("smpl", model_dir=str(tmp_path), gender="neutral")
    model = type("M", (), {"body": body})()
    rng = np.random.default_rng(0)
    rot = Rotation.from_rotvec(rng.normal(0, 0.3, (4 * 24, 3))).as_matrix().reshape(4, 24, 3, 3)
    rot[:, 22:] = np.eye(3)  # SMPL's hand joints: no SMPL-H counterpart
    series = TrackSeries(3, np.arange(4), 30.0, rot, rng.normal(0, 1, 10), rng.normal(0, 1, (4, 3)),
                         np.zeros((4, 17, 3)), "coco17", np.zeros(4, bool), "smpl")  # fmt: skip
    d = np.load(write_amass(model, series, tmp_path / "t_amass.npz"))
    assert d["poses"].shape == (4, 156) and d["betas"].shape == (16,)
    assert float(d["mocap_framerate"]) == 30.0 and str(d["gender"]) == "neutral"
    aa = torch.from_numpy(d["poses"][:, :72].copy()).to(body.dtype)
    with torch.no_grad():
        raw = (
            body.smpl(
                betas=torch.from_numpy(d["betas"][:10]).to(body.dtype)[None].expand(4, -1),
                global_orient=aa[:, :3],
                body_pose=aa[:, 3:72],
            )
            .vertices.double()
            .numpy()
            + d["trans"][:, None]
        )
        ours = body(
            torch.from_numpy(rot).to(body.dtype),
            torch.from_numpy(series.shape)[None].to(body.dtype),
        )
    want = (ours.vertices.double().numpy() + series.root[:, None]) @ Y_UP_TO_Z_UP.T
    assert np.abs(raw - want).max() < 1e-4


@pytest.fixture(scope="module")
def late_motion(model):
    """Two people walking on a floor seen from a tilted camera (fps 30, every 2nd frame);
    person 1 enters at frame 10; the export frame is the ground's."""
    from key2mesh.inference.motion import build_motion

    rng = np.random.default_rng(1)
    rows = []
    for f in range(0, 60, 2):
        for pid, (x, h) in enumerate(((200.0, 400.0), (900.0, 300.0))):
            if pid == 1 and f < 10:
                continue
            kp = _COCO * [0.45 * h, h] + [x + (4 - 8 * pid) * f, 150.0 + 100 * pid]
            step = np.sin(np.pi * f / 12)  # feet take turns
            kp[15, 0] += 15 * max(step, 0)
            kp[16, 0] += 15 * max(-step, 0)
            rows.append((f, f / 30.0, pid, kp + rng.normal(0, 1.5, (17, 2))))
    f, t, pid, kp = (np.array(x) for x in zip(*rows))
    return build_motion(
        model, f, t, pid, kp, np.ones(kp.shape[:2]) * 0.9, (720, 1280), 30.0, world="ground"
    )


def test_exports_share_the_video_clock(tmp_path, model, late_motion):
    """TRC times and glTF keys are frame / fps; the BVH's frame time is the sampling interval
    and its start is in the sidecar; ``_all.glb`` holds every track, the camera and the
    late person in their first pose until they come in."""
    pygltflib = pytest.importorskip("pygltflib")
    bvhio = pytest.importorskip("bvhio")
    from key2mesh.inference.motion import write_params
    from key2mesh.inference.motion_export import export_motion
    from key2mesh.inference.motion_export.trc import read_trc

    m = late_motion
    assert m.world.mode == "ground"
    paths = {p.name: p for p in export_motion(model, m, tmp_path, "clip", ["bvh", "glb", "trc"])}
    assert set(paths) == {f"clip_track{t}.{e}" for t in (0, 1) for e in ("bvh", "glb", "trc")} | {
        "clip_all.glb"
    }
    _, times, _, header = read_trc(paths["clip_track1.trc"])
    assert np.allclose(times, np.arange(10, 60, 2) / 30.0, atol=1e-6)
    assert float(header["DataRate"]) == 15.0
    bvh = bvhio.readAsBvh(str(paths["clip_track1.bvh"]))
    assert abs(bvh.FrameTime - 2 / 30.0) < 1e-6 and bvh.FrameCount == 25
    _, js = write_params(m, tmp_path / "clip_params.npz", source="synthetic.mp4")
    meta = json.loads(js.read_text())
    assert meta["source"] == "synthetic.mp4"
    assert meta["tracks"]["1"]["start_s"] == pytest.approx(10 / 30.0)
    assert meta["tracks"]["1"]["sample_interval_s"] == pytest.approx(2 / 30.0)
    assert meta["world"]["mode"] == "ground" and meta["world"]["camera"]["focal_px"] == 1280.0
    g = pygltflib.GLTF2().load(str(paths["clip_track1.glb"]))
    anim = g.animations[0]
    keys = _accessor(g, g.binary_blob(), anim.samplers[0].input)[:, 0]
    assert np.allclose(keys, np.arange(10, 60, 2) / 30.0, atol=1e-6)
    g = pygltflib.GLTF2().load(str(paths["clip_all.glb"]))
    assert len(g.skins) == len(g.meshes) == 2 and len(g.animations) == 1
    assert g.cameras[0].perspective.yfov == pytest.approx(2 * np.arctan(360 / 1280))
    from scipy.spatial.transform import Rotation

    cam = next(n for n in g.nodes if n.camera == 0)
    local = (m.world.points(m.transl) - cam.translation) @ Rotation.from_quat(
        cam.rotation
    ).as_matrix()
    assert (local[:, 2] < -1).all()  # glTF cameras look along their -z: the people are in view
    f = 1280.0  # and project where they were seen: x / -z = (u - cx) / f
    u = local[:, 0] / -local[:, 2] * f + 640
    assert np.abs(u - m.keypoints2d[:, [11, 12]].mean(1)[:, 0]).max() < 60
    animated = {ch.target.node for ch in g.animations[0].channels}
    assert all(j in animated for skin in g.skins for j in skin.joints)
    # nobody is hidden (scaled to 0): the late person stands in their first pose until frame 10
    # (their nodes' own transforms), their tracked span is in the body node's extras
    assert not [ch for ch in g.animations[0].channels if ch.target.path == "scale"]
    assert all(n.scale in (None, [1.0, 1.0, 1.0]) for n in g.nodes)
    bodies = {n.extras["track"]: n for n in g.nodes if n.mesh is not None}
    assert bodies[1].extras["tracked_s"] == pytest.approx([10 / 30.0, 58 / 30.0], abs=1e-6)
    assert bodies[0].extras["tracked_s"][0] == 0.0
    root1 = g.nodes[g.skins[bodies[1].skin].skeleton]
    first = m.world.points(m.transl[m.rows_of(1)[0]]) + m.world.root_shift[m.rows_of(1)[0]]
    assert np.allclose(root1.translation, first, atol=1e-6)


def test_ground_frame_exports_stand_on_the_ground(tmp_path, model, late_motion):
    """In the ground frame the BVH's joints are the predicted joints moved by the fitted
    transform (+ the contact correction), y is up and the feet in contact stand on their
    level (the ground, or a parallel level for a person whose fitted depth puts them higher)."""
    bvhio = pytest.importorskip("bvhio")
    from key2mesh.inference.motion_export import export_motion
    from key2mesh.inference.motion_export.skeleton import driven_joints

    m, w = late_motion, late_motion.world
    assert np.allclose(w.rotation @ w.rotation.T, np.eye(3), atol=1e-9)
    (path,) = export_motion(model, m, tmp_path, "g", ["bvh"])[:1]
    rows = m.rows_of(0)
    want = w.points(m.joints3d[rows]) + w.root_shift[rows, None]
    root = bvhio.readAsHierarchy(str(path))
    joints = {j.Name: j for j, _, _ in root.layout()}
    idx = driven_joints("anny")
    names = [__import__("key2mesh").keypoints.sets.SMPL24[i].removeprefix("smpl_") for i in idx]
    worst = 0.0
    for k in range(len(rows)):
        root.loadPose(k)
        got = np.array([list(joints[n].PositionWorld) for n in names])
        worst = max(worst, np.abs(got - want[k][idx]).max())
    assert worst < 1e-3, worst
    ankles = (w.points(m.joints3d[:, [7, 8]]) + w.root_shift[:, None])[..., 1]
    assert w.contact.any()
    standing = np.array([w.fit.level[t] + w.sole[t] for t in m.track_id.tolist()])
    assert min(w.fit.level.values()) == 0.0 and 0.03 < min(w.sole.values()) < 0.15
    err = (ankles - standing[:, None])[w.contact]
    assert np.abs(err).max() < 0.1, err
    assert (want[:, 15, 1] > want[:, 0, 1]).all()  # the head above the pelvis: y is up


def test_unwritable_format_is_refused_before_detection(tmp_path, monkeypatch, capsys):
    """`demo --export amass` with the anny model: one line, exit 2, no detector run."""
    import cv2

    from key2mesh.cli import main
    from key2mesh.media import multi_detect

    def boom(*a, **k):
        raise AssertionError("the detector ran")

    monkeypatch.setattr(multi_detect.MultiPersonDetector, "__init__", boom)
    img = tmp_path / "in.png"
    cv2.imwrite(str(img), np.full((64, 64, 3), 128, np.uint8))
    args = ["demo", str(img), "--out", str(tmp_path / "o"), "--export", "bvh,amass"]
    assert main([*args, "--checkpoint", "anny-coco17", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "amass" in err and "SMPL" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_a_zero_focal_is_refused_not_replaced(model):
    """``focal=0`` is a bad value (one-line error), not "no focal given" (the default max(H, W))."""
    from key2mesh.errors import Key2MeshError
    from key2mesh.inference.motion import build_motion

    kp = np.tile(_COCO * [180.0, 400.0] + [400.0, 150.0], (3, 1, 1))
    args = (model, np.arange(3), np.arange(3) / 30.0, np.zeros(3, int), kp, np.ones(kp.shape[:2]))
    assert build_motion(*args, (720, 1280), 30.0, focal=None).focal_length[0] == 1280
    with pytest.raises(Key2MeshError, match="focal"):
        build_motion(*args, (720, 1280), 30.0, focal=0.0)


def test_build_motion_refuses_a_bad_frame_rate_or_row_count(model):
    """A frame rate that is not a positive number (0, NaN, negative: every export's clock
    divides by it; before, NaN / inf landed in the TRC, BVH, GLB and the sidecar) and per-row
    arrays of another length than the frame indices are one-line errors, not numpy tracebacks."""
    from key2mesh.inference.motion import build_motion

    kp = np.tile(_COCO * [180.0, 400.0] + [400.0, 150.0], (3, 1, 1))
    conf = np.ones(kp.shape[:2])
    rows = (np.arange(3), np.arange(3) / 30.0, np.zeros(3, int))
    for fps in (0.0, float("nan"), -30.0):
        with pytest.raises(Key2MeshError, match="fps must be a positive number"):
            build_motion(model, *rows, kp, conf, (720, 1280), fps)
    with pytest.raises(Key2MeshError, match=r"track_id must be \(3,\)"):
        build_motion(model, rows[0], rows[1], rows[2][:2], kp, conf, (720, 1280), 30.0)
    with pytest.raises(Key2MeshError, match=r"keypoints2d must be \(3, 17, 2\)"):
        build_motion(model, *rows, kp[:, :12], conf[:, :12], (720, 1280), 30.0)


def test_an_unknown_smoothing_mode_is_refused():
    """``MotionSmoothing("zero_phase")`` (a misspelt mode) is one line; it ran One-Euro."""
    from key2mesh.inference.motion import MotionSmoothing

    with pytest.raises(Key2MeshError, match="smoothing mode 'zero_phase': choose from none"):
        MotionSmoothing("zero_phase")
    assert MotionSmoothing("zero-phase").mode == "zero-phase"
    from key2mesh.commands._args import SMOOTHING_MODES  # the CLI's copy (no torch import)
    from key2mesh.inference.motion import SMOOTHING_MODES as MODES

    assert SMOOTHING_MODES == MODES


def test_exports_leave_out_a_track_without_camera_fit(tmp_path, model, caplog):
    """A track with no camera fit (every row below the fit's confidence) is left out with a
    warning (as the viewer does), the other tracks are written; before, the export stopped at
    it (Key2MeshError) with the first track's files written and no ``_all.glb``. A track twice
    in one frame is a one-line error (was scipy's "Times must be in strictly increasing")."""
    from key2mesh.inference.motion import build_motion
    from key2mesh.inference.motion_export import export_motion

    f = np.repeat(np.arange(6), 2)
    pid = np.tile([0, 1], 6)
    kp = np.stack([_COCO * [180.0, 400.0] + [200.0 + 500 * p, 150.0] for p in pid])
    conf = np.where(pid[:, None] == 1, 0.05, 0.9) * np.ones(kp.shape[:2])
    m = build_motion(model, f, f / 30.0, pid, kp, conf, (720, 1280), 30.0)
    assert np.isnan(m.transl[pid == 1]).all() and np.isfinite(m.transl[pid == 0]).all()
    with caplog.at_level("WARNING"):
        paths = export_motion(model, m, tmp_path, "c", ["bvh", "trc", "glb"])
    assert sorted(p.name for p in paths) == sorted(
        ["c_track0.bvh", "c_track0.trc", "c_track0.glb", "c_all.glb"]
    )
    assert "track 1 has no frame with a camera fit" in caplog.text
    twice = build_motion(model, np.array([0, 1, 1]), np.array([0, 1, 1]) / 30.0,
                         np.zeros(3, int), kp[:3], np.full((3, 17), 0.9), (720, 1280), 30.0)  # fmt: skip
    with pytest.raises(Key2MeshError, match="track 0 has two rows in frame 1"):
        export_motion(model, twice, tmp_path / "twice", "t", ["bvh"])
    from key2mesh.viewer.scene import tracks_of  # the viewer: the same rules

    assert [t.track for t in tracks_of(m)] == [0]  # no camera fit: left out
    with pytest.raises(Key2MeshError, match="track 0 has two rows in frame 1"):
        tracks_of(twice)  # an error, not a track silently missing from the scene


def test_run_ik_on_a_trc_already_in_its_output_folder(tmp_path, model, motion):
    """``run_ik("run/x.trc", "run")``: the TRC is used where it is (copying it onto itself
    raised shutil.SameFileError); a missing TRC is one line, before anything is written."""
    pytest.importorskip("opensim")
    from key2mesh.data.wheels import cached_wheel
    from key2mesh.inference.motion_export import export_motion
    from key2mesh.inference.motion_export.opensim_setup import run_ik

    if cached_wheel("pose2sim") is None:
        pytest.skip("the pose2sim wheel is not cached (key2mesh data pose2sim fetches it)")
    (trc,) = export_motion(model, motion, tmp_path / "run", "c", ["trc"])[:1]
    text = trc.read_text()
    res = run_ik(trc, tmp_path / "run")
    assert res["motion"].is_file() and np.isfinite(res["rms_m"]).all()
    assert trc.read_text() == text  # the file itself, unchanged
    with pytest.raises(Key2MeshError, match="no TRC file"):  # was FileNotFoundError
        run_ik(tmp_path / "missing.trc", tmp_path / "elsewhere")
    assert not (tmp_path / "elsewhere").exists()  # nothing written for it


def test_sidecar_start_is_where_the_exports_start(tmp_path, model):
    """``tracks.<id>.start_s`` is the first sample of the track's exports (docs: a BVH starts
    there) also when its first rows have no camera fit (the exports skip them; it was the first
    row's time, 0.1 s early here); null for a track with no fit (not exported)."""
    from key2mesh.inference.motion import build_motion, write_params
    from key2mesh.inference.motion_export import export_motion
    from key2mesh.inference.motion_export.trc import read_trc

    f = np.repeat(np.arange(8), 2)
    pid = np.tile([0, 1], 8)
    kp = np.stack([_COCO * [180.0, 400.0] + [200.0 + 500 * p, 150.0] for p in pid])
    conf = np.where((f[:, None] < 3) | (pid[:, None] == 1), 0.05, 0.9) * np.ones(kp.shape[:2])
    m = build_motion(model, f, f / 30.0, pid, kp, conf, (720, 1280), 30.0)
    _, js = write_params(m, tmp_path / "c_params.npz")
    tracks = json.loads(js.read_text())["tracks"]
    (trc,) = [p for p in export_motion(model, m, tmp_path, "c", ["trc"]) if "track0" in p.name]
    assert tracks["0"]["first_frame"] == 0 and tracks["0"]["rows"] == 8
    assert tracks["0"]["start_s"] == pytest.approx(read_trc(trc)[1][0], abs=1e-6)
    assert tracks["0"]["start_s"] == pytest.approx(3 / 30.0)
    assert tracks["1"]["start_s"] is None


def test_glb_rotation_keys_stay_on_one_side():
    """q and -q are one rotation and scipy returns either: consecutive keys are put on the same
    side (positive dot), each still the same rotation, so a player blending components linearly
    does not spin the joint round between two keys."""
    from scipy.spatial.transform import Rotation

    from key2mesh.inference.motion_export.gltf import _continuous

    angles = np.linspace(0.0, 2.5 * np.pi, 40)  # one joint turning past 180° (scipy flips)
    q = Rotation.from_rotvec(angles[:, None] * np.array([0.0, 1.0, 0.0])).as_quat()
    q = np.stack([q, q[::-1]], 1)  # (T, 2 joints, 4)
    q[7, 1] *= -1  # a flip of one key of the other joint
    raw_dots = np.einsum("tjc,tjc->tj", q[1:], q[:-1])
    assert (raw_dots < 0).any()
    got = _continuous(q)
    assert (np.einsum("tjc,tjc->tj", got[1:], got[:-1]) > 0).all()
    np.testing.assert_allclose(np.abs(np.einsum("tjc,tjc->tj", got, q)), 1.0, atol=1e-12)
    assert np.array_equal(got[0], q[0]) and _continuous(q[:1]).shape == (1, 2, 4)


def test_build_motion_refuses_an_image_size_that_is_not_h_w(model):
    """``image_size=frame.shape`` (H, W, 3) or None was a TypeError from default_focal; a
    negative height was fitted with the principal point above the image."""
    from key2mesh.inference.motion import build_motion

    kp = np.tile(_COCO * [180.0, 400.0] + [400.0, 150.0], (3, 1, 1))
    args = (model, np.arange(3), np.arange(3) / 30.0, np.zeros(3, int), kp, np.ones(kp.shape[:2]))
    for size in ((720, 1280, 3), None, (-720, 1280)):
        with pytest.raises(Key2MeshError, match=r"image_size must be \(H, W\)"):
            build_motion(*args, size, 30.0)


def test_rows_without_usable_keypoints_do_not_steer_their_track(model):
    """build_motion on a track with two rows whose keypoints are unusable (every confidence
    below the threshold: predicted, flagged invalid) gives its usable rows the same rotations,
    shape and translation as a run without those rows: they no longer vote in the track's
    median shape nor pull their neighbours through the smoothing."""
    from key2mesh.inference.motion import MotionSmoothing, build_motion

    rng = np.random.default_rng(3)
    f = np.arange(0, 40, 2)
    kp = np.stack([_COCO * [180.0, 400.0] + [200.0 + 3 * i, 150.0] for i in f])
    kp = kp + rng.normal(0, 3, kp.shape)
    conf = np.full(kp.shape[:2], 0.9)
    bad = np.isin(f, [10, 12])
    kp[bad] = rng.uniform(0, 1280, (2, 17, 2))  # garbage that the network still predicts on
    conf[bad] = 0.05
    smooth = MotionSmoothing("one-euro")
    args = ((720, 1280), 30.0)
    every = build_motion(model, f, f / 30.0, np.zeros(len(f), int), kp, conf, *args,
                         smoothing=smooth)  # fmt: skip
    good = ~bad
    alone = build_motion(model, f[good], f[good] / 30.0, np.zeros(good.sum(), int), kp[good],
                         conf[good], *args, smoothing=smooth)  # fmt: skip
    np.testing.assert_allclose(every.rotmats[good], alone.rotmats, atol=1e-5)
    np.testing.assert_allclose(every.shape[good], alone.shape, atol=1e-6)
    np.testing.assert_allclose(every.transl[good], alone.transl, atol=1e-4)
