"""Benchmark readers on synthetic files written in the real 3DPW / SPIN-H3.6M formats."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from key2mesh.data.datasets import (
    J24_TO_H36M17,
    J24_TO_LSP14,
    BenchmarkSet,
    load_3dpw,
    load_benchmark,
    load_h36m_p2,
)
from key2mesh.errors import Key2MeshError
from key2mesh.geometry.rotations import axis_angle_to_matrix
from key2mesh.keypoints.sets import H36M17, H36M_TO_EVAL14

# 90° about +y: x → -z, z → x (hand-written, not computed with the code under test)
ROT_Y90 = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])


def write_synthetic_3dpw(
    path: Path,
    frames: int = 10,
    persons: int = 2,
    sequence: str = "seq_a",
    invalid: dict[int, list[int]] | None = None,
    sparse: dict[int, dict[int, int]] | None = None,
    cam_rot: np.ndarray | None = None,
    betas_dim: int = 10,
    seed: int = 0,
    drop_keys: tuple[str, ...] = (),
) -> dict:
    """A 3DPW sequence pickle (the original layout; lists per person, Python-2 style protocol 2;
    ``campose_valid`` uint8 and ``img_frame_ids`` the uint16 60 Hz video ids 0, 2, 4, … as in the
    released files, while the images are numbered by frame index).

    invalid: person → frames with ``campose_valid`` 0. sparse: person → {frame: number of
    keypoints with confidence > 0}. cam_rot: the world→camera rotation of every frame.
    """
    rng = np.random.default_rng(seed)
    invalid, sparse = invalid or {}, sparse or {}
    cam = np.tile(np.eye(4), (frames, 1, 1))
    cam[:, :3, :3] = np.eye(3) if cam_rot is None else cam_rot
    cam[:, :3, 3] = rng.normal(size=(frames, 3))
    poses, poses2d, valid, joints = [], [], [], []
    for p in range(persons):
        poses.append(rng.normal(scale=0.3, size=(frames, 72)))
        kp = np.empty((frames, 3, 18))
        kp[:, :2] = rng.uniform(0, 1000, size=(frames, 2, 18))
        kp[:, 2] = rng.uniform(0.2, 1.0, size=(frames, 18))
        for f, count in sparse.get(p, {}).items():
            kp[f, 2, count:] = 0.0
        poses2d.append(kp)
        v = np.ones(frames, dtype=np.uint8)
        v[invalid.get(p, [])] = 0
        valid.append(v)
        joints.append(rng.normal(size=(frames, 72)))
    data = {
        "sequence": sequence,
        "genders": ["m", "f"][:persons],
        "poses": poses,
        "betas": [rng.normal(size=betas_dim) for _ in range(persons)],
        "trans": [rng.normal(size=(frames, 3)) for _ in range(persons)],
        "cam_poses": cam,
        "cam_intrinsics": np.array([[1961.0, 0.0, 540.0], [0.0, 1969.0, 960.0], [0.0, 0.0, 1.0]]),
        "campose_valid": valid,
        "poses2d": poses2d,
        "img_frame_ids": (2 * np.arange(frames)).astype(np.uint16),
        "jointPositions": joints,
    }
    for key in drop_keys:
        del data[key]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        pickle.dump(data, f, protocol=2)
    return data


def write_synthetic_h36m_npz(
    path: Path,
    rows: list[tuple[str, str]],
    sparse: dict[int, int] | None = None,
    with_pose: bool = True,
    with_s: bool = True,
    with_openpose: bool = True,
    seed: int = 0,
) -> dict:
    """A SPIN-style H3.6M npz; rows are (subject, camera); sparse: row → keypoints with conf > 0."""
    rng = np.random.default_rng(seed)
    n = len(rows)
    data: dict[str, np.ndarray] = {
        "imgname": np.array(
            [f"images/{s}_Directions_1.{c}_{5 * i + 1:06d}.jpg" for i, (s, c) in enumerate(rows)]
        ),
        "center": rng.uniform(400, 600, size=(n, 2)),
        "scale": rng.uniform(3, 5, size=n),
    }
    if with_pose:
        data["pose"] = rng.normal(scale=0.3, size=(n, 72))
        data["shape"] = rng.normal(size=(n, 10))
    if with_s:
        s = np.zeros((n, 24, 4))
        s[..., :3] = rng.normal(size=(n, 24, 3))
        s[..., 3] = 1.0
        data["S"] = s
    if with_openpose:
        op = np.empty((n, 25, 3))
        op[..., :2] = rng.uniform(0, 1000, size=(n, 25, 2))
        op[..., 2] = rng.uniform(0.2, 1.0, size=(n, 25))
        for r, count in (sparse or {}).items():
            op[r, count:, 2] = 0.0
        data["openpose"] = op
    np.savez(path, **data)
    return data


# ------------------------------------------------------------------------------------------ 3DPW


def test_3dpw_keeps_valid_frames_drops_sparse_and_rotates_into_camera(tmp_path):
    pkl = tmp_path / "sequenceFiles" / "test" / "seq_a.pkl"
    data = write_synthetic_3dpw(
        pkl,
        frames=10,
        cam_rot=ROT_Y90,
        betas_dim=300,
        invalid={0: [0, 3], 1: [9]},
        sparse={
            0: {5: 5},
            1: {2: 6, 9: 2},
        },  # p0 f5: 5 points → dropped; p1 f2: 6 → kept; p1 f9 invalid anyway
    )
    data["poses"][0][1, :3] = 0.0  # person 0, frame 1: identity global orientation in the world
    with pkl.open("wb") as f:
        pickle.dump(data, f, protocol=2)
    ds = load_3dpw(tmp_path, split="test")
    assert (
        isinstance(ds, BenchmarkSet)
        and ds.name == "3dpw-test"
        and ds.keypoint_set == "openpose_coco18"
    )
    assert len(ds) == (10 - 2 - 1) + (10 - 1)  # 16
    assert ds.dropped == 1 and "fewer than 6 keypoints" in ds.drop_reason
    assert ds.excluded == {"invalid camera pose": 3}
    assert "16 samples" in ds.summary() and "3 excluded" in ds.summary()
    p0_frames = [1, 2, 4, 6, 7, 8, 9]
    assert ds.image_names[:7] == [f"imageFiles/seq_a/image_{f:05d}.jpg" for f in p0_frames]
    assert ds.image_names[7:] == [f"imageFiles/seq_a/image_{f:05d}.jpg" for f in range(9)]
    assert ds.genders == ["male"] * 7 + ["female"] * 9
    assert ds.keypoints2d.shape == (16, 18, 2) and ds.confidence.shape == (16, 18)
    assert ds.pose.shape == (16, 24, 3, 3) and ds.betas.shape == (16, 10)
    # betas: the first 10 of 300
    assert torch.allclose(ds.betas[0], torch.tensor(data["betas"][0][:10], dtype=torch.float32))
    # identity world orientation seen by a camera rotated 90° about y is that rotation
    assert torch.allclose(ds.pose[0, 0], torch.tensor(ROT_Y90, dtype=torch.float32), atol=1e-6)
    # the body faces +z in the world → +x in the camera
    assert torch.allclose(
        ds.pose[0, 0] @ torch.tensor([0.0, 0.0, 1.0]), torch.tensor([1.0, 0.0, 0.0]), atol=1e-6
    )
    # a general frame: R_cam = cam_R @ R_world; the other 23 joints are untouched
    world = axis_angle_to_matrix(torch.tensor(data["poses"][1][4].reshape(24, 3)))
    assert torch.allclose(ds.pose[7 + 4, 0].double(), torch.tensor(ROT_Y90) @ world[0], atol=1e-6)
    assert torch.allclose(ds.pose[7 + 4, 1:].double(), world[1:], atol=1e-6)
    # 2D keypoints: (x, y) rows of poses2d; the 6-point detection kept with 6 confident points
    assert torch.allclose(
        ds.keypoints2d[1], torch.tensor(data["poses2d"][0][2, :2].T, dtype=torch.float32)
    )
    assert int((ds.confidence[7 + 2] > 0).sum()) == 6
    # SMPL joints in the camera frame: R j + t
    j_world = data["jointPositions"][0][1].reshape(24, 3)
    j_cam = j_world @ ROT_Y90.T + data["cam_poses"][1][:3, 3]
    assert ds.joints3d_set == "smpl24"
    assert np.allclose(ds.joints3d[0].numpy(), j_cam, atol=1e-5)
    assert ds.intrinsics.shape == (16, 3, 3) and float(ds.intrinsics[0, 0, 0]) == 1961.0


def test_3dpw_drop_threshold_is_configurable(tmp_path):
    pkl = tmp_path / "seq.pkl"
    write_synthetic_3dpw(pkl, frames=4, persons=1, sparse={0: {0: 5, 1: 3}})
    assert load_3dpw(pkl).dropped == 2
    assert load_3dpw(pkl, min_keypoints=4).dropped == 1
    ds = load_3dpw(pkl, min_keypoints=0)
    assert ds.dropped == 0 and len(ds) == 4
    # missing points come back as (0, 0) with confidence 0
    assert (ds.confidence[1, 3:] == 0).all() and (ds.keypoints2d[1, 3:] == 0).all()


def test_3dpw_split_selection(tmp_path):
    root = tmp_path / "3DPW"
    write_synthetic_3dpw(
        root / "sequenceFiles" / "test" / "downtown_a.pkl", sequence="downtown_a", persons=1
    )
    write_synthetic_3dpw(
        root / "sequenceFiles" / "train" / "courtyard_b.pkl", sequence="courtyard_b", seed=1
    )
    write_synthetic_3dpw(
        root / "sequenceFiles" / "train" / "courtyard_c.pkl", sequence="courtyard_c", seed=2
    )
    test = load_3dpw(root)  # default split: test
    assert {n.split("/")[1] for n in test.image_names} == {"downtown_a"} and len(test) == 10
    train = load_3dpw(root, split="train")
    assert train.name == "3dpw-train" and len(train) == 40
    assert {n.split("/")[1] for n in train.image_names} == {"courtyard_b", "courtyard_c"}
    assert len(load_3dpw(root / "sequenceFiles", split="train")) == 40
    assert len(load_3dpw(root / "sequenceFiles" / "train", split="train")) == 40
    with pytest.raises(Key2MeshError, match=r"train.*split='test'"):
        load_3dpw(root / "sequenceFiles" / "train")
    with pytest.raises(
        Key2MeshError, match="no 3DPW split 'validation'.*folders here: test, train"
    ):
        load_3dpw(root, split="validation")
    with pytest.raises(Key2MeshError, match="unknown 3DPW split 'val'"):
        load_3dpw(root, split="val")


def test_3dpw_bad_files(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(Key2MeshError, match=f"{missing}: no such file or folder"):
        load_3dpw(missing)
    garbage = tmp_path / "garbage.pkl"
    garbage.write_bytes(b"\x00not a pickle at all")
    with pytest.raises(Key2MeshError, match=f"{garbage}: not a readable 3DPW"):
        load_3dpw(garbage)
    listed = tmp_path / "list.pkl"
    listed.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(Key2MeshError, match=f"{listed}: expected a dict"):
        load_3dpw(listed)
    no_cam = tmp_path / "nocam.pkl"
    write_synthetic_3dpw(no_cam, drop_keys=("cam_poses",))
    with pytest.raises(Key2MeshError, match=f"{no_cam}: missing key 'cam_poses'"):
        load_3dpw(no_cam)
    bad_2d = tmp_path / "bad2d.pkl"
    data = write_synthetic_3dpw(bad_2d, persons=1)
    data["poses2d"][0] = data["poses2d"][0][:, :, :17]
    bad_2d.write_bytes(pickle.dumps(data, protocol=2))
    with pytest.raises(Key2MeshError, match=r"bad2d.pkl: 'poses2d\[0\]' must be \(10, 3, 18\)"):
        load_3dpw(bad_2d)
    short = tmp_path / "short.pkl"
    data = write_synthetic_3dpw(short, persons=1)
    data["poses"][0] = data["poses"][0][:7]
    short.write_bytes(pickle.dumps(data, protocol=2))
    with pytest.raises(Key2MeshError, match=r"short.pkl: 'poses\[0\]' must be \(10, 72\)"):
        load_3dpw(short)
    odd = tmp_path / "odd.pkl"  # malformed fields: one line each, never a traceback
    for key, value, message in (
        ("poses", 3.0, "'poses' must be a list with one entry per person, got float"),
        ("poses2d", [np.full((10, 3, 18), "x")], r"'poses2d\[0\]' must hold numbers"),
        ("poses2d", [[[1.0, 2.0], [3.0]]], r"'poses2d\[0\]' must hold numbers of one shape"),
    ):
        data = write_synthetic_3dpw(odd, persons=1)
        data[key] = value
        odd.write_bytes(pickle.dumps(data, protocol=2))
        with pytest.raises(Key2MeshError, match="odd.pkl: " + message):
            load_3dpw(odd)


def test_3dpw_text_fields_as_python2_bytes(tmp_path):
    # Python 2 NumPy text arrays unpickle as 'S' (bytes) arrays: 0-d for 'sequence', and a gender
    # may come as a 0-d or one-element array; str() of those is their repr, not the text
    pkl = tmp_path / "seq.pkl"
    data = write_synthetic_3dpw(pkl, frames=3, persons=2, sequence="ignored")
    data["sequence"] = np.array(b"courtyard_arguing_00")
    data["genders"] = [np.array(b"f"), np.array([b"m"])]
    pkl.write_bytes(pickle.dumps(data, protocol=2))
    ds = load_3dpw(pkl)
    assert ds.image_names[:3] == [
        f"imageFiles/courtyard_arguing_00/image_{i:05d}.jpg" for i in range(3)
    ]
    assert ds.genders == ["female"] * 3 + ["male"] * 3


def test_detections_file_only_for_h36m(tmp_path):
    # 3DPW and benchmark files carry their own detections: a detections file was silently ignored
    pkl = tmp_path / "seq.pkl"
    write_synthetic_3dpw(pkl, frames=3, persons=1)
    assert len(load_benchmark("3dpw", str(pkl))) == 3
    for dataset, path in (("3dpw", str(pkl)), (str(tmp_path / "b.npz"), None)):
        with pytest.raises(Key2MeshError, match="--detections applies to h36m-p2 only"):
            load_benchmark(dataset, path, detections=str(tmp_path / "dets.json"))


class _Evil:
    def __reduce__(self):
        return (Path.touch, (Path("/tmp/key2mesh_evil_marker"),))


def test_3dpw_pickle_cannot_run_code(tmp_path):
    marker = Path("/tmp/key2mesh_evil_marker")
    marker.unlink(missing_ok=True)
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps({"sequence": _Evil()}))
    with pytest.raises(Key2MeshError, match="evil.pkl: not a readable 3DPW .*refusing to load"):
        load_3dpw(evil)
    assert not marker.exists()


# ---------------------------------------------------------------------------------------- H3.6M

ROWS = [
    ("S9", "60457274"),
    ("S9", "55011271"),
    ("S11", "60457274"),
    ("S1", "60457274"),
    ("S11", "60457274"),
    ("S9", "60457274"),
    ("S11", "54138969"),
    ("S9", "60457274"),
]
P2_ROWS = [0, 2, 4, 5, 7]  # S9/S11 seen by camera 60457274


def test_spin_j24_tables_agree():
    # H36M-17 → eval-14 after J24 → H36M-17 must pick SPIN's LSP-14 rows (head top = H36M head)
    assert tuple(J24_TO_H36M17[i] for i in H36M_TO_EVAL14) == (
        0,
        1,
        2,
        3,
        4,
        5,
        6,
        7,
        8,
        9,
        10,
        11,
        12,
        18,
    )
    assert tuple(J24_TO_H36M17[i] for i in H36M_TO_EVAL14) == J24_TO_LSP14
    assert len(set(J24_TO_H36M17)) == 17 and len(J24_TO_H36M17) == len(H36M17)


def test_h36m_p2_subject_camera_filter_and_drops(tmp_path):
    path = tmp_path / "h36m_valid_protocol2.npz"
    data = write_synthetic_h36m_npz(
        path, ROWS, sparse={4: 5, 5: 6, 1: 0}
    )  # row 4 dropped; row 1 excluded anyway
    ds = load_h36m_p2(path)
    kept = [0, 2, 5, 7]
    assert ds.name == "h36m-p2" and ds.keypoint_set == "openpose_body25" and len(ds) == 4
    assert ds.dropped == 1 and ds.excluded == {"other subjects/cameras": 3}
    assert ds.image_names == [str(data["imgname"][r]) for r in kept]
    assert ds.genders == ["male"] * 4
    assert torch.allclose(
        ds.pose,
        axis_angle_to_matrix(torch.tensor(data["pose"][kept]).reshape(4, 24, 3)).float(),
        atol=1e-6,
    )
    assert torch.allclose(ds.betas, torch.tensor(data["shape"][kept], dtype=torch.float32))
    assert ds.joints3d_set == "h36m17" and ds.joints3d.shape == (4, 17, 3)
    s = torch.tensor(data["S"][kept, :, :3], dtype=torch.float32)
    # SPIN J24 rows: 14 pelvis (the H36M root), 3 left hip, 0 right ankle, 18 H36M head
    assert torch.equal(ds.joints3d[:, H36M17.index("pelvis")], s[:, 14])
    assert torch.equal(ds.joints3d[:, H36M17.index("left_hip")], s[:, 3])
    assert torch.equal(ds.joints3d[:, H36M17.index("right_ankle")], s[:, 0])
    assert torch.equal(ds.joints3d[:, H36M17.index("head_top")], s[:, 18])
    # the 14 evaluation joints of these H36M-17 joints are SPIN's LSP-14 of S
    assert torch.equal(ds.joints3d[:, list(H36M_TO_EVAL14)], s[:, list(J24_TO_LSP14)])
    assert torch.allclose(
        ds.keypoints2d[1], torch.tensor(data["openpose"][2, :, :2], dtype=torch.float32)
    )
    assert int((ds.confidence[2] > 0).sum()) == 6
    # other subjects / cameras on request
    s1 = load_h36m_p2(path, subjects=("S1",))
    assert len(s1) == 1 and s1.genders == ["female"]
    side = load_h36m_p2(path, camera="55011271")  # only row 1 (S9), which has no confident keypoint
    assert len(side) == 0 and side.dropped == 1 and side.excluded == {"other subjects/cameras": 7}


def test_h36m_spin_layout_without_pose(tmp_path):
    path = tmp_path / "p2.npz"
    write_synthetic_h36m_npz(path, ROWS, with_pose=False)
    ds = load_h36m_p2(path)
    assert ds.pose is None and ds.betas is None and ds.joints3d.shape == (5, 17, 3)
    sub = ds.subset(torch.tensor([True, False, True, False, False]))
    assert len(sub) == 2 and sub.image_names == [ds.image_names[0], ds.image_names[2]]
    assert torch.equal(sub.joints3d, ds.joints3d[[0, 2]])


def test_h36m_rows_without_smpl_fit(tmp_path, caplog):
    # SPIN's files mark rows without an SMPL fit by has_smpl 0 and store a zero pose/shape there
    path = tmp_path / "p2.npz"
    data = write_synthetic_h36m_npz(path, ROWS, sparse={7: 2})  # P2 rows 0, 2, 4, 5, 7
    has = np.ones(len(ROWS))
    has[[2, 5, 7]] = 0  # row 7 is both unfitted and too sparse: counted once, as unfitted
    data["pose"][has == 0], data["shape"][has == 0] = 0.0, 0.0
    # with 'S' (H3.6M's own ground truth): every P2 row scored on it, the SMPL fits unused
    np.savez(path, **data, has_smpl=has)
    with caplog.at_level(logging.WARNING):
        ds = load_h36m_p2(path)
    assert ds.pose is None and ds.betas is None and len(ds) == 4 and ds.dropped == 1
    assert "'has_smpl' is 0 for 3 of the 5 selected images: scoring on 'S'" in caplog.text
    # without 'S': the rows without a fit are left out
    np.savez(path, **{k: v for k, v in data.items() if k != "S"}, has_smpl=has)
    ds = load_h36m_p2(path)
    kept = [0, 4]
    assert ds.image_names == [str(data["imgname"][r]) for r in kept]
    assert ds.excluded == {"other subjects/cameras": 3, "no SMPL fit (has_smpl 0)": 3}
    assert ds.dropped == 0 and ds.joints3d is None
    assert torch.allclose(
        ds.pose,
        axis_angle_to_matrix(torch.tensor(data["pose"][kept]).reshape(2, 24, 3)).float(),
        atol=1e-6,
    )
    np.savez(path, **{k: v for k, v in data.items() if k != "S"}, has_smpl=np.zeros(len(ROWS)))
    with pytest.raises(Key2MeshError, match="p2.npz: 'has_smpl' is 0 for every selected image"):
        load_h36m_p2(path)


def test_h36m_user_detections_file(tmp_path):
    path = tmp_path / "p2.npz"
    data = write_synthetic_h36m_npz(path, ROWS, with_openpose=False)
    stems = [Path(str(n)).stem for n in data["imgname"]]
    # COCO-17 detections for rows 7, 0, 2, 5 (shuffled; row 4 missing), two persons in row 0's frame
    order = [7, 0, 2, 5]
    kp = np.zeros((4, 2, 17, 3))
    rng = np.random.default_rng(5)
    kp[..., :2] = rng.uniform(0, 1000, size=(4, 2, 17, 2))
    kp[:, 0, :, 2] = 0.9
    kp[1, 1, :, 2] = 0.95  # the second person of row 0's frame is more confident
    kp[3, 0, 4:, 2] = 0.0  # row 5: only 4 keypoints → dropped
    kp[[0, 2, 3], 1] = 0.0
    det = tmp_path / "dets.npz"
    np.savez(
        det,
        keypoints=kp,
        keypoint_set="coco17",
        frame_names=np.array([stems[r] for r in order]),
        person_ids=np.array([[0, -1], [0, 1], [0, -1], [0, -1]]),
    )
    ds = load_h36m_p2(path, detections=det)
    assert ds.keypoint_set == "coco17"
    assert ds.image_names == [str(data["imgname"][r]) for r in (0, 2, 7)]
    assert ds.dropped == 2  # row 4 (no detection) and row 5 (4 keypoints)
    assert np.allclose(
        ds.keypoints2d[0].numpy(), kp[1, 1, :, :2], atol=1e-3
    )  # most confident person
    assert np.allclose(ds.keypoints2d[2].numpy(), kp[0, 0, :, :2], atol=1e-3)
    # frames without matching names are matched by order when the counts fit
    np.savez(det, keypoints=np.broadcast_to(kp[:1, 0], (len(ROWS), 17, 3)), keypoint_set="coco17")
    assert len(load_h36m_p2(path, detections=det)) == 5
    np.savez(det, keypoints=kp[:3, 0], keypoint_set="coco17")
    with pytest.raises(Key2MeshError, match="dets.npz: frame names match none"):
        load_h36m_p2(path, detections=det)
    with pytest.raises(Key2MeshError, match="missing.json: no such file"):
        load_h36m_p2(path, detections=tmp_path / "missing.json")


def test_h36m_bad_files(tmp_path):
    missing = tmp_path / "none.npz"
    with pytest.raises(Key2MeshError, match=f"{missing}: no such file"):
        load_h36m_p2(missing)
    text = tmp_path / "text.npz"
    text.write_text("hello")
    with pytest.raises(Key2MeshError, match=f"{text}: not a readable .npz"):
        load_h36m_p2(text)
    path = tmp_path / "p2.npz"
    data = write_synthetic_h36m_npz(path, ROWS, with_openpose=False)
    with pytest.raises(Key2MeshError, match="p2.npz: missing key 'openpose'"):
        load_h36m_p2(path)
    np.savez(path, **{k: v for k, v in data.items() if k != "imgname"})
    with pytest.raises(Key2MeshError, match="p2.npz: missing key 'imgname'"):
        load_h36m_p2(path)
    write_synthetic_h36m_npz(path, ROWS, with_pose=False, with_s=False)
    with pytest.raises(Key2MeshError, match="p2.npz: missing key 'pose' .* or 'S'"):
        load_h36m_p2(path)
    data = write_synthetic_h36m_npz(path, ROWS)
    np.savez(path, **{k: v for k, v in data.items() if k != "shape"})
    with pytest.raises(Key2MeshError, match="p2.npz: missing key 'shape'"):
        load_h36m_p2(path)
    np.savez(path, **{**data, "imgname": np.array(["frame_0001.jpg"] * len(ROWS))})
    with pytest.raises(
        Key2MeshError, match="p2.npz: cannot read subject/camera from imgname 'frame_0001.jpg'"
    ):
        load_h36m_p2(path)
    np.savez(path, **{**data, "openpose": data["openpose"][:, :18]})
    with pytest.raises(Key2MeshError, match=r"p2.npz: 'openpose' must be \(8, 25, 3\)"):
        load_h36m_p2(path)
    write_synthetic_h36m_npz(path, ROWS)
    with pytest.raises(Key2MeshError, match="no image of subjects S5 from camera 60457274"):
        load_h36m_p2(path, subjects=("S5",))
    data = write_synthetic_h36m_npz(path, ROWS, with_pose=False)
    data["S"][..., :3] *= 1000  # millimetres: every error would be 1000x too large
    np.savez(path, **data)
    with pytest.raises(Key2MeshError, match="'S' must be in metres .* as in millimetres"):
        load_h36m_p2(path)


def test_h36m_imgname_as_bytes(tmp_path):
    """Names stored as bytes (dtype 'S', Python 2 era files) read as the same text."""
    path = tmp_path / "p2.npz"
    data = write_synthetic_h36m_npz(path, ROWS)
    text = load_h36m_p2(path)
    np.savez(path, **{**data, "imgname": data["imgname"].astype("S")})
    raw = load_h36m_p2(path)
    assert raw.image_names == text.image_names and len(raw.image_names) > 0


def _set_fields(image_names: list[str], keypoint_set: str = "coco17") -> dict:
    """BenchmarkSet fields of len(image_names) blank COCO-17 samples with SMPL rest poses."""
    n = len(image_names)
    return dict(
        name="x",
        keypoints2d=torch.zeros(n, 17, 2),
        confidence=torch.zeros(n, 17),
        keypoint_set=keypoint_set,
        pose=torch.eye(3).expand(n, 24, 3, 3),
        betas=torch.zeros(n, 10),
        genders=["neutral"] * n,
        image_names=image_names,
    )


def test_benchmark_set_validates_shapes():
    kw = _set_fields(["a", "b"], keypoint_set="coco")
    assert BenchmarkSet(**kw).keypoint_set == "coco17"
    with pytest.raises(Key2MeshError, match=r"betas must be \(2, 10\)"):
        BenchmarkSet(**{**kw, "betas": torch.zeros(2, 11)})
    with pytest.raises(Key2MeshError, match="1 genders for 2 samples"):
        BenchmarkSet(**{**kw, "genders": ["male"]})
    with pytest.raises(Key2MeshError, match="needs ground-truth poses or 3D joints"):
        BenchmarkSet(**{**kw, "pose": None})
    one = BenchmarkSet(**kw).subset(slice(1, 2))
    assert len(one) == 1 and one.image_names == ["b"] and one.pose.shape == (1, 24, 3, 3)


def test_interval_clusters_are_video_sequences():
    """Bootstrap unit: the image name less its frame number (3DPW folder, H3.6M video), stored
    instants first; bare frame numbers leave each sample alone."""
    names = [
        "images/S9_Directions_1.60457274_000001.jpg",
        "images/S9_Directions_1.60457274_000006.jpg",
        "images/S11_Eating.60457274_000001.jpg",
        "imageFiles/downtown_bus_00/image_00007.jpg",
        "imageFiles/downtown_bus_00/image_00007.jpg",  # the second person of the same frame
        "imageFiles/courtyard_dancing_01/image_00000.jpg",
    ]
    n = len(names)
    kw = _set_fields(names)
    ids = BenchmarkSet(**kw).interval_clusters()
    assert ids.dtype == np.int64 and len(set(ids)) == 4
    assert ids[0] == ids[1] and ids[3] == ids[4] and len({ids[0], ids[2], ids[3], ids[5]}) == 4
    numbered = BenchmarkSet(**{**kw, "image_names": [f"{i:06d}" for i in range(n)]})
    np.testing.assert_array_equal(numbered.interval_clusters(), np.arange(n))
    views = BenchmarkSet(**{**kw, "instants": torch.tensor([5, 5, 6, 6, 7, 7])})
    np.testing.assert_array_equal(views.interval_clusters(), [5, 5, 6, 6, 7, 7])
