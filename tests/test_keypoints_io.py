"""Readers/writers of keypoint detections: round trips, multi-person frames, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from key2mesh.errors import Key2MeshError
from key2mesh.keypoints import keypoint_names
from key2mesh.keypoints.io import (
    Detections,
    read_coco_json,
    read_detections,
    read_numpy,
    read_openpose_json,
    write_npz,
    write_openpose_json,
)

B25 = {n: i for i, n in enumerate(keypoint_names("openpose_body25"))}


def _person(k: int, seed: int, pid: int = -1) -> dict:
    """An OpenPose person with k points at non-float32-exact pixels and confidences in (0, 1]."""
    rng = np.random.default_rng(seed)
    xyc = np.stack(
        [rng.uniform(0, 1920, k), rng.uniform(0, 1080, k), rng.uniform(0.05, 1.0, k)], axis=1
    )
    xyc[3] = 0.0  # a missing point, as OpenPose writes it
    return {"person_id": [pid], "pose_keypoints_2d": xyc.ravel().tolist(), "face_keypoints_2d": [],
            "hand_left_keypoints_2d": [], "hand_right_keypoints_2d": [], "pose_keypoints_3d": [],
            "face_keypoints_3d": [], "hand_left_keypoints_3d": [], "hand_right_keypoints_3d": []}  # fmt: skip


def _write(path: Path, data) -> Path:
    path.write_text(json.dumps(data))
    return path


@pytest.fixture
def openpose_folder(tmp_path: Path) -> Path:
    """Frames 1 (two persons), 2 (nobody), 10 (one person), named so that text order is wrong."""
    folder = tmp_path / "op"
    folder.mkdir()
    _write(folder / "clip_10_keypoints.json", {"version": 1.3, "people": [_person(25, 3)]})
    _write(folder / "clip_2_keypoints.json", {"version": 1.3, "people": []})
    _write(
        folder / "clip_1_keypoints.json",
        {"version": 1.3, "people": [_person(25, 1), _person(25, 2)]},
    )
    return folder


def _one_line_naming(excinfo, path: Path) -> None:
    msg = str(excinfo.value)
    assert str(path) in msg and "\n" not in msg, msg


# ---------------------------------------------------------------------------------------- OpenPose


def test_openpose_folder_multi_person_and_empty_frames(openpose_folder):
    det = read_detections(openpose_folder)
    assert det.keypoint_set == "openpose_body25"
    assert det.frame_names == ["clip_1", "clip_2", "clip_10"]  # natural order
    assert (
        det.num_frames == 3
        and det.keypoints.shape == (3, 2, 25, 2)
        and det.confidence.shape == (3, 2, 25)
    )
    assert det.keypoints.dtype == np.float32
    np.testing.assert_array_equal(det.person_ids, [[0, 1], [-1, -1], [0, -1]])
    assert not det.tracked and det.num_detections == 3
    # values: person 2 of frame 1 is _person(25, 2)
    xyc = np.asarray(_person(25, 2)["pose_keypoints_2d"]).reshape(25, 3)
    np.testing.assert_allclose(det.keypoints[0, 1], xyc[:, :2].astype(np.float32))
    np.testing.assert_allclose(det.confidence[0, 1], xyc[:, 2].astype(np.float32))
    assert det.confidence[0, 1, 3] == 0.0
    # padding slots and the empty frame carry nothing
    assert (det.confidence[1] == 0).all() and (det.confidence[2, 1] == 0).all()
    # per-detection views
    flat = det.flatten()
    assert flat.keypoints.shape == (3, 25, 2) and flat.confidence.shape == (3, 25)
    np.testing.assert_array_equal(flat.index, [[0, 0], [0, 1], [2, 0]])
    first = det.select_person(0)
    np.testing.assert_array_equal(first.index, [[0, 0], [2, 0]])
    np.testing.assert_array_equal(first.keypoints[1], det.keypoints[2, 0])
    assert det.select_person(1).keypoints.shape == (1, 25, 2)


def test_openpose_folder_with_superscript_digit_names(tmp_path):
    """'²'.isdigit() is true but int('²') fails: such a file name crashed the folder sort with a
    ValueError traceback. Number runs still sort by value (Arabic-Indic ١١ = 11 after 9)."""
    folder = tmp_path / "op"
    folder.mkdir()
    for name in ("clip_10", "m²2", "clip_\u0661\u0661", "clip_9", "²1"):
        _write(folder / f"{name}_keypoints.json", {"people": [_person(25, 0)]})
    det = read_openpose_json(folder)
    assert det.frame_names == ["clip_9", "clip_10", "clip_\u0661\u0661", "m²2", "²1"]


def test_openpose_1_0_files_with_pose_keypoints_are_read(tmp_path):
    """OpenPose 1.0/1.1 wrote 'pose_keypoints' (no _2d): such files were refused ('person 0 has no
    'pose_keypoints_2d' list')."""
    new = _person(18, 4)
    old = {"pose_keypoints": new["pose_keypoints_2d"], "face_keypoints": []}
    a = _write(tmp_path / "old_keypoints.json", {"version": 1.0, "people": [old]})
    b = _write(tmp_path / "new_keypoints.json", {"version": 1.3, "people": [new]})
    det, ref = read_detections(a), read_detections(b)
    assert det.keypoint_set == "openpose_coco18"
    np.testing.assert_array_equal(det.keypoints, ref.keypoints)
    np.testing.assert_array_equal(det.confidence, ref.confidence)


def test_openpose_json_round_trip_is_exact(openpose_folder, tmp_path):
    det = read_openpose_json(openpose_folder)
    paths = write_openpose_json(det, tmp_path / "out")
    assert sorted(p.name for p in paths) == sorted(p.name for p in openpose_folder.iterdir())
    for p in paths:
        a, b = json.loads((openpose_folder / p.name).read_text()), json.loads(p.read_text())
        assert len(a["people"]) == len(b["people"])
        for pa, pb in zip(a["people"], b["people"], strict=True):
            assert pb["person_id"] == pa["person_id"] == [-1]
            assert set(pb) == set(pa)  # full OpenPose person layout
            np.testing.assert_array_equal(
                np.float32(pb["pose_keypoints_2d"]), np.float32(pa["pose_keypoints_2d"])
            )
    again = read_openpose_json(tmp_path / "out")
    np.testing.assert_array_equal(again.keypoints, det.keypoints)
    np.testing.assert_array_equal(again.confidence, det.confidence)
    np.testing.assert_array_equal(again.person_ids, det.person_ids)
    assert again.frame_names == det.frame_names


def test_openpose_single_file_coco18_and_tracked_ids(tmp_path):
    f = _write(
        tmp_path / "img_keypoints.json",
        {"version": 1.3, "people": [_person(18, 0, pid=7), _person(18, 1, pid=3)]},
    )
    det = read_detections(f)
    assert det.keypoint_set == "openpose_coco18" and det.frame_names == ["img"]
    assert det.tracked
    np.testing.assert_array_equal(det.person_ids, [[7, 3]])
    sel = det.select_person(3)
    np.testing.assert_array_equal(sel.index, [[0, 1]])
    # tracked ids are written back
    out = write_openpose_json(det, tmp_path / "w")
    assert [p["person_id"] for p in json.loads(out[0].read_text())["people"]] == [[7], [3]]


def test_openpose_empty_pose_list_and_nan(tmp_path):
    p = _person(25, 0)
    p["pose_keypoints_2d"][0] = float("nan")  # x of the nose, confidence > 0
    f = _write(
        tmp_path / "a_keypoints.json",
        {"version": 1.3, "people": [{"person_id": [-1], "pose_keypoints_2d": []}, p]},
    )
    det = read_openpose_json(f)
    assert det.keypoints.shape == (1, 1, 25, 2)  # the empty person is no detection
    assert det.confidence[0, 0, 0] == 0.0 and det.keypoints[0, 0, 0, 0] == 0.0
    assert det.confidence[0, 0, 1] > 0


def test_openpose_all_frames_empty(tmp_path):
    _write(tmp_path / "x_0_keypoints.json", {"version": 1.3, "people": []})
    det = read_detections(tmp_path)
    assert (
        det.num_frames == 1
        and det.keypoints.shape == (1, 0, 25, 2)
        and det.flatten().keypoints.shape == (0, 25, 2)
    )


def test_valid_mask_drops_detections_with_fewer_than_six_points(tmp_path):
    sparse = {"person_id": [-1], "pose_keypoints_2d": [0.0] * 75}
    for k in range(5):  # five confident points
        sparse["pose_keypoints_2d"][3 * k : 3 * k + 3] = [10.0 * k, 20.0, 0.8]
    sparse["pose_keypoints_2d"][3 * 5 : 3 * 6] = [1.0, 1.0, 0.05]  # a sixth below the 0.1 threshold
    f = _write(tmp_path / "f_keypoints.json", {"version": 1.3, "people": [_person(25, 0), sparse]})
    det = read_openpose_json(f)
    np.testing.assert_array_equal(det.valid_mask(), [[True, False]])
    np.testing.assert_array_equal(det.valid_mask(min_keypoints=5), [[True, True]])
    np.testing.assert_array_equal(det.valid_mask(min_keypoints=6, threshold=0.01), [[True, True]])


def test_to_converts_and_writer_defaults_to_body25(tmp_path):
    kp = np.zeros((1, 1, 17, 2), np.float32)
    kp[0, 0, 5], kp[0, 0, 6] = (100, 200), (140, 210)  # left / right shoulder
    conf = np.zeros((1, 1, 17), np.float32)
    conf[0, 0, 5], conf[0, 0, 6] = 0.9, 0.7
    det = Detections(kp, conf, "vitpose", ["f0"], np.zeros((1, 1), int))
    assert det.keypoint_set == "coco17"
    b25 = det.to("body25")
    assert b25.keypoint_set == "openpose_body25" and b25.keypoints.shape == (1, 1, 25, 2)
    np.testing.assert_allclose(b25.keypoints[0, 0, B25["neck"]], [120, 205])
    assert b25.confidence[0, 0, B25["neck"]] == pytest.approx(0.7)
    assert b25.confidence[0, 0, B25["mid_hip"]] == 0.0
    assert b25.frame_names == ["f0"] and det.keypoint_set == "coco17"  # original untouched
    out = write_openpose_json(det, tmp_path / "w")
    values = json.loads(out[0].read_text())["people"][0]["pose_keypoints_2d"]
    assert len(values) == 75 and values[3:6] == [120.0, 205.0, pytest.approx(0.7)]


def test_detections_constructor_cleans_nan_and_padding():
    kp = np.ones((1, 2, 17, 2), np.float32)
    kp[0, 0, 4, 1] = np.nan
    det = Detections(kp, np.ones((1, 2, 17)), "coco17", ["a"], [[0, -1]])
    assert det.confidence[0, 0, 4] == 0.0 and det.keypoints[0, 0, 4, 1] == 0.0
    assert det.confidence[0, 0, 3] == 1.0
    assert (det.confidence[0, 1] == 0).all()  # padding slot
    with pytest.raises(Key2MeshError, match="must be"):
        Detections(kp, np.ones((1, 2, 17)), "openpose_body25", ["a"], [[0, -1]])
    with pytest.raises(Key2MeshError, match="frame names"):
        Detections(kp, np.ones((1, 2, 17)), "coco17", ["a", "b"], [[0, -1]])


def test_one_person_id_twice_in_a_frame_is_refused(tmp_path):
    """A track id names one person: two persons with one id in a frame (a tracker fault) would
    make ``select_person`` return both, so every reader refuses it in one line naming the file."""
    op = tmp_path / "op"
    op.mkdir()
    _write(op / "f_000000000000_keypoints.json", {"people": [_person(25, 0, 3), _person(25, 1, 3)]})
    _write(op / "f_000000000001_keypoints.json", {"people": [_person(25, 2, 3)]})
    with pytest.raises(
        Key2MeshError, match=r"op: person id 3 appears 2 times in frame 'f_000000000000'"
    ):
        read_openpose_json(op)
    coco = _write(
        tmp_path / "res.json", [{**_coco_result(7, 17, s), "track_id": 0} for s in (0, 1)]
    )
    with pytest.raises(Key2MeshError, match=r"res.json: person id 0 appears 2 times in frame '7'"):
        read_coco_json(coco)
    npz = tmp_path / "d.npz"
    np.savez(npz, keypoints=np.ones((1, 2, 17, 2)), person_ids=np.array([[5, 5]]),
             keypoint_set=np.asarray("coco17"))  # fmt: skip
    with pytest.raises(Key2MeshError, match=r"d.npz: person id 5 appears 2 times"):
        read_numpy(npz)
    # distinct ids, untracked slots and padding are fine
    _write(op / "f_000000000000_keypoints.json", {"people": [_person(25, 0, 3), _person(25, 1, 4)]})
    assert read_openpose_json(op).person_ids.tolist() == [[3, 4], [3, -1]]
    det = Detections(np.ones((1, 3, 17, 2)), np.ones((1, 3, 17)), "coco17", ["a"], [[0, -1, -1]])
    assert det.num_detections == 1


# ---------------------------------------------------------------------------------------- COCO


def _coco_result(image_id, k: int, seed: int, score: float = 0.9) -> dict:
    rng = np.random.default_rng(seed)
    xyv = np.stack(
        [rng.uniform(0, 640, k), rng.uniform(0, 480, k), rng.uniform(0.0, 1.2, k)], axis=1
    )
    return {
        "image_id": image_id,
        "category_id": 1,
        "keypoints": xyv.ravel().tolist(),
        "score": score,
    }


def test_coco_results_list(tmp_path):
    results = [_coco_result(5, 17, 0), _coco_result(3, 17, 1), _coco_result(5, 17, 2)]
    f = _write(tmp_path / "vitpose_results.json", results)
    det = read_detections(f)
    assert det.keypoint_set == "coco17" and det.frame_names == ["3", "5"]
    np.testing.assert_array_equal(det.person_ids, [[0, -1], [0, 1]])
    xyv = np.asarray(results[2]["keypoints"]).reshape(17, 3)
    np.testing.assert_allclose(det.keypoints[1, 1], xyv[:, :2].astype(np.float32))
    np.testing.assert_allclose(det.confidence[1, 1], np.clip(xyv[:, 2], 0, 1).astype(np.float32))
    assert det.confidence.max() <= 1.0


def test_coco_frames_named_by_image_id_text_are_in_natural_order(tmp_path):
    """Image ids that are frame names sorted as text put frame_10 between frame_1 and frame_2,
    scrambling the motion; they now sort like OpenPose file names (numbers first, by value)."""
    ids = ["frame_10", "frame_9", 7, "frame_2", "frame_1", 3.5]
    f = _write(tmp_path / "named.json", [_coco_result(i, 17, s) for s, i in enumerate(ids)])
    det = read_detections(f)
    assert det.frame_names == ["3.5", "7", "frame_1", "frame_2", "frame_9", "frame_10"]
    first_x = [_coco_result(i, 17, s)["keypoints"][0] for s, i in enumerate(ids)]
    np.testing.assert_allclose(
        det.keypoints[:, 0, 0, 0], np.float32([first_x[i] for i in (5, 2, 4, 3, 1, 0)])
    )


def test_coco_file_names_written_on_windows_name_frames_by_stem(tmp_path):
    """'C:\\data\\img_0001.jpg' named its frame 'C:\\data\\img_0001' (the whole path, then the
    output files' names); an empty file name falls back to the image id."""
    files = {1: "C:\\data\\run1\\img_0001.jpg", 2: "run1/img_0002.jpg", 3: "", 4: "shots\\"}
    data = {
        "images": [{"id": i, "file_name": n} for i, n in files.items()],
        "annotations": [_coco_result(i, 17, i) for i in files],
    }
    det = read_detections(_write(tmp_path / "win.json", data))
    assert det.frame_names == ["img_0001", "img_0002", "3", "shots"]


@pytest.mark.parametrize(("k", "expected"), [(23, "coco23"), (133, "coco23")])
def test_coco_results_feet_and_wholebody(tmp_path, k, expected):
    res = _coco_result(1, k, 0)
    det = read_coco_json(_write(tmp_path / "r.json", [res]))
    assert det.keypoint_set == expected and det.keypoints.shape == (1, 1, 23, 2)
    xyv = np.asarray(res["keypoints"]).reshape(k, 3)
    np.testing.assert_allclose(det.keypoints[0, 0], xyv[:23, :2].astype(np.float32))
    body = read_coco_json(tmp_path / "r.json", keypoint_set="coco17") if k == 133 else None
    if body is not None:
        assert body.keypoint_set == "coco17" and body.keypoints.shape == (1, 1, 17, 2)


def test_coco_dataset_dict_with_images(tmp_path):
    ann = _coco_result(11, 17, 0)
    ann.update(id=1, num_keypoints=17, iscrowd=0)
    crowd = {"image_id": 11, "category_id": 1, "keypoints": [0] * 51, "iscrowd": 1, "id": 2}
    data = {
        "images": [{"id": 11, "file_name": "val/000011.jpg", "width": 640, "height": 480},
                   {"id": 12, "file_name": "val/000012.jpg", "width": 640, "height": 480}],
        "annotations": [ann, crowd],
        "categories": [{"id": 1, "name": "person", "keypoints": list(keypoint_names("coco17"))}],
    }  # fmt: skip
    det = read_detections(_write(tmp_path / "person_keypoints_val.json", data))
    assert det.frame_names == ["000011", "000012"] and det.image_size == (640, 480)
    np.testing.assert_array_equal(det.person_ids, [[0], [-1]])  # image 12 has nobody; crowd skipped
    # no annotation at all: the set comes from the categories
    data["annotations"] = []
    empty = read_coco_json(_write(tmp_path / "empty_ann.json", data))
    assert empty.keypoint_set == "coco17" and empty.keypoints.shape == (2, 0, 17, 2)


# ---------------------------------------------------------------------------------------- NumPy


def test_npy_single_person_with_confidence(tmp_path):
    rng = np.random.default_rng(0)
    arr = rng.uniform(0, 500, (4, 17, 3)).astype(np.float32)
    arr[..., 2] = rng.uniform(0, 1, (4, 17))
    np.save(tmp_path / "kp.npy", arr)
    det = read_detections(tmp_path / "kp.npy", keypoint_set="vitpose")
    assert det.keypoint_set == "coco17" and det.keypoints.shape == (4, 1, 17, 2)
    np.testing.assert_array_equal(det.keypoints[:, 0], arr[..., :2])
    np.testing.assert_array_equal(det.confidence[:, 0], arr[..., 2])
    assert det.frame_names == ["000000", "000001", "000002", "000003"]
    # 25 points: only BODY_25 has 25, inferred without a set
    np.save(tmp_path / "b25.npy", rng.uniform(0, 9, (2, 3, 25, 2)))
    b25 = read_numpy(tmp_path / "b25.npy")
    assert b25.keypoint_set == "openpose_body25" and (b25.confidence == 1).all()
    np.testing.assert_array_equal(b25.person_ids, [[0, 1, 2]] * 2)


def test_npz_keys_and_round_trip(tmp_path, openpose_folder):
    kp = np.arange(2 * 2 * 23 * 2, dtype=np.float32).reshape(2, 2, 23, 2)
    scores = np.full((2, 2, 23), 0.5, np.float32)
    np.savez(
        tmp_path / "d.npz",
        keypoints=kp,
        scores=scores,
        keypoint_set="coco23",
        frame_names=["a", "b"],
    )
    det = read_detections(tmp_path / "d.npz")
    assert det.keypoint_set == "coco23" and det.frame_names == ["a", "b"]
    np.testing.assert_array_equal(det.confidence, scores)
    # writer → reader keeps every field
    src = read_openpose_json(openpose_folder)
    src.image_size = (1920, 1080)
    back = read_detections(write_npz(src, tmp_path / "rt"))
    assert back.keypoint_set == src.keypoint_set and back.frame_names == src.frame_names
    assert back.image_size == (1920, 1080) and back.tracked == src.tracked
    np.testing.assert_array_equal(back.keypoints, src.keypoints)
    np.testing.assert_array_equal(back.confidence, src.confidence)
    np.testing.assert_array_equal(back.person_ids, src.person_ids)


# ---------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("empty_keypoints.json", "", "empty"),
        ("blank_keypoints.json", "  \n", "empty"),
        ("broken_keypoints.json", '{"version": 1.3, "people": [', "malformed JSON"),
        ("short_keypoints.json", json.dumps({"people": [{"pose_keypoints_2d": [1.0] * 51}]}), "17 keypoints"),
        ("odd_keypoints.json", json.dumps({"people": [{"pose_keypoints_2d": [1.0] * 76}]}), "3 per keypoint"),
        ("text_keypoints.json", json.dumps({"people": [{"pose_keypoints_2d": ["a"] * 75}]}), "numbers"),
        ("inf_keypoints.json", '{"people": [{"pose_keypoints_2d": [Infinity' + ", 1.0" * 74 + "]}]}", "infinite"),
        ("other.json", json.dumps({"foo": 1}), "unrecognised JSON"),
        ("coco_bad.json", json.dumps([{"image_id": 1, "keypoints": [1.0] * 60}]), "20 keypoints"),
        ("coco_noid.json", json.dumps([{"keypoints": [1.0] * 51}]), "image_id"),
        ("coco_empty.json", "[]", "no keypoint entries"),
        ("detections.txt", "1 2 3", "unknown detections format"),
        ("noext", "1 2 3", "unknown detections format"),
    ],
)  # fmt: skip
def test_bad_files_raise_one_line_naming_the_file(tmp_path, name, content, match):
    f = tmp_path / name
    f.write_text(content)
    with pytest.raises(Key2MeshError, match=match) as excinfo:
        read_detections(f)
    _one_line_naming(excinfo, f)


