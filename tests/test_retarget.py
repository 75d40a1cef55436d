"""SMPL → anny retargeting: the SMPL zero pose becomes anny's T-pose and limb directions survive."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from key2mesh.data.mocap.retarget import (
    anny_rest_alignment,
    retarget_smpl_to_anny,
    smpl_bone_directions,
)
from key2mesh.keypoints.sets import SMPL24

J = {n.removeprefix("smpl_"): i for i, n in enumerate(SMPL24)}
LIMBS = [
    (a, b)
    for side in ("left", "right")
    for a, b in (
        ("hip", "knee"),
        ("knee", "ankle"),
        ("collar", "shoulder"),
        ("shoulder", "elbow"),
        ("elbow", "wrist"),
    )
    for a, b in [(f"{side}_{a}", f"{side}_{b}")]
]


def anny_joints(anny_body, smpl_rotmats: np.ndarray) -> np.ndarray:
    r = retarget_smpl_to_anny(smpl_rotmats.astype(np.float32), anny_body)
    with torch.no_grad():
        return anny_body(torch.from_numpy(r)).joints.double().numpy()


def identity(frames: int = 1) -> np.ndarray:
    return np.broadcast_to(np.eye(3), (frames, 24, 3, 3)).copy()


def test_zero_pose_is_a_tpose(anny_body):
    plain = anny_body(torch.eye(3).expand(1, 24, 3, 3)).joints[0].detach().numpy()
    j = anny_joints(anny_body, identity())[0]
    for side in ("left", "right"):
        sh = j[J[f"{side}_shoulder"]]
        for part in ("elbow", "wrist"):
            assert abs(j[J[f"{side}_{part}"], 1] - sh[1]) < 0.02, (side, part)
        sign = 1 if side == "left" else -1
        assert sign * (j[J[f"{side}_wrist"], 0] - sh[0]) > 0.4  # arm stretched sideways
        # anny's own rest pose (identity) hangs the wrists > 25 cm below the shoulders
        assert plain[J[f"{side}_shoulder"], 1] - plain[J[f"{side}_wrist"], 1] > 0.25
        for a, b in (("hip", "knee"), ("knee", "ankle")):
            d = j[J[f"{side}_{b}"]] - j[J[f"{side}_{a}"]]
            assert (
                d[1] < 0 and np.degrees(np.arccos(-d[1] / np.linalg.norm(d))) < 1.0
            )  # straight down
    assert j[J["head"], 1] > j[J["neck"], 1] > j[J["pelvis"], 1]


def test_shoulder_adduction_brings_the_arm_down(anny_body):
    r = identity()
    r[0, J["left_shoulder"]] = Rotation.from_euler("z", -90, degrees=True).as_matrix()  # +x → -y
    r[0, J["right_shoulder"]] = Rotation.from_euler("z", 90, degrees=True).as_matrix()  # -x → -y
    j = anny_joints(anny_body, r)[0]
    for side in ("left", "right"):
        arm = j[J[f"{side}_wrist"]] - j[J[f"{side}_shoulder"]]
        assert np.degrees(np.arccos(-arm[1] / np.linalg.norm(arm))) < 2.0, side  # points down
        assert np.linalg.norm(arm) > 0.4


def test_limb_directions_round_trip_for_random_poses(anny_body):
    rng = np.random.default_rng(0)
    r = (
        Rotation.from_rotvec(rng.normal(scale=0.5, size=(8 * 24, 3)))
        .as_matrix()
        .reshape(8, 24, 3, 3)
    )
    j = anny_joints(anny_body, r)
    want = smpl_bone_directions(r)
    for a, b in LIMBS:
        got = j[:, J[b]] - j[:, J[a]]
        got /= np.linalg.norm(got, axis=-1, keepdims=True)
        err = np.degrees(np.arccos(np.clip((got * want[:, J[a]]).sum(-1), -1, 1)))
        assert err.max() < 2.0, (a, b, err.max())


def test_torch_and_numpy_agree_and_alignment_is_cached(anny_body):
    rng = np.random.default_rng(1)
    r = (
        Rotation.from_rotvec(rng.normal(size=(3 * 24, 3)))
        .as_matrix()
        .reshape(3, 24, 3, 3)
        .astype(np.float32)
    )
    out_np = retarget_smpl_to_anny(r, anny_body)
    out_t = retarget_smpl_to_anny(torch.from_numpy(r), anny_body)
    assert isinstance(out_np, np.ndarray) and out_np.dtype == np.float32 and torch.is_tensor(out_t)
    np.testing.assert_allclose(out_t.numpy(), out_np, atol=1e-5)
    np.testing.assert_allclose(
        out_np @ np.swapaxes(out_np, -1, -2), np.broadcast_to(np.eye(3), out_np.shape), atol=1e-5
    )
    assert anny_rest_alignment(anny_body) is anny_rest_alignment(anny_body)
    # the axial chain is left as is: a spine rotation passes through unchanged
    assert np.allclose(out_np[:, J["spine2"]], r[:, J["spine2"]], atol=1e-6)


def test_bone_directions_fk_by_hand():
    r = identity(1)
    r[0, J["left_hip"]] = Rotation.from_euler(
        "x", -90, degrees=True
    ).as_matrix()  # leg forward (+z)
    d = smpl_bone_directions(r)[0]
    np.testing.assert_allclose(d[J["left_hip"]], [0, 0, 1], atol=1e-9)
    np.testing.assert_allclose(d[J["left_knee"]], [0, 0, 1], atol=1e-9)  # child follows
    np.testing.assert_allclose(d[J["right_knee"]], [0, -1, 0], atol=1e-9)
    assert d.shape == (24, 3) and np.allclose(np.linalg.norm(d, axis=-1), 1)


@pytest.mark.parametrize("frames", [1, 5])
def test_shapes(anny_body, frames):
    assert retarget_smpl_to_anny(identity(frames), anny_body).shape == (frames, 24, 3, 3)
