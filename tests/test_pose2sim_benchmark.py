"""`key2mesh data pose2sim` + `key2mesh evaluate` on the real Pose2Sim demo (slow; needs the
[detect] extra and downloads the pose2sim wheel on first use)."""

import json

import pytest

from key2mesh.model.checkpoint import PRETRAINED, PRETRAINED_DIR

pytest.importorskip("mediapipe")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (PRETRAINED_DIR / PRETRAINED["anny-coco17"]).exists(), reason="no shipped checkpoint"
    ),
]


def test_pose2sim_benchmark_end_to_end(tmp_path, capsys):
    from key2mesh.cli import main

    out = tmp_path / "p2s.npz"
    assert main(["data", "pose2sim", "--benchmark", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "samples (camera × frame)" in printed and "frame offsets vs camera 1" in printed
    from key2mesh.data.benchmark import load_benchmark_file

    bench = load_benchmark_file(out)
    assert (
        len(bench) >= 360 and bench.joints3d_set == "coco17" and bench.keypoint_set == "mediapipe33"
    )
    assert {n.split("/")[0] for n in bench.image_names} == {"cam01", "cam02", "cam03", "cam04"}
    # a standing adult seen from ~3-6 m: depth of the mid-hip in each camera frame
    mid_hip = bench.joints3d[:, 11:13].mean(1)
    assert bool(((mid_hip[:, 2] > 1.0) & (mid_hip[:, 2] < 10.0)).all())
    # y down in the camera frame: ankles below the shoulders in every sample
    assert bool((bench.joints3d[:, 15:17, 1].mean(1) > bench.joints3d[:, 5:7, 1].mean(1)).all())
    assert (
        main(
            [
                "evaluate",
                "--dataset",
                str(out),
                "--checkpoint",
                "anny-coco17",
                "--json",
                str(tmp_path / "r.json"),
            ]
        )
        == 0
    )
    r = json.loads((tmp_path / "r.json").read_text())
    # measured 112.7 mm (T-pose facing the camera: 140.5 mm); MPJPE includes the global orientation
    assert 60 < r["pa_mpjpe"] < 135 and r["mpjpe"] > r["pa_mpjpe"] and r["pve"] is None


def test_multiview_adaptation_on_the_real_views(tmp_path, bank_path):
    """`adapt --multiview` on the real 4-view clip (no labels used for training): 40 steps of
    L2D^t + L_mv cut the shipped model's PA-MPJPE by well over 5 % (measured: 300 steps of the
    full L_DA + L_mv, 90.8 → 48.5 mm), and the views' disagreement falls."""
    import csv

    from key2mesh.cli import main

    bench = tmp_path / "p2s.npz"
    assert main(["data", "pose2sim", "--benchmark", str(bench)]) == 0
    out = tmp_path / "ad"
    argv = ["adapt", "--checkpoint", "anny-coco17", "--cache", str(bank_path), "--target", str(bench),
            "--multiview", "--val", str(bench), "--losses", "2d+mv", "--steps", "40",
            "--batch-size", "128", "--select-every", "20", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    before, after = rows[0], rows[-1]
    assert float(after["val_pa_mpjpe"]) < 0.95 * float(before["val_pa_mpjpe"])
    assert float(after["val_mv_mm"]) < 0.7 * float(before["val_mv_mm"])
