"""Named keypoint sets (joint orders of common detectors and datasets).

Every set is an ordered tuple of canonical point names. Conversions between sets
(:mod:`key2mesh.keypoints.convert`) work by name, so a name means the same anatomical point in
every set. SMPL's kinematic joints carry an ``smpl_`` prefix because they are not the same
points as the detectors' surface-ish landmarks (an SMPL hip joint is not a COCO hip).
"""

from __future__ import annotations

from key2mesh.errors import Key2MeshError

COCO17 = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
)  # fmt: skip

# COCO-WholeBody body part: COCO-17 + 6 foot points (the order of COCO-WholeBody / ViTPose).
COCO23 = COCO17 + (
    "left_big_toe", "left_small_toe", "left_heel",
    "right_big_toe", "right_small_toe", "right_heel",
)  # fmt: skip

OPENPOSE_BODY25 = (
    "nose", "neck", "right_shoulder", "right_elbow", "right_wrist",
    "left_shoulder", "left_elbow", "left_wrist", "mid_hip",
    "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
    "right_eye", "left_eye", "right_ear", "left_ear",
    "left_big_toe", "left_small_toe", "left_heel", "right_big_toe", "right_small_toe", "right_heel",
)  # fmt: skip

OPENPOSE_COCO18 = (
    "nose", "neck", "right_shoulder", "right_elbow", "right_wrist",
    "left_shoulder", "left_elbow", "left_wrist",
    "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
    "right_eye", "left_eye", "right_ear", "left_ear",
)  # fmt: skip

MEDIAPIPE33 = (
    "nose", "left_eye_inner", "left_eye", "left_eye_outer",
    "right_eye_inner", "right_eye", "right_eye_outer", "left_ear", "right_ear",
    "mouth_left", "mouth_right", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_pinky", "right_pinky", "left_index", "right_index", "left_thumb", "right_thumb",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
    "left_heel", "right_heel", "left_foot_index", "right_foot_index",
)  # fmt: skip

# Human3.6M's 17 joints in the order of SPIN's J_regressor_h36m (whose joints 1-3 are the left leg,
# 4-6 the right leg), so that H36M_TO_EVAL14 yields the LSP order: right ankle first.
H36M17 = (
    "pelvis", "left_hip", "left_knee", "left_ankle", "right_hip", "right_knee", "right_ankle",
    "spine", "thorax", "neck_nose", "head_top",
    "left_shoulder", "left_elbow", "left_wrist", "right_shoulder", "right_elbow", "right_wrist",
)  # fmt: skip

SMPL24 = (
    "smpl_pelvis", "smpl_left_hip", "smpl_right_hip", "smpl_spine1", "smpl_left_knee",
    "smpl_right_knee", "smpl_spine2", "smpl_left_ankle", "smpl_right_ankle", "smpl_spine3",
    "smpl_left_foot", "smpl_right_foot", "smpl_neck", "smpl_left_collar", "smpl_right_collar",
    "smpl_head", "smpl_left_shoulder", "smpl_right_shoulder", "smpl_left_elbow",
    "smpl_right_elbow", "smpl_left_wrist", "smpl_right_wrist", "smpl_left_hand", "smpl_right_hand",
)  # fmt: skip

# SMPL's kinematic tree: parent index of each SMPL-24 joint (-1 for the root).
SMPL24_PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21)

