"""DeepMimic clips from the pybullet wheel → SMPL-convention rotations and FK joints."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from key2mesh.data.mocap import load_report
from key2mesh.data.mocap.deepmimic import (
    JOINT_NAMES,
    URDF_MEMBER,
    convert_frames,
    load_deepmimic,
    load_skeleton,
)
from key2mesh.data.mocap.retarget import retarget_smpl_to_anny, smpl_bone_directions
from key2mesh.data.wheels import extract
from key2mesh.keypoints.sets import SMPL24

P = {n: i for i, n in enumerate(JOINT_NAMES)}
S = {n: i for i, n in enumerate(SMPL24)}
LIMBS = [
    (f"smpl_{s}_{a}", f"smpl_{s}_{b}")
    for s in ("left", "right")
    for a, b in (
        ("hip", "knee"),
        ("knee", "ankle"),
        ("ankle", "foot"),
        ("shoulder", "elbow"),
        ("elbow", "wrist"),
    )
]
RIGHT_KNEE, LEFT_KNEE = 20, 34  # columns of the knee angles in a 44-value frame


@pytest.fixture(scope="module")
def report():
    return load_report("deepmimic")


@pytest.fixture(scope="module")
def clips(report):
    return {c.name: c for c in report.clips}


@pytest.fixture(scope="module")
def skeleton():
    return load_skeleton(extract("pybullet", URDF_MEMBER)[0])


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def angle_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.degrees(np.arccos(np.clip((unit(a) * unit(b)).sum(-1), -1, 1)))


def raw_frames(name: str) -> np.ndarray:
    path = next(
        p for p in extract("pybullet", "pybullet_data/data/motions/", (".txt",)) if p.stem == name
    )
    return np.asarray(json.loads(path.read_text())["Frames"])


def test_clip_inventory(report, clips):
    assert report.num_skipped == 0
    assert len(clips) == 20 and not any("laikago" in n for n in clips)
    assert sum(c.num_frames for c in clips.values()) == 1810
    assert clips["humanoid3d_walk"].num_frames == 39 and clips["humanoid3d_walk"].fps == 30.0
    assert clips["humanoid3d_cartwheel"].fps == 60.0 and clips["humanoid3d_spin"].fps == 24.0
    assert sum(n.startswith("walker_") for n in clips) == 5
    for c in clips.values():
        assert (
            c.source == "deepmimic"
            and c.rotmats.shape == (c.num_frames, 24, 3, 3)
            and c.rotmats.dtype == np.float32
        )
        assert (
            c.joints.shape == (c.num_frames, len(JOINT_NAMES), 3) and c.joint_names == JOINT_NAMES
        )
    sub = {c.name: c for c in load_deepmimic(target_fps=30).clips}
    assert (
        sub["humanoid3d_cartwheel"].num_frames == 82 and sub["humanoid3d_cartwheel"].fps == 30.0
    )  # 164 at 60 fps
    assert sub["humanoid3d_walk"].num_frames == 39


def walking_frame_axes(clip):
    """Up, walking direction (from the root trajectory, not from any rotation) and left = up × fwd."""
    up = np.array([0.0, 1.0, 0.0])
    fwd = clip.joints[-1, P["smpl_pelvis"]] - clip.joints[0, P["smpl_pelvis"]]
    fwd = unit(fwd - fwd[1] * up)
    return up, fwd, np.cross(up, fwd)


@pytest.mark.parametrize("name", ["humanoid3d_walk", "walker_0walk_forward", "humanoid3d_run"])
def test_walking_stands_upright_left_is_left_knees_bend_back(clips, name):
    c = clips[name]
    j = c.joints
    up, fwd, left = walking_frame_axes(c)
    assert (j[:, P["deepmimic_head_center"], 1] > j[:, P["smpl_neck"], 1] + 0.1).all()
    assert (j[:, P["smpl_neck"], 1] > j[:, P["smpl_pelvis"], 1] + 0.3).all()
    ankles_y = j[:, [P["smpl_left_ankle"], P["smpl_right_ankle"]], 1]
    assert (ankles_y.max(1) < j[:, P["smpl_pelvis"], 1] - 0.15).all()  # feet below the pelvis
    assert (ankles_y.min(1) < j[:, P["smpl_pelvis"], 1] - 0.6).all()  # the stance leg is long
    for side in ("left", "right"):
        toe_forward = (j[:, P[f"smpl_{side}_foot"]] - j[:, P[f"smpl_{side}_ankle"]]) @ fwd
        assert np.median(toe_forward) > 0.05  # feet point where the body walks
    # the body faces its walking direction (+z in the SMPL frame) and its left hip is on its left
    assert fwd[2] > 0.9
    assert ((j[:, P["smpl_left_hip"]] - j[:, P["smpl_right_hip"]]) @ left > 0.12).all()
    assert ((j[:, P["smpl_left_shoulder"]] - j[:, P["smpl_right_shoulder"]]) @ left > 0.2).all()
    if name.startswith("humanoid3d"):
        raw = raw_frames(name)
        for side, col in (("left", LEFT_KNEE), ("right", RIGHT_KNEE)):
            thigh = j[:, P[f"smpl_{side}_knee"]] - j[:, P[f"smpl_{side}_hip"]]
            shin = j[:, P[f"smpl_{side}_ankle"]] - j[:, P[f"smpl_{side}_knee"]]
            # FK bend = the file's knee angle (negative = flexion) ...
            np.testing.assert_allclose(angle_deg(thigh, shin), -np.degrees(raw[:, col]), atol=0.5)
            # ... and the shin swings backwards: thigh × shin points to the body's left
            bent = raw[:, col] < -0.3
            assert bent.sum() > 5 and (np.cross(thigh, shin)[bent] @ left > 0).all()


def test_smpl_rotations_point_limbs_like_the_fk_in_every_clip(clips):
    worst = 0.0
    for c in clips.values():
        d = smpl_bone_directions(c.rotmats)
        for a, b in LIMBS:
            err = angle_deg(c.joints[:, P[b]] - c.joints[:, P[a]], d[:, S[a]])
            worst = max(worst, float(err.max()))
        # torso: the chest rotation is spread over spine1..3, so the spine points pelvis → neck-ish
        spine = angle_deg(
            c.joints[:, P["smpl_neck"]] - c.joints[:, P["deepmimic_chest"]], d[:, S["smpl_spine3"]]
        )
        assert spine.max() < 25, c.name
    assert worst < 10.0


def test_rest_frame_becomes_a_standing_smpl_pose(skeleton):
    frame = np.zeros((1, 44))
    frame[0, 0], frame[0, 2] = 1 / 30, 0.9
    frame[0, [4, 8, 12, 16, 21, 25, 30, 35, 39]] = 1.0  # identity quaternions (w first)
    rot, joints = convert_frames(frame, skeleton)
    # arms hang down: shoulders are T-pose arms turned down by 90° (left about -z, right about +z)
    np.testing.assert_allclose(
        rot[0, S["smpl_left_shoulder"]],
        Rotation.from_euler("z", -90, degrees=True).as_matrix(),
        atol=1e-9,
    )
    np.testing.assert_allclose(
        rot[0, S["smpl_right_shoulder"]],
        Rotation.from_euler("z", 90, degrees=True).as_matrix(),
        atol=1e-9,
    )
    np.testing.assert_allclose(rot[0, S["smpl_left_elbow"]], np.eye(3), atol=1e-9)
    d = smpl_bone_directions(rot)[0]
    for j in ("left_hip", "right_knee", "left_shoulder", "right_elbow"):
        np.testing.assert_allclose(d[S[f"smpl_{j}"]], [0, -1, 0], atol=1e-9)
    np.testing.assert_allclose(d[S["smpl_spine2"]], [0, 1, 0], atol=1e-9)
    # FK: root at the given height, left side at +x, ~1.6 m tall
    assert joints[0, P["smpl_pelvis"], 1] == pytest.approx(0.9)
    assert joints[0, P["smpl_left_hip"], 0] > 0.05 > -0.05 > joints[0, P["smpl_right_hip"], 0]
    height = (
        joints[0, P["deepmimic_head_center"], 1]
        - joints[0, [P["smpl_left_ankle"], P["smpl_right_ankle"]], 1].min()
    )
    assert 1.3 < height < 1.7


def test_retargeted_onto_anny_keeps_limb_directions(clips, anny_body):
    c = clips["humanoid3d_walk"]
    frames = slice(0, 39, 6)
    r = retarget_smpl_to_anny(c.rotmats[frames], anny_body)
    with torch.no_grad():
        j = anny_body(torch.from_numpy(r)).joints.numpy()
    for a, b in LIMBS:
        if a.endswith("ankle"):
            continue  # anny's foot joint is a toe-midpoint, not a bone
        err = angle_deg(j[:, S[b]] - j[:, S[a]], c.joints[frames, P[b]] - c.joints[frames, P[a]])
        assert err.max() < 10.0, (a, b, err.max())


def test_bad_files_are_skipped_and_counted(tmp_path, caplog):
    (tmp_path / "broken.txt").write_text("{not json")
    (tmp_path / "dog.txt").write_text(
        json.dumps({"Loop": "wrap", "Frames": [[0.03] + [0.0] * 19] * 3})
    )
    nan = [[1 / 30] + [0.0] * 43] * 2
    nan[1] = [1 / 30, float("nan")] + [0.0] * 42
    (tmp_path / "nan.txt").write_text(json.dumps({"Frames": nan}))
    (tmp_path / "keys.txt").write_text(json.dumps({"Loop": "none", "frames": []}))
    with caplog.at_level(logging.WARNING):
        rep = load_deepmimic(paths=sorted(tmp_path.iterdir()))
    assert rep.clips == [] and rep.num_skipped == 4
    reasons = dict((p.rsplit("/", 1)[-1], r) for p, r in rep.skipped)
    assert "not a readable DeepMimic JSON" in reasons["broken.txt"]
    assert "expected (F > 0, 44)" in reasons["dog.txt"] and "(3, 20)" in reasons["dog.txt"]
    assert "frame 1 holds NaN" in reasons["nan.txt"]
    assert "found: Loop, frames" in reasons["keys.txt"]
    assert "dog.txt" in caplog.text


def test_fk_matches_pybullets_own_fk_when_installed(clips):
    """Ground truth for the file layout, quaternion order and knee/elbow axes (needs pybullet)."""
    p = pytest.importorskip("pybullet")
    from key2mesh.data.mocap.deepmimic import LAYOUT, dm_to_smpl

    urdf = extract("pybullet", URDF_MEMBER)[0]
    cid = p.connect(p.DIRECT)
    try:
        body = p.loadURDF(str(urdf), globalScaling=0.25, physicsClientId=cid)
        index = {
            p.getJointInfo(body, i, physicsClientId=cid)[1].decode(): i
            for i in range(p.getNumJoints(body, physicsClientId=cid))
        }
        for name in ("humanoid3d_cartwheel", "humanoid3d_punch"):
            raw, c = raw_frames(name), clips[name]
            for k in range(0, len(raw), 20):
                x = raw[k]
                p.resetBasePositionAndOrientation(
                    body, x[1:4], [x[5], x[6], x[7], x[4]], physicsClientId=cid
                )
                col = 8
                for joint, width in LAYOUT[1:]:
                    if width == 4:
                        p.resetJointStateMultiDof(
                            body,
                            index[joint],
                            [x[col + 1], x[col + 2], x[col + 3], x[col]],
                            physicsClientId=cid,
                        )
                    else:
                        p.resetJointState(body, index[joint], x[col], physicsClientId=cid)
                    col += width
                for point in ("smpl_left_knee", "smpl_right_wrist", "smpl_left_ankle", "smpl_neck"):
                    link = index["neck" if point == "smpl_neck" else point.removeprefix("smpl_")]
                    ref = dm_to_smpl() @ np.asarray(
                        p.getLinkState(
                            body, link, computeForwardKinematics=True, physicsClientId=cid
                        )[4]
                    )
                    np.testing.assert_allclose(c.joints[k, P[point]], ref, atol=1e-4)
    finally:
        p.disconnect(cid)
