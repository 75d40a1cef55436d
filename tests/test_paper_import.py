"""Importing the paper's official checkpoints (model/paper_import.py) on synthetic weights.

The reference below is written from the official code's description (utils/network.py,
utils/geometry.py rot6d_to_rotmat, utils/pose_util.py normalize_p2d of github.com/swampxx/Key2Mesh),
not from key2mesh: Linear-BN-PReLU(-Dropout) layers, residual blocks ``block(x) + x``, head output
``[betas (10), 24 × 6D]``, 6D viewed as (3, 2) with the two columns Gram-Schmidt'ed.
"""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F

from helpers.pose_banks import random_pose_bank
from helpers.synthetic_smpl import write_synthetic_smpl
from key2mesh.errors import Key2MeshError
from key2mesh.model.checkpoint import atomic_save, build_network, load_checkpoint
from key2mesh.model.paper_import import convert_paper_state_dict

H = 48  # hidden width (1024 in the release; the shapes are parametric)


def _linear(sd, name, d_in, d_out, g):
    sd[f"{name}.weight"] = torch.randn(d_out, d_in, generator=g) / d_in**0.5
    sd[f"{name}.bias"] = 0.1 * torch.randn(d_out, generator=g)


def _bn(sd, name, d, g):
    sd[f"{name}.weight"] = 1 + 0.2 * torch.randn(d, generator=g)
    sd[f"{name}.bias"] = 0.1 * torch.randn(d, generator=g)
    sd[f"{name}.running_mean"] = 0.3 * torch.randn(d, generator=g)
    sd[f"{name}.running_var"] = 0.5 + torch.rand(d, generator=g)
    sd[f"{name}.num_batches_tracked"] = torch.tensor(1234)


def _prelu(sd, name, g):
    sd[f"{name}.weight"] = 0.25 + 0.1 * torch.randn(1, generator=g)


def _basic_block(sd, name, d, g):
    for i in (0, 4):
        _linear(sd, f"{name}.block.{i}", d, d, g)
        _bn(sd, f"{name}.block.{i + 1}", d, g)
        _prelu(sd, f"{name}.block.{i + 2}", g)


def official_state_dict(seed: int = 0, target: bool = True) -> OrderedDict:
    """Random weights under the official Lightning module's key names (target mode: both
    extractors and the critic, as in the released best-model.ckpt)."""
    g = torch.Generator().manual_seed(seed)
    sd: OrderedDict = OrderedDict()
    for ext in (
        ("feature_extractor_s", "feature_extractor_t") if target else ("feature_extractor_s",)
    ):
        _linear(sd, f"{ext}.block.0", 36, H, g)
        _bn(sd, f"{ext}.block.1", H, g)
        _prelu(sd, f"{ext}.block.2", g)
        _basic_block(sd, f"{ext}.block.4", H, g)
        _basic_block(sd, f"{ext}.block.5", H, g)
    _basic_block(sd, "smpl_head.block.0", H, g)
    _linear(sd, "smpl_head.block.1", H, 10 + 144, g)
    if target:  # critic: BasicBlock2 without norm layers (indices 0, 2, 4, 6) + Linear(→1)
        _linear(sd, "domain_head.block.0.block.0", H, H, g)
        _prelu(sd, "domain_head.block.0.block.2", g)
        _linear(sd, "domain_head.block.0.block.4", H, H, g)
        _prelu(sd, "domain_head.block.0.block.6", g)
        _linear(sd, "domain_head.block.1", H, 1, g)
    return sd


def official_normalize(j2d, conf, threshold=0.1):
    """normalize_p2d: box of the joints with conf >= threshold, longest side 1, centre 0.5;
    other joints 0.5."""
    mask = conf < threshold
    big = torch.finfo(j2d.dtype).max
    lo = torch.where(mask[..., None], big, j2d).min(dim=1, keepdim=True).values
    hi = torch.where(mask[..., None], -big, j2d).max(dim=1, keepdim=True).values
    scale = (hi - lo).max(dim=2, keepdim=True).values
    out = (j2d - 0.5 * (hi + lo)) / scale + 0.5
    out[mask] = 0.5
    return out