# The one SMPL-24 skeleton table (retargeting, IK and the fitting baseline read it):
# joint → the child its bone points to (limbs first, then the spine chain; the pelvis, the
# leaves and the head have none). The limb entries give each limb joint its rest direction.
SMPL24_CHILD: dict[str, str] = {
    "smpl_left_hip": "smpl_left_knee", "smpl_right_hip": "smpl_right_knee",
    "smpl_left_knee": "smpl_left_ankle", "smpl_right_knee": "smpl_right_ankle",
    "smpl_left_ankle": "smpl_left_foot", "smpl_right_ankle": "smpl_right_foot",
    "smpl_left_collar": "smpl_left_shoulder", "smpl_right_collar": "smpl_right_shoulder",
    "smpl_left_shoulder": "smpl_left_elbow", "smpl_right_shoulder": "smpl_right_elbow",
    "smpl_left_elbow": "smpl_left_wrist", "smpl_right_elbow": "smpl_right_wrist",
    "smpl_left_wrist": "smpl_left_hand", "smpl_right_wrist": "smpl_right_hand",
    "smpl_spine1": "smpl_spine2", "smpl_spine2": "smpl_spine3", "smpl_spine3": "smpl_neck", "smpl_neck": "smpl_head",
}  # fmt: skip
SMPL24_SPINE = ("smpl_spine1", "smpl_spine2", "smpl_spine3", "smpl_neck")
# Hinge joints: (joint, its child, its parent, flexion direction of the child bone along z:
# -1 the shin swings backwards (knees), +1 the forearm forwards (elbows)).
SMPL24_HINGES: tuple[tuple[str, str, str, float], ...] = (
    ("smpl_left_knee", "smpl_left_ankle", "smpl_left_hip", -1.0),
    ("smpl_right_knee", "smpl_right_ankle", "smpl_right_hip", -1.0),
    ("smpl_left_elbow", "smpl_left_wrist", "smpl_left_shoulder", 1.0),
    ("smpl_right_elbow", "smpl_right_wrist", "smpl_right_shoulder", 1.0),
)

KEYPOINT_SETS: dict[str, tuple[str, ...]] = {
    "openpose_body25": OPENPOSE_BODY25,
    "openpose_coco18": OPENPOSE_COCO18,
    "coco17": COCO17,
    "coco23": COCO23,
    "mediapipe33": MEDIAPIPE33,
    "h36m17": H36M17,
    "smpl24": SMPL24,
}

ALIASES = {
    "body25": "openpose_body25",
    "openpose": "openpose_body25",
    "coco18": "openpose_coco18",
    "coco": "coco17",
    "vitpose": "coco17",
    "wholebody_body": "coco23",
    "coco_wholebody_body": "coco23",
    "mediapipe": "mediapipe33",
    "blazepose": "mediapipe33",
    "h36m": "h36m17",
    "smpl": "smpl24",
}

# The 14 evaluation joints taken from H36M-17, as in the paper / SPIN, in LSP order: right ankle,
# knee, hip, left hip, knee, ankle, right wrist, elbow, shoulder, left shoulder, elbow, wrist, neck, head.
H36M_TO_EVAL14 = (6, 5, 4, 1, 2, 3, 16, 15, 14, 11, 12, 13, 8, 10)


def canonical_set_name(name: str) -> str:
    """Resolve a set name or alias (case-insensitive, '-' or '_') to its canonical name."""
    key = name.strip().lower().replace("-", "_")
    key = ALIASES.get(key, key)
    if key not in KEYPOINT_SETS:
        known = ", ".join(sorted(KEYPOINT_SETS))
        raise Key2MeshError(f"unknown keypoint set {name!r}; known sets: {known}")
    return key


def keypoint_names(name: str) -> tuple[str, ...]:
    """Ordered point names of a set (accepts aliases)."""
    return KEYPOINT_SETS[canonical_set_name(name)]


def num_keypoints(name: str) -> int:
    return len(keypoint_names(name))


def flip_permutation(name: str) -> list[int]:
    """Index permutation that swaps left/right points of a set (for mirroring). A side is a
    ``left``/``right`` token anywhere in the name (``left_hip``, MediaPipe's ``mouth_left``)."""
    names = keypoint_names(name)
    index = {n: i for i, n in enumerate(names)}
    swap = {"left": "right", "right": "left"}

    def partner(n: str) -> str:
        return "_".join(swap.get(t, t) for t in n.split("_"))

    return [index.get(partner(n), i) for i, n in enumerate(names)]
