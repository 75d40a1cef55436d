"""The multi-view benchmark (key2mesh.data.multiview), its file format and keypoint-GT scoring.

Everything is synthetic: a rigid 33-point "person" moving in front of 4 calibrated pinhole
cameras; the real Pose2Sim videos are never read.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from key2mesh.data.benchmark import BenchmarkSet, load_benchmark_file, save_benchmark
from key2mesh.data.datasets import load_benchmark
from key2mesh.data.demo_inputs import MultiCameraCalibration
from key2mesh.data.multiview import (
    MultiViewDetections,
    _shifted,
    build_multiview_benchmark,
    estimate_frame_offsets,
    limb_length_variation,
)
from key2mesh.errors import Key2MeshError
from key2mesh.eval.benchmarks import (
    ground_truth,
    model_to_camera_frame,
    score_parameters,
)
from key2mesh.eval.metrics import EVAL12_NAMES, PROTOCOLS, Protocol, per_sample_metrics
from key2mesh.keypoints.io import read_detections
from key2mesh.keypoints.sets import COCO17
from test_triangulate import look_at

# MediaPipe BlazePose indices of the COCO-17 points, in COCO-17 order (from the BlazePose landmark chart)
MP_OF_COCO = [0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28]
CAMS = ["cam1", "cam2", "cam3", "cam4"]
T = 12
DELAY = 2  # camera index 2 ("cam3") starts DELAY frames late: its frame g shows time g - DELAY


def calibration() -> MultiCameraCalibration:
    centers = [(4.0, 0.3, 1.5), (-0.2, 4.0, 1.8), (-4.0, -0.5, 1.2), (0.4, -4.0, 2.0)]
    Rs, ts = zip(*(look_at(c, target=(0.0, 0.0, 1.0)) for c in centers))
    K = np.stack(
        [
            [[f, 0.0, 960.0 + 5 * i], [0.0, f, 540.0 - 3 * i], [0.0, 0.0, 1.0]]
            for i, f in enumerate((1000.0, 1100.0, 950.0, 1050.0))
        ]
    )  # a different K per camera
    return MultiCameraCalibration(
        list(CAMS), np.tile([1920, 1080], (4, 1)), K, np.zeros((4, 4)), np.stack(Rs), np.stack(ts)
    )


def person(n_times: int) -> np.ndarray:
    """(n_times, 33, 3) world points: a fixed random body-sized cloud, turning and walking rigidly."""
    rng = np.random.default_rng(0)
    body = rng.uniform([-0.25, -0.15, 0.0], [0.25, 0.15, 1.8], size=(33, 3))
    out = []
    for k in range(n_times):
        a = 0.25 * k
        rz = np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])
        out.append(body @ rz.T + np.array([0.06 * k - 0.3, 0.03 * k, 0.0]))
    return np.stack(out)


def pinhole(points: np.ndarray, calib: MultiCameraCalibration) -> np.ndarray:
    """(..., 3) world → (C, ..., 2) pixels (independent of the module's projection)."""
    cam = np.einsum("cij,...j->c...i", calib.R, points) + calib.t.reshape(
        4, *([1] * (points.ndim - 1)), 3
    )
    uv = cam[..., :2] / cam[..., 2:]
    f = calib.K[:, [0, 1], [0, 1]].reshape(4, *([1] * (points.ndim - 1)), 2)
    pp = calib.K[:, :2, 2].reshape(4, *([1] * (points.ndim - 1)), 2)
    return uv * f + pp


def detections(delay: int = DELAY):
    """Detections of T frames per camera (camera 2 delayed by ``delay``) and the world poses by time.

    Returns (det, calib, poses) where ``poses[k]`` is the pose at time ``k - delay``.
    """
    calib = calibration()
    poses = person(T + delay)
    pix = pinhole(poses, calib)  # (C, T+delay, 33, 2)
    kp = np.stack(
        [pix[c, delay:] if c != 2 else pix[c, :T] for c in range(4)]
    )  # camera c frame g: time g (or g-delay)
    conf = np.full((4, T, 33), 0.9)
    return MultiViewDetections(kp, conf, "mediapipe33", list(CAMS)), calib, poses


# --- frame offsets ---------------------------------------------------------------------------------


def test_shifted_reads_camera_c_at_f_plus_offset():
    values = np.arange(3 * 10).reshape(3, 10)
    out = _shifted(values, np.array([0, 2, -1]))
    # common frames f = 1..7 (f - 1 >= 0 and f + 2 <= 9)
    np.testing.assert_array_equal(out[0], np.arange(1, 8))
    np.testing.assert_array_equal(out[1], 10 + np.arange(3, 10))
    np.testing.assert_array_equal(out[2], 20 + np.arange(0, 7))
    with pytest.raises(Key2MeshError, match="no common frame"):
        _shifted(values[:2, :3], np.array([0, 3]))


def test_estimate_frame_offsets_finds_the_delay():
    det, calib, _ = detections()
    np.testing.assert_array_equal(
        estimate_frame_offsets(det, calib, max_offset=3), [0, 0, DELAY, 0]
    )
    det0, calib0, _ = detections(delay=0)
    np.testing.assert_array_equal(estimate_frame_offsets(det0, calib0, max_offset=3), [0, 0, 0, 0])


def test_estimate_frame_offsets_negative_delay():
    # camera 2 starts early instead: its frame g shows time g + 1 → read it at f - 1
    calib = calibration()
    poses = person(T + 1)
    pix = pinhole(poses, calib)
    kp = np.stack([pix[c, :T] if c != 2 else pix[c, 1:] for c in range(4)])
    det = MultiViewDetections(kp, np.full((4, T, 33), 0.9), "mediapipe33", list(CAMS))
    np.testing.assert_array_equal(estimate_frame_offsets(det, calib, max_offset=3), [0, 0, -1, 0])


def test_estimate_frame_offsets_ignores_frames_without_a_detection():
    # camera 1 loses the person in its last 4 frames (zeros, confidence 0, as detect_frames
    # writes them): those placeholder pixels must not pull its offset away from 0
    det, calib, _ = detections(delay=0)
    kp, conf = det.keypoints.copy(), det.confidence.copy()
    kp[1, -4:], conf[1, -4:] = 0.0, 0.0
    det = MultiViewDetections(kp, conf, det.keypoint_set, det.cameras)
    np.testing.assert_array_equal(estimate_frame_offsets(det, calib, max_offset=4), [0, 0, 0, 0])


# --- building the benchmark ------------------------------------------------------------------------


def expected_joints(
    poses: np.ndarray, calib: MultiCameraCalibration, frames: np.ndarray
) -> np.ndarray:
    """(C·F, 17, 3) COCO-17 points of times ``frames`` (poses index = time + DELAY) in each camera frame."""
    world = poses[frames + DELAY][:, MP_OF_COCO]  # (F,17,3)
    return np.concatenate([world @ calib.R[c].T + calib.t[c] for c in range(4)])


def test_build_multiview_benchmark_samples_and_ground_truth():
    det, calib, poses = detections()
    bench, report = build_multiview_benchmark(
        det, calib, offsets=[0, 0, DELAY, 0], name="synthetic"
    )
    frames = T - DELAY
    assert isinstance(bench, BenchmarkSet)
    assert len(bench) == 4 * frames
    assert bench.name == "synthetic"
    assert bench.keypoint_set == "mediapipe33" and bench.joints3d_set == "coco17"
    assert bench.pose is None and bench.betas is None
    assert bench.joints3d.shape == (4 * frames, 17, 3)
    np.testing.assert_allclose(
        bench.joints3d.numpy(), expected_joints(poses, calib, np.arange(frames)), atol=1e-4
    )
    # inputs: camera-major, each camera's own (shifted) detections
    for c in range(4):
        first = c * frames
        src = DELAY if c == 2 else 0
        np.testing.assert_allclose(
            bench.keypoints2d[first : first + frames].numpy(),
            det.keypoints[c, src : src + frames],
            atol=1e-3,
        )
        assert bench.image_names[first] == f"{CAMS[c]}/frame_{src:05d}"
        assert all(n.startswith(CAMS[c] + "/") for n in bench.image_names[first : first + frames])
        np.testing.assert_allclose(
            bench.intrinsics[first : first + frames].numpy(),
            np.broadcast_to(calib.K[c], (frames, 3, 3)),
        )
    assert bench.excluded == {"evaluation joints not triangulated": 0}
    assert report.frames == frames and report.offsets == [0, 0, DELAY, 0]
    assert report.samples == len(bench) and report.excluded == 0
    assert report.reprojection_px < 1e-3
    assert report.views_per_point == pytest.approx(4.0)
    assert report.bone_cv < 1e-6  # rigid motion: constant limb lengths
    assert len(report.lines()) == 3
    # instants: the synchronised frame index, the same for the 4 views of one time, whatever
    # the raw frame numbers in the names (cam3's are DELAY higher)
    assert bench.instants.tolist() == list(range(frames)) * 4


def test_instants_group_the_views_of_one_time_despite_the_offset(tmp_path):
    """The file's instant ids (and the names corrected by the offsets) group views of one time:
    grouping by the raw FRAME part would pair cam3's frame g with the others' frame g (time g -
    DELAY): the bug of the README's earlier multi-view numbers."""
    from key2mesh.data.multiview import instant_groups, stored_instants

    det, calib, poses = detections()
    bench, _ = build_multiview_benchmark(det, calib, offsets=[0, 0, DELAY, 0])
    path = save_benchmark(bench, tmp_path / "b.npz")
    ids = stored_instants(path)
    assert ids is not None and torch.equal(
        load_benchmark_file(path).instants, torch.from_numpy(ids)
    )
    # every group holds 4 views whose world ground truth is one pose
    world = np.einsum(
        "cij,ckj->cki",
        calib.R.transpose(0, 2, 1),
        bench.joints3d.numpy().reshape(4, -1, 17, 3).reshape(4, -1, 3) - calib.t[:, None],
    )
    world = world.reshape(-1, 17, 3)
    for g in np.unique(ids):
        members = world[ids == g]
        assert len(members) == 4 and np.abs(members - members[0]).max() < 1e-4
    # the same groups from the names and the offsets; the raw names group wrongly
    by_offsets = instant_groups(bench.image_names, dict(zip(CAMS, [0, 0, DELAY, 0])))
    np.testing.assert_array_equal(by_offsets, ids)
    raw = instant_groups(bench.image_names)
    assert not np.array_equal(raw, ids)
    with pytest.raises(Key2MeshError, match="no frame offset"):
        instant_groups(bench.image_names, {"cam1": 0})


def test_build_multiview_benchmark_estimates_offsets():
    det, calib, _ = detections()
    bench, report = build_multiview_benchmark(det, calib, max_offset=3)
    assert report.offsets == [0, 0, DELAY, 0]
    assert len(bench) == 4 * (T - DELAY)


def test_build_multiview_benchmark_excludes_frames_seen_by_one_camera():
    det, calib, poses = detections()
    bad = 4  # a common frame (time 4): left wrist seen confidently only by camera 1
    wrist = MP_OF_COCO[COCO17.index("left_wrist")]
    for c in (1, 2, 3):
        det.confidence[c, bad + (DELAY if c == 2 else 0), wrist] = 0.1
    # a non-evaluation point (left pinky) missing everywhere in another frame excludes nothing
    det.confidence[:, :, 17] = 0.0
    bench, report = build_multiview_benchmark(det, calib, offsets=[0, 0, DELAY, 0])
    frames = T - DELAY
    assert len(bench) == 4 * (frames - 1)
    assert bench.excluded == {"evaluation joints not triangulated": 4}  # one per camera
    assert report.excluded == 4 and report.samples == len(bench)
    kept = np.delete(np.arange(frames), bad)
    np.testing.assert_allclose(
        bench.joints3d.numpy(), expected_joints(poses, calib, kept), atol=1e-4
    )
    assert (
        "cam1/frame_00004" not in bench.image_names and "cam3/frame_00006" not in bench.image_names
    )
    assert "cam1/frame_00005" in bench.image_names and "cam3/frame_00007" in bench.image_names


def test_build_multiview_benchmark_rejects_bad_inputs():
    det, calib, _ = detections()
    coco = MultiViewDetections(
        det.keypoints[:, :, MP_OF_COCO], det.confidence[:, :, MP_OF_COCO], "coco17", list(CAMS)
    )
    with pytest.raises(Key2MeshError, match="MediaPipe-33"):
        build_multiview_benchmark(coco, calib, offsets=[0, 0, 0, 0])
    three = MultiViewDetections(det.keypoints[:3], det.confidence[:3], "mediapipe33", CAMS[:3])
    with pytest.raises(Key2MeshError, match="3 videos for 4"):
        build_multiview_benchmark(three, calib, offsets=[0, 0, 0])
    with pytest.raises(Key2MeshError, match="3 frame offsets for 4 cameras"):
        build_multiview_benchmark(det, calib, offsets=[0, 0, 2])
    blind = MultiViewDetections(
        det.keypoints, np.zeros_like(det.confidence), "mediapipe33", list(CAMS)
    )
    with pytest.raises(Key2MeshError, match="no frame could be triangulated"):
        build_multiview_benchmark(blind, calib, offsets=[0, 0, 0, 0])


def test_limb_length_variation_by_hand():
    # the 8 limbs (shoulder-elbow-wrist, hip-knee-ankle, both sides), each 1 m long along x
    pts = np.zeros((3, 17, 3))
    chain = {
        "left_shoulder": 0,
        "left_elbow": 1,
        "left_wrist": 2,
        "right_shoulder": 10,
        "right_elbow": 11,
        "right_wrist": 12,
        "left_hip": 20,
        "left_knee": 21,
        "left_ankle": 22,
        "right_hip": 30,
        "right_knee": 31,
        "right_ankle": 32,
    }
    for n, x in chain.items():
        pts[:, COCO17.index(n), 0] = x
    assert limb_length_variation(pts) == pytest.approx(0.0)
    # one bone (left elbow → wrist) of lengths 1 and 3 (frame 2 NaN, ignored): std 1 / mean 2 = 0.5, over 8 bones
    pts[1, COCO17.index("left_wrist"), 0] = 4.0
    pts[2] = np.nan
    assert limb_length_variation(pts) == pytest.approx(0.5 / 8)


# --- benchmark files -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bench() -> BenchmarkSet:
    det, calib, _ = detections()
    # exclude one frame (time 4, left wrist seen by camera 1 only) so the counter is non-trivial
    det.confidence[[1, 3], 4, 15] = 0.0
    det.confidence[2, 4 + DELAY, 15] = 0.0
    return build_multiview_benchmark(det, calib, offsets=[0, 0, DELAY, 0], name="synthetic")[0]


def test_save_load_round_trip(tmp_path, bench):
    path = save_benchmark(bench, tmp_path / "sub" / "bench.npz")
    assert path.is_file() and not list(path.parent.glob("*.part*"))
    back = load_benchmark_file(path)
    assert (
        back.name == "synthetic"
        and back.keypoint_set == "mediapipe33"
        and back.joints3d_set == "coco17"
    )
    for key in ("keypoints2d", "confidence", "joints3d", "intrinsics"):
        assert torch.equal(getattr(back, key), getattr(bench, key)), key
    assert back.pose is None and back.betas is None
    assert back.image_names == bench.image_names and back.genders == bench.genders
    assert back.excluded == bench.excluded == {"evaluation joints not triangulated": 4}
    assert back.dropped == bench.dropped and back.drop_reason == bench.drop_reason
    assert back.source == str(path)
    # load_benchmark dispatches a path to the same reader
    again = load_benchmark(str(path))
    assert torch.equal(again.joints3d, bench.joints3d)
    # the raw file keys (a detections file too)
    with np.load(path) as raw:
        assert {
            "keypoints",
            "confidence",
            "keypoint_set",
            "frame_names",
            "joints3d",
            "joints3d_set",
        } <= set(raw.files)
        assert json.loads(str(raw["excluded"])) == bench.excluded


def test_benchmark_files_record_the_builders_version(tmp_path, bench, caplog):
    """A built file records the multi-view builder's version (kept by the dev/test parts); a
    multi-view file without one (built before the lens-distortion fix) or with an older one is
    read with a warning naming what was fixed since; other files are not the builder's."""
    import dataclasses
    import logging

    from key2mesh.data import benchmark as bm

    assert bench.build_version == bm.MULTIVIEW_BUILD_VERSION == 2
    dev, _ = bench.split_by_instant(0.5)
    with caplog.at_level(logging.WARNING, logger="key2mesh.data.benchmark"):
        assert load_benchmark_file(save_benchmark(dev, tmp_path / "dev.npz")).build_version == 2
        assert not caplog.records
        old = save_benchmark(dataclasses.replace(bench, build_version=None), tmp_path / "old.npz")
        assert load_benchmark_file(old).build_version == 1
        (record,) = caplog.records
        assert "version 1 of 2" in record.message and "distortion" in record.message
        caplog.clear()
        other = dataclasses.replace(bench, build_version=None, instants=None)
        assert load_benchmark_file(save_benchmark(other, tmp_path / "o.npz")).build_version is None
        assert not caplog.records
    with np.load(tmp_path / "dev.npz") as raw:
        arrays = dict(raw)
    np.savez(tmp_path / "bad.npz", **{**arrays, "build_version": np.array([1, 2])})
    with pytest.raises(Key2MeshError, match="'build_version' must be one integer"):
        load_benchmark_file(tmp_path / "bad.npz")


def test_benchmark_file_is_a_detections_file(tmp_path, bench):
    path = save_benchmark(bench, tmp_path / "bench.npz")
    det = read_detections(path)
    assert det.keypoint_set == "mediapipe33"
    assert det.keypoints.shape == (len(bench), 1, 33, 2)
    assert det.frame_names == bench.image_names
    np.testing.assert_allclose(det.keypoints[:, 0], bench.keypoints2d.numpy(), atol=1e-5)
    np.testing.assert_allclose(det.confidence[:, 0], bench.confidence.numpy(), atol=1e-6)


def test_load_benchmark_file_errors(tmp_path):
    with pytest.raises(Key2MeshError, match="no such benchmark file"):
        load_benchmark_file(tmp_path / "missing.npz")
    only_det = tmp_path / "detections_only.npz"
    np.savez(
        only_det,
        keypoints=np.zeros((2, 17, 2)),
        confidence=np.ones((2, 17)),
        keypoint_set=np.array("coco17"),
    )
    with pytest.raises(Key2MeshError, match="detections_only.npz.*joints3d"):
        load_benchmark_file(only_det)
    no_set = tmp_path / "no_set.npz"
    np.savez(
        no_set,
        keypoints=np.zeros((2, 17, 2)),
        confidence=np.ones((2, 17)),
        keypoint_set=np.array("coco17"),
        joints3d=np.zeros((2, 17, 3)),
    )
    with pytest.raises(Key2MeshError, match="joints3d_set"):
        load_benchmark_file(no_set)


# --- scoring against keypoint ground truth ---------------------------------------------------------


def test_eval12_names():
    assert EVAL12_NAMES == (
        "right_ankle",
        "right_knee",
        "right_hip",
        "left_hip",
        "left_knee",
        "left_ankle",
        "right_wrist",
        "right_elbow",
        "right_shoulder",
        "left_shoulder",
        "left_elbow",
        "left_wrist",
    )
    assert set(EVAL12_NAMES) <= set(COCO17)


def _eval12_joints(b: int = 3) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(1).uniform(-0.8, 0.8, size=(b, 12, 3)))