def official_forward(sd, x, ext="feature_extractor_t"):
    """(B, 18, 2) normalised → rotmats (B, 24, 3, 3), betas (B, 10) (eval mode)."""

    def lbp(h, lin, bn, act):
        h = F.linear(h, sd[f"{lin}.weight"], sd[f"{lin}.bias"])
        h = (h - sd[f"{bn}.running_mean"]) / torch.sqrt(sd[f"{bn}.running_var"] + 1e-5)
        h = h * sd[f"{bn}.weight"] + sd[f"{bn}.bias"]
        return F.prelu(h, sd[f"{act}.weight"])

    def block(h, n):
        y = lbp(h, f"{n}.block.0", f"{n}.block.1", f"{n}.block.2")
        return lbp(y, f"{n}.block.4", f"{n}.block.5", f"{n}.block.6") + h

    h = lbp(x.flatten(1), f"{ext}.block.0", f"{ext}.block.1", f"{ext}.block.2")
    h = block(block(h, f"{ext}.block.4"), f"{ext}.block.5")
    out = F.linear(
        block(h, "smpl_head.block.0"), sd["smpl_head.block.1.weight"], sd["smpl_head.block.1.bias"]
    )
    betas, r6 = out[:, :10], out[:, 10:].reshape(-1, 3, 2)
    a1, a2 = r6[:, :, 0], r6[:, :, 1]
    b1 = F.normalize(a1, dim=1)
    b2 = F.normalize(a2 - (b1 * a2).sum(1, keepdim=True) * b1, dim=1)
    rot = torch.stack((b1, b2, torch.cross(b1, b2, dim=1)), dim=-1)
    return rot.reshape(-1, 24, 3, 3), betas


def _detections(n=16, seed=1):
    g = torch.Generator().manual_seed(seed)
    kp = 300 + 120 * torch.randn(n, 18, 2, generator=g)
    conf = torch.rand(n, 18, generator=g)
    conf[:, :6] = 0.9  # at least 6 confident joints each
    conf[0, 10] = (
        0.1  # exactly at the threshold: kept, as in the official code (conf < 0.1 dropped)
    )
    return kp, conf


@pytest.mark.parametrize("target", [True, False], ids=["adapted", "pretrained"])
def test_converted_network_matches_the_official_forward(target):
    sd = official_state_dict(target=target)
    ck = convert_paper_state_dict(sd)
    assert ck.keypoint_set == "openpose_coco18" and ck.body["name"] == "smpl"
    assert ck.model_config.hidden == H and ck.camera.focal == 256 and ck.camera.distance == 6
    net = build_network(ck)
    kp, conf = _detections()
    inputs, _ = ck.normalization(kp, conf)
    ref_in = official_normalize(kp, conf)
    assert torch.allclose(inputs, ref_in, atol=1e-6)
    ext = "feature_extractor_t" if target else "feature_extractor_s"
    ref_rot, ref_betas = official_forward(sd, ref_in, ext)
    with torch.no_grad():
        for rot, betas in (net(inputs), net.predict(inputs)):
            assert torch.allclose(rot, ref_rot, atol=1e-5)
            assert torch.allclose(betas, ref_betas, atol=1e-5)


def _lightning_file(path, sd):
    """What PyTorch-Lightning 1.5 writes (plain values besides the state dict)."""
    torch.save(
        {
            "epoch": 4,
            "global_step": 12000,
            "pytorch-lightning_version": "1.5.8",
            "state_dict": sd,
            "loops": {"fit_loop": {"state_dict": {}}},
            "callbacks": {
                "ModelCheckpoint{'monitor': 'val/PA-MPJPE'}": {
                    "best_model_score": torch.tensor(49.8)
                }
            },
            "optimizer_states": [],
            "lr_schedulers": [{"step_size": 1, "gamma": 0.8}],
        },
        path,
    )
    return path


