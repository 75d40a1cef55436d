"""The user-facing API and CLI with the shipped checkpoint."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from key2mesh.errors import Key2MeshError
from key2mesh.inference.predictor import Key2Mesh
from key2mesh.model.checkpoint import PRETRAINED, PRETRAINED_DIR

pytestmark = pytest.mark.skipif(
    not (PRETRAINED_DIR / PRETRAINED["anny-body25"]).exists(), reason="no shipped checkpoint"
)


@pytest.fixture(scope="module")
def model():
    return Key2Mesh.from_pretrained("anny-body25", device="cpu", full_mesh=False)


def _sample(model, n=4, seed=0):
    from key2mesh.data.synth import PairSynthesizer
    from key2mesh.geometry.rotations import axis_angle_to_matrix

    g = torch.Generator().manual_seed(seed)
    rot = axis_angle_to_matrix(0.25 * torch.randn(n, 24, 3, generator=g))
    return PairSynthesizer(model.body, model.keypoint_set)(rot, model.body.default_shape(n), g)


def test_predict_shapes_and_image_invariance(model):
    b = _sample(model)
    p = model.predict(b.keypoints2d, b.confidence)
    assert p.rotmats.shape == (4, 24, 3, 3) and p.shape.shape == (4, 6)
    assert p.vertices.shape == (4, 1229, 3) and p.keypoints3d.shape == (4, 25, 3)
    assert p.valid.all()
    # a detection is in pixels of an unknown image: scale and offset must not matter
    q = model.predict(b.keypoints2d * 2.5 + 100.0, b.confidence)
    assert torch.allclose(p.rotmats, q.rotmats, atol=1e-4)
    # a single (K, 2) input works and is not autograd-tracked
    one = model.predict(b.keypoints2d[0].numpy(), b.confidence[0].numpy(), mesh=False)
    assert one.rotmats.shape == (1, 24, 3, 3) and not one.rotmats.requires_grad


def test_inference_path_gives_the_same_numbers(model):
    """The network's functional eval path is its module forward to the bit; a batch of one
    (padded to PAD_ROWS) gives every row's numbers as a batch of 11 does."""
    b = _sample(model, n=11, seed=3)
    x = model.normalize(b.keypoints2d, b.confidence)[0]
    with torch.no_grad():
        for a, c in zip(model.net.predict(x), model.net(x)):
            assert torch.equal(a, c)
    whole = model.predict(b.keypoints2d, b.confidence, mesh=False)
    for i in (0, 5, 10):
        one = model.predict(b.keypoints2d[i], b.confidence[i], mesh=False)
        assert torch.equal(one.rotmats[0], whole.rotmats[i])
        assert torch.equal(one.shape[0], whole.shape[i])
        assert torch.equal(one.keypoints3d[0], whole.keypoints3d[i])
    import copy

    net = copy.deepcopy(model.net).train()  # (a training step moves BatchNorm's statistics)
    torch.manual_seed(0)
    r1 = net.predict(x)[0]  # training mode: the module forward (dropout), not the eval path
    torch.manual_seed(0)
    assert torch.equal(r1, copy.deepcopy(model.net).train()(x)[0])


@pytest.mark.parametrize("backend", ["onednn", "torch"])
def test_one_detection_is_a_row_of_any_batch(model, monkeypatch, backend):
    """With oneDNN's products (key2mesh.dense) the network and the body run a detection as it
    is, unpadded; with ``KEY2MESH_DENSE=torch`` (MKL) they are padded to PAD_ROWS. Either way a
    detection's numbers (mesh included) are its row's in a batch of 7."""
    from key2mesh import dense
    from key2mesh.inference.predictor import PAD_ROWS

    if backend == "torch":
        monkeypatch.setenv(dense.ENV, "torch")
    elif not dense.enabled():
        pytest.skip("oneDNN's linear is not available or not row-invariant here")
    seen: list[int] = []
    real = model.net.predict
    monkeypatch.setattr(model.net, "predict", lambda x: (seen.append(len(x)), real(x))[1])
    b = _sample(model, n=7, seed=4)
    whole = model.predict(b.keypoints2d, b.confidence)
    for i in (0, 6):
        model.body.clear_cache()
        one = model.predict(b.keypoints2d[i], b.confidence[i])
        for field in ("rotmats", "shape", "vertices", "joints", "keypoints3d"):
            assert torch.equal(getattr(one, field)[0], getattr(whole, field)[i]), field
    assert seen == ([7, 1, 1] if backend == "onednn" else [8, PAD_ROWS, PAD_ROWS])
    assert model.net.batch_invariant == (backend == "onednn")


def test_predict_from_another_keypoint_set(model):
    from key2mesh.keypoints.convert import convert_keypoints

    b = _sample(model, seed=1)
    coco, cconf = convert_keypoints(b.keypoints2d, b.confidence, "openpose_body25", "coco17")
    p = model.predict(coco, cconf, keypoint_set="coco17", mesh=False)
    assert p.rotmats.shape == (4, 24, 3, 3)
    with pytest.raises(Key2MeshError, match="has 17 points"):
        model.predict(b.keypoints2d, b.confidence, keypoint_set="coco17")
    with pytest.raises(Key2MeshError, match="unknown keypoint set"):
        model.predict(b.keypoints2d, b.confidence, keypoint_set="nope")