def test_eval12_metrics_by_hand():
    gt = _eval12_joints()
    moved = gt + torch.tensor([0.3, -1.0, 2.5], dtype=gt.dtype)
    out = per_sample_metrics(moved, gt, protocol="key2mesh", keypoint_set="eval12")
    assert set(out) == {"mpjpe", "pa_mpjpe"}
    assert torch.allclose(out["mpjpe"], torch.zeros(3, dtype=gt.dtype), atol=1e-9)
    assert torch.allclose(out["pa_mpjpe"], torch.zeros(3, dtype=gt.dtype), atol=1e-6)
    # one non-hip joint (right wrist) 12 mm off: 12 mm / 12 joints = 1 mm
    pred = gt.clone()
    pred[:, EVAL12_NAMES.index("right_wrist"), 2] += 0.012
    out = per_sample_metrics(pred, gt, protocol="key2mesh", keypoint_set="eval12")
    assert torch.allclose(out["mpjpe"], torch.ones(3, dtype=gt.dtype), atol=1e-9)
    # the left hip 20 mm off moves the mid-hip by 10 mm: every joint is then 10 mm off
    pred = gt.clone()
    pred[:, EVAL12_NAMES.index("left_hip"), 0] += 0.020
    out = per_sample_metrics(pred, gt, protocol="key2mesh", keypoint_set="eval12")
    assert torch.allclose(out["mpjpe"], torch.full((3,), 10.0, dtype=gt.dtype), atol=1e-9)
    with pytest.raises(ValueError, match="H36M root"):
        per_sample_metrics(gt, gt, protocol=PROTOCOLS["spin"], keypoint_set="eval12")
    with pytest.raises(ValueError, match="H36M root"):
        per_sample_metrics(
            gt, gt, protocol=Protocol("neutral", "h36m_root", "none"), keypoint_set="eval12"
        )