def test_lightning_file_loads_and_predicts_a_smpl_mesh(tmp_path):
    """End to end through the synthetic SMPL-format model: Key2Mesh.from_pretrained on the
    official file and on its converted copy (`key2mesh export --slim --float32`)."""
    from key2mesh.cli import main
    from key2mesh.inference.predictor import Key2Mesh

    sd = official_state_dict(seed=3)
    ckpt = _lightning_file(tmp_path / "best-model.ckpt", sd)
    smpl_dir = tmp_path / "smpl"
    write_synthetic_smpl(smpl_dir / "SMPL_NEUTRAL.pkl")
    kp, conf = _detections(8)
    ref_rot, ref_betas = official_forward(sd, official_normalize(kp, conf))

    model = Key2Mesh.from_pretrained(ckpt, device="cpu", smpl_dir=smpl_dir)
    pred = model.predict(kp, conf)
    assert pred.vertices.shape == (8, 6890, 3) and pred.faces.shape[-1] == 3
    assert torch.isfinite(pred.vertices).all() and bool(pred.valid.all())
    assert torch.allclose(pred.rotmats, ref_rot, atol=1e-5)
    assert torch.allclose(pred.shape, ref_betas, atol=1e-5)

    out = tmp_path / "paper.pt"
    assert main(["export-model", "--checkpoint", str(ckpt), "--slim", str(out), "--float32"]) == 0
    conv = load_checkpoint(out)
    assert conv.body == {"name": "smpl", "model_dir": None, "gender": "neutral"}
    pred2 = Key2Mesh.from_pretrained(out, device="cpu", smpl_dir=smpl_dir).predict(kp, conf)
    assert torch.equal(pred2.rotmats, pred.rotmats) and torch.equal(pred2.vertices, pred.vertices)


def test_bare_state_dict_file_loads(tmp_path):
    path = tmp_path / "state_dict.pt"
    torch.save(official_state_dict(), path)
    assert load_checkpoint(path).keypoint_set == "openpose_coco18"


def test_missing_or_misshaped_weights_are_clear_errors(tmp_path):
    sd = official_state_dict()
    del sd["smpl_head.block.0.block.5.running_var"]
    with pytest.raises(
        Key2MeshError, match="lacks 1 tensor.*smpl_head.block.0.block.5.running_var"
    ):
        convert_paper_state_dict(sd)
    path = _lightning_file(tmp_path / "broken.ckpt", sd)
    with pytest.raises(Key2MeshError, match="broken.ckpt: official Key2Mesh state dict lacks"):
        load_checkpoint(path)

    sd = official_state_dict()
    sd["feature_extractor_t.block.0.weight"] = torch.zeros(H, 34)
    with pytest.raises(Key2MeshError, match="expected \\(hidden, 36\\)"):
        convert_paper_state_dict(sd)
    sd = official_state_dict()
    sd["smpl_head.block.1.weight"] = torch.zeros(82, H)
    with pytest.raises(Key2MeshError, match="10 betas"):
        convert_paper_state_dict(sd)
    sd = {k: v for k, v in official_state_dict().items() if not k.startswith("feature_extractor")}
    with pytest.raises(Key2MeshError, match="no feature_extractor"):
        convert_paper_state_dict(sd)


def test_neither_format_is_a_clear_error(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"state_dict": {"encoder.weight": torch.zeros(2)}}, path)
    with pytest.raises(
        Key2MeshError, match="neither a key2mesh checkpoint nor an official Key2Mesh"
    ):
        load_checkpoint(path)


def test_our_own_checkpoint_still_loads(tmp_path):
    """A converted checkpoint saved in our format round-trips unchanged, except for the SMPL
    folder: a checkpoint never chooses where model files are read from."""
    ck = convert_paper_state_dict(official_state_dict(), smpl_dir=tmp_path)
    assert ck.body["model_dir"] == str(tmp_path.resolve())
    atomic_save(ck, tmp_path / "ours.pt")
    back = load_checkpoint(tmp_path / "ours.pt")
    assert back.body == {"name": "smpl", "model_dir": None, "gender": "neutral"}
    assert all(torch.equal(back.model[k], v) for k, v in ck.model.items())
    assert back.normalization.missing_value == 0.5


