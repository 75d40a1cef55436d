import math

import torch

from key2mesh.data.synth import PairSynthesizer, SynthConfig, random_global_rotation
from key2mesh.geometry.normalize import bbox_normalize


def _rot(axis: int, a: torch.Tensor) -> torch.Tensor:
    c, s = torch.cos(a), torch.sin(a)
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    r = torch.eye(3).repeat(len(a), 1, 1)
    r[:, i, i], r[:, j, j], r[:, i, j], r[:, j, i] = c, c, -s, s
    return r


def test_rotation_augmentation_is_roll_yaw_pitch_in_official_order():
    """R = Rz(roll)·Ry(yaw)·Rx(pitch) (official code order), angles uniform in their ranges."""
    r = random_global_rotation(20000, SynthConfig(), torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(0)  # the same draws: yaw, pitch, roll
    yaw, pitch, roll = (
        (2 * torch.rand(20000, generator=g) - 1) * lim * math.pi / 180 for lim in (180, 20, 20)
    )
    expected = _rot(2, roll) @ _rot(1, yaw) @ _rot(0, pitch)
    assert (r - expected).abs().max() < 1e-5
    # the old order Ry·Rx·Rz is a different rotation
    assert (r - _rot(1, yaw) @ _rot(0, pitch) @ _rot(2, roll)).abs().max() > 0.1
    deg = [a * 180 / math.pi for a in (yaw, pitch, roll)]
    assert deg[0].abs().max() <= 180 and deg[1].abs().max() <= 20 and deg[2].abs().max() <= 20
    assert (
        abs(deg[0].std() - 180 / math.sqrt(3)) < 2 and abs(deg[1].std() - 20 / math.sqrt(3)) < 0.3
    )
    # yaw turns about the pitched up axis, roll (outermost) adds its tilt: ≤ |pitch| + |roll| ≤ 40°
    up_tilt = torch.rad2deg(torch.acos(r[:, 1, 1].clamp(-1, 1)))
    assert up_tilt.max() <= 40 + 1e-3 and up_tilt.max() > 30


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


def test_distance_augmentation_projects_each_sample_with_its_own_camera(anny_body):
    from key2mesh.geometry.camera import VirtualCamera

    g = torch.Generator().manual_seed(3)
    synth = PairSynthesizer(
        anny_body,
        "coco17",
        config=SynthConfig(distance_range=[2.5, 8.0], occlusion_prob=0.0, jitter_px=0.0),
    )
    b = synth(torch.eye(3).repeat(64, 24, 1, 1), anny_body.default_shape(64), g)
    assert b.distance.shape == (64,) and b.distance.min() >= 2.5 and b.distance.max() <= 8.0
    assert b.distance.std() > 1.0  # uniform over 5.5 m: std ≈ 1.59
    i = int(b.distance.argmin())
    expected = VirtualCamera(distance=float(b.distance[i])).project(b.keypoints3d[i])
    assert torch.allclose(b.keypoints2d[i], expected, atol=1e-3)
    assert SynthConfig().distance_range is None  # the paper's fixed camera by default


def test_drop_keypoints_are_always_missing(anny_body):
    """``drop_keypoints``: those keypoints are never valid inputs (a detector without them,
    e.g. MediaPipe's feet have no small toe); the others keep their occlusion rate; an unknown
    name is refused with the set's names."""
    import pytest

    from key2mesh.errors import Key2MeshError
    from key2mesh.keypoints.sets import keypoint_names

    drop = ["left_small_toe", "right_small_toe"]
    cfg = SynthConfig(drop_keypoints=drop, occlusion_prob=0.1)
    synth = PairSynthesizer(anny_body, "coco23", config=cfg)
    g = torch.Generator().manual_seed(0)
    n = 256
    batch = synth(torch.eye(3).expand(n, 24, 3, 3), anny_body.default_shape(n), g)
    idx = [keypoint_names("coco23").index(k) for k in drop]
    others = [i for i in range(23) if i not in idx]
    assert not batch.valid[:, idx].any() and (batch.confidence[:, idx] == 0).all()
    assert (batch.inputs[:, idx] == cfg.missing_value).all()
    assert abs((~batch.valid[:, others]).float().mean().item() - 0.1) < 0.02
    assert torch.isfinite(batch.target2d[:, idx]).all()  # still supervised in 2D
    with pytest.raises(Key2MeshError, match="left_pinky"):
        PairSynthesizer(anny_body, "coco23", config=SynthConfig(drop_keypoints=["left_pinky"]))


def test_noise_truncation_after_a_swap_drops_the_points_low_in_the_image():
    """A swapped sample's labels move, its points do not: truncation (the image ending below a cut)
    must drop the slots whose points lie below the cut, not the slots of their mirror partners."""
    from key2mesh.data.noise import NoiseProfile, apply_noise_profile
    from key2mesh.keypoints.sets import keypoint_names

    names = keypoint_names("coco17")
    kp = torch.zeros(1, 17, 2)
    kp[0, :, 0] = torch.arange(17.0)
    kp[0, names.index("left_ankle"), 1] = 100.0  # the one point low in the image (y down)
    profile = NoiseProfile(sigma=0.0, swap_prob=1.0, truncation_prob=1.0, conf_noise=0.0)
    noisy, conf = apply_noise_profile(
        kp, torch.ones(1, 17), "coco17", profile, torch.Generator().manual_seed(0)
    )
    # swapped: the low point now carries the right_ankle label; only that slot is cut off
    assert noisy[0, names.index("right_ankle"), 1] == 100.0
    assert (conf[0] == 0).nonzero().flatten().tolist() == [names.index("right_ankle")]


def test_joints_behind_the_camera_are_never_confident_inputs(anny_body):
    """A camera closer than the body's reach (``distance_range`` allows any distance > 0) puts
    joints behind it; they have no image position, so they come out missing (confidence 0),
    while the joints in front keep theirs."""
    cfg = SynthConfig(distance_range=[0.2, 0.3], occlusion_prob=0.0, jitter_px=0.0)
    synth = PairSynthesizer(anny_body, "openpose_body25", config=cfg)
    n = 64
    b = synth(torch.eye(3).repeat(n, 24, 1, 1), anny_body.default_shape(n), torch.Generator())
    front = synth.camera.to_camera(b.keypoints3d, b.distance)[..., 2] > 1e-3
    assert (~front).sum() > 50 and front.sum() > 50  # both kinds present
    assert (b.confidence[~front] == 0).all() and not b.valid[~front].any()
    assert (b.inputs[~front] == cfg.missing_value).all()
    assert (b.confidence[front] == 1).all()


def test_noise_profile_box_spans_only_the_points_with_a_pixel():
    """The noise scale (a fraction of the person's box height) and the truncation height come
    from the points of confidence > 0: one point behind the camera (confidence 0, a meaningless
    pixel 1e5 px away) made the noise of the others ~1,000 times too large and the cut miss."""
    from key2mesh.data.noise import NoiseProfile, apply_noise_profile

    kp = torch.zeros(2, 17, 2)
    kp[:, :, 1] = torch.linspace(0, 100, 17)  # a 100 px tall person
    conf = torch.ones(2, 17)
    kp[1, 3, 1], conf[1, 3] = 1e5, 0.0  # sample 1: one point without a pixel
    profile = NoiseProfile(sigma=0.01, extremity_scale=1.0, swap_prob=0.0, truncation_prob=0.0)
    noisy, out = apply_noise_profile(kp, conf, "coco17", profile, torch.Generator().manual_seed(0))
    shift = (noisy - kp).norm(dim=-1)  # sigma 1 px for both samples' points
    assert shift[0].max() < 6 and shift[1][conf[1] > 0].max() < 6
    assert out[1, 3] == 0
    cut = NoiseProfile(sigma=0.0, swap_prob=0.0, truncation_prob=1.0, conf_noise=0.0)
    _, out = apply_noise_profile(kp, conf, "coco17", cut, torch.Generator().manual_seed(0))
    kept = (out[1] > 0).sum()  # a cut at 40-90 % of the 100 px keeps 7 to 15 of the 16 points
    assert 7 <= kept <= 15


def test_a_swapped_sample_keeps_no_pixel_of_a_joint_behind_the_camera(anny_body, monkeypatch):
    """A left/right swap moves a joint's pixel into its mirror slot: the slot holding the pixel
    of a joint behind the camera must be missing, and the slot holding a joint in front kept
    (the old code zeroed the slot by the joint's own index after the swap: 130 of the 1,445
    slots in front of this batch were dropped, and before fcf4253 as many slots behind kept)."""
    from key2mesh.data import noise
    from key2mesh.keypoints.sets import flip_permutation

    swap = noise.NoiseProfile(
        name="swap", sigma=0.0, swap_prob=1.0, truncation_prob=0.0, conf_noise=0.0
    )
    monkeypatch.setitem(noise.PROFILES, "swap", swap)
    cfg = SynthConfig(
        distance_range=[0.2, 0.3], occlusion_prob=0.0, jitter_px=0.0, noise_profile="swap"
    )
    synth = PairSynthesizer(anny_body, "openpose_body25", config=cfg)
    n = 64
    b = synth(torch.eye(3).repeat(n, 24, 1, 1), anny_body.default_shape(n), torch.Generator())
    perm = torch.as_tensor(flip_permutation("openpose_body25"))
    front_of_slot = synth.camera.in_front(b.keypoints3d, b.distance)[:, perm]
    assert (~front_of_slot).sum() > 50  # joints behind the camera are present
    assert torch.equal(b.valid, front_of_slot)


def test_occlusion_survives_a_zero_confidence_threshold(anny_body):
    """``conf_threshold=0`` (use every detected point) still leaves the occluded joints
    (confidence 0) missing: they were all valid inputs, the occlusion rate 0 instead of 0.2."""
    cfg = SynthConfig(conf_threshold=0.0, drop_keypoints=["nose"])
    synth = PairSynthesizer(anny_body, "openpose_body25", config=cfg)
    n = 256
    b = synth(torch.eye(3).repeat(n, 24, 1, 1), anny_body.default_shape(n), torch.Generator())
    assert torch.equal(b.valid, b.confidence > 0)
    assert abs((~b.valid[:, 1:]).float().mean().item() - 0.2) < 0.02
    assert not b.valid[:, 0].any() and (b.inputs[~b.valid] == cfg.missing_value).all()


def test_noise_profile_extremities_include_feet_and_hands_of_every_set():
    """smpl24's feet and hands (``smpl_left_foot``, ``smpl_right_hand``) got the torso's noise:
    only toes/heels and finger points were matched. Every foot and hand point is an extremity."""
    from key2mesh.data.noise import _extremity_weights
    from key2mesh.keypoints.sets import keypoint_names

    for kset in ("smpl24", "openpose_body25", "mediapipe33", "coco17"):
        w = dict(zip(keypoint_names(kset), _extremity_weights(kset, 3.0).tolist(), strict=True))
        for name, value in w.items():
            limb_end = any(t in name for t in ("foot", "hand", "toe", "heel", "wrist", "ankle"))
            if limb_end:
                assert value == 3.0, (kset, name)
    w = dict(zip(keypoint_names("smpl24"), _extremity_weights("smpl24", 3.0).tolist(), strict=True))
    assert w["smpl_left_knee"] == 2.0 and w["smpl_spine1"] == 1.0 and w["smpl_head"] == 1.0
