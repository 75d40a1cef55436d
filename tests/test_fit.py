"""SMPLify-style optimisation baseline (key2mesh.fitting.smplify) on the low-res anny body."""

from __future__ import annotations

import math

import pytest
import torch

from key2mesh.errors import Key2MeshError
from key2mesh.fitting.smplify import (
    HINGE_JOINTS,
    FitResult,
    FitWeights,
    _Objective,
    _similarity_align,
    fit_to_keypoints,
    hinge_axes,
    hinge_flexion,
    joint_weights,
)
from key2mesh.geometry import VirtualCamera, axis_angle_to_matrix, rotation_y, rotation_z
from key2mesh.keypoints.sets import OPENPOSE_BODY25, SMPL24

KSET = "openpose_body25"


def procrustes_error(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """(B,) mean joint distance after the best similarity transform of pred onto gt (B,N,3)."""
    mp, mg = pred.mean(1, keepdim=True), gt.mean(1, keepdim=True)
    p, g = pred - mp, gt - mg
    u, s, vt = torch.linalg.svd(p.transpose(1, 2) @ g)
    d = torch.sign(torch.det(u @ vt))
    diag = torch.stack([torch.ones_like(d), torch.ones_like(d), d], -1)
    rot = u @ torch.diag_embed(diag) @ vt
    scale = (s * diag).sum(-1) / (p**2).sum((1, 2))
    return (scale[:, None, None] * p @ rot + mg - gt).norm(dim=-1).mean(-1)


def random_pose(body, b: int, seed: int, yaw_deg: float = 60.0) -> torch.Tensor:
    """(B,24,3,3) moderate random pose: 0.25 rad per joint, knees/elbows flexed 0.1-1.3 rad."""
    g = torch.Generator().manual_seed(seed)
    rot = axis_angle_to_matrix(torch.randn(b, 24, 3, generator=g) * 0.25)
    flex = torch.rand(b, 4, 1, generator=g) * 1.2 + 0.1
    rot[:, list(HINGE_JOINTS)] = axis_angle_to_matrix(flex * hinge_axes(body))
    yaw = (torch.rand(b, generator=g) * 2 - 1) * yaw_deg * math.pi / 180
    rot[:, 0] = rotation_y(yaw) @ rot[:, 0]
    return rot


@pytest.fixture(scope="module")
def target(anny_body):
    """Four posed bodies with a non-default shape and their clean 2D projections."""
    rot = random_pose(anny_body, 4, seed=0)
    shape = torch.tensor([[0.3, 0.7, 0.5, 0.4, 0.6, 0.45]]).expand(4, -1)
    with torch.no_grad():
        kp3d = anny_body.forward_keypoints(rot, shape, KSET)
    return rot, shape, kp3d, VirtualCamera().project(kp3d)


def test_fit_from_rest_recovers_pose(anny_body, target):
    rot, shape, kp3d, kp2d = target
    conf = torch.ones(4, 25)
    rest = fit_to_keypoints(anny_body, kp2d, conf, KSET, iters=0, select_iters=0)
    res = fit_to_keypoints(anny_body, kp2d, conf, KSET, iters=60, select_iters=15)
    assert isinstance(res, FitResult)
    assert res.rotmats.shape == (4, 24, 3, 3) and res.shape.shape == (4, 6)
    assert res.vertices.shape == (4, anny_body.num_vertices, 3) and res.keypoints3d.shape == (
        4,
        25,
        3,
    )
    assert res.loss_history.shape == (15 + 60 + 1, 4)
    # Rotations stay rotations; anny phenotypes stay in [0, 1].
    eye = torch.eye(3).expand(4, 24, 3, 3)
    assert torch.allclose(res.rotmats @ res.rotmats.transpose(-1, -2), eye, atol=1e-4)
    assert res.shape.min() >= 0 and res.shape.max() <= 1
    # The fit explains the 2D keypoints far better than the rest pose, for every sample.
    assert (res.reprojection_error < rest.reprojection_error / 5).all()
    assert res.loss_history[-1].mean() < 0.2 * res.loss_history[0].mean()
    # ... and is closer in 3D (the keypoints the fit returns are those of its own vertices).
    assert torch.allclose(res.keypoints3d, anny_body.regress(res.vertices, KSET), atol=1e-5)
    pa_fit, pa_rest = (
        procrustes_error(res.keypoints3d, kp3d),
        procrustes_error(rest.keypoints3d, kp3d),
    )
    assert pa_fit.mean() < 0.75 * pa_rest.mean()
    # Pixel error = normalised error × the input's box size.
    box = (kp2d.amax(1) - kp2d.amin(1)).amax(-1)
    assert torch.allclose(res.reprojection_error_px, res.reprojection_error * box, rtol=1e-4)


def test_init_from_truth_stays_near(anny_body, target):
    rot, shape, kp3d, kp2d = target
    res = fit_to_keypoints(
        anny_body, kp2d, torch.ones(4, 25), KSET, init_rotmats=rot, init_shape=shape, iters=20
    )
    assert res.loss_history.shape == (21, 4)  # a single yaw candidate with an initialisation
    assert res.reprojection_error.max() < 0.01
    assert procrustes_error(res.keypoints3d, kp3d).max() < 0.02  # metres
    mapped = [i for i, n in enumerate(SMPL24) if "foot" not in n and "hand" not in n]
    rel = rot[:, mapped].transpose(-1, -2) @ res.rotmats[:, mapped]
    angle = torch.arccos(((rel.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2).clamp(-1, 1))
    assert angle.mean() < 0.1


def test_back_view_picks_flipped_orientation(anny_body):
    """A body facing away from the camera: the 180° yaw candidate must win."""
    rot = torch.eye(3).repeat(2, 24, 1, 1)
    rot[:, 0] = rotation_y(torch.tensor([math.radians(170.0), math.radians(-165.0)]))
    with torch.no_grad():
        kp2d = VirtualCamera().project(anny_body.forward_keypoints(rot, None, KSET))
    res = fit_to_keypoints(anny_body, kp2d, torch.ones(2, 25), KSET, iters=5, select_iters=10)
    facing = res.rotmats[:, 0] @ torch.tensor([0.0, 0.0, 1.0])  # the body's forward direction
    assert (facing[:, 2] < -0.8).all()
    only_front = fit_to_keypoints(
        anny_body, kp2d, torch.ones(2, 25), KSET, iters=5, yaw_candidates=(0.0,)
    )
    assert (res.reprojection_error < only_front.reprojection_error).all()


def test_alignment_never_turns_the_projection_upside_down(anny_body):
    """The 2D similarity has no negative scale: an upright body does not match a person upside
    down (a handstand) by a 180° image rotation and report ~0 error."""
    pred = torch.tensor([[[0.0, 0.0], [1.0, 2.0], [2.0, 0.0]]])
    w = torch.ones(1, 3)
    mean = (-pred).mean(1, keepdim=True)
    torch.testing.assert_close(_similarity_align(pred, -pred, w), mean.expand(1, 3, 2))
    torch.testing.assert_close(_similarity_align(pred, 2 * pred + 1, w), 2 * pred + 1)
    rot = torch.eye(3).repeat(1, 24, 1, 1)
    rot[:, 0] = rotation_z(torch.tensor([math.pi]))  # upside down
    with torch.no_grad():
        kp2d = VirtualCamera().project(anny_body.forward_keypoints(rot, None, KSET))
    res = fit_to_keypoints(anny_body, kp2d, torch.ones(1, 25), KSET, iters=0, select_iters=0)
    assert res.reprojection_error.item() > 0.1  # the rest pose (upright) is far from it


def test_missing_keypoints_are_ignored(anny_body, target):
    _, _, _, kp2d = target
    conf = torch.ones(4, 25)
    missing = [OPENPOSE_BODY25.index(n) for n in ("left_wrist", "right_ankle", "nose")]
    conf[:, missing] = 0.0
    moved = kp2d.clone()
    moved[:, missing] = torch.tensor([500.0, -300.0])
    moved[0, missing[0]] = float("nan")
    a = fit_to_keypoints(anny_body, kp2d, conf, KSET, iters=8, select_iters=4)
    b = fit_to_keypoints(anny_body, moved, conf, KSET, iters=8, select_iters=4)
    assert torch.allclose(a.rotmats, b.rotmats, atol=1e-5)
    assert torch.allclose(a.shape, b.shape, atol=1e-6)
    assert not a.valid[:, missing].any() and a.valid.sum() == 4 * 22
    assert (b.target2d[:, missing] == -1).all() and torch.isfinite(b.reprojection_error).all()
    # ... while moving a present keypoint does change the fit.
    c = moved.clone()
    c[:, OPENPOSE_BODY25.index("left_elbow")] += torch.tensor([15.0, 10.0])
    c_fit = fit_to_keypoints(anny_body, c, conf, KSET, iters=8, select_iters=4)
    assert not torch.allclose(a.rotmats, c_fit.rotmats, atol=1e-3)


def test_fit_ignores_image_scale_and_offset(anny_body, target):
    """Detections from any camera: scaling and shifting the pixels changes nothing."""
    _, _, _, kp2d = target
    a = fit_to_keypoints(anny_body, kp2d[:2], torch.ones(2, 25), KSET, iters=6, select_iters=3)
    b = fit_to_keypoints(
        anny_body,
        3.5 * kp2d[:2] + torch.tensor([640.0, 360.0]),
        torch.ones(2, 25),
        KSET,
        iters=6,
        select_iters=3,
    )
    assert torch.allclose(a.rotmats, b.rotmats, atol=1e-4)
    assert torch.allclose(b.reprojection_error_px, 3.5 * a.reprojection_error_px, rtol=1e-3)


def test_lbfgs_reduces_error(anny_body, target):
    _, _, _, kp2d = target
    conf = torch.ones(2, 25)
    rest = fit_to_keypoints(anny_body, kp2d[:2], conf, KSET, iters=0, select_iters=0)
    res = fit_to_keypoints(
        anny_body, kp2d[:2], conf, KSET, iters=15, select_iters=5, optimizer="lbfgs"
    )
    assert (res.reprojection_error < rest.reprojection_error / 3).all()


def test_hinge_axes_point_flexion_the_natural_way(anny_body):
    axes = hinge_axes(anny_body)
    assert torch.allclose(axes.norm(dim=-1), torch.ones(4), atol=1e-6)
    assert axes[0, 0] > 0.9 and axes[1, 0] > 0.9  # knees flex about +x (SMPL's convention)
    rot = torch.eye(3).repeat(3, 24, 1, 1)
    angles = torch.tensor([0.0, 0.6, -0.6])
    rot[:, list(HINGE_JOINTS)] = axis_angle_to_matrix(angles[:, None, None] * axes)
    with torch.no_grad():
        joints = anny_body(rot).joints
    ankles, wrists = joints[:, [7, 8], 2], joints[:, [20, 21], 2]
    assert (ankles[1] < ankles[0] - 0.1).all()  # flexed knees: ankles go backwards (-z)
    assert (wrists[1] > wrists[0] + 0.05).all() and (
        wrists[2] < wrists[0]
    ).all()  # elbows: forwards (+z)
    flex = hinge_flexion(rot, axes)
    assert torch.allclose(flex, torch.sin(angles)[:, None].expand(3, 4), atol=1e-5)


def test_hyperextension_prior_bends_the_right_way(anny_body):
    """A straight arm seen from the side is ambiguous; the prior must not hyper-extend it."""
    rot = torch.eye(3).repeat(1, 24, 1, 1)
    with torch.no_grad():
        kp2d = VirtualCamera().project(anny_body.forward_keypoints(rot, None, KSET))
    init = rot.clone()
    init[:, list(HINGE_JOINTS)] = axis_angle_to_matrix(-0.3 * hinge_axes(anny_body))[None]
    axes = hinge_axes(anny_body)
    fits = {
        h: fit_to_keypoints(
            anny_body,
            kp2d,
            torch.ones(1, 25),
            KSET,
            init_rotmats=init,
            iters=40,
            lr=0.03,
            weights=FitWeights(hinge=h),
        )
        for h in (0.0, 1.0)
    }
    assert (hinge_flexion(fits[1.0].rotmats, axes) > 0.0).all()
    assert (
        hinge_flexion(fits[0.0].rotmats, axes) < -0.1
    ).all()  # without the prior it stays bent backwards


def test_joint_weights_paper_values():
    w = dict(zip(OPENPOSE_BODY25, joint_weights(KSET).tolist(), strict=True))
    assert w["left_wrist"] == w["right_ankle"] == 8.0
    assert w["right_elbow"] == w["left_knee"] == 4.0
    assert w["left_shoulder"] == w["right_hip"] == 2.0
    assert w["nose"] == w["left_big_toe"] == 1.0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"keypoints2d": torch.zeros(2, 24, 2)}, r"\(B, 25, 2\)"),
        ({"keypoints2d": torch.zeros(2, 25, 3)}, r"\(B, 25, 2\)"),
        ({"confidence": torch.ones(2, 24)}, "confidence"),
        ({"init_rotmats": torch.eye(3).repeat(2, 23, 1, 1)}, "init_rotmats"),
        ({"init_shape": torch.zeros(2, 10)}, "init_shape"),
        ({"optimizer": "sgd"}, "optimizer"),
        ({"keypoint_set": "nope"}, "unknown keypoint set"),
        ({"yaw_candidates": ()}, "yaw_candidates"),
        ({"weights": FitWeights(sigma=0.0)}, "sigma"),
    ],
)
def test_bad_inputs_raise(anny_body, kwargs, match):
    args = {
        "keypoints2d": torch.zeros(2, 25, 2),
        "confidence": torch.ones(2, 25),
        "keypoint_set": KSET,
        "iters": 1,
    }
    args.update(kwargs)
    with pytest.raises(Key2MeshError, match=match):
        fit_to_keypoints(anny_body, **args)


