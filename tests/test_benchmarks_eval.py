"""`key2mesh evaluate` on synthetic benchmark files in the real formats."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from key2mesh.errors import Key2MeshError
from key2mesh.eval.metrics import PROTOCOLS, per_sample_metrics
from key2mesh.model.checkpoint import PRETRAINED, PRETRAINED_DIR

# diag(1, -1, -1): the model's world frame (y up) seen from the camera (y down); hand-written
FLIP = torch.diag(torch.tensor([1.0, -1.0, -1.0]))
# SPIN J24 row of each H36M-17 joint (key2mesh order), hand-written from SPIN's joint names
SPIN_ROWS = [14, 3, 4, 5, 2, 1, 0, 16, 12, 17, 18, 9, 10, 11, 8, 7, 6]


@pytest.mark.skipif(
    not (PRETRAINED_DIR / PRETRAINED["anny-body25"]).exists(), reason="no shipped checkpoint"
)
def test_h36m_p2_without_smpl_uses_dataset_joints(tmp_path, monkeypatch):
    from key2mesh.eval.benchmarks import evaluate_benchmark
    from key2mesh.inference.predictor import Key2Mesh
    from test_eval_datasets import write_synthetic_h36m_npz

    monkeypatch.delenv("KEY2MESH_SMPL_DIR", raising=False)
    rows = (
        [("S9", "60457274")] * 6
        + [("S11", "60457274")] * 3
        + [("S1", "60457274"), ("S9", "55011271")]
    )
    write_synthetic_h36m_npz(
        tmp_path / "h36m.npz", rows, sparse={0: 4}
    )  # row 0 has only 4 keypoints
    model = Key2Mesh.from_pretrained("anny-body25", device="cpu", full_mesh=False)
    res = evaluate_benchmark(model, "h36m-p2", str(tmp_path / "h36m.npz"), PROTOCOLS["key2mesh"])
    assert res.dropped == 1 and res.count == 8  # 9 P2 rows, one dropped for < 6 keypoints
    assert res.pa_mpjpe > 0 and res.mpjpe >= res.pa_mpjpe and res.pve is None
    spin = evaluate_benchmark(model, "h36m-p2", str(tmp_path / "h36m.npz"), PROTOCOLS["spin"])
    assert spin.count == 8 and spin.pve is None
    assert np.isfinite([spin.mpjpe, spin.pa_mpjpe]).all() and spin.pa_mpjpe == pytest.approx(
        res.pa_mpjpe
    )
    assert abs(spin.mpjpe - res.mpjpe) > 1.0  # S's pelvis row is not the mid-hip of its hip rows
    with pytest.raises(Key2MeshError, match="needs --path"):
        evaluate_benchmark(model, "3dpw", None, PROTOCOLS["key2mesh"])


# ----------------------------------------------------------------- a stub model that predicts GT


class _StubModel:
    """Predicts given rotations/betas: each detection's row is found by its 2D keypoints."""

    def __init__(self, body, keypoints: torch.Tensor, rotmats: torch.Tensor, betas: torch.Tensor):
        self.body, self.device = body, torch.device("cpu")
        self._kp, self._rot, self._betas = keypoints.double(), rotmats.float(), betas.float()

    def predict(self, keypoints2d, confidence, keypoint_set=None, mesh=True):
        row = torch.cdist(keypoints2d.double().flatten(1), self._kp.flatten(1)).argmin(1)
        return SimpleNamespace(
            rotmats=self._rot[row],
            shape=self._betas[row],
            valid=torch.ones(len(row), dtype=torch.bool),
        )


@pytest.fixture(scope="module")
def smpl_dir(tmp_path_factory):
    from helpers.synthetic_smpl import write_synthetic_smpl

    d = tmp_path_factory.mktemp("smpl")
    write_synthetic_smpl(d / "SMPL_NEUTRAL.pkl")
    write_synthetic_smpl(d / "SMPL_MALE.pkl", gender="male", seed=1)
    write_synthetic_smpl(d / "SMPL_FEMALE.pkl", gender="female", seed=2)
    return d


def _bodies(smpl_dir):
    from key2mesh.body import load_body_model

    return {
        g: load_body_model("smpl", model_dir=str(smpl_dir), gender=g) for g in ("neutral", "male")
    }


