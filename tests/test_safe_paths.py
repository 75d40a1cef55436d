"""Names read from input files never become paths outside the output folder; outputs are atomic."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from key2mesh.safe_paths import safe_name, unique_names


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("name, expected", [
    ("../../evil", "evil"),
    ("/etc/passwd", "etc_passwd"),
    ("..\\..\\win", "win"),
    ("a\x00b", "a_b"),
    ("", "frame"),
    (".", "frame"),
    ("..", "frame"),
    (".hidden", "hidden"),
    ("frame 001 (copy)", "frame_001_copy"),
    ("ok-name_1.v2", "ok-name_1.v2"),
    ("é/ü", "frame"),
    ("x" * 500, "x" * 120),
])
def test_safe_name(name, expected):
    assert safe_name(name) == expected


def test_unique_names():
    assert unique_names(["a", "a", "A", "a_1", "../a", ""]) == ["a", "a_1", "A_2", "a_1_1", "a_3", "frame"]


def test_write_openpose_json_stays_in_folder(tmp_path):
    from key2mesh.keypoints.io import Detections, read_openpose_json, write_openpose_json

    names = ["../../evil", str(tmp_path / "abs" / "x"), "dup", "dup", "", "a\x00b"]
    n = len(names)
    kp = np.random.default_rng(0).uniform(0, 100, (n, 1, 25, 2))
    det = Detections(kp, np.ones((n, 1, 25)), "openpose_body25", names, np.zeros((n, 1), dtype=np.int64))
    out = tmp_path / "a" / "b" / "json"
    paths = write_openpose_json(det, out)
    assert all(p.parent == out for p in paths) and len(set(paths)) == n
    assert _files(tmp_path) == {f"a/b/json/{p.name}" for p in paths}
    assert sorted(p.name for p in paths) == sorted(f"{s}_keypoints.json" for s in
                                                   ["evil", unique_names([str(tmp_path / "abs" / "x")])[0],
                                                    "dup", "dup_1", "frame", "a_b"])
    back = read_openpose_json(out)
    assert back.num_frames == n


def test_predict_meshes_stay_in_folder(tmp_path):
    from key2mesh.cli import main
    from key2mesh.inference.predictor import PRETRAINED, PRETRAINED_DIR

    if not (PRETRAINED_DIR / PRETRAINED["anny-coco17"]).exists():
        pytest.skip("no shipped checkpoint")
    names = ["../../evil", str(tmp_path / "abs" / "x"), "dup", "dup"]
    rng = np.random.default_rng(1)
    kp = rng.uniform(100, 300, (len(names), 17, 2)).astype(np.float32)
    inp = tmp_path / "in.npz"
    np.savez(inp, keypoints=kp, keypoint_set="coco17", frame_names=np.array(names))
    out = tmp_path / "a" / "b" / "pred.npz"
    assert main(["predict", str(inp), "--checkpoint", "anny-coco17", "--out", str(out), "--meshes", "ply",
                 "--device", "cpu"]) == 0
    meshes = sorted((tmp_path / "a" / "b" / "pred_meshes").iterdir())
    assert len(meshes) == len(names)
    assert {m.name for m in meshes} >= {"evil_p0.ply", "dup_p0.ply", "dup_p0_1.ply"}
    assert _files(tmp_path) == {"in.npz", "a/b/pred.npz"} | {f"a/b/pred_meshes/{m.name}" for m in meshes}