def test_ground_truth_for_keypoint_benchmark(bench, monkeypatch):
    monkeypatch.delenv("KEY2MESH_SMPL_DIR", raising=False)
    with pytest.raises(Key2MeshError, match="no H36M root"):
        ground_truth(bench, PROTOCOLS["spin"])
    joints, gset, verts = ground_truth(bench, PROTOCOLS["key2mesh"])
    assert gset == "coco17" and verts is None
    assert torch.equal(joints, bench.joints3d.float())
    smpl24 = BenchmarkSet(
        "s",
        bench.keypoints2d,
        bench.confidence,
        "mediapipe33",
        None,
        None,
        bench.genders,
        bench.image_names,
        joints3d=torch.zeros(len(bench), 24, 3),
        joints3d_set="smpl24",
    )
    with pytest.raises(Key2MeshError, match="SMPL files"):
        ground_truth(smpl24, PROTOCOLS["key2mesh"])


def test_model_to_camera_frame():
    out = model_to_camera_frame(torch.tensor([[1.0, 2.0, 3.0]]))
    assert torch.equal(out, torch.tensor([[1.0, -2.0, -3.0]]))


class PointBody:
    """A stand-in body model whose 'mesh' is a given set of COCO-17 points in the model's world frame."""

    def __init__(self, points_world: torch.Tensor):
        self.points = points_world
        self.calls: list[str] = []

    def __call__(self, rotmats, shape):
        idx = shape[:, 0].long()  # the sample index travels in the shape parameters
        return SimpleNamespace(vertices=self.points[idx])

    def regress(self, verts, keypoint_set):
        self.calls.append(keypoint_set)
        return verts


