"""Batched IK: fast FK against the body model, recovery of synthetic poses, bad inputs."""

from __future__ import annotations

import math

import pytest
import torch

from key2mesh.data.mocap.ik import (
    KinematicSkeleton,
    estimate_bone_scale,
    fit_joints,
    fit_pose_to_joints,
    kinematic_levels,
)
from key2mesh.errors import Key2MeshError
from key2mesh.geometry import axis_angle_to_matrix, rotation_x
from key2mesh.keypoints.sets import SMPL24, SMPL24_PARENTS

HANDS = (22, 23)  # anny places its hand points along the forearm, not by the wrist rotation
KINEMATIC = [j for j in range(24) if j not in HANDS]
LIMBS = [(SMPL24.index(f"smpl_{s}_{a}"), SMPL24.index(f"smpl_{s}_{b}")) for s in ("left", "right")
         for a, b in (("hip", "knee"), ("knee", "ankle"), ("shoulder", "elbow"), ("elbow", "wrist"))]  # fmt: skip


@pytest.fixture(scope="module")
def skeleton(anny_body):
    return KinematicSkeleton.from_body(anny_body)


def plausible_poses(n: int, seed: int = 0) -> torch.Tensor:
    """(n, 24, 3, 3): any root orientation, moderate joint rotations, knees/elbows flexed only."""
    g = torch.Generator().manual_seed(seed)
    rv = torch.randn(n, 24, 3, generator=g) * 0.25
    rv[:, 0] = torch.randn(n, 3, generator=g) * 1.5
    rot = axis_angle_to_matrix(rv)
    for j in (SMPL24.index("smpl_left_knee"), SMPL24.index("smpl_right_knee")):
        rot[:, j] = rotation_x(torch.rand(n, generator=g) * 1.8)  # flexion: shin backwards
    return rot


def test_kinematic_levels_respect_parents():
    levels = kinematic_levels()
    depth = {j: d for d, lvl in enumerate(levels) for j in lvl}
    assert sorted(depth) == list(range(24)) and levels[0] == [0]
    assert all(depth[j] == depth[p] + 1 for j, p in enumerate(SMPL24_PARENTS) if p >= 0)


@pytest.mark.parametrize("random_shape", [False, True])
def test_fast_fk_matches_body_joints(anny_body, random_shape):
    shape = (
        torch.rand(1, anny_body.shape_dim, generator=torch.Generator().manual_seed(3))
        if random_shape
        else None
    )
    skel = KinematicSkeleton.from_body(anny_body, shape)
    rot = axis_angle_to_matrix(
        torch.randn(12, 24, 3, generator=torch.Generator().manual_seed(1)) * 0.5
    )
    fk, glob = skel(rot)
    ref = anny_body(rot, shape).joints
    err = (fk - ref).norm(dim=-1)[:, KINEMATIC]
    assert err.max() < 1e-3
    # global rotations: G_child = G_parent R_child
    assert torch.allclose(glob[:, 4], glob[:, 1] @ rot[:, 4], atol=1e-5)
    # the hands (not kinematic on anny) really differ, so the mask above is not hiding an FK bug
    assert (fk - ref).norm(dim=-1)[:, HANDS].max() > 1e-2


def test_bone_scale_of_a_scaled_skeleton(skeleton):
    rot = plausible_poses(20)
    scale = torch.full((24,), 1.1)
    scale[0] = 1.0
    joints, _ = skeleton(rot, scale)
    est = estimate_bone_scale(skeleton, joints, torch.ones(20, 24, dtype=torch.bool))
    assert torch.allclose(est, scale, atol=1e-4)


def test_ik_recovers_synthetic_positions_and_limb_directions(anny_body, skeleton):
    rot = plausible_poses(48)
    joints, _ = skeleton(rot)
    transl = torch.randn(48, 1, 3, generator=torch.Generator().manual_seed(2))
    res = fit_joints(anny_body, joints + transl, SMPL24, iters=100)
    assert res.rotmats.shape == (48, 24, 3, 3)
    assert torch.allclose(
        res.rotmats.transpose(-1, -2) @ res.rotmats, torch.eye(3).expand(48, 24, 3, 3), atol=1e-4
    )
    err = (res.joints - (joints + transl)).norm(dim=-1)
    assert err.mean() < 0.01, f"mean per-joint error {err.mean():.4f} m"
    assert torch.allclose(res.bone_scale, torch.ones(24), atol=1e-3)
    # the recovered rotations drive the real body model: its limbs point where the targets do
    out = anny_body(res.rotmats).joints
    for a, b in LIMBS:
        want = torch.nn.functional.normalize(joints[:, b] - joints[:, a], dim=-1)
        got = torch.nn.functional.normalize(out[:, b] - out[:, a], dim=-1)
        angle = torch.rad2deg(torch.arccos((want * got).sum(-1).clamp(-1, 1)))
        assert angle.mean() < 3.0, f"{SMPL24[a]}→{SMPL24[b]}: {angle.mean():.1f}°"