def test_evaluate_cli_on_the_official_file(tmp_path, monkeypatch):
    """`key2mesh evaluate --checkpoint best-model.ckpt --smpl-dir DIR` on a synthetic 3DPW
    sequence: --smpl-dir serves both the ground truth and the imported model's SMPL body."""
    import json

    from key2mesh.cli import main
    from test_eval_datasets import write_synthetic_3dpw

    monkeypatch.delenv("KEY2MESH_SMPL_DIR", raising=False)
    ckpt = _lightning_file(tmp_path / "best-model.ckpt", official_state_dict(seed=5))
    smpl_dir = tmp_path / "smpl"
    write_synthetic_smpl(smpl_dir / "SMPL_NEUTRAL.pkl")
    pkl = tmp_path / "seq.pkl"
    write_synthetic_3dpw(pkl, frames=3, persons=1)
    out = tmp_path / "res.json"
    args = ["evaluate", "--dataset", "3dpw", "--path", str(pkl), "--checkpoint", str(ckpt)]
    assert main([*args, "--smpl-dir", str(smpl_dir), "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["n"] == 3 and res["pve"] is not None and res["pa_mpjpe"] > 0


def test_without_smpl_files_the_error_says_where_to_put_them(tmp_path, monkeypatch):
    from key2mesh.inference.predictor import Key2Mesh

    monkeypatch.delenv("KEY2MESH_SMPL_DIR", raising=False)
    ckpt = _lightning_file(tmp_path / "best-model.ckpt", official_state_dict())
    with pytest.raises(Key2MeshError, match="KEY2MESH_SMPL_DIR"):
        Key2Mesh.from_pretrained(ckpt, device="cpu")


class _HParams:  # stands for an OmegaConf object a Lightning file might hold
    pass


def test_a_file_with_python_objects_is_refused_with_a_hint(tmp_path):
    path = tmp_path / "best-model.ckpt"
    torch.save({"state_dict": official_state_dict(), "hyper_parameters": _HParams()}, path)
    with pytest.raises(Key2MeshError, match="refused.*official Key2Mesh.*'state_dict' entry"):
        load_checkpoint(path)


def test_adapting_the_official_checkpoint_feeds_its_missing_joint_value(tmp_path, monkeypatch):
    """adapt's source-domain pairs (critic, L_reg's features) were normalised with the default
    synthesis (missing joints -1) while the official network and the target use 0.5: every
    missing joint of a source pair was an input the network never saw."""

    from key2mesh.body import load_body_model
    from key2mesh.train import adapt
    from key2mesh.train.state import source_batch

    write_synthetic_smpl(tmp_path / "smpl" / "SMPL_NEUTRAL.pkl")
    monkeypatch.setenv("KEY2MESH_SMPL_DIR", str(tmp_path / "smpl"))
    body = load_body_model("smpl")
    bank = random_pose_bank(body, clips=4, per_clip=20, shapes=4).save(tmp_path / "bank.npz")
    torch.save(official_state_dict(), tmp_path / "paper.pt")
    ck = load_checkpoint(tmp_path / "paper.pt")
    target = adapt.synthetic_target(str(bank), ck, "detector", n=32, split="train")
    cfg = adapt.AdaptConfig(source=str(tmp_path / "paper.pt"), cache=str(bank), threads=1)
    cfg.out_dir = str(tmp_path / "ad")
    run = adapt._setup_adapt(cfg, target, None, None)
    pairs = source_batch(run, 256)
    assert (~pairs.valid).any() and (~target.valid).any()
    assert torch.unique(pairs.inputs[~pairs.valid]).tolist() == [0.5]
    assert torch.unique(target.inputs[~target.valid]).tolist() == [0.5]