def test_fit_runs_on_one_thread_and_restores_the_setting(anny_body, target):
    """The fit runs its many small ops on one intra-op thread (num_threads=1, the default) and
    restores torch's setting; the result is the same as with torch's own threads to float noise."""
    rot, shape, kp3d, kp2d = target
    before = torch.get_num_threads()
    seen = []

    class Spy(_Objective):
        def __call__(self, *args):
            seen.append(torch.get_num_threads())
            return super().__call__(*args)

    import key2mesh.fitting.smplify as smplify

    try:
        torch.set_num_threads(2)
        original, smplify._Objective = smplify._Objective, Spy
        one = fit_to_keypoints(anny_body, kp2d, torch.ones(4, 25), KSET, init_rotmats=rot, iters=5)
        assert set(seen) == {1} and torch.get_num_threads() == 2
        seen.clear()
        two = fit_to_keypoints(
            anny_body, kp2d, torch.ones(4, 25), KSET, init_rotmats=rot, iters=5, num_threads=None
        )
        assert set(seen) == {2}
    finally:
        smplify._Objective = original
        torch.set_num_threads(before)
    torch.testing.assert_close(one.rotmats, two.rotmats, atol=1e-5, rtol=0)
    torch.testing.assert_close(one.shape, two.shape, atol=1e-5, rtol=0)


