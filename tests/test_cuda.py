"""CUDA paths (run by scripts/gpu_check.sh on a GPU machine; skipped without CUDA)."""

import pytest
import torch

from key2mesh.data.synth import PairSynthesizer
from key2mesh.train.adapt import ABLATIONS, AdaptConfig, run_adapt, synthetic_target
from key2mesh.train.pretrain import run_pretrain

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_synthesis_on_cuda_with_cpu_generator():
    from key2mesh.body import load_body_model

    body = load_body_model("anny", device="cuda")
    synth = PairSynthesizer(body, "coco17")
    rot = torch.eye(3).repeat(8, 24, 1, 1)
    batch = synth(rot, body.default_shape(8), torch.Generator().manual_seed(0))
    assert batch.inputs.device.type == "cuda" and torch.isfinite(batch.inputs).all()


@pytest.fixture
def tiny_bank(tmp_path, anny_body):
    import numpy as np

    from key2mesh.data.cache import PoseBank
    from key2mesh.geometry.rotations import axis_angle_to_matrix

    g = torch.Generator().manual_seed(0)
    rot = (
        axis_angle_to_matrix(0.3 * torch.randn(120, 24, 3, generator=g)).numpy().astype(np.float32)
    )
    bank = PoseBank(
        rot,
        np.repeat(np.arange(4), 30).astype(np.int32),
        [f"c{i}" for i in range(4)],
        ["test"] * 4,
        anny_body.default_shape(16).numpy(),
        anny_body.config(),
    )
    return bank.save(tmp_path / "bank.npz")


def test_pretrain_resume_and_adapt_on_cuda(tiny_bank, tmp_path):
    from key2mesh.model.checkpoint import load_checkpoint
    from key2mesh.train.pretrain import PretrainConfig

    cfg = PretrainConfig(
        cache=str(tiny_bank),
        out_dir=str(tmp_path / "pt"),
        steps=6,
        batch_size=16,
        val_every=3,
        val_size=32,
        model={"hidden": 64},
        device="cuda",
        pose_augment=True,
    )
    run_pretrain(cfg, progress=False)
    ck = load_checkpoint(tmp_path / "pt" / "last.pt")
    assert ck.step == 6
    target = synthetic_target(str(tiny_bank), ck, "strong", n=64, split="train")
    acfg = AdaptConfig(
        source=str(tmp_path / "pt" / "last.pt"),
        cache=str(tiny_bank),
        out_dir=str(tmp_path / "ad"),
        steps=3,
        batch_size=16,
        select_every=3,
        weights=ABLATIONS["2d+wd+reg"],
        device="cuda",
    )
    result = run_adapt(acfg, target, progress=False)
    assert result["steps"] == 3
    # the multi-view term on CUDA: groups on the CPU, losses on the device
    target.groups = torch.arange(len(target)) // 4
    acfg.weights, acfg.out_dir = ABLATIONS["2d+wd+reg+mv"], str(tmp_path / "ad_mv")
    result = run_adapt(acfg, target, progress=False)
    assert result["steps"] == 3 and result["selection"] == "mv_mm"
