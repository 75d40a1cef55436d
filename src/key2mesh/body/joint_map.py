"""The one table mapping SMPL-24 joints onto anny bones (rig ``anny-notoes-nohands-noeyes``).

SMPL joints with no anny counterpart (toes and hands are not in the training rig) are ``None``:
their rotations are ignored and the anny bones that no SMPL joint drives stay at rest.
"""

from __future__ import annotations

SMPL_TO_ANNY_BONE: dict[str, str | None] = {
    "smpl_pelvis": "root",
    "smpl_left_hip": "upperleg01.L",
    "smpl_right_hip": "upperleg01.R",
    "smpl_spine1": "spine04",
    "smpl_left_knee": "lowerleg01.L",
    "smpl_right_knee": "lowerleg01.R",
    "smpl_spine2": "spine02",
    "smpl_left_ankle": "foot.L",
    "smpl_right_ankle": "foot.R",
    "smpl_spine3": "spine01",
    "smpl_left_foot": None,
    "smpl_right_foot": None,
    "smpl_neck": "neck01",
    "smpl_left_collar": "clavicle.L",
    "smpl_right_collar": "clavicle.R",
    "smpl_head": "head",
    "smpl_left_shoulder": "upperarm01.L",
    "smpl_right_shoulder": "upperarm01.R",
    "smpl_left_elbow": "lowerarm01.L",
    "smpl_right_elbow": "lowerarm01.R",
    "smpl_left_wrist": "wrist.L",
    "smpl_right_wrist": "wrist.R",
    "smpl_left_hand": None,
    "smpl_right_hand": None,
}
