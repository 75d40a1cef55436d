import math

import pytest
import torch

from key2mesh.geometry import (
    VirtualCamera,
    axis_angle_to_matrix,
    bbox_normalize,
    matrix_to_axis_angle,
    matrix_to_rot6d,
    rot6d_to_matrix,
    rotation_x,
    rotation_y,
)


def test_camera_projects_known_point():
    cam = VirtualCamera()  # f = 256, principal point 0, 6 m away on +z
    # A point 1 m up and 0.5 m to the body's left, 1 m towards the camera.
    uv = cam.project(torch.tensor([[[0.5, 1.0, 1.0]]]))
    # camera coords: (0.5, -1, 6 - 1 = 5) → u = 256·0.5/5, v = 256·(−1)/5
    assert torch.allclose(uv, torch.tensor([[[25.6, -51.2]]]), atol=1e-5)
    assert torch.allclose(cam.project(torch.zeros(1, 1, 3)), torch.zeros(1, 1, 2))


def test_rot6d_round_trip_and_gram_schmidt():
    r = axis_angle_to_matrix(torch.randn(10, 3))
    assert torch.allclose(rot6d_to_matrix(matrix_to_rot6d(r)), r, atol=1e-5)
    # arbitrary 6D input gives a proper rotation
    m = rot6d_to_matrix(torch.randn(7, 6))
    assert torch.allclose(m @ m.transpose(-1, -2), torch.eye(3).expand(7, 3, 3), atol=1e-5)
    assert torch.allclose(torch.linalg.det(m), torch.ones(7), atol=1e-5)
    with pytest.raises(ValueError):
        rot6d_to_matrix(torch.randn(3, 5))


def test_axis_rotations_and_axis_angle():
    assert torch.allclose(
        rotation_x(math.pi / 2) @ torch.tensor([0.0, 1.0, 0.0]),
        torch.tensor([0.0, 0.0, 1.0]),
        atol=1e-6,
    )
    assert torch.allclose(
        rotation_y(math.pi / 2) @ torch.tensor([0.0, 0.0, 1.0]),
        torch.tensor([1.0, 0.0, 0.0]),
        atol=1e-6,
    )
    v = torch.tensor([[0.3, -0.2, 0.1]])
    assert torch.allclose(matrix_to_axis_angle(axis_angle_to_matrix(v)), v, atol=1e-6)


def test_bbox_normalize_hand_computed():
    kp = torch.tensor([[[10.0, 20.0], [30.0, 60.0], [1000.0, 1000.0]]])
    conf = torch.tensor([[1.0, 0.9, 0.05]])  # third point below the 0.1 threshold
    out, valid = bbox_normalize(kp, conf)
    # box x∈[10,30], y∈[20,60]; longest side 40, centre (20, 40) → (x−20)/40+0.5
    assert torch.allclose(out[0, :2], torch.tensor([[0.25, 0.0], [0.75, 1.0]]))
    assert torch.equal(out[0, 2], torch.tensor([-1.0, -1.0]))
    assert valid.tolist() == [[True, True, False]]
    # invariant to scale and offset of the image
    out2, _ = bbox_normalize(kp * 3 + 7, conf)
    assert torch.allclose(out[0, :2], out2[0, :2], atol=1e-6)


def test_bbox_normalize_zero_confidence_is_missing_at_threshold_zero():
    """A point of confidence 0 (not detected; readers write (0, 0) or anything) stays missing
    when the threshold is 0: it counted as valid and stretched the box to it."""
    kp = torch.tensor([[[10.0, 20.0], [30.0, 60.0], [1000.0, 1000.0]]])
    conf = torch.tensor([[1.0, 0.9, 0.0]])
    out, valid = bbox_normalize(kp, conf, threshold=0.0)
    assert valid.tolist() == [[True, True, False]]
    assert torch.allclose(out[0, :2], torch.tensor([[0.25, 0.0], [0.75, 1.0]]))
    from key2mesh.keypoints.io import confident_points

    assert confident_points(conf.numpy(), 0.0).tolist() == [[True, True, False]]


def test_bbox_normalize_no_valid_joint():
    out, valid = bbox_normalize(torch.ones(1, 4, 2), torch.zeros(1, 4))
    assert not valid.any() and torch.all(out == -1)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_bbox_normalize_non_finite_point_is_missing_not_contagious(bad):
    """A confident point without a finite position is missing; the box comes from the others."""
    kp = torch.tensor([[[10.0, 20.0], [30.0, 60.0], [bad, 5.0]]])
    out, valid = bbox_normalize(kp, torch.ones(1, 3))
    assert valid.tolist() == [[True, True, False]]
    assert torch.allclose(out[0, :2], torch.tensor([[0.25, 0.0], [0.75, 1.0]]))
    assert torch.equal(out[0, 2], torch.tensor([-1.0, -1.0]))


def test_per_sample_camera_distance_matches_separate_cameras():
    from key2mesh.geometry.camera import VirtualCamera

    pts = torch.tensor([[[0.1, 0.5, 0.2], [-0.3, -0.8, 0.0]], [[0.4, 0.0, -0.1], [0.0, 0.9, 0.3]]])
    dist = torch.tensor([2.5, 8.0])
    out = VirtualCamera().project(pts, dist)
    for i, d in enumerate(dist.tolist()):
        assert torch.allclose(out[i], VirtualCamera(distance=d).project(pts[i]), atol=1e-5)
    # hand value: x = f·X / (d − Z) = 256·0.1 / (2.5 − 0.2)
    assert abs(out[0, 0, 0].item() - 256 * 0.1 / 2.3) < 1e-4


def test_camera_in_front_marks_points_behind_the_camera():
    cam = VirtualCamera()  # 6 m away on +z, looking at the origin
    pts = torch.tensor([[[0.0, 0.0, 0.0], [0.5, 0.0, 5.99], [0.5, 0.0, 6.0], [0.5, 0.0, 7.0]]])
    assert cam.in_front(pts).tolist() == [[True, True, False, False]]
    # per-sample distances (distance augmentation)
    two = pts.expand(2, 4, 3)
    assert cam.in_front(two, torch.tensor([6.0, 8.0])).tolist() == [
        [True, True, False, False],
        [True, True, True, True],
    ]


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_bbox_normalize_gradient_ignores_a_non_finite_missing_point(bad):
    """A missing point at NaN / inf gets no gradient and gives none to the others: before, the
    box's size picked up 0 · NaN and every valid joint's gradient was NaN."""
    kp = torch.tensor([[0.0, 0.0], [2.0, 1.0], [1.0, 0.5], [bad, 5.0]], requires_grad=True)
    out, _ = bbox_normalize(kp, torch.tensor([1.0, 1.0, 1.0, 0.0]))
    out[2, 0].backward()
    # box x∈[x0, x1] = [0, 2] (the longest side): out = (x2 − (x0 + x1)/2) / (x1 − x0) + 0.5
    # d/dx2 = 1/2; d/dx0 = d/dx1 = (−(x1 − x0)/2 ∓ (x2 − 1)) / (x1 − x0)² = −1/4 (x2 = 1)
    expected = torch.tensor([[-0.25, 0.0], [-0.25, 0.0], [0.5, 0.0], [0.0, 0.0]])
    assert torch.equal(kp.grad, expected)
