"""PoseSampler: mirroring, perturbation statistics, limb mixing, coverage metrics."""

from __future__ import annotations

import math

import pytest
import torch

from key2mesh.data.mocap.ik import KinematicSkeleton
from key2mesh.data.mocap.sampler import (
    LIMB_GROUPS,
    MIRROR_PERMUTATION,
    PoseSampler,
    geodesic_deg,
    mirror_poses,
    nearest_pose_distance,
    pose_coverage,
)
from key2mesh.errors import Key2MeshError
from key2mesh.geometry import axis_angle_to_matrix
from key2mesh.keypoints.sets import SMPL24

KINEMATIC = list(range(22))  # anny's hand points are not kinematic


def random_poses(n: int, scale: float = 0.4, seed: int = 0) -> torch.Tensor:
    return axis_angle_to_matrix(
        torch.randn(n, 24, 3, generator=torch.Generator().manual_seed(seed)) * scale
    )


def test_mirror_permutation_swaps_sides():
    assert SMPL24[MIRROR_PERMUTATION[SMPL24.index("smpl_left_elbow")]] == "smpl_right_elbow"
    assert MIRROR_PERMUTATION[0] == 0 and sorted(MIRROR_PERMUTATION) == list(range(24))


def test_mirroring_twice_is_identity():
    rot = random_poses(32)
    once = mirror_poses(rot)
    assert not torch.allclose(once, rot, atol=1e-3)
    assert torch.allclose(mirror_poses(once), rot, atol=1e-6)
    assert torch.allclose(torch.linalg.det(once), torch.ones(32, 24), atol=1e-5)  # still rotations


def test_mirrored_pose_joints_are_the_mirror_image(anny_body):
    rot = random_poses(8, 0.5, seed=1)
    flip = torch.tensor([-1.0, 1.0, 1.0])
    # exact on a symmetric skeleton (anny's rest joints symmetrised)
    rest = KinematicSkeleton.from_body(anny_body).rest
    sym = 0.5 * (rest + rest[list(MIRROR_PERMUTATION)] * flip)
    skel = KinematicSkeleton(sym)
    j, _ = skel(rot)
    jm, _ = skel(mirror_poses(rot))
    assert torch.allclose(jm, j[:, list(MIRROR_PERMUTATION)] * flip, atol=1e-5)
    # and on the real anny body within a few mm (its mesh is symmetric up to modelling noise)
    j = anny_body(rot).joints
    jm = anny_body(mirror_poses(rot)).joints
    err = (jm - j[:, list(MIRROR_PERMUTATION)] * flip).norm(dim=-1)[:, KINEMATIC]
    assert err.max() < 0.005


def test_perturbation_magnitude_statistics():
    bank = random_poses(64)
    sigma = 4.0
    s = PoseSampler(
        bank, p_mirror=0, p_mix=0, p_perturb=1.0, perturb_deg=sigma, max_perturb_deg=180, seed=3
    )
    out, info = s.sample(4000, return_info=True)
    angle = geodesic_deg(bank[info["index"]], out)  # (B, 24)
    assert torch.allclose(angle[:, 0], torch.zeros(4000), atol=0.05)  # the root is left alone
    # |v| of v ~ N(0, σ² I₃) is Maxwell distributed: mean 2σ·sqrt(2/π)
    expected = 2 * sigma * math.sqrt(2 / math.pi)
    assert abs(angle[:, 1:].mean().item() - expected) / expected < 0.03
    clamped = PoseSampler(
        bank, p_mirror=0, p_mix=0, p_perturb=1.0, perturb_deg=10.0, max_perturb_deg=6.0, seed=3
    )
    out, info = clamped.sample(2000, return_info=True)
    angle = geodesic_deg(bank[info["index"]], out)[:, 1:]
    assert angle.max() <= 6.0 + 0.05 and angle.mean() > 5.0


def test_perturbation_probability():
    bank = random_poses(16)
    s = PoseSampler(bank, p_mirror=0, p_mix=0, p_perturb=0.3, perturb_deg=5.0, seed=0)
    out, info = s.sample(5000, return_info=True)
    changed = geodesic_deg(bank[info["index"]], out)[:, 1:].amax(1) > 0.05
    assert torch.equal(changed, info["perturbed"])
    assert abs(changed.float().mean().item() - 0.3) < 0.03


def test_limb_mixing_takes_each_subtree_from_its_source_frame():
    bank = random_poses(50, seed=4)
    s = PoseSampler(bank, p_mirror=0, p_perturb=0, p_mix=1.0, p_mix_group=1.0, seed=1)
    out, info = s.sample(200, return_info=True)
    src = info["sources"]  # (B, G)
    assert src.shape == (200, len(LIMB_GROUPS))
    for g, joints in enumerate(LIMB_GROUPS.values()):
        assert torch.equal(out[:, list(joints)], bank[src[:, g]][:, list(joints)])
    own = info["index"]
    assert torch.equal(out[:, 0], bank[own, 0])  # the pelvis stays the base frame's
    assert (src != own[:, None]).float().mean() > 0.9  # sources really differ from the base
    half = PoseSampler(bank, p_mirror=0, p_perturb=0, p_mix=1.0, p_mix_group=0.5, seed=2)
    _, info = half.sample(2000, return_info=True)
    mixed = (info["sources"] != info["index"][:, None]).float().mean().item()
    assert abs(mixed - 0.5 * 49 / 50) < 0.03


def test_seeded_and_reproducible():
    bank = random_poses(20)
    a = PoseSampler(bank, seed=7).sample(64)
    b = PoseSampler(bank, seed=7).sample(64)
    c = PoseSampler(bank, seed=8).sample(64)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.allclose(a.transpose(-1, -2) @ a, torch.eye(3).expand(64, 24, 3, 3), atol=1e-5)


def test_coverage_metrics():
    bank = random_poses(100, seed=1)
    assert torch.allclose(nearest_pose_distance(bank[:10], bank), torch.zeros(10), atol=0.05)
    far = random_poses(10, seed=2)
    assert (nearest_pose_distance(far, bank) > 5).all()
    same = bank[:1].expand(100, -1, -1, -1)
    assert pose_coverage(same) < pose_coverage(bank)
    # one pose occupies exactly one cell per joint: 1 / (cells in the ball)
    assert pose_coverage(same, cell_deg=90.0) == pytest.approx(1 / 32)
    s = PoseSampler(bank, seed=0)
    assert pose_coverage(s.sample(2000)) > pose_coverage(bank)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"bank": torch.zeros(5, 23, 3, 3)}, "pose bank"),
        ({"bank": torch.zeros(0, 24, 3, 3)}, "pose bank"),
        ({"p_mirror": 1.5}, "p_mirror"),
        ({"perturb_deg": [1.0, 2.0]}, "perturb_deg"),
    ],
)
def test_bad_settings_raise(kwargs, match):
    args = {"bank": random_poses(4)} | kwargs
    with pytest.raises(Key2MeshError, match=match):
        PoseSampler(**args)
