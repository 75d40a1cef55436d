"""Camera translation fitting, and the multi-camera calibration reader of the demo inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from key2mesh.errors import Key2MeshError
from key2mesh.inference.camera_fit import WORLD_TO_CAMERA, default_focal, fit_camera

T_TRUE = torch.tensor([[0.3, -0.2, 4.0], [0.0, 0.0, 2.5], [-1.0, 0.5, 8.0], [0.1, 0.1, 3.0]])
FOCAL = torch.tensor([1000.0, 1200.0, 900.0, 1500.0])
PRINCIPAL = torch.tensor([640.0, 360.0])


def _scene(seed: int = 0, k: int = 17):
    g = torch.Generator().manual_seed(seed)
    x3 = torch.randn(len(T_TRUE), k, 3, generator=g) * torch.tensor([0.3, 0.8, 0.2])  # body-sized
    cam = x3 @ WORLD_TO_CAMERA.T + T_TRUE[:, None]
    uv = FOCAL[:, None, None] * cam[..., :2] / cam[..., 2:3] + PRINCIPAL
    return x3, uv


def test_recovers_known_translation():
    x3, uv = _scene()
    fit = fit_camera(x3, uv, focal=FOCAL, principal=PRINCIPAL)
    assert fit.valid.all()
    assert (fit.translation - T_TRUE).abs().max() < 1e-3
    assert fit.error.max() < 0.05  # pixels
    assert torch.allclose(fit.project(x3), uv, atol=0.05)
    # the closed-form solve alone is already exact on noise-free data
    lin = fit_camera(x3, uv, focal=FOCAL, principal=PRINCIPAL, iterations=0)
    assert (lin.translation - T_TRUE).abs().max() < 1e-3


def test_ignores_missing_points():
    x3, uv = _scene(1)
    conf = torch.ones(uv.shape[:2])
    conf[:, :12] = 0.0  # 12 of 17 points missing, with garbage coordinates
    uv = uv.clone()
    uv[:, :6] = 1e5
    uv[:, 6:12] = float("nan")
    fit = fit_camera(x3, uv, conf, focal=FOCAL, principal=PRINCIPAL)
    assert (fit.translation - T_TRUE).abs().max() < 1e-3
    # two points are enough; one is not
    conf2 = torch.zeros_like(conf)
    conf2[:, [12, 16]] = 1.0
    conf2[1] = 0.0
    conf2[1, 14] = 1.0
    fit2 = fit_camera(x3, uv, conf2, focal=FOCAL, principal=PRINCIPAL)
    assert fit2.valid.tolist() == [True, False, True, True]
    assert torch.isnan(fit2.translation[1]).all()
    assert (fit2.translation[[0, 2, 3]] - T_TRUE[[0, 2, 3]]).abs().max() < 1e-3


def test_noisy_keypoints_and_outlier_weighting():
    x3, uv = _scene(2)
    g = torch.Generator().manual_seed(3)
    noisy = uv + torch.randn(uv.shape, generator=g)  # 1 px noise
    fit = fit_camera(x3, noisy, focal=FOCAL, principal=PRINCIPAL)
    # depth error ~ t_z · (pixel noise / keypoint spread in pixels): a few cm at most
    assert (fit.translation - T_TRUE).abs().max() < 0.05
    assert 0.5 < fit.error.mean() < 2.0
    # an outlier with a tiny weight barely moves the fit
    bad = noisy.clone()
    bad[:, 0] += 300.0
    conf = torch.ones(uv.shape[:2])
    conf[:, 0] = 0.11
    fit_w = fit_camera(x3, bad, conf, focal=FOCAL, principal=PRINCIPAL)
    fit_u = fit_camera(x3, bad, focal=FOCAL, principal=PRINCIPAL)
    err_w = (fit_w.translation - T_TRUE).norm(dim=-1)
    err_u = (fit_u.translation - T_TRUE).norm(dim=-1)
    assert (err_w < err_u).all()


def test_default_camera_from_image_size_and_single_frame():
    x3, _ = _scene(4)
    h, w = 720, 1280
    f = default_focal(h, w)
    assert f == 1280.0
    t = torch.tensor([0.2, 0.1, 5.0])
    cam = x3[0] @ WORLD_TO_CAMERA.T + t
    uv = f * cam[:, :2] / cam[:, 2:] + torch.tensor([(w - 1) / 2, (h - 1) / 2])
    fit = fit_camera(x3[0], uv, image_size=(h, w))  # unbatched inputs
    assert fit.translation.shape == (1, 3)
    assert torch.allclose(fit.translation[0], t, atol=1e-3)
    assert fit.focal.item() == 1280.0


def test_keeps_body_in_front_and_rejects_bad_input():
    x3, uv = _scene(5)
    # keypoints all at one pixel: the linear solve degenerates; depth must stay positive
    fit = fit_camera(x3, torch.full_like(uv, 300.0), focal=FOCAL, principal=PRINCIPAL)
    assert (fit.to_camera(x3)[..., 2] >= 0.1 - 1e-4).all()
    with pytest.raises(Key2MeshError, match="must match"):
        fit_camera(x3, uv[:, :5], focal=FOCAL, principal=PRINCIPAL)
    with pytest.raises(Key2MeshError, match="image_size"):
        fit_camera(x3, uv)
    with pytest.raises(Key2MeshError, match="confidence"):
        fit_camera(x3, uv, torch.ones(3), focal=FOCAL, principal=PRINCIPAL)
    # per-frame focal / principal of the wrong length, a focal that is not a positive number
    with pytest.raises(Key2MeshError, match="focal must be a scalar or one per frame"):
        fit_camera(x3, uv, focal=[1000.0, 1000.0], principal=PRINCIPAL)
    with pytest.raises(Key2MeshError, match="principal must be"):
        fit_camera(x3, uv, focal=FOCAL, principal=[320.0, 240.0, 1.0])
    for bad in (0.0, -1000.0, float("nan")):
        with pytest.raises(Key2MeshError, match="finite and > 0"):
            fit_camera(x3, uv, focal=bad, principal=PRINCIPAL)
    lists = fit_camera(x3, uv, focal=FOCAL.tolist(), principal=[PRINCIPAL.tolist()] * len(x3))
    fit = fit_camera(x3, uv, focal=FOCAL, principal=PRINCIPAL)
    torch.testing.assert_close(lists.translation, fit.translation)


def test_an_infinite_point_is_ignored_not_spread_to_its_frame():
    """An infinite pixel or 3D point gets weight 0 like a NaN one; before, inf · 0 = NaN in the
    normal equations made the frame's translation NaN while ``valid`` said True. A frame whose
    solve overflows (pixels near the float limit) is not valid."""
    x3, _ = _scene(6)
    x3 = x3.double()
    x3[:, 3, 2] = -1.5  # a hand stretched forward (its camera-frame z before translation: +1.5)
    cam = x3 @ WORLD_TO_CAMERA.double().T + T_TRUE[:, None].double()
    uv = FOCAL[:, None, None] * cam[..., :2] / cam[..., 2:3] + PRINCIPAL
    uv[0, 3, 0] = float("inf")
    uv[1, 3, 1] = -float("inf")
    x3[2, 5, 1] = float("inf")
    uv[3, 3, 0] = 1e308  # finite, confident, absurd
    fit = fit_camera(x3, uv, focal=FOCAL, principal=PRINCIPAL)
    assert fit.valid.tolist() == [True, True, True, False]
    assert (fit.translation[:3] - T_TRUE[:3]).abs().max() < 1e-3
    assert fit.error[:3].max() < 0.05 and torch.isnan(fit.translation[3]).all()


@pytest.mark.parametrize("size", [(720,), (720, 1280, 3), (-720, 1280), (0, 0), ("a", "b")])
def test_an_image_size_that_is_not_two_positive_numbers_is_one_line(size):
    """A frame's shape (H, W, 3), one number or a negative height: before, a TypeError from
    default_focal, or (-720, 1280) silently fitted with the principal point 360 px above the
    image."""
    x3, uv = _scene(7)
    with pytest.raises(Key2MeshError, match=r"image_size must be \(H, W\)"):
        fit_camera(x3, uv, image_size=size)


# ------------------------------------------------------------------- Qualisys calibration reader
QCA = """<?xml version='1.0' encoding='ASCII'?>
<calibration type="regular"><cameras>
 <camera active="1" serial="cam02" model="none">
  <fov_video bottom="719" left="0" right="1279" top="0"/>
  <transform r11="1" r12="0" r13="0" r21="0" r22="1" r23="0" r31="0" r32="0" r33="1" x="0" y="0" z="3000"/>
  <intrinsic centerPointU="{cu2}" centerPointV="{cv2}" focalLengthU="64000" focalLengthV="64000" radialDistortion1="0" radialDistortion2="0" tangentalDistortion1="0" tangentalDistortion2="0"/>
 </camera>
 <camera active="1" serial="cam01" model="none">
  <fov_video bottom="1019" left="100" right="1379" top="300"/>
  <transform r11="1" r12="0" r13="0" r21="0" r22="0" r23="1" r31="0" r32="-1" r33="0" x="0" y="-5000" z="1000"/>
  <intrinsic centerPointU="{cu1}" centerPointV="{cv1}" focalLengthU="64000" focalLengthV="64000" radialDistortion1="-0.064" radialDistortion2="0.128" tangentalDistortion1="0" tangentalDistortion2="0"/>
 </camera>