def test_score_parameters_on_coco17_ground_truth():
    n = 5
    gt = torch.from_numpy(np.random.default_rng(2).uniform(-0.8, 0.8, size=(n, 17, 3))).float()
    gt[..., 2] += 3.0  # in front of the camera
    world = gt * torch.tensor(
        [1.0, -1.0, -1.0]
    )  # the same body in the model's frame (y up, facing +z)
    body = PointBody(world)
    rot = torch.zeros(n, 24, 3, 3)
    shape = torch.arange(n, dtype=torch.float32)[:, None].repeat(1, 10)
    out = score_parameters(body, rot, shape, gt, "coco17", None, PROTOCOLS["key2mesh"], chunk=2)
    assert set(out) == {"mpjpe", "pa_mpjpe"} and out["mpjpe"].shape == (n,)
    assert torch.allclose(out["mpjpe"], torch.zeros(n), atol=1e-3)
    assert set(body.calls) == {"coco17"}
    # the face points are not scored; a wrist 24 mm off is 2 mm over the 12 limb joints
    gt2 = gt.clone()
    gt2[:, COCO17.index("nose")] += 0.5
    gt2[:, COCO17.index("left_wrist"), 1] += 0.024
    out = score_parameters(body, rot, shape, gt2, "coco17", None, PROTOCOLS["key2mesh"], chunk=2)
    assert torch.allclose(out["mpjpe"], torch.full((n,), 2.0), atol=1e-3)


