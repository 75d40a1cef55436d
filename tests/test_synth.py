import math

import torch

from key2mesh.data.synth import PairSynthesizer, SynthConfig, random_global_rotation
from key2mesh.geometry.normalize import bbox_normalize


def _angles(r: torch.Tensor):
    """Inverse of Ry(yaw)·Rx(pitch)·Rz(roll)."""
    pitch = torch.asin(-r[:, 1, 2].clamp(-1, 1))
    yaw = torch.atan2(r[:, 0, 2], r[:, 2, 2])
    roll = torch.atan2(r[:, 1, 0], r[:, 1, 1])
    return yaw, pitch, roll


def test_rotation_augmentation_ranges_statistically():
    g = torch.Generator().manual_seed(0)
    r = random_global_rotation(20000, SynthConfig(), g)
    yaw, pitch, roll = (a * 180 / math.pi for a in _angles(r))
    assert yaw.abs().max() <= 180.0 and pitch.abs().max() <= 20.0 + 1e-3 and roll.abs().max() <= 20.0 + 1e-3
    # uniform: mean ≈ 0, std ≈ range/√3
    assert abs(yaw.mean()) < 3 and abs(yaw.std() - 180 / math.sqrt(3)) < 2
    assert abs(pitch.std() - 20 / math.sqrt(3)) < 0.3 and abs(roll.std() - 20 / math.sqrt(3)) < 0.3


def test_synth_batch_occlusion_rate_and_consistency(anny_body):
    g = torch.Generator().manual_seed(1)
    synth = PairSynthesizer(anny_body, "openpose_body25")
    b = 512
    rot = torch.eye(3).repeat(b, 24, 1, 1)
    shape = anny_body.default_shape(b)
    batch = synth(rot, shape, g)
    assert batch.inputs.shape == (b, 25, 2) and batch.keypoints3d.shape == (b, 25, 3)
    rate = 1 - batch.valid.float().mean().item()
    assert abs(rate - 0.2) < 0.015  # occlusion p = 0.2
    # inputs are the normalised noisy keypoints; missing joints carry the constant
    assert torch.all(batch.inputs[~batch.valid] == -1.0)
    inputs_again, _ = bbox_normalize(batch.keypoints2d, batch.confidence)
    assert torch.allclose(inputs_again, batch.inputs)
    # jitter σ = 1 px: the noisy minus clean projection has unit std
    clean = synth.camera.project(batch.keypoints3d)
    assert abs((batch.keypoints2d - clean).std().item() - 1.0) < 0.05
    # the root joint's global rotation was randomised, the rest untouched
    assert not torch.allclose(batch.rotmats[:, 0], rot[:, 0])
    assert torch.equal(batch.rotmats[:, 1:], rot[:, 1:])


def test_synth_is_seeded(anny_body):
    synth = PairSynthesizer(anny_body, "coco17", config=SynthConfig(noise_profile="detector"))
    rot = torch.eye(3).repeat(8, 24, 1, 1)
    a = synth(rot, anny_body.default_shape(8), torch.Generator().manual_seed(3))
    b = synth(rot, anny_body.default_shape(8), torch.Generator().manual_seed(3))
    assert torch.equal(a.inputs, b.inputs)