</cameras></calibration>
"""


def test_read_qca_calibration(tmp_path):
    from key2mesh.data.demo_inputs import read_qca_calibration

    path = tmp_path / "calib.qca.txt"
    # cam01 principal point (600, 400) inside its video window that starts at (100, 300)
    path.write_text(QCA.format(cu1=64 * 700, cv1=64 * 700, cu2=64 * 640, cv2=64 * 360))
    cal = read_qca_calibration(path)
    assert cal.names == ["cam01", "cam02"]  # sorted by name
    assert np.allclose(cal.size, [[1280, 720], [1280, 720]])
    assert np.allclose(cal.K[0], [[1000, 0, 600], [0, 1000, 400], [0, 0, 1]])
    # distortion coefficients act on normalised image coordinates: dimensionless, read as
    # they are (not /64 like the sensor-unit intrinsics: the corners of the Pose2Sim demo's
    # checkerboard images are most nearly a plane's with the file's values)
    assert np.allclose(cal.dist[0], [-0.064, 0.128, 0, 0])
    binned = read_qca_calibration(path, binning_factor=2)
    assert np.allclose(binned.K[0, :2, :2], cal.K[0, :2, :2] / 2)
    # the video window (left 100, top 300 sensor pixels) is binned too: the principal point
    # stays where it was in the picture, (600, 400) of 1280x720 → (300, 200) of 640x360
    assert np.allclose(binned.size[0], [640, 360])
    assert np.allclose(binned.K[0, :2, 2], [300, 200])
    assert np.allclose(binned.dist, cal.dist)  # the same lens, whatever the binning
    # cam01 stands 5 m behind the origin along -y, 1 m up, looking along +y (Qualisys: z up)
    assert np.allclose(cal.centers[0], [0, -5, 1])
    uv, depth = cal.project(np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 1.0], [0.0, 0.0, 2.0]]))
    assert np.allclose(depth[0], 5.0)
    assert np.allclose(uv[0], [[600, 400], [800, 400], [600, 200]])  # right → +u, up → −v
    # cam02 hangs 3 m up looking straight down; world +x is image right, world +y image up
    assert np.allclose(cal.centers[1], [0, 0, 3])
    uv2, depth2 = cal.project(np.array([[0.3, 0.0, 0.0], [0.0, 0.3, 0.0]]))
    assert np.allclose(depth2[1], 3.0)
    assert np.allclose(uv2[1], [[740, 360], [640, 260]])
    assert np.allclose(np.einsum("cij,cjk->cik", cal.R, cal.R.transpose(0, 2, 1)), np.eye(3))
    P = cal.projection_matrices()
    hom = P[0] @ np.array([1.0, 0.0, 1.0, 1.0])
    assert np.allclose(hom[:2] / hom[2], [800, 400])


def test_read_qca_errors(tmp_path):
    from key2mesh.data.demo_inputs import read_qca_calibration

    with pytest.raises(Key2MeshError, match="no such"):
        read_qca_calibration(tmp_path / "none.qca.txt")
    bad = tmp_path / "bad.qca.txt"
    bad.write_text("<calibration><cameras>")
    with pytest.raises(Key2MeshError, match="not a valid"):
        read_qca_calibration(bad)
    empty = tmp_path / "empty.qca.txt"
    empty.write_text("<calibration><cameras/></calibration>")
    with pytest.raises(Key2MeshError, match="no <cameras>"):
        read_qca_calibration(empty)


def test_pose2sim_demo_calibration_is_consistent():
    from key2mesh.data.demo_inputs import demo_available, pose2sim_calibration

    if not demo_available("pose2sim-cam01"):
        pytest.skip("pose2sim wheel not cached (needs a download)")

    cal = pose2sim_calibration()
    assert cal.names == ["cam01", "cam02", "cam03", "cam04"]
    assert np.allclose(np.linalg.det(cal.R), 1.0)
    # every camera sees the capture volume (a person standing at the origin, z up) in front of it,
    # inside its portrait 1088x1920 frame, with the head above the feet
    uv, depth = cal.project(np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 1.8]]))
    assert (depth > 1.5).all() and (depth < 6).all()
    assert ((uv >= 0) & (uv <= cal.size[:, None, :])).all()
    assert (uv[:, 1, 1] < uv[:, 0, 1]).all()
    # cameras about 2 m high, 2-5 m from the centre
    assert np.all((cal.centers[:, 2] > 1.5) & (cal.centers[:, 2] < 2.5))
    assert np.all(np.linalg.norm(cal.centers[:, :2], axis=1) < 5.0)
    assert math.isclose(cal.K[0, 0, 0], 107599.671875 / 64, rel_tol=1e-9)