def _h36m_with_upright_gt(tmp_path, bodies) -> tuple:
    """An H3.6M npz whose GT (pose and S) is an upright person in the camera frame, and its rotations."""
    from key2mesh.geometry.rotations import axis_angle_to_matrix
    from test_eval_datasets import write_synthetic_h36m_npz

    rows = (
        [("S9", "60457274")] * 4
        + [("S11", "60457274")] * 2
        + [("S1", "60457274"), ("S9", "55011271")]
    )
    data = write_synthetic_h36m_npz(tmp_path / "h36m.npz", rows, sparse={1: 3})
    data["pose"][:, :3] = [
        2.9,
        0.2,
        -0.3,
    ]  # ~166° about ~x: head up (-y) in the camera, facing it (-z)
    r_cam = axis_angle_to_matrix(torch.tensor(data["pose"]).reshape(-1, 24, 3)).float()
    betas = torch.tensor(data["shape"]).float()
    with torch.no_grad():  # S: the neutral body's H36M-17 joints in the camera frame, root-centred
        j = (
            bodies["neutral"]
            .regress(bodies["neutral"](r_cam, betas).vertices, "h36m17")
            .double()
            .numpy()
        )
    data["S"][:, SPIN_ROWS, :3] = j - j[:, :1]
    np.savez(tmp_path / "h36m.npz", **data)
    r_model = r_cam.clone()
    r_model[:, 0] = FLIP @ r_cam[:, 0]  # the same body in the model's world frame
    kp = torch.tensor(data["openpose"][..., :2])
    return tmp_path / "h36m.npz", kp, r_cam, r_model, betas


def test_stub_prediction_of_gt_scores_zero_on_h36m(tmp_path, smpl_dir, monkeypatch):
    from key2mesh.eval.benchmarks import evaluate_benchmark, model_to_camera_frame

    monkeypatch.delenv("KEY2MESH_SMPL_DIR", raising=False)
    bodies = _bodies(smpl_dir)
    path, kp, r_cam, r_model, betas = _h36m_with_upright_gt(tmp_path, bodies)
    for name, gender in (
        ("key2mesh", "neutral"),
        ("spin", "male"),
    ):  # spin: gendered GT (S9/S11 are male)
        model = _StubModel(bodies[gender], kp, r_model, betas)
        res = evaluate_benchmark(
            model, "h36m-p2", str(path), PROTOCOLS[name], smpl_dir=str(smpl_dir)
        )
        assert res.count == 5 and res.dropped == 1
        assert (
            res.mpjpe < 1e-3 and res.pa_mpjpe < 1e-3 and res.pve is not None and res.pve < 1e-3
        ), name
        # the same prediction scored in the model's frame (no rotation into the camera) is far off
        with torch.no_grad():
            pred = bodies[gender].regress(bodies[gender](r_model, betas).vertices, "h36m17")
            gt = bodies[gender].regress(bodies[gender](r_cam, betas).vertices, "h36m17")
        assert float(per_sample_metrics(pred, gt, protocol=PROTOCOLS[name])["mpjpe"].min()) > 100
        assert torch.allclose(model_to_camera_frame(pred), gt, atol=1e-5)
    # ground truth from the npz's S (no SMPL files): both pelvis choices, no PVE
    model = _StubModel(bodies["neutral"], kp, r_model, betas)
    for name in ("key2mesh", "spin"):
        res = evaluate_benchmark(model, "h36m-p2", str(path), PROTOCOLS[name])
        assert res.count == 5 and res.pve is None
        assert res.mpjpe < 1e-3 and res.pa_mpjpe < 1e-3, name


def test_stub_prediction_of_gt_scores_zero_on_3dpw(tmp_path, smpl_dir, monkeypatch):
    from key2mesh.eval.benchmarks import evaluate_benchmark
    from key2mesh.geometry.rotations import axis_angle_to_matrix
    from test_eval_datasets import ROT_Y90, write_synthetic_3dpw

    monkeypatch.delenv("KEY2MESH_SMPL_DIR", raising=False)
    pkl = tmp_path / "seq.pkl"
    cam_rot = ROT_Y90 @ np.diag(
        [1.0, -1.0, -1.0]
    )  # a y-up world seen by a camera turned about its y axis
    data = write_synthetic_3dpw(pkl, frames=4, persons=2, cam_rot=cam_rot)
    with pytest.raises(Key2MeshError, match="needs SMPL files.*smpl24 joints are not H36M joints"):
        evaluate_benchmark(
            _StubModel(None, torch.zeros(1, 18, 2), torch.zeros(1), torch.zeros(1)),
            "3dpw",
            str(pkl),
            PROTOCOLS["key2mesh"],
        )
    world = axis_angle_to_matrix(
        torch.tensor(np.concatenate(data["poses"])).reshape(-1, 24, 3)
    ).float()
    r_model = world.clone()  # R_model = FLIP @ R_cam, R_cam = cam_R @ R_world
    r_model[:, 0] = FLIP @ torch.tensor(cam_rot).float() @ world[:, 0]
    betas = torch.tensor(np.repeat([b[:10] for b in data["betas"]], 4, axis=0)).float()
    kp = torch.tensor(np.concatenate(data["poses2d"])[:, :2]).transpose(1, 2)
    monkeypatch.setenv("KEY2MESH_SMPL_DIR", str(smpl_dir))
    monkeypatch.setattr("key2mesh.eval.benchmarks.GT_CHUNK", 3)  # the GT bodies in 3 chunks
    model = _StubModel(_bodies(smpl_dir)["neutral"], kp, r_model, betas)
    res = evaluate_benchmark(model, "3dpw", str(pkl), PROTOCOLS["key2mesh"])
    assert res.count == 8 and res.mpjpe < 1e-3 and res.pa_mpjpe < 1e-3 and res.pve < 1e-3