def test_ik_ignores_non_smpl_names_and_missing_targets(anny_body, skeleton):
    rot = plausible_poses(16, seed=5)
    joints, _ = skeleton(rot)
    garbage = torch.randn(16, 2, 3) * 5  # COCO-named points are not used
    target = torch.cat([joints, garbage], 1)
    target[:4, SMPL24.index("smpl_left_elbow")] = float("nan")  # missing in a few frames
    names = list(SMPL24) + ["left_wrist", "nose"]
    res = fit_joints(anny_body, target, names, iters=100)
    assert "nose" not in res.used_names and len(res.used_names) == 24
    assert torch.isfinite(res.rotmats).all()
    assert (res.joints - joints).norm(dim=-1)[:, KINEMATIC].mean() < 0.01


def test_ik_keeps_a_good_init(anny_body, skeleton):
    rot = plausible_poses(8, seed=7)
    joints, _ = skeleton(rot)
    out = fit_pose_to_joints(anny_body, joints, SMPL24, iters=0, init=rot, scale_bones=False)
    assert torch.allclose(out, rot, atol=1e-5)


@pytest.mark.parametrize(
    ("target", "names", "kwargs", "match"),
    [
        (torch.zeros(5, 24), SMPL24, {}, "shape"),
        (torch.zeros(5, 24, 2), SMPL24, {}, "shape"),
        (torch.zeros(5, 24, 3), SMPL24[:20], {}, "names"),
        (torch.zeros(5, 3, 3), ("nose", "left_eye", "right_eye"), {}, "at least 4"),
        (torch.zeros(5, 24, 3), SMPL24, {"weights": torch.ones(3)}, "weights"),
        (torch.zeros(5, 24, 3), SMPL24, {"weights": {"smpl_head": -1.0}}, "weights"),
        (torch.zeros(5, 24, 3), SMPL24, {"init": torch.zeros(4, 24, 3, 3)}, "init"),
        (torch.zeros(5, 2, 3), ("smpl_head", "smpl_head"), {}, "repeat"),
    ],
)
def test_bad_inputs_raise(anny_body, target, names, kwargs, match):
    with pytest.raises(Key2MeshError, match=match):
        fit_joints(anny_body, target, names, iters=1, **kwargs)


def test_fk_rejects_bad_shapes(skeleton):
    with pytest.raises(Key2MeshError, match="rotations"):
        skeleton(torch.eye(3).expand(2, 23, 3, 3))
    with pytest.raises(Key2MeshError, match="rest joints"):
        KinematicSkeleton(torch.zeros(23, 3))


def test_hinge_limit_prefers_natural_knee(anny_body, skeleton):
    """The limit penalty is zero for a flexed knee and positive for a sideways-bent one."""
    from key2mesh.data.mocap.ik import limit_penalty

    eye = torch.eye(3).expand(3, 24, 3, 3).clone()
    knee = SMPL24.index("smpl_left_knee")
    eye[0, knee] = rotation_x(torch.tensor(1.2))  # flexion: shin backwards
    eye[1, knee] = axis_angle_to_matrix(torch.tensor([0.0, 0.0, 1.2]))  # sideways
    eye[2, knee] = rotation_x(torch.tensor(-1.2))  # hyperextension: shin forwards
    pen = limit_penalty(eye, skeleton)
    assert pen[0] < 1e-3
    assert pen[1] > 0.9 * math.sin(1.2) ** 2
    assert pen[2] > 0.1  # beyond the rest bend + 10° tolerance


