"""Ensembles of networks (key2mesh.model.ensemble, ``Key2Mesh.from_pretrained("a.pt+b.pt")``)."""

import pytest
import roma
import torch

from key2mesh.errors import Key2MeshError
from key2mesh.geometry.camera import VirtualCamera
from key2mesh.inference.predictor import Key2Mesh
from key2mesh.model.checkpoint import (
    ENSEMBLES,
    InputNormalization,
    atomic_save,
    ensemble_members,
    make_checkpoint,
    resolve_checkpoint,
)
from key2mesh.model.ensemble import EnsembleNet
from key2mesh.model.network import Key2MeshNet, ModelConfig


def _net(seed: int, k: int = 17) -> Key2MeshNet:
    torch.manual_seed(seed)
    net = Key2MeshNet(ModelConfig(num_keypoints=k, hidden=32))
    with torch.no_grad():
        net.head.out.weight.mul_(100.0)  # rotations far from the identity, different per seed
    return net.eval()


def test_ensemble_averages_rotations_and_shapes():
    a, b = _net(0), _net(1)
    x = torch.randn(5, 17, 2, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        (ra, sa), (rb, sb) = a.predict(x), b.predict(x)
        r, s = EnsembleNet([a, b]).predict(x)
        one = EnsembleNet([a]).predict(x)
        alone = a.predict(x)  # without autograd, as the ensemble ran it (the folded eval path)
    assert not torch.allclose(ra, rb, atol=1e-2)
    torch.testing.assert_close(s, 0.5 * (sa + sb))
    torch.testing.assert_close(r, roma.special_procrustes(0.5 * (ra + rb)))
    assert torch.allclose(torch.linalg.det(r), torch.ones(5, 24), atol=1e-5)
    # the mean rotation lies between the members: closer to each than they are to each other
    ang = lambda p, q: roma.rotmat_geodesic_distance(p, q)  # noqa: E731
    assert (ang(r, ra) <= ang(ra, rb) + 1e-5).all() and (ang(r, rb) <= ang(ra, rb) + 1e-5).all()
    assert all(torch.equal(u, v) for u, v in zip(one, alone))


def _save(net, path, anny_body, keypoint_set="coco17"):
    ck = make_checkpoint(
        net,
        keypoint_set=keypoint_set,
        body_config=anny_body.config(),
        camera=VirtualCamera(),
        normalization=InputNormalization(0.3, 0.0, "bbox"),
        stage="pretrain",
    )
    atomic_save(ck, path)
    return str(path)


def test_predictor_ensemble_from_files(tmp_path, anny_body):
    pa = _save(_net(0), tmp_path / "a.pt", anny_body)
    pb = _save(_net(1), tmp_path / "b.pt", anny_body)
    kp = 200 * torch.rand(3, 17, 2, generator=torch.Generator().manual_seed(2)) + 50
    ens = Key2Mesh.from_pretrained(f"{pa}+{pb}", device="cpu", full_mesh=False)
    assert ens.members == 2
    got = ens.predict(kp, mesh=False)
    one = [
        Key2Mesh.from_pretrained(p, device="cpu", full_mesh=False).predict(kp, mesh=False)
        for p in (pa, pb)
    ]
    torch.testing.assert_close(got.shape, 0.5 * (one[0].shape + one[1].shape))
    torch.testing.assert_close(
        got.rotmats, roma.special_procrustes(0.5 * (one[0].rotmats + one[1].rotmats))
    )
    fast = Key2Mesh.from_pretrained(f"{pa}+{pb}", device="cpu", full_mesh=False, int8=True)
    assert (fast.predict(kp, mesh=False).rotmats - got.rotmats).abs().max() < 0.1
    pc = _save(_net(2, k=23), tmp_path / "c.pt", anny_body, keypoint_set="coco23")
    with pytest.raises(Key2MeshError, match="another keypoint set"):
        Key2Mesh.from_pretrained(f"{pa}+{pc}", device="cpu", full_mesh=False)
    with pytest.raises(Key2MeshError, match="two or more"):
        ensemble_members(f"{pa}+")


def test_shipped_ensemble_names():
    assert ensemble_members("anny-coco17-ensemble") == list(ENSEMBLES["anny-coco17-ensemble"])
    assert ensemble_members("anny-coco17") is None
    # commands that need one network say so
    with pytest.raises(Key2MeshError, match="ensemble of several networks"):
        resolve_checkpoint("anny-coco17-ensemble")


@pytest.mark.parametrize(
    "name, first, kset, k",
    [
        ("anny-coco17-ensemble", "anny-coco17", "coco17", 17),
        ("anny-body25-ensemble", "anny-body25", "openpose_body25", 25),
    ],
)
def test_shipped_ensemble_loads_and_predicts(name, first, kset, k):
    from key2mesh.model.checkpoint import PRETRAINED, PRETRAINED_DIR

    if not all((PRETRAINED_DIR / PRETRAINED[m]).exists() for m in ENSEMBLES[name]):
        pytest.skip("shipped checkpoints missing")
    ens = Key2Mesh.from_pretrained(name, device="cpu", full_mesh=False)
    one = Key2Mesh.from_pretrained(first, device="cpu", full_mesh=False)
    assert ens.members == 2 and ens.keypoint_set == kset
    kp = 200 * torch.rand(2, k, 2, generator=torch.Generator().manual_seed(4)) + 50
    a, b = ens.predict(kp, mesh=False), one.predict(kp, mesh=False)
    assert a.rotmats.shape == (2, 24, 3, 3) and not torch.equal(a.rotmats, b.rotmats)


def test_ensemble_clamps_each_member_shape_before_the_mean(anny_body):
    """anny clamps phenotypes to its anchors: a member's out-of-range value must not pull the
    mean (one member at 1.4 and one at 0.6 give 0.8, not 1.0)."""
    # gender in [0, 1]; age's anchors run from -1/3 to 1
    shape = torch.tensor([[1.4, -0.6, 0.5, 0.5, 0.5, 0.5], [0.6, 0.2, 0.5, 0.5, 0.5, 0.5]])
    clamped = anny_body.clamp_shape(shape)
    assert torch.allclose(clamped[:, :2], torch.tensor([[1.0, -1 / 3], [0.6, 0.2]]))
    # clamp_shape gives what anny's forward uses: the same keypoints
    rot = torch.eye(3).expand(2, 24, 3, 3)
    kp = anny_body.forward_keypoints(rot, shape, "coco17")
    assert torch.allclose(kp, anny_body.forward_keypoints(rot, clamped, "coco17"), atol=1e-6)

    class Fixed(torch.nn.Module):
        def __init__(self, s):
            super().__init__()
            self.s = s

        def predict(self, x):
            return torch.eye(3).expand(len(x), 24, 3, 3), self.s.expand(len(x), -1)

    ens = EnsembleNet([Fixed(shape[:1]), Fixed(shape[1:])], anny_body.clamp_shape)
    _, mean = ens.predict(torch.zeros(1, 17, 2))
    assert torch.allclose(mean[0, :2], torch.tensor([0.8, (0.2 - 1 / 3) / 2]))
    _, raw = EnsembleNet([Fixed(shape[:1]), Fixed(shape[1:])]).predict(torch.zeros(1, 17, 2))
    assert torch.allclose(raw[0, :2], torch.tensor([1.0, -0.2]))
