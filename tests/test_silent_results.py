"""Inputs that used to give silently wrong numbers now give clear errors or reported skips."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from key2mesh.cli import main
from key2mesh.errors import Key2MeshError
from key2mesh.keypoints.io import read_detections
from key2mesh.model.checkpoint import PRETRAINED, PRETRAINED_DIR

needs_model = pytest.mark.skipif(
    not (PRETRAINED_DIR / PRETRAINED["anny-coco17"]).exists(), reason="no shipped checkpoint"
)


def _one_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert "Traceback" not in err and len(lines) == 1, err
    return lines[0]


def _person(rng, k: int = 17) -> np.ndarray:
    return rng.uniform(100, 400, (k, 2)).astype(np.float32)


def test_fit_with_no_usable_keypoints_errors(tmp_path, capsys):
    f = tmp_path / "zero.npz"
    np.savez(
        f,
        keypoints=_person(np.random.default_rng(0), 25)[None].repeat(3, 0),
        confidence=np.zeros((3, 25)),
        keypoint_set="openpose_body25",
    )
    assert main(["fit", str(f), "--out", str(tmp_path / "o.npz"), "--iters", "1"]) == 2
    line = _one_line(capsys)
    assert (
        "nothing to fit" in line
        and "3 detections read" in line
        and "fewer than 6 keypoints" in line
    )
    assert not (tmp_path / "o.npz").exists()


def test_fit_skips_and_reports_unusable_detections(tmp_path, capsys):
    rng = np.random.default_rng(1)
    kp = np.stack([_person(rng, 25), _person(rng, 25), np.full((25, 2), 7.0, np.float32)])
    conf = np.ones((3, 25))
    conf[1] = 0.0
    f = tmp_path / "mixed.npz"
    np.savez(f, keypoints=kp, confidence=conf, keypoint_set="openpose_body25")
    assert main(["fit", str(f), "--out", str(tmp_path / "o.npz"), "--iters", "1"]) == 0
    out = capsys.readouterr().out
    assert "1 fits" in out and "2 of 3 detections skipped" in out and "degenerate" in out
    z = np.load(tmp_path / "o.npz")
    assert list(z["names"]) == ["000000_p0"] and np.isfinite(z["reprojection_error"]).all()


def _benchmark(path, conf):
    rng = np.random.default_rng(2)
    n = len(conf)
    np.savez(
        path,
        keypoints=np.stack([_person(rng) for _ in range(n)]),
        confidence=conf,
        keypoint_set="coco17",
        joints3d=rng.normal(size=(n, 17, 3)).astype(np.float32),
        joints3d_set="coco17",
    )
    return path


@needs_model
def test_evaluate_all_dropped_errors_instead_of_nan(tmp_path, capsys):
    f = _benchmark(tmp_path / "bench.npz", np.zeros((4, 17)))
    assert (
        main(
            [
                "evaluate",
                "--dataset",
                str(f),
                "--checkpoint",
                "anny-coco17",
                "--device",
                "cpu",
                "--json",
                str(tmp_path / "r.json"),
            ]
        )
        == 2
    )
    line = _one_line(capsys)
    assert "all 4 samples were dropped" in line and "nan" not in line.lower()
    assert not (tmp_path / "r.json").exists()


@pytest.mark.parametrize(
    "dataset, extra, named",
    [
        ("mocap-heldout", ["--cache", "c.npz", "--detections", "d.json"], "--detections does"),
        (
            "mocap-heldout",
            ["--cache", "c.npz", "--path", "p", "--split", "test"],
            "--path, --split do",
        ),
        ("3dpw", ["--path", "p", "--noise-profile", "detector"], "--noise-profile does"),
        (
            "bench.npz",
            ["--cache", "c.npz", "--num", "10", "--heldout", "subjects"],
            "--cache, --num, --heldout do",
        ),
    ],
)
def test_evaluate_refuses_options_its_dataset_ignores(tmp_path, capsys, dataset, extra, named):
    """Options of another dataset were ignored silently (e.g. ``--detections`` with
    mocap-heldout scored the synthetic detections); now a one-line error before any work."""
    argv = ["evaluate", "--dataset", dataset, "--checkpoint", "no-such-model", *extra]
    assert main(argv) == 2
    line = _one_line(capsys)
    assert f"{named} not apply to --dataset {dataset}" in line


def test_summarize_refuses_empty():
    from key2mesh.eval.evaluate import summarize
    from key2mesh.eval.metrics import PROTOCOLS

    with pytest.raises(Key2MeshError, match="no sample left"):
        summarize(
            "x",
            {"mpjpe": torch.zeros(0), "pa_mpjpe": torch.zeros(0)},
            PROTOCOLS["key2mesh"],
            dropped=3,
        )


def test_degenerate_detection_rule():
    from key2mesh.keypoints.io import check_detections

    rng = np.random.default_rng(3)
    kp = np.stack([_person(rng), np.full((17, 2), 250.0), _person(rng) * 1e-3 + 0.5, _person(rng)])
    kp[3, 3:] = kp[3, 0]  # 14 points on one pixel, 3 spread out: a real (if odd) box
    conf = np.ones((4, 17))
    c = check_detections(kp, conf)
    assert c.usable.tolist() == [True, False, True, True]
    assert c.degenerate.tolist() == [False, True, False, False] and not c.too_few.any()
    one_spot_low_conf = np.full((1, 17, 2), 5.0)
    assert check_detections(
        one_spot_low_conf, np.zeros((1, 17))
    ).too_few.all()  # too few wins over degenerate


@needs_model
def test_predict_rejects_degenerate_detections(tmp_path, capsys):
    rng = np.random.default_rng(4)
    kp = np.stack([_person(rng), np.full((17, 2), 250.0, np.float32)])
    f = tmp_path / "in.npz"
    np.savez(f, keypoints=kp, keypoint_set="coco17")
    assert (
        main(
            [
                "predict",
                str(f),
                "--checkpoint",
                "anny-coco17",
                "--out",
                str(tmp_path / "p"),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "1 predictions" in out and "1 degenerate detection" in out
    np.savez(f, keypoints=kp[1:], keypoint_set="coco17")
    assert (
        main(
            [
                "predict",
                str(f),
                "--checkpoint",
                "anny-coco17",
                "--out",
                str(tmp_path / "p"),
                "--device",
                "cpu",
            ]
        )
        == 2
    )
    assert "degenerate detection" in _one_line(capsys)

    from key2mesh.inference.predictor import Key2Mesh

    model = Key2Mesh.from_pretrained("anny-coco17", device="cpu", full_mesh=False)
    assert model.predict(kp, mesh=False).valid.tolist() == [True, False]


def test_npz_with_24_unnamed_keypoints_is_not_read_as_smpl_joints(tmp_path):
    kp = np.random.default_rng(5).uniform(0, 100, (2, 24, 2))
    f = tmp_path / "k24.npz"
    np.savez(f, keypoints=kp)
    with pytest.raises(
        Key2MeshError, match=r"24 keypoints and no keypoint set named.*--keypoint-set"
    ):
        read_detections(f)
    np.save(tmp_path / "k24.npy", kp)
    with pytest.raises(Key2MeshError, match="no keypoint set named"):
        read_detections(tmp_path / "k24.npy")
    assert read_detections(f, keypoint_set="smpl24").keypoint_set == "smpl24"  # explicit: fine
    np.savez(f, keypoints=kp, keypoint_set="smpl24")
    assert read_detections(f).keypoint_set == "smpl24"
    np.savez(
        tmp_path / "k25.npz", keypoints=np.zeros((1, 25, 2))
    )  # unique counts are still inferred
    assert read_detections(tmp_path / "k25.npz").keypoint_set == "openpose_body25"


def test_npz_24_in_cli_is_one_line(tmp_path, capsys):
    f = tmp_path / "k24.npz"
    np.savez(f, keypoints=np.random.default_rng(6).uniform(0, 100, (2, 24, 2)))
    assert main(["fit", str(f), "--out", str(tmp_path / "o.npz"), "--iters", "1"]) == 2
    assert "no keypoint set named" in _one_line(capsys)
