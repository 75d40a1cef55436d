"""The int8 CPU network (key2mesh.model.int8): BatchNorm folding is exact, quantization is
applied and stays close to float, and the API refuses int8 off the CPU."""

import pytest
import torch

from key2mesh.errors import Key2MeshError
from key2mesh.model.int8 import fold_batchnorm, quantize_int8
from key2mesh.model.network import Key2MeshNet, ModelConfig


@pytest.fixture(scope="module")
def net():
    """A small network whose BatchNorms hold non-trivial statistics and affine parameters."""
    torch.manual_seed(0)
    net = Key2MeshNet(ModelConfig(num_keypoints=17, hidden=64))
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.normal_(0.0, 0.3)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.1)
        net.head.out.weight.mul_(50.0)  # rotations far from the identity
    return net.eval()


def _inputs(n=32):
    return torch.randn(n, 17, 2, generator=torch.Generator().manual_seed(1))


def test_fold_batchnorm_is_exact(net):
    x = _inputs()
    folded = fold_batchnorm(net)
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in folded.modules())
    with torch.no_grad():
        (r0, s0), (r1, s1) = net.predict(x), folded.predict(x)
    torch.testing.assert_close(r1, r0, atol=1e-5, rtol=0)
    torch.testing.assert_close(s1, s0, atol=1e-5, rtol=0)
    with pytest.raises(Key2MeshError, match="eval mode"):
        fold_batchnorm(Key2MeshNet(ModelConfig(num_keypoints=17, hidden=16)))  # training mode


def test_folded_rotations_are_orthonormal_under_bf16_autocast(net):
    """The folded network turns 6D into matrices like the float one (in float32 even under
    bf16 autocast, network._rotations): same rotations within bf16 GEMM error, orthonormal."""
    x = _inputs()
    folded = fold_batchnorm(net)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        (r0, _), (r1, _) = net.predict(x), folded.predict(x)
    assert r1.dtype == r0.dtype == torch.float32
    eye = torch.eye(3).expand_as(r1)
    assert (r1.transpose(-1, -2) @ r1 - eye).abs().max() < 1e-5
    assert torch.allclose(torch.linalg.det(r1), torch.ones(len(r1), 24), atol=1e-5)


def test_int8_network_is_quantized_and_close(net):
    x = _inputs()
    q = quantize_int8(net)
    kinds = {type(m).__module__ for m in q.modules()}
    assert any("quantized" in k for k in kinds), kinds  # the Linears really are int8 now
    with torch.no_grad():
        (r0, s0), (r1, s1) = net.predict(x), q.predict(x)
    assert not torch.equal(r0, r1)  # int8 arithmetic, not the float network
    # rotation error: the angle of R0ᵀ R1, in degrees
    cos = ((r0.transpose(-1, -2) @ r1).diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2
    angle = torch.rad2deg(torch.arccos(cos.clamp(-1, 1)))
    assert angle.max() < 5.0 and angle.mean() < 1.0, (angle.max(), angle.mean())
    assert (s1 - s0).abs().max() < 0.05
    assert torch.allclose(r1 @ r1.transpose(-1, -2), torch.eye(3).expand_as(r1), atol=1e-5)


def test_predictor_int8(net, anny_body, monkeypatch):
    from key2mesh.geometry.camera import VirtualCamera
    from key2mesh.inference import predictor
    from key2mesh.model.checkpoint import InputNormalization, make_checkpoint

    ck = make_checkpoint(
        net,
        keypoint_set="coco17",
        body_config=anny_body.config(),
        camera=VirtualCamera(),
        normalization=InputNormalization(0.3, 0.0, "bbox"),
        stage="pretrain",
    )
    kp = 200 * torch.rand(3, 17, 2, generator=torch.Generator().manual_seed(2)) + 50
    ref = predictor.Key2Mesh(ck, device="cpu", full_mesh=False).predict(kp, mesh=False)
    fast = predictor.Key2Mesh(ck, device="cpu", full_mesh=False, int8=True)
    assert fast.int8
    got = fast.predict(kp, mesh=False)
    assert got.rotmats.shape == ref.rotmats.shape and not torch.equal(got.rotmats, ref.rotmats)
    assert (got.rotmats - ref.rotmats).abs().max() < 0.1
    monkeypatch.setattr(predictor, "check_device", lambda name: None)  # as if a GPU were here
    with pytest.raises(Key2MeshError, match="CPU only"):
        predictor.Key2Mesh(ck, device="cuda", full_mesh=False, int8=True)