def test_a_diverging_fit_is_an_error_not_nan_parameters(anny_body, target):
    """A step size far too large makes L-BFGS diverge: one line naming it, no NaN written."""
    from key2mesh.errors import Key2MeshError

    kp2d, conf = target[3][:2], torch.ones(2, 25)
    with pytest.raises(Key2MeshError, match="lbfgs fit diverged: .* of 2 fits .*lr=1e\\+30"):
        fit_to_keypoints(
            anny_body, kp2d, conf, KSET, iters=3, select_iters=0, optimizer="lbfgs", lr=1e30
        )


def test_fit_from_a_checkpoint_projects_with_its_camera(tmp_path, monkeypatch):
    """``key2mesh fit --checkpoint``: the refinement starts from the network's prediction, which
    explains the input through the checkpoint's camera; fitting it through the default camera
    instead moves a correct pose (here: the true pose as the prediction, camera 2.5 m away,
    focal 500 px; the default 6 m camera read it as 0.023 re-projection error, not 0)."""
    import dataclasses
    import types

    import numpy as np

    from key2mesh.fitting.pipeline import FitConfig, fit_files
    from key2mesh.inference.predictor import Key2Mesh
    from key2mesh.model.checkpoint import load_checkpoint, resolve_checkpoint

    cam = VirtualCamera(focal=500.0, distance=2.5)
    ck = dataclasses.replace(load_checkpoint(resolve_checkpoint("anny-body25")), camera=cam)
    path = tmp_path / "near_camera.pt"
    torch.save(ck.to_dict(), path)
    body = Key2Mesh(ck, device="cpu", full_mesh=False).body
    rot = random_pose(body, 3, seed=2, yaw_deg=0.0)
    shape = body.default_shape(3)
    with torch.no_grad():
        kp = cam.project(body.forward_keypoints(rot, shape, KSET))
    inputs = tmp_path / "kp.npz"
    np.savez(inputs, keypoints=kp.numpy(), keypoint_set=KSET)
    truth = types.SimpleNamespace(rotmats=rot, shape=shape)
    monkeypatch.setattr(Key2Mesh, "predict", lambda self, k, c, mesh=False: truth)
    table = fit_files(FitConfig(init_from=str(path), iters=0), [str(inputs)])
    assert table.reprojection_error.shape == (3,)
    assert table.reprojection_error.max() < 1e-3