def test_predict_flags_too_few_keypoints_and_nan(model):
    b = _sample(model, n=2, seed=2)
    conf = b.confidence.clone()
    conf[0, 5:] = 0.0  # five points left
    kp = b.keypoints2d.clone()
    kp[1, 0] = float("nan")  # a NaN point is a missing point
    p = model.predict(kp, conf, mesh=False)
    assert p.valid.tolist() == [False, True]
    assert torch.isfinite(p.rotmats).all()


@pytest.mark.parametrize("batch_size", [0, -1, 2.5, True])
def test_predict_refuses_a_bad_batch_size(model, batch_size):
    kp = np.random.default_rng(0).uniform(100, 300, (3, 25, 2)).astype(np.float32)
    with pytest.raises(Key2MeshError, match="batch_size must be a positive integer"):
        model.predict(kp, batch_size=batch_size)


def test_unknown_checkpoint_name():
    with pytest.raises(Key2MeshError, match="no checkpoint file"):
        Key2Mesh.from_pretrained("does-not-exist")


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "key2mesh.cli", *args], capture_output=True, text=True
    )


def test_cli_help_info_and_errors(tmp_path):
    assert _cli("--help").returncode == 0
    info = _cli("info")
    assert info.returncode == 0 and "openpose_body25" in info.stdout and "anny" in info.stdout
    bad = tmp_path / "bad.json"
    bad.write_text("{ not json")
    r = _cli("predict", str(bad), "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "bad.json" in r.stderr and "Traceback" not in r.stderr


def test_cli_predict_round_trip(tmp_path, model):
    from key2mesh.keypoints.io import Detections, write_openpose_json

    b = _sample(model, n=3, seed=3)
    det = Detections(
        b.keypoints2d.numpy()[:, None],
        b.confidence.numpy()[:, None],
        "openpose_body25",
        [f"f{i}" for i in range(3)],
        np.zeros((3, 1), dtype=np.int64),
    )
    write_openpose_json(det, tmp_path / "json")
    r = _cli("predict", str(tmp_path / "json"), "--out", str(tmp_path / "pred"), "--meshes", "obj")
    assert r.returncode == 0, r.stderr
    z = np.load(tmp_path / "pred" / "json_params.npz")
    assert z["rotmats"].shape == (3, 24, 3, 3)
    direct = model.predict(b.keypoints2d, b.confidence, mesh=False).rotmats.numpy()
    assert np.allclose(z["rotmats"], direct, atol=1e-4)
    assert len(list((tmp_path / "pred" / "json_meshes").glob("*.obj"))) == 3
    # --int8: the int8 network, close to the float one (not the same numbers)
    r = _cli("predict", str(tmp_path / "json"), "--out", str(tmp_path / "q"), "--int8")
    assert r.returncode == 0, r.stderr
    q = np.load(tmp_path / "q" / "json_params.npz")["rotmats"]
    assert not np.array_equal(q, z["rotmats"]) and np.abs(q - z["rotmats"]).max() < 0.1


def test_confidences_of_another_shape_are_refused_and_nan_is_missing(model):
    """Confidences must match the keypoints' (N, K) (or (K,) for one (K, 2) detection): a
    transposed (K, N) array was reshaped silently and scrambled; NaN confidences count as 0."""
    b = _sample(model, n=3, seed=8)
    conf = torch.zeros(3, 25)
    conf[0] = 1.0
    with pytest.raises(Key2MeshError, match=r"confidences must be \(3, 25\).*got \(25, 3\)"):
        model.predict(b.keypoints2d, conf.T, mesh=False)
    with pytest.raises(Key2MeshError, match="confidences must be"):
        model.predict(b.keypoints2d, torch.ones(3, 26), mesh=False)
    one = model.predict(b.keypoints2d[0], torch.ones(25), mesh=False)  # (K,) for one (K, 2)
    assert one.rotmats.shape == (1, 24, 3, 3)
    nan = torch.ones(3, 25)
    nan[1] = float("nan")
    _, c = model._in_model_set(b.keypoints2d, nan)
    assert torch.equal(c[1], torch.zeros(25)) and torch.equal(c[0], torch.ones(25))
    assert model.usable(b.keypoints2d, nan).tolist() == [True, False, True]


def test_auto_device_is_the_cpu_for_int8_even_with_a_gpu(monkeypatch):
    """device None / 'auto' picks CUDA when there is one, except for the int8 network (CPU
    only): Key2Mesh(int8=True) on a GPU machine raised 'int8 inference runs on the CPU only'."""
    from key2mesh.model.checkpoint import load_checkpoint, resolve_checkpoint

    ck = load_checkpoint(resolve_checkpoint("anny-body25"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for device in (None, "auto"):
        assert Key2Mesh(ck, device=device, full_mesh=False, int8=True).device.type == "cpu"