def test_inf_with_zero_confidence_is_just_missing(tmp_path):
    f = tmp_path / "ok_keypoints.json"
    f.write_text('{"people": [{"pose_keypoints_2d": [Infinity, 1.0, 0.0' + ", 1.0" * 72 + "]}]}")
    det = read_detections(f)
    assert det.confidence[0, 0, 0] == 0.0 and det.keypoints[0, 0, 0, 0] == 0.0


def test_folder_and_path_errors(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(Key2MeshError, match="no such file") as excinfo:
        read_detections(missing)
    _one_line_naming(excinfo, missing)
    with pytest.raises(Key2MeshError, match="no such file"):
        read_openpose_json(missing)
    empty = tmp_path / "nojson"
    empty.mkdir()
    (empty / "readme.txt").write_text("hi")
    with pytest.raises(Key2MeshError, match="no .json files") as excinfo:
        read_detections(empty)
    _one_line_naming(excinfo, empty)
    # one bad frame in a folder names that frame's file
    folder = tmp_path / "mixed"
    folder.mkdir()
    _write(folder / "a_0_keypoints.json", {"people": [_person(25, 0)]})
    bad = _write(folder / "a_1_keypoints.json", {"people": [_person(18, 0)]})
    with pytest.raises(Key2MeshError, match="differs") as excinfo:
        read_detections(folder)
    _one_line_naming(excinfo, bad)


def test_declared_set_must_match_count(tmp_path, openpose_folder):
    with pytest.raises(Key2MeshError, match="coco17"):
        read_detections(openpose_folder, keypoint_set="coco17")
    with pytest.raises(Key2MeshError, match="unknown keypoint set"):
        read_detections(openpose_folder, keypoint_set="body26")
    np.save(tmp_path / "k.npy", np.zeros((3, 17, 2)))
    with pytest.raises(Key2MeshError, match="several sets") as excinfo:
        read_detections(tmp_path / "k.npy")  # 17 points: COCO-17 or H36M-17
    _one_line_naming(excinfo, tmp_path / "k.npy")
    with pytest.raises(Key2MeshError, match="openpose_body25"):
        read_detections(tmp_path / "k.npy", keypoint_set="body25")
    assert read_detections(tmp_path / "k.npy", keypoint_set="h36m").keypoint_set == "h36m17"


def test_bad_numpy_files(tmp_path):
    cases = {
        "empty.npy": None,
        "shape.npy": np.zeros((3, 25)),
        "dims.npy": np.zeros((3, 25, 4)),
        "inf.npy": np.full((1, 25, 2), np.inf),
        "nokp.npz": {"points": np.zeros((1, 25, 2))},
        "conf.npz": {"keypoints": np.zeros((2, 25, 2)), "confidence": np.zeros((2, 24))},
        "names.npz": {"keypoints": np.zeros((2, 25, 2)), "frame_names": ["only_one"]},
        "garbage.npz": b"not a zip",
        "set.npz": {"keypoints": np.zeros((2, 25, 2)), "keypoint_set": "body26"},
        "strings.npy": np.array([[["a", "b"]]]),
    }
    for name, value in cases.items():
        f = tmp_path / name
        if value is None:
            f.write_bytes(b"")
        elif isinstance(value, bytes):
            f.write_bytes(value)
        elif isinstance(value, dict):
            np.savez(f, **value)
        else:
            np.save(f, value)
        with pytest.raises(Key2MeshError) as excinfo:
            read_detections(f)
        _one_line_naming(excinfo, f)


def test_npy_nan_is_missing(tmp_path):
    arr = np.ones((2, 25, 2))
    arr[1, 7] = np.nan
    np.save(tmp_path / "n.npy", arr)
    det = read_detections(tmp_path / "n.npy")
    assert det.confidence[1, 0, 7] == 0.0 and det.confidence.sum() == 2 * 25 - 1


def test_enough_keypoints_is_the_one_rule():
    """check_detections (>= threshold, finite positions) and the benchmark readers (> 0) count
    confident points through the same enough_keypoints()."""
    from key2mesh.data.datasets import sparse_detections
    from key2mesh.keypoints.io import MIN_KEYPOINTS, check_detections, enough_keypoints

    conf = np.zeros((3, 17))
    conf[0, :MIN_KEYPOINTS] = 0.1  # exactly at the detection threshold
    conf[1, : MIN_KEYPOINTS - 1] = 1.0
    conf[2, :MIN_KEYPOINTS] = np.nan
    np.testing.assert_array_equal(enough_keypoints(conf), [True, False, False])
    np.testing.assert_array_equal(
        enough_keypoints(conf, threshold=0.1, strict=True), [False, False, False]
    )
    np.testing.assert_array_equal(
        ~sparse_detections(conf), enough_keypoints(conf, threshold=0.0, strict=True)
    )
    kp = np.random.default_rng(0).normal(size=(3, 17, 2)) * 100
    kp[0, 0] = np.nan  # a non-finite position is not a confident point
    np.testing.assert_array_equal(enough_keypoints(conf, keypoints=kp), [False, False, False])
    np.testing.assert_array_equal(
        ~check_detections(kp, conf).too_few, enough_keypoints(conf, keypoints=kp)
    )


def test_complex_keypoints_in_a_motion_table_are_refused(tmp_path):
    n, k = 3, 25
    path = tmp_path / "clip_params.npz"
    kp = np.ones((n, k, 3), np.complex64) * (100 + 5j)
    np.savez(path, keypoints2d=kp, frame_index=np.arange(n), track_id=np.zeros(n, np.int64))
    with pytest.raises(Key2MeshError, match="keypoints2d must be real numbers"):
        read_detections(path, keypoint_set="openpose_body25")
    np.save(tmp_path / "c.npy", kp[None])  # a plain array: refused too
    with pytest.raises(Key2MeshError, match="real numbers"):
        read_detections(tmp_path / "c.npy", keypoint_set="openpose_body25")


@pytest.mark.parametrize(
    "text, expect",
    [
        ('{"people": [{"pose_keypoints_2d": [' + "9" * 5000 + ", 1, 1]}]}", "too many digits"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ],
    ids=["huge-number", "deep-nesting"],
)
def test_pathological_json_is_one_line(tmp_path, text, expect):
    path = tmp_path / "x.json"
    path.write_text(text)
    with pytest.raises(Key2MeshError, match=expect) as info:
        read_detections(path)
    assert "\n" not in str(info.value) and info.value.__cause__ is None


def test_track_ids_read_from_json_beyond_int64_are_untracked():
    """A JSON person id is any size of int: one past int64 made ``np.isfinite`` raise."""
    from key2mesh.keypoints.io import _track_id

    assert _track_id(-(2**63) - 1) is None and _track_id(2**70) is None
    assert _track_id(2**61) == 2**61 and _track_id(-3) == -3 and _track_id([7]) == 7
    assert _track_id(4.0) == 4 and _track_id(4.5) is None and _track_id(float("nan")) is None
    assert _track_id(1e30) is None and _track_id(True) is None and _track_id("3") is None


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-32"])
def test_json_with_byte_order_mark_or_utf16_is_read(tmp_path, openpose_folder, encoding):
    """Windows tools write JSON with a UTF-8 byte-order mark (Notepad, PowerShell's
    ``Out-File -Encoding utf8``) or in UTF-16; both were refused ('Unexpected UTF-8 BOM')."""
    src = openpose_folder / "clip_1_keypoints.json"
    f = tmp_path / f"bom_{encoding}_keypoints.json"
    f.write_text(src.read_text(), encoding=encoding)
    det, ref = read_detections(f), read_detections(src)
    np.testing.assert_array_equal(det.keypoints, ref.keypoints)
    np.testing.assert_array_equal(det.confidence, ref.confidence)
    coco = tmp_path / f"coco_{encoding}.json"
    coco.write_text(
        json.dumps([{"image_id": 1, "keypoints": [5.0, 6.0, 0.5] * 17}]), encoding=encoding
    )
    assert read_detections(coco).keypoints[0, 0, 16].tolist() == [5.0, 6.0]
    latin = tmp_path / "latin_keypoints.json"
    latin.write_bytes(b'{"people": [], "note": "caf\xe9"}')
    with pytest.raises(Key2MeshError, match="cannot read") as excinfo:
        read_detections(latin)
    _one_line_naming(excinfo, latin)


def test_npz_names_stored_as_bytes_are_decoded(tmp_path):
    """Names saved as bytes (``S`` arrays: h5py, Python 2, ``np.bytes_``) read as text: the set was
    refused as "unknown keypoint set \\"np.bytes_(b'coco17')\\"" and frame names came back "b'f0'"."""
    kp = np.random.default_rng(0).uniform(1, 100, (2, 17, 3))
    f = tmp_path / "bytes.npz"
    np.savez(
        f,
        keypoints=kp,
        keypoint_set=np.bytes_(b"coco17"),
        frame_names=np.array([b"f0", b"caf\xc3\xa9"]),
    )
    det = read_numpy(f)
    assert det.keypoint_set == "coco17" and det.frame_names == ["f0", "café"]
    np.savez(f, keypoints=kp, keypoint_set=np.array(["h36m17"]))  # a one-element list of the name
    assert read_numpy(f).keypoint_set == "h36m17"


def test_openpose_folder_skips_hidden_appledouble_files(openpose_folder):
    """A folder copied from a Mac to an exFAT drive or SMB share has a binary '._<name>' twin of
    each file; the first one made the whole folder fail ('malformed JSON')."""
    ref = read_openpose_json(openpose_folder)
    for f in list(openpose_folder.iterdir()):
        (openpose_folder / f"._{f.name}").write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X")
    det = read_detections(openpose_folder)
    assert det.frame_names == ref.frame_names == ["clip_1", "clip_2", "clip_10"]
    np.testing.assert_array_equal(det.keypoints, ref.keypoints)
