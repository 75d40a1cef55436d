import pytest
import torch

from key2mesh.geometry.camera import VirtualCamera
from key2mesh.model.checkpoint import atomic_save, load_checkpoint, make_checkpoint
from key2mesh.model.network import Key2MeshNet, ModelConfig


@pytest.fixture()
def checkpoint(tmp_path):
    torch.manual_seed(0)
    net = Key2MeshNet(ModelConfig(num_keypoints=25, hidden=64))
    # perturb BN statistics and weights so the test is not trivially near identity
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
    ck = make_checkpoint(
        net,
        keypoint_set="openpose_body25",
        body_config={"name": "anny", "rig": "r", "topology": "t"},
        camera=VirtualCamera(),
        normalization={"conf_threshold": 0.1, "missing_value": -1.0},
        stage="test",
    )
    path = tmp_path / "m.pt"
    atomic_save(ck, path)
    return load_checkpoint(path)


def test_onnx_matches_torch(checkpoint, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from key2mesh.inference.export import export_onnx, max_onnx_difference

    path = export_onnx(checkpoint, tmp_path / "m.onnx")
    assert max_onnx_difference(checkpoint, path, batch=32) < 1e-4


def test_torchscript_matches_torch(checkpoint, tmp_path):
    from key2mesh.inference.export import ExportableKey2Mesh, _example, export_torchscript

    path = export_torchscript(checkpoint, tmp_path / "m.ts")
    ts = torch.jit.load(str(path))
    kp, conf = _example(checkpoint, 5)
    ref = ExportableKey2Mesh(checkpoint)(kp, conf)
    out = ts(kp, conf)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(out, ref))


def test_checkpoint_errors(tmp_path, checkpoint):
    from key2mesh.errors import Key2MeshError

    with pytest.raises(Key2MeshError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(Key2MeshError, match="not a readable"):
        load_checkpoint(tmp_path / "junk.pt")
    bad = dict(checkpoint.to_dict(), format_version=99)
    atomic_save(bad, tmp_path / "old.pt")
    with pytest.raises(Key2MeshError, match="format 99"):
        load_checkpoint(tmp_path / "old.pt")
    atomic_save(checkpoint, tmp_path / "ok.pt")
    with pytest.raises(Key2MeshError, match="body model"):
        load_checkpoint(tmp_path / "ok.pt", expect_body={"name": "smpl"})
    with pytest.raises(Key2MeshError, match="keypoint set"):
        load_checkpoint(tmp_path / "ok.pt", expect_keypoint_set="coco17")


def test_export_refuses_overwriting_a_shipped_checkpoint_named_as_input(
    checkpoint, tmp_path, monkeypatch, capsys
):
    """`--checkpoint anny-coco17 --torchscript <its shipped file>`: the input is found by name,
    so the guard compares the output with the resolved file, not the name (it used to replace
    the shipped checkpoint with a TorchScript archive)."""
    import key2mesh.model.checkpoint as ckpt_module
    from key2mesh.cli import main

    shipped = tmp_path / "pretrained"
    shipped.mkdir()
    target = shipped / "anny_coco17.pt"
    atomic_save(checkpoint, target)
    before = target.read_bytes()
    monkeypatch.setattr(ckpt_module, "PRETRAINED_DIR", shipped)
    for option in ("--torchscript", "--onnx", "--slim"):
        assert main(["export-model", "--checkpoint", "anny-coco17", option, str(target)]) == 2
        assert "would destroy the input" in capsys.readouterr().err
    assert target.read_bytes() == before


def test_export_refuses_one_path_for_two_outputs(checkpoint, tmp_path, capsys):
    """--onnx X --torchscript X: the second file would silently replace the first."""
    from key2mesh.cli import main

    src = tmp_path / "m.pt"
    atomic_save(checkpoint, src)
    out = tmp_path / "model.out"
    argv = ["export-model", "--checkpoint", str(src), "--onnx", str(out), "--torchscript", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "is both --onnx and --torchscript" in err
    assert not out.exists()


def test_export_check_fails_when_onnx_differs(checkpoint, tmp_path, monkeypatch, capsys):
    """--check is a check: an ONNX file whose outputs differ from PyTorch's is an error (exit 2),
    at batch 1 as well as a larger batch; a faithful export passes."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    import key2mesh.inference.export as export_module
    from key2mesh.cli import main

    src = tmp_path / "m.pt"
    atomic_save(checkpoint, src)
    argv = ["export-model", "--checkpoint", str(src), "--onnx", str(tmp_path / "m.onnx"), "--check"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "batch 1" in out and "batch 7" in out
    other = checkpoint.to_dict()
    other["model"] = {k: v * 1.5 if "out" in k else v for k, v in other["model"].items()}
    atomic_save(other, tmp_path / "other.pt")
    wrong = load_checkpoint(tmp_path / "other.pt")
    real = export_module.export_onnx
    monkeypatch.setattr(export_module, "export_onnx", lambda ck, path: real(wrong, path))
    assert main(argv) == 2
    assert "ONNX model's outputs differ from PyTorch's" in capsys.readouterr().err
