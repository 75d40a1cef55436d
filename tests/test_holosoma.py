"""Climbing MoCap from the holosoma-retargeting wheel: inventory, frame, joint names, IK."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from key2mesh.data.mocap import load_clips, load_report
from key2mesh.data.mocap.holosoma import HOLOSOMA_JOINTS, JOINT_NAMES, ZUP_TO_YUP, load_holosoma
from key2mesh.data.mocap.ik import fit_joints
from key2mesh.errors import Key2MeshError
from key2mesh.keypoints.sets import SMPL24


@pytest.fixture(scope="module")
def clips():
    return load_clips("holosoma", target_fps=None)


def col(name: str) -> int:
    return JOINT_NAMES.index(name)


def test_inventory_at_120_and_30_fps(clips):
    assert len(clips) == 5 and all(c.fps == 120.0 for c in clips)
    # frame ranges from the file names (f900-3700 etc., inclusive ends)
    assert [c.num_frames for c in clips] == [2801, 2423, 3011, 2401, 2303]
    report = load_report("holosoma")
    assert report.num_skipped == 0
    assert [c.fps for c in report.clips] == [30.0] * 5
    assert sum(c.num_frames for c in report.clips) == 3237


def test_joint_names(clips):
    assert len(HOLOSOMA_JOINTS) == 53 == len(JOINT_NAMES)
    smpl = [n for n in JOINT_NAMES if n.startswith("smpl_")]
    assert len(smpl) == len(set(smpl)) == 23  # every SMPL-24 joint but spine2
    assert set(SMPL24) - set(smpl) == {"smpl_spine2"}
    assert all(c.joint_names == JOINT_NAMES and c.rotmats is None for c in clips)


def test_world_frame_is_y_up_left_x_forward_z(clips):
    assert np.isclose(np.linalg.det(ZUP_TO_YUP), 1.0)
    assert np.allclose(ZUP_TO_YUP @ [0, 0, 1], [0, 1, 0])
    j = np.concatenate([c.joints for c in clips])
    up = j[:, col("smpl_head"), 1] - j[:, col("smpl_pelvis"), 1]
    assert (up > 0.0).mean() > 0.99 and np.median(up) > 0.6  # head above the pelvis
    first = clips[0].joints[0]
    left = first[col("smpl_left_shoulder")] - first[col("smpl_right_shoulder")]
    forward = first[col("smpl_left_foot")] - first[col("smpl_left_ankle")]  # toes point forward
    assert left[0] > 0.25 and forward[2] > 0.1
    assert first[:, 1].min() > -0.05  # feet on the ground (y = 0) or above


def test_bones_are_rigid(clips):
    j = clips[1].joints
    for a, b in (("smpl_left_hip", "smpl_left_knee"), ("smpl_right_elbow", "smpl_right_wrist")):
        length = np.linalg.norm(j[:, col(a)] - j[:, col(b)], axis=-1)
        assert 0.2 < length.mean() < 0.5 and length.std() < 0.005


def test_bad_file_is_skipped(tmp_path, clips):
    bad = tmp_path / "bad_joint_positions.npy"
    np.save(bad, np.zeros((10, 52, 3), dtype=np.float32))
    good = tmp_path / "mocap_climb_seq_9_joint_positions_f0-3.npy"
    np.save(good, np.zeros((4, 53, 3), dtype=np.float32))
    report = load_holosoma(paths=[bad, good], target_fps=None)
    assert report.num_skipped == 1 and "bad_joint_positions.npy" in report.skipped[0][0]
    assert "(F, 53, 3)" in report.skipped[0][1]
    assert [c.name for c in report.clips] == ["mocap_climb_seq_9"]
    with pytest.raises(Key2MeshError, match="bad_joint_positions"):
        from key2mesh.data.mocap.holosoma import load_climb_file

        load_climb_file(bad)


def test_ik_fits_a_climb_segment(anny_body, clips):
    clip = clips[2].subsample(30.0)
    seg = clip.joints[100:160]
    res = fit_joints(anny_body, seg, clip.joint_names)
    assert res.error.mean() < 0.01  # weighted mean over the used targets, metres
    limbs = [
        SMPL24.index(n)
        for n in ("smpl_left_wrist", "smpl_right_wrist", "smpl_left_ankle", "smpl_right_ankle")
    ]
    target = torch.as_tensor(seg[:, [col(SMPL24[i]) for i in limbs]])
    assert (res.joints[:, limbs] - target).norm(dim=-1).mean() < 0.01
