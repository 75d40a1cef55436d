"""DeepMimic humanoid motions shipped in the ``pybullet`` wheel (fetched at run time, never committed).

A motion file is JSON ``{"Loop": ..., "Frames": [[dt, root_pos(3), root_quat(4), chest(4),
neck(4), right_hip(4), right_knee(1), right_ankle(4), right_shoulder(4), right_elbow(1),
left_hip(4), left_knee(1), left_ankle(4), left_shoulder(4), left_elbow(1)], ...]}`` (44 values,
quaternions w x y z, local rotations relative to the parent link, knees/elbows one angle about the
joint axis of ``humanoid/humanoid.urdf``); ``dt`` is the time to the next frame (0 on the last).
The ``walker/`` clips use the same layout; ``laikago_*`` (a dog) is skipped.

The humanoid's links are world-aligned at rest: y up, facing +x, its left side at -z, arms
hanging down (an I-pose), feet forward; the URDF is built at 4x scale (pybullet loads it with
``globalScaling=0.25``) while root positions are in metres. We convert:

1. frame change ``M = Ry(-90°)`` (DeepMimic (x fwd, y up, z right) → SMPL (z fwd, y up, x left)):
   world points ``M p``, local rotations ``M R Mᵀ``;
2. rest alignment onto SMPL's T-pose: ``P_j`` takes SMPL's T-pose bone direction onto the
   DeepMimic rest direction (both in the SMPL frame), and ``R_smpl_j = P_parentᵀ R_j P_j``;
3. joint mapping: chest → spine1..3 (its rotation split in three equal parts, so the chain
   product is unchanged), neck → neck, hips, knees, ankles, shoulders, elbows; collars, head,
   feet, wrists and hands stay at identity.

FK joint positions (metres, y up) come with the rotations, named with SMPL-24 names where they
correspond (``smpl_left_foot`` is the toe tip on the sole, close to SMPL's ball-of-foot joint)
and ``deepmimic_*`` otherwise.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import roma
import torch

from key2mesh.data.mocap.clip import LoadReport, MotionClip, register_loader
from key2mesh.data.mocap.retarget import PARENTS, smpl_tpose_directions
from key2mesh.errors import Key2MeshError
from key2mesh.keypoints.sets import SMPL24

MOTIONS_PREFIX = "pybullet_data/data/motions/"
URDF_MEMBER = "pybullet_data/humanoid/humanoid.urdf"
URDF_SCALE = 0.25  # pybullet's deep_mimic loads the humanoid with globalScaling=0.25
FRAME_WIDTH = 44
SKIP_PREFIXES = ("laikago",)

# Frame layout: (joint, width) in file order after dt (1) and root position (3).
LAYOUT: tuple[tuple[str, int], ...] = (
    ("root", 4), ("chest", 4), ("neck", 4),
    ("right_hip", 4), ("right_knee", 1), ("right_ankle", 4), ("right_shoulder", 4), ("right_elbow", 1),
    ("left_hip", 4), ("left_knee", 1), ("left_ankle", 4), ("left_shoulder", 4), ("left_elbow", 1),
)  # fmt: skip

# DeepMimic joint → SMPL-24 joint(s) it drives (chest is spread over three spine joints).
TO_SMPL: dict[str, tuple[str, ...]] = {
    "root": ("pelvis",), "chest": ("spine1", "spine2", "spine3"), "neck": ("neck",),
    "right_hip": ("right_hip",), "right_knee": ("right_knee",), "right_ankle": ("right_ankle",),
    "right_shoulder": ("right_shoulder",), "right_elbow": ("right_elbow",),
    "left_hip": ("left_hip",), "left_knee": ("left_knee",), "left_ankle": ("left_ankle",),
    "left_shoulder": ("left_shoulder",), "left_elbow": ("left_elbow",),
}  # fmt: skip

# FK points: name, DeepMimic link carrying it, and whether it is the link's joint origin (None)
# or a point given in link coordinates by a URDF collision shape ("head" sphere centre, "toe").
POINTS: tuple[tuple[str, str, str | None], ...] = (
    ("smpl_pelvis", "root", None), ("deepmimic_chest", "chest", None), ("smpl_neck", "neck", None),
    ("deepmimic_head_center", "neck", "head"),
    ("smpl_right_hip", "right_hip", None), ("smpl_right_knee", "right_knee", None),
    ("smpl_right_ankle", "right_ankle", None), ("smpl_right_foot", "right_ankle", "toe"),
    ("smpl_right_shoulder", "right_shoulder", None), ("smpl_right_elbow", "right_elbow", None),
    ("smpl_right_wrist", "right_wrist", None),
    ("smpl_left_hip", "left_hip", None), ("smpl_left_knee", "left_knee", None),
    ("smpl_left_ankle", "left_ankle", None), ("smpl_left_foot", "left_ankle", "toe"),
    ("smpl_left_shoulder", "left_shoulder", None), ("smpl_left_elbow", "left_elbow", None),
    ("smpl_left_wrist", "left_wrist", None),
)  # fmt: skip
JOINT_NAMES: tuple[str, ...] = tuple(p[0] for p in POINTS)


def dm_to_smpl() -> np.ndarray:
    """(3, 3) M = Ry(-90°): DeepMimic coordinates (x forward, y up, z right) → SMPL's (x left, y up, z forward)."""
    return np.array([[0.0, 0.0, -1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])


@dataclass(frozen=True)
class Skeleton:
    """The DeepMimic humanoid from its URDF, in SMPL-frame metres.

    parent: link → parent link; offset: link → (3,) joint origin in the parent link;
    axis: revolute link → (3,) unit axis; points: extra named points (3,) in link coordinates.
    """

    parent: dict[str, str | None]
    offset: dict[str, np.ndarray]
    axis: dict[str, np.ndarray]
    points: dict[str, np.ndarray]


def _vec(el: ET.Element | None, attr: str, where: str) -> np.ndarray:
    if el is None or el.get(attr) is None:
        raise Key2MeshError(f"{where}: missing <{attr}> in the DeepMimic humanoid URDF")
    return np.array([float(v) for v in el.get(attr).split()])


def load_skeleton(urdf: str | Path) -> Skeleton:
    """Parse ``humanoid.urdf`` (joint origins, revolute axes, head sphere and foot box)."""
    urdf = Path(urdf)
    try:
        # pybullet's file ends with a NUL byte, which XML parsers reject
        root = ET.fromstring(urdf.read_bytes().rstrip(b"\x00\r\n\t "))
    except (OSError, ET.ParseError) as exc:
        raise Key2MeshError(f"{urdf}: cannot read the DeepMimic humanoid URDF ({exc})") from exc
    m = dm_to_smpl() * URDF_SCALE
    parent: dict[str, str | None] = {"root": None}
    offset = {"root": np.zeros(3)}
    axis: dict[str, np.ndarray] = {}
    for joint in root.iter("joint"):
        child, par = joint.find("child").get("link"), joint.find("parent").get("link")
        if child == "root":
            continue
        parent[child] = par
        offset[child] = m @ _vec(joint.find("origin"), "xyz", urdf)
        if joint.get("type") == "revolute":
            a = dm_to_smpl() @ _vec(joint.find("axis"), "xyz", urdf)
            axis[child] = a / np.linalg.norm(a)
    links = {link.get("name"): link for link in root.iter("link")}
    expected = {name for name, _ in LAYOUT} | {"right_wrist", "left_wrist"}
    if missing := sorted(expected - set(parent)):
        raise Key2MeshError(f"{urdf}: DeepMimic humanoid URDF lacks the joints {missing}")
    # head centre = neck link's collision sphere; toe = front-bottom edge of the foot box
    head = m @ _vec(links["neck"].find("collision/origin"), "xyz", urdf)
    box_origin = _vec(links["left_ankle"].find("collision/origin"), "xyz", urdf)
    size = _vec(links["left_ankle"].find("collision/geometry/box"), "size", urdf)
    toe = m @ (box_origin + np.array([size[0] / 2, -size[1] / 2, 0.0]))
    return Skeleton(parent, offset, axis, {"head": head, "toe": toe})


def _quat_wxyz(q: np.ndarray) -> np.ndarray:
    """(..., 4) w x y z quaternions (normalised here) → (..., 3, 3) rotation matrices."""
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    return roma.unitquat_to_rotmat(torch.from_numpy(q[..., [1, 2, 3, 0]])).numpy()


def _local_rotations(
    frames: np.ndarray, skel: Skeleton
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(F, 44) frames → root positions (F, 3) and DeepMimic local rotations (F, 3, 3) per joint,
    all in the SMPL frame."""
    m = dm_to_smpl()
    rots: dict[str, np.ndarray] = {}
    col = 4
    for name, width in LAYOUT:
        block = frames[:, col : col + width]
        if width == 4:
            r = m @ _quat_wxyz(block) @ m.T
        else:
            rotvec = block * skel.axis[name][None]
            r = roma.rotvec_to_rotmat(torch.from_numpy(rotvec)).numpy()
        rots[name] = r
        col += width
    return frames[:, 1:4] @ m.T, rots


def _forward_kinematics(
    root_pos: np.ndarray, rots: dict[str, np.ndarray], skel: Skeleton
) -> np.ndarray:
    """World positions (F, len(POINTS), 3) in metres (SMPL frame) of :data:`POINTS`."""
    glob: dict[str, np.ndarray] = {}
    pos: dict[str, np.ndarray] = {}
    eye = np.broadcast_to(np.eye(3), (root_pos.shape[0], 3, 3))
    for link, par in skel.parent.items():  # URDF order lists parents before children
        if par is None:
            glob[link], pos[link] = rots["root"], root_pos
            continue
        if par not in glob:
            continue  # links outside the humanoid chain (none in pybullet's file)
        pos[link] = pos[par] + glob[par] @ skel.offset[link]
        glob[link] = glob[par] @ rots.get(link, eye)
    out = [
        pos[link] if extra is None else pos[link] + glob[link] @ skel.points[extra]
        for _, link, extra in POINTS
    ]
    return np.stack(out, axis=1)


def _rest_alignment(skel: Skeleton) -> np.ndarray:
    """(24, 3, 3) ``P_j``: SMPL T-pose bone direction → DeepMimic rest direction (SMPL frame)."""
    zero = {name: np.eye(3)[None] for name, _ in LAYOUT}
    rest = dict(zip(JOINT_NAMES, _forward_kinematics(np.zeros((1, 3)), zero, skel)[0], strict=True))
    idx = {n.removeprefix("smpl_"): i for i, n in enumerate(SMPL24)}
    bones = {
        f"{s}_{a}": (f"smpl_{s}_{a}", f"smpl_{s}_{b}")
        for s in ("left", "right")
        for a, b in (
            ("hip", "knee"),
            ("knee", "ankle"),
            ("ankle", "foot"),
            ("shoulder", "elbow"),
            ("elbow", "wrist"),
        )
    }
    p = np.broadcast_to(np.eye(3), (24, 3, 3)).copy()
    joints = np.array([idx[j] for j in bones])
    d = np.array([rest[b] - rest[a] for a, b in bones.values()])
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    t = smpl_tpose_directions()[joints]
    axis = np.cross(t, d)
    angle = np.arctan2(np.linalg.norm(axis, axis=1), (t * d).sum(1))
    axis /= np.maximum(np.linalg.norm(axis, axis=1, keepdims=True), 1e-12)
    p[joints] = roma.rotvec_to_rotmat(torch.from_numpy(axis * angle[:, None])).numpy()
    for side in ("left", "right"):  # wrists/hands/feet continue their parent's bone
        for leaf in ("wrist", "hand", "foot"):
            p[idx[f"{side}_{leaf}"]] = p[PARENTS[idx[f"{side}_{leaf}"]]]
    return p


def convert_frames(frames: np.ndarray, skel: Skeleton) -> tuple[np.ndarray, np.ndarray]:
    """DeepMimic frames (F, 44) → SMPL-convention rotations (F, 24, 3, 3) and FK joints
    (F, len(JOINT_NAMES), 3) in metres, y up (both float64)."""
    root_pos, rots = _local_rotations(frames, skel)
    joints = _forward_kinematics(root_pos, rots, skel)
    idx = {n.removeprefix("smpl_"): i for i, n in enumerate(SMPL24)}
    local = np.broadcast_to(np.eye(3), (frames.shape[0], 24, 3, 3)).copy()
    for dm, targets in TO_SMPL.items():
        r = rots[dm]
        if len(targets) > 1:  # split the rotation into equal parts along the chain
            rotvec = roma.rotmat_to_rotvec(torch.from_numpy(r)).numpy()
            r = roma.rotvec_to_rotmat(torch.from_numpy(rotvec / len(targets))).numpy()
        for t in targets:
            local[:, idx[t]] = r
    p = _rest_alignment(skel)
    p_parent = np.concatenate([np.eye(3)[None], p[PARENTS[1:]]])
    return np.swapaxes(p_parent, -1, -2) @ local @ p, joints


def load_motion_file(
    path: str | Path, skel: Skeleton, target_fps: float | None = None
) -> MotionClip:
    """One DeepMimic motion file → :class:`MotionClip` (rotmats and joints), fps = 1 / dt."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Key2MeshError(
            f"{path}: not a readable DeepMimic JSON motion ({type(exc).__name__})"
        ) from exc
    if not isinstance(data, dict) or "Frames" not in data:
        found = ", ".join(map(str, data)) if isinstance(data, dict) else type(data).__name__
        raise Key2MeshError(
            f"{path}: expected a DeepMimic motion with a 'Frames' list, found: {found}"
        )
    try:
        frames = np.asarray(data["Frames"], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise Key2MeshError(f"{path}: 'Frames' is not a rectangular list of numbers") from exc
    if frames.ndim != 2 or frames.shape[0] == 0 or frames.shape[1] != FRAME_WIDTH:
        raise Key2MeshError(
            f"{path}: 'Frames' has shape {frames.shape}, expected (F > 0, {FRAME_WIDTH}) humanoid frames"
        )
    if not np.isfinite(frames).all():
        bad = int(np.flatnonzero(~np.isfinite(frames).all(axis=1))[0])
        raise Key2MeshError(f"{path}: frame {bad} holds NaN/inf values")
    dts = frames[:, 0][frames[:, 0] > 0]
    if len(dts) == 0:
        raise Key2MeshError(f"{path}: every frame duration (dt) is 0, cannot tell the frame rate")
    fps = 1.0 / float(np.median(dts))
    if abs(fps - round(fps)) < 1e-3 * fps:  # dt is stored with 4-5 digits: 0.016667 → 60
        fps = float(round(fps))
    rotmats, joints = convert_frames(frames, skel)
    name = path.stem if path.parent.name != "walker" else f"walker_{path.stem}"
    clip = MotionClip(
        name=name,
        source="deepmimic",
        fps=fps,
        rotmats=rotmats.astype(np.float32),
        joints=joints.astype(np.float32),
        joint_names=JOINT_NAMES,
    )
    if target_fps is not None:
        clip = clip.subsample(target_fps)
    return clip.validate()


def load_deepmimic(
    target_fps: float | None = None, paths: list[str | Path] | None = None
) -> LoadReport:
    """All DeepMimic humanoid motions of the pybullet wheel (``humanoid3d_*`` and ``walker/*``),
    or the given motion files; unreadable files are skipped with a warning and counted."""
    from key2mesh.data.wheels import extract

    urdf = extract("pybullet", URDF_MEMBER)[0]
    skel = load_skeleton(urdf)
    if paths is None:
        files = [
            p
            for p in extract("pybullet", MOTIONS_PREFIX, (".txt",))
            if not p.name.startswith(SKIP_PREFIXES)
        ]
    else:
        files = [Path(p) for p in paths]
    report = LoadReport()
    for f in files:
        try:
            report.clips.append(load_motion_file(f, skel, target_fps))
        except Key2MeshError as exc:
            report.skip(f, str(exc))
    return report


register_loader("deepmimic", load_deepmimic)