def test_score_parameters_applies_the_given_h36m_regressor_to_predictions():
    """--h36m-regressor: predictions are regressed with the same matrix as the ground truth."""
    n = 4
    gt = torch.from_numpy(np.random.default_rng(3).uniform(-0.8, 0.8, size=(n, 17, 3))).float()
    gt[..., 2] += 3.0
    world = gt * torch.tensor([1.0, -1.0, -1.0])
    other = (
        world + torch.from_numpy(np.random.default_rng(4).normal(0, 0.05, size=(n, 17, 3))).float()
    )

    class TwoSetBody(PointBody):
        num_vertices = 34

        def regress(self, verts, keypoint_set):  # the body's own regressor reads the second half
            return verts[:, 17:]

    body = TwoSetBody(torch.cat([world, other], 1))
    reg = torch.cat([torch.eye(17), torch.zeros(17, 17)], 1)  # "SPIN's": the first half
    rot, shape = (
        torch.zeros(n, 24, 3, 3),
        torch.arange(n, dtype=torch.float32)[:, None].repeat(1, 10),
    )
    own = score_parameters(body, rot, shape, gt, "h36m17", None, PROTOCOLS["key2mesh"])
    same = score_parameters(
        body, rot, shape, gt, "h36m17", None, PROTOCOLS["key2mesh"], h36m_regressor=reg
    )
    assert own["mpjpe"].min() > 10 and torch.allclose(same["mpjpe"], torch.zeros(n), atol=1e-3)
    with pytest.raises(Key2MeshError, match="cannot be applied"):
        score_parameters(
            body, rot, shape, gt, "h36m17", None, PROTOCOLS["key2mesh"], h36m_regressor=reg[:, :20]
        )