def _angle_deg(rot: torch.Tensor) -> torch.Tensor:
    cos = ((rot.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2).clamp(-1, 1)
    return torch.rad2deg(torch.arccos(cos))


def test_root_target_below_the_hips_pitches_the_pelvis_unless_dropped(anny_body, skeleton):
    """cgspeed's root sits below its thighs; fitting it as the pelvis pitched the pelvis ~100° with
    the spine and hips bent back (the CMU BVH poses before the fix). Weight 0 drops it."""
    from key2mesh.data.mocap.cmu import IK_HINTS

    rot = plausible_poses(24, seed=11)
    rot[:, 0] = torch.eye(3)  # upright pelvis
    joints, _ = skeleton(rot)
    hips = 0.5 * (joints[:, 1] + joints[:, 2])
    target = joints.clone()
    target[:, 0] = hips - torch.tensor([0.0, 0.03, 0.0])  # root 3 cm below the hip line
    hints = IK_HINTS["cgspeed_daz"]
    pitched = fit_joints(anny_body, target, SMPL24, iters=100)
    fixed = fit_joints(
        anny_body, target, SMPL24, iters=100, weights=hints["ik_weights"], prior=hints["ik_prior"]
    )
    assert _angle_deg(fixed.rotmats[:, 0]).mean() < 10.0
    assert _angle_deg(pitched.rotmats[:, 0]).mean() > 2 * _angle_deg(fixed.rotmats[:, 0]).mean()
    limbs = [j for a, b in LIMBS for j in (a, b)]
    assert (fixed.joints - joints)[:, limbs].norm(dim=-1).mean() < 0.03


def test_per_joint_prior_holds_untargeted_collars_at_rest(anny_body, skeleton):
    """Shoulder targets 6 cm inside the body's shoulders (cgspeed's) roll free collars; a collar
    prior keeps them nearer rest (16° vs 30° here) while the arms still follow their targets."""
    rot = plausible_poses(24, seed=13)
    rot[:, [13, 14]] = torch.eye(3)
    joints, _ = skeleton(rot)
    target = joints.clone()
    for sh, col in ((16, 13), (17, 14)):
        inward = torch.nn.functional.normalize(joints[:, col] - joints[:, sh], dim=-1)
        target[:, sh] = joints[:, sh] + 0.06 * inward
    target[:, [13, 14]] = float("nan")
    free = fit_joints(anny_body, target, SMPL24, iters=100)
    held = fit_joints(
        anny_body,
        target,
        SMPL24,
        iters=100,
        prior={"default": 1e-5, "smpl_left_collar": 1e-2, "smpl_right_collar": 1e-2},
    )
    assert (
        _angle_deg(held.rotmats[:, [13, 14]]).mean()
        < 0.6 * _angle_deg(free.rotmats[:, [13, 14]]).mean()
    )
    wrists = [SMPL24.index("smpl_left_wrist"), SMPL24.index("smpl_right_wrist")]
    assert (held.joints - joints)[:, wrists].norm(dim=-1).mean() < 0.05


@pytest.mark.parametrize(
    "prior", [{"smpl_nose": 1.0}, {"smpl_spine1": -1.0}, {"default": float("nan")}]
)
def test_bad_prior_raises(anny_body, prior):
    with pytest.raises(Key2MeshError, match="prior"):
        fit_joints(anny_body, torch.zeros(2, 24, 3), SMPL24, iters=1, prior=prior)


def test_coincident_targets_give_finite_rotations(anny_body, skeleton):
    """A knee target on its hip (a zero-length bone, bad MoCap) or every target at one point gives
    a zero bone scale; the fit must stay finite (it was NaN everywhere: the hinge init divided the
    zero rest bone by its length)."""
    rot = plausible_poses(4, seed=3)
    joints, _ = skeleton(rot)
    knee_on_hip = joints.clone()
    knee_on_hip[:, SMPL24.index("smpl_left_knee")] = joints[:, SMPL24.index("smpl_left_hip")]
    collapsed = joints[:, :1].expand(-1, 24, -1).clone()
    for target in (knee_on_hip, collapsed):
        res = fit_joints(anny_body, target, SMPL24, iters=10)
        assert torch.isfinite(res.rotmats).all() and torch.isfinite(res.error).all()
    # the untouched limbs still fit
    res = fit_joints(anny_body, knee_on_hip, SMPL24, iters=100)
    right_leg = [SMPL24.index(f"smpl_right_{j}") for j in ("hip", "knee", "ankle")]
    assert (res.joints - knee_on_hip)[:, right_leg].norm(dim=-1).mean() < 0.02


def test_a_frame_without_targets_does_not_change_the_other_frames_init(anny_body, skeleton):
    """NaN = missing: a frame with no targets at all used to switch the root's Kabsch set of
    every frame from the root-rigid joints to all joints (chosen by the worst frame), so the
    other frames' start was 38 mm off instead of 1 mm."""
    rot = plausible_poses(16, seed=11)
    joints, _ = skeleton(rot)
    target = joints.clone()
    target[-1] = float("nan")
    intact = fit_joints(anny_body, joints, SMPL24, iters=0)
    holed = fit_joints(anny_body, target, SMPL24, iters=0)
    assert torch.isfinite(holed.rotmats).all()
    assert torch.allclose(holed.rotmats[:-1], intact.rotmats[:-1], atol=1e-5)