def test_zero_confidence_points_stay_missing_at_threshold_zero(anny_body, target):
    """``conf_threshold=0`` uses every detected point, not the undetected ones: points of
    confidence 0 (here NaN positions) were valid points at (0, 0), so the true pose read 0.05
    re-projection error instead of 0."""
    rot, shape, _, kp2d = target
    kp2d = kp2d.clone()
    kp2d[:, :5] = float("nan")
    conf = torch.ones(4, 25)
    conf[:, :5] = 0.0
    res = fit_to_keypoints(
        anny_body, kp2d, conf, KSET, init_rotmats=rot, init_shape=shape, iters=0, conf_threshold=0
    )
    assert (res.valid.sum(-1) == 20).all() and not res.valid[:, :5].any()
    assert res.reprojection_error.max() < 1e-4
    assert (res.projected2d[:, :5] == -1).all()


def test_a_sample_without_valid_joints_has_no_error_not_zero(anny_body, target):
    """A detection with no joint above the threshold has nothing to fit: its re-projection
    error was 0 (a perfect fit, to a reader); it is NaN (px too), the other samples' fits and
    errors are those they get without it."""
    rot, shape, _, kp2d = target
    conf = torch.ones(4, 25)
    conf[1] = 0.05  # all below the 0.1 threshold
    res = fit_to_keypoints(anny_body, kp2d, conf, KSET, init_rotmats=rot, iters=3)
    assert not res.valid[1].any()
    assert res.reprojection_error[1].isnan() and res.reprojection_error_px[1].isnan()
    keep = [0, 2, 3]
    alone = fit_to_keypoints(
        anny_body, kp2d[keep], conf[keep], KSET, init_rotmats=rot[keep], iters=3
    )
    torch.testing.assert_close(
        res.reprojection_error[keep], alone.reprojection_error, atol=1e-5, rtol=0
    )
    assert torch.isfinite(res.rotmats).all()


@pytest.mark.parametrize("iters", [0, 5])
def test_a_non_finite_start_is_refused(anny_body, target, iters):
    """A NaN in init_rotmats/init_shape was reported as a divergence ('use a smaller --lr') or,
    with iters=0, returned as a NaN body; it is refused, naming the argument and the sample."""
    rot, shape, _, kp2d = target
    bad_rot = rot.clone()
    bad_rot[1, 5] = float("nan")
    with pytest.raises(Key2MeshError, match=r"init_rotmats is not finite for 1 of 4 .*first: 1"):
        fit_to_keypoints(
            anny_body, kp2d, torch.ones(4, 25), KSET, init_rotmats=bad_rot, iters=iters
        )
    bad_shape = shape.clone()
    bad_shape[2, 0] = float("inf")
    with pytest.raises(Key2MeshError, match=r"init_shape is not finite .*first: 2"):
        fit_to_keypoints(
            anny_body, kp2d, torch.ones(4, 25), KSET, init_shape=bad_shape, iters=iters
        )