def test_split_by_instant_keeps_instants_whole_and_in_time_order(tmp_path, bench):
    dev, test = bench.split_by_instant(0.5)
    d, t = dev.instant_ids(), test.instant_ids()
    assert len(dev) + len(test) == len(bench) and d.max() < t.min()
    assert set(d) | set(t) == set(bench.instant_ids())
    assert dev.name == "synthetic-dev" and test.name == "synthetic-test"
    back = load_benchmark_file(save_benchmark(test, tmp_path / "t.npz"))
    np.testing.assert_array_equal(back.instant_ids(), t)
    with pytest.raises(Key2MeshError, match="fraction"):
        bench.split_by_instant(1.0)
    # a set without instants: each sample its own
    plain = BenchmarkSet(**{**bench.__dict__, "instants": None})
    np.testing.assert_array_equal(plain.instant_ids(), np.arange(len(bench)))


def test_bad_options_are_one_line_errors_before_any_detection(tmp_path, monkeypatch, capsys):
    """min_views outside [2, C], a negative offset search or a non-integer --offsets: a
    Key2MeshError (not a ValueError traceback), and from the CLI before the videos are read."""
    det, calib, _ = detections()
    for kw, match in (
        ({"offsets": [0, 0, 2, 0], "min_views": 1}, "min_views must be in"),
        ({"offsets": [0, 0, 2, 0], "min_views": 5}, "min_views must be in"),
        ({"max_offset": -1}, "must be >= 0"),
    ):
        with pytest.raises(Key2MeshError, match=match):
            build_multiview_benchmark(det, calib, **kw)
    import key2mesh.data.demo_inputs as demo_inputs
    import key2mesh.data.multiview as multiview
    from key2mesh.cli import main

    def no_detection(*a, **k):
        raise AssertionError("the videos were read before the options were checked")

    monkeypatch.setattr(demo_inputs, "pose2sim_calibration", lambda: calib)
    monkeypatch.setattr(multiview, "detect_videos", no_detection)
    out = str(tmp_path / "b.npz")
    for flags, match in (
        (["--offsets", "0,a,0,0"], "--offsets '0,a,0,0'"),
        (["--offsets", "0,0,2"], "3 frame offsets for 4 cameras"),
        (["--min-views", "1"], "min_views must be in"),
        (["--max-offset", "-1"], "must be >= 0"),
    ):
        assert main(["data", "pose2sim", "--benchmark", out, *flags]) == 2
        err = capsys.readouterr().err
        assert match in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_data_pose2sim_writes_nothing_when_the_set_cannot_be_split(tmp_path, monkeypatch, bench):
    """A rebuilt benchmark of one instant cannot be split into development and test parts: the
    command fails without writing the new benchmark beside an earlier run's parts."""
    import key2mesh.data.multiview as multiview
    from key2mesh.cli import main

    out = tmp_path / "b.npz"
    report = SimpleNamespace(lines=lambda: [])
    monkeypatch.setattr(multiview, "pose2sim_benchmark", lambda **kw: (bench, report))
    assert main(["data", "pose2sim", "--benchmark", str(out)]) == 0
    first = {p.name: p.read_bytes() for p in tmp_path.glob("*.npz")}
    assert sorted(first) == ["b.npz", "b_dev.npz", "b_test.npz"]
    one = bench.subset(bench.instant_ids() == bench.instant_ids()[0])
    monkeypatch.setattr(multiview, "pose2sim_benchmark", lambda **kw: (one, report))
    assert main(["data", "pose2sim", "--benchmark", str(out)]) == 2
    assert {p.name: p.read_bytes() for p in tmp_path.glob("*.npz")} == first


