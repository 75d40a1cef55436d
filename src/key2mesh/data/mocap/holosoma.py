"""Climbing MoCap shipped in the ``holosoma-retargeting`` wheel (fetched at run time, never committed).

``holosoma_retargeting/demo_data/climb/mocap_climb_seq_*/…_joint_positions_f<a>-<b>.npy`` hold
(F, 53, 3) float32 world joint positions in metres, z up, of a Mixamo-style skeleton; the joint
order is holosoma's ``mocap`` data format (its ``MOCAP_DEMO_JOINTS``: hips, spine chain, head,
both arms with 15 finger joints each, both legs, then two "FootMod" copies of the ankles). The
capture rate is 120 fps: holosoma keeps every 4th frame and plays the result at 30 fps.

We rotate to key2mesh's world (y up) with the cyclic axis change (x, y, z) → (y, z, x), which keeps
the data right-handed and turns its first frames (facing +x, left at +y) to face +z with the left
side at +x, and name the joints that correspond to SMPL-24 joints with ``smpl_*`` names (the rest
keep ``holosoma_<Name>``). Clips carry joints only (``rotmats=None``): poses come from
:mod:`key2mesh.data.mocap.ik`.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from key2mesh.data.mocap.clip import LoadReport, MotionClip, register_loader
from key2mesh.data.wheels import extract
from key2mesh.errors import Key2MeshError

DIST = "holosoma-retargeting"
PREFIX = "holosoma_retargeting/demo_data/climb/"
SOURCE_FPS = 120.0

# The 53 joints of holosoma's "mocap" format, in file order (fingers: thumb, index, middle, ring,
# pinky, three joints each).
_FINGERS = [f"{f}{k}" for f in ("Thumb", "Index", "Middle", "Ring", "Pinky") for k in (1, 2, 3)]
HOLOSOMA_JOINTS: tuple[str, ...] = (
    ("Hips", "Spine", "Spine1", "Neck", "Head")
    + ("LeftShoulder", "LeftArm", "LeftForeArm", "LeftHand")
    + tuple(f"LeftHand{f}" for f in _FINGERS)
    + ("RightShoulder", "RightArm", "RightForeArm", "RightHand")
    + tuple(f"RightHand{f}" for f in _FINGERS)
    + (
        "LeftUpLeg",
        "LeftLeg",
        "LeftFoot",
        "LeftToeBase",
        "RightUpLeg",
        "RightLeg",
        "RightFoot",
        "RightToeBase",
    )
    + ("LeftFootMod", "RightFootMod")
)

# Mixamo joint → SMPL-24 joint at (about) the same anatomical place. "Spine" sits ~8 cm above the
# hips like SMPL's spine1, "Spine1" ~33 cm above like spine3; the middle-finger base stands for
# SMPL's hand joint (knuckles).
TO_SMPL: dict[str, str] = {
    "Hips": "smpl_pelvis", "Spine": "smpl_spine1", "Spine1": "smpl_spine3", "Neck": "smpl_neck",
    "Head": "smpl_head",
    "LeftShoulder": "smpl_left_collar", "LeftArm": "smpl_left_shoulder", "LeftForeArm": "smpl_left_elbow",
    "LeftHand": "smpl_left_wrist", "LeftHandMiddle1": "smpl_left_hand",
    "RightShoulder": "smpl_right_collar", "RightArm": "smpl_right_shoulder", "RightForeArm": "smpl_right_elbow",
    "RightHand": "smpl_right_wrist", "RightHandMiddle1": "smpl_right_hand",
    "LeftUpLeg": "smpl_left_hip", "LeftLeg": "smpl_left_knee", "LeftFoot": "smpl_left_ankle",
    "LeftToeBase": "smpl_left_foot",
    "RightUpLeg": "smpl_right_hip", "RightLeg": "smpl_right_knee", "RightFoot": "smpl_right_ankle",
    "RightToeBase": "smpl_right_foot",
}  # fmt: skip

JOINT_NAMES: tuple[str, ...] = tuple(TO_SMPL.get(n, f"holosoma_{n}") for n in HOLOSOMA_JOINTS)

# z-up (x forward, y left) → y-up (z forward, x left): new = ZUP_TO_YUP @ old.
ZUP_TO_YUP = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])


def load_climb_file(path: str | Path, target_fps: float | None = 30.0) -> MotionClip:
    """One ``…_joint_positions_f<a>-<b>.npy`` → :class:`MotionClip` (joints only, y up)."""
    path = Path(path)
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise Key2MeshError(f"{path}: cannot read a .npy array ({exc})") from exc
    if data.ndim != 3 or data.shape[1:] != (len(HOLOSOMA_JOINTS), 3) or data.shape[0] == 0:
        raise Key2MeshError(
            f"{path}: expected joint positions of shape (F, {len(HOLOSOMA_JOINTS)}, 3), got {data.shape}"
        )
    joints = (data.astype(np.float64) @ ZUP_TO_YUP.T).astype(np.float32)
    name = re.sub(r"_joint_positions.*$", "", path.stem) or path.stem
    clip = MotionClip(
        name=name, source="holosoma", fps=SOURCE_FPS, joints=joints, joint_names=JOINT_NAMES
    )
    clip.validate()
    return clip.subsample(target_fps) if target_fps else clip


def climb_files() -> list[Path]:
    """The climbing joint-position files, extracted from the wheel into the cache (sorted)."""
    files = extract(DIST, PREFIX, (".npy",))
    return [f for f in files if "joint_positions" in f.name]


def load_holosoma(
    target_fps: float | None = 30.0, paths: list[str | Path] | None = None
) -> LoadReport:
    """All climbing clips (or ``paths``) as joint-only clips at ``target_fps`` (None: 120 fps).
    Unreadable files are skipped with a warning."""
    report = LoadReport()
    for path in [Path(p) for p in paths] if paths is not None else climb_files():
        try:
            report.clips.append(load_climb_file(path, target_fps))
        except Key2MeshError as exc:
            report.skip(path, str(exc))
    return report


register_loader("holosoma", load_holosoma)