def test_3dpw_intervals_resample_sequences_not_frames(tmp_path, smpl_dir, monkeypatch):
    """Frames of one video are not independent samples: two 3DPW sequences (2 persons x 6 frames
    each) are 2 clusters of the bootstrap, not 24 frames."""
    from key2mesh.eval.benchmarks import evaluate_benchmark
    from test_eval_datasets import write_synthetic_3dpw

    (tmp_path / "test").mkdir()
    for i, seq in enumerate(("seq_a", "seq_b")):
        write_synthetic_3dpw(tmp_path / "test" / f"{seq}.pkl", frames=6, sequence=seq, seed=i)
    monkeypatch.setenv("KEY2MESH_SMPL_DIR", str(smpl_dir))
    n = 24
    model = _StubModel(
        _bodies(smpl_dir)["neutral"],
        torch.zeros(1, 18, 2),
        torch.eye(3).expand(1, 24, 3, 3),
        torch.zeros(1, 10),
    )
    res = evaluate_benchmark(model, "3dpw", str(tmp_path / "test"), PROTOCOLS["key2mesh"])
    assert res.count == n and res.clusters == 2 and res.row()["instants"] == 2


def test_score_bodies_pve_root_is_the_protocols_pelvis(anny_body):
    """mocap-heldout's PVE with pve_align='root' subtracts the protocol's pelvis of the H36M-17
    joints, as the benchmarks do (per_sample_metrics' default), not the body's joint 0."""
    from key2mesh.eval.evaluate import score_bodies
    from key2mesh.eval.metrics import Protocol
    from key2mesh.geometry.rotations import axis_angle_to_matrix

    g = torch.Generator().manual_seed(0)
    gt_rot, pred_rot = axis_angle_to_matrix(0.3 * torch.randn(2, 3, 24, 3, generator=g))
    shape = anny_body.default_shape(3)
    for pelvis in ("midhip", "h36m_root"):
        protocol = Protocol("neutral", pelvis, "root")
        got = score_bodies(anny_body, pred_rot, shape, anny_body, gt_rot, shape, protocol)
        with torch.no_grad():
            pv, gv = anny_body(pred_rot, shape).vertices, anny_body(gt_rot, shape).vertices
        pj, gj = anny_body.regress(pv, "h36m17"), anny_body.regress(gv, "h36m17")
        want = per_sample_metrics(pj, gj, pv, gv, protocol)["pve"]
        torch.testing.assert_close(got["pve"], want, rtol=1e-5, atol=1e-3)


def test_split_is_refused_where_it_would_be_ignored(tmp_path):
    """--split picks a 3DPW split; a benchmark file or H3.6M has none, and scoring the whole file
    when its dev or test part was asked for would mix the parts."""
    from key2mesh.data.benchmark import BenchmarkSet, save_benchmark
    from key2mesh.eval.benchmarks import evaluate_benchmark

    n = 4
    path = save_benchmark(
        BenchmarkSet(
            name="b",
            keypoints2d=torch.ones(n, 17, 2),
            confidence=torch.ones(n, 17),
            keypoint_set="coco17",
            pose=None,
            betas=None,
            genders=["neutral"] * n,
            image_names=[f"{i:06d}" for i in range(n)],
            joints3d=torch.zeros(n, 17, 3),
            joints3d_set="coco17",
        ),
        tmp_path / "b.npz",
    )
    model = _StubModel(None, torch.zeros(1, 17, 2), torch.zeros(1), torch.zeros(1))
    for dataset, where in ((str(path), None), ("h36m-p2", str(path))):
        with pytest.raises(Key2MeshError, match="--split.*3dpw only"):
            evaluate_benchmark(model, dataset, where, PROTOCOLS["key2mesh"], split="dev")


def test_non_finite_errors_are_a_one_line_error():
    """A NaN per-sample error (a broken prediction) would make every mean NaN: refused, counted."""
    from key2mesh.eval.evaluate import result_from_errors

    gt = torch.randn(3, 17, 3)
    pred = gt + 0.01
    pred[1, 4] = float("nan")
    with pytest.raises(Key2MeshError, match="x: 1 of 3 samples have non-finite mpjpe"):
        result_from_errors("x", per_sample_metrics(pred, gt), PROTOCOLS["key2mesh"])
    ok = result_from_errors("x", per_sample_metrics(gt + 0.01, gt), PROTOCOLS["key2mesh"])
    assert ok.mpjpe < 1e-3 and ok.count == 3  # a constant offset: gone after pelvis centring