def test_save_benchmark_concurrent_writers_never_mix(tmp_path, bench):
    """Writers of one path (two runs of `data pose2sim`, threads) each write a temp file of
    their own: the file read afterwards is one of them, whole (a shared temp name let them
    truncate and rename each other's half-written archive: FileNotFoundError, Bad CRC)."""
    import threading

    small = replace_name(bench.subset(slice(0, 7)), "small")
    path = tmp_path / "x.npz"
    errors: list[str] = []

    def write(b):
        try:
            save_benchmark(b, path)
        except Exception as exc:  # noqa: BLE001 - collected, asserted below
            errors.append(repr(exc))

    for _ in range(10):
        threads = [threading.Thread(target=write, args=(b,)) for b in (bench, small) * 2]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        got = load_benchmark_file(path)
        assert (got.name, len(got)) in {(bench.name, len(bench)), ("small", 7)}
    assert errors == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npz"]  # no temp left behind
    # a path without the .npz suffix is written as named (no suffix appended)
    assert save_benchmark(small, tmp_path / "plain") == tmp_path / "plain"
    assert len(load_benchmark_file(tmp_path / "plain")) == 7


def replace_name(b: BenchmarkSet, name: str) -> BenchmarkSet:
    from dataclasses import replace

    return replace(b, name=name)
