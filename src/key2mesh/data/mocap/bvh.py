"""BioVision Hierarchy (BVH) motion files: parser and forward kinematics, any skeleton.

A BVH file is a ``HIERARCHY`` (``ROOT``/``JOINT`` blocks with an ``OFFSET`` from the parent, a
``CHANNELS`` list, children, and ``End Site`` leaves) followed by ``MOTION``: ``Frames: F``,
``Frame Time: dt`` and F lines holding every joint's channel values in hierarchy order.

Conventions (those of every BVH exporter in use): rotation channels are Euler angles in degrees,
applied in the listed order as intrinsic rotations, so ``Zrotation Xrotation Yrotation`` gives
R = Rz·Rx·Ry; a joint with position channels is placed at ``OFFSET + (Xposition, Yposition,
Zposition)`` in its parent's frame (the root: in the world); joint j sits at
p_j = p_parent + G_parent·offset_j with G_j = G_parent·R_j. An End Site adds one position
``<joint>_end`` at the tip of its joint's bone.

Forward kinematics is vectorised over frames (one Euler-to-matrix call per joint, then one matmul
per joint in hierarchy order); positions are returned in the file's units, to be scaled by the
caller (cgspeed's CMU conversion is in ≈ cm).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from key2mesh.errors import Key2MeshError

_ROT_CHANNELS = {"xrotation": "X", "yrotation": "Y", "zrotation": "Z"}
# frame times a capture can have (10 kHz .. one frame every 10 s); 1e-300 would make a 1e300 Hz
# clip that every resampling downstream chokes on
MIN_FRAME_TIME, MAX_FRAME_TIME = 1e-4, 10.0
_POS_CHANNELS = {"xposition": 0, "yposition": 1, "zposition": 2}


@dataclass
class BvhJoint:
    """One joint: ``parent`` index (-1 for the root), ``offset`` (3,) in file units, ``channels``
    as written (e.g. ``("Zrotation", "Xrotation", "Yrotation")``), ``end_offset`` (3,) of its End
    Site or None."""

    name: str
    parent: int
    offset: np.ndarray
    channels: tuple[str, ...] = ()
    end_offset: np.ndarray | None = None


@dataclass
class BvhMotion:
    """A parsed file: ``joints`` in hierarchy order, ``values`` (F, C) float64 channel values in
    file order, ``frame_time`` seconds, ``source`` for messages."""

    joints: list[BvhJoint]
    values: np.ndarray
    frame_time: float
    source: str = "<bvh>"
    channel_start: list[int] = field(default_factory=list)

    @property
    def fps(self) -> float:
        """Frame rate written in the header (1 / Frame Time)."""
        return 1.0 / self.frame_time

    @property
    def num_frames(self) -> int:
        return int(self.values.shape[0])

    @property
    def joint_names(self) -> tuple[str, ...]:
        return tuple(j.name for j in self.joints)


def _floats(tokens: list[str], where: str) -> np.ndarray:
    try:
        values = np.array([float(t) for t in tokens], dtype=np.float64)
    except ValueError as exc:
        raise Key2MeshError(f"{where}: expected numbers, got {' '.join(tokens)!r}") from exc
    if not np.isfinite(values).all():
        raise Key2MeshError(f"{where}: non-finite number in {' '.join(tokens)!r}")
    return values


def parse_bvh(text: str, source: str = "<bvh>") -> BvhMotion:
    """Parse BVH ``text``; any malformed part raises :class:`Key2MeshError` naming ``source``."""
    text = text.removeprefix("\ufeff")  # a UTF-8 byte-order mark (files saved on Windows)
    # the MOTION keyword is a whole token: a joint may be called e.g. "MOTIONsensor"
    m = re.search(r"(?<!\S)MOTION(?!\S)", text)
    head, motion = (text[: m.start()], text[m.end() :]) if m else (text, "")
    if not m:
        raise Key2MeshError(f"{source}: no MOTION section (is this a BVH file?)")
    tokens = head.split()
    if not tokens or tokens[0] != "HIERARCHY":
        raise Key2MeshError(f"{source}: a BVH file starts with HIERARCHY")
    joints: list[BvhJoint] = []
    stack: list[int] = []  # open joint indices; -2 marks an open End Site
    i = 1
    while i < len(tokens):
        tok = tokens[i]
        if tok in ("ROOT", "JOINT"):
            if i + 1 >= len(tokens):
                raise Key2MeshError(f"{source}: {tok} without a name")
            if tok == "ROOT" and joints:
                raise Key2MeshError(
                    f"{source}: more than one ROOT (only single-skeleton files are read)"
                )
            if tok == "JOINT" and (not stack or stack[-1] < 0):
                raise Key2MeshError(f"{source}: JOINT {tokens[i + 1]} outside a joint block")
            parent = stack[-1] if stack else -1
            joints.append(BvhJoint(tokens[i + 1], parent, np.zeros(3)))
            i += 2
            if i >= len(tokens) or tokens[i] != "{":
                raise Key2MeshError(f"{source}: expected '{{' after {tok} {joints[-1].name}")
            stack.append(len(joints) - 1)
            i += 1
        elif tok == "End":
            if not stack or stack[-1] < 0 or i + 2 >= len(tokens) or tokens[i + 2] != "{":
                raise Key2MeshError(f"{source}: malformed End Site")
            stack.append(-2)
            i += 3
        elif tok == "OFFSET":
            if not stack:
                raise Key2MeshError(f"{source}: OFFSET outside a joint block")
            off = _floats(tokens[i + 1 : i + 4], f"{source}: OFFSET")
            if off.shape != (3,):
                raise Key2MeshError(f"{source}: OFFSET needs 3 numbers")
            if stack[-1] == -2:
                joints[stack[-2]].end_offset = off
            else:
                joints[stack[-1]].offset = off
            i += 4
        elif tok == "CHANNELS":
            if not stack or stack[-1] < 0:
                raise Key2MeshError(f"{source}: CHANNELS outside a joint block")
            try:
                n = int(tokens[i + 1])
            except (IndexError, ValueError) as exc:
                raise Key2MeshError(f"{source}: CHANNELS needs a count") from exc
            chans = tuple(tokens[i + 2 : i + 2 + n])
            bad = [
                c
                for c in chans
                if c.lower() not in _ROT_CHANNELS and c.lower() not in _POS_CHANNELS
            ]
            if len(chans) != n or bad or len({c.lower() for c in chans}) != n:  # each channel once
                raise Key2MeshError(
                    f"{source}: joint {joints[stack[-1]].name}: bad CHANNELS {' '.join(chans)}"
                )
            joints[stack[-1]].channels = chans
            i += 2 + n
        elif tok == "}":
            if not stack:
                raise Key2MeshError(f"{source}: unbalanced '}}'")
            stack.pop()
            i += 1
        else:
            raise Key2MeshError(f"{source}: unexpected token {tok!r} in HIERARCHY")
    if stack or not joints:
        raise Key2MeshError(f"{source}: HIERARCHY is incomplete (unclosed blocks or no joints)")
    names = [j.name for j in joints]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise Key2MeshError(f"{source}: duplicate joint names {dup}")

    # blank lines are dropped everywhere (a file converted to CRLF twice ends lines with \r\r\n,
    # which splitlines reads as a blank line after each)
    lines = [ln.strip() for ln in motion.strip().splitlines() if ln.strip()]
    try:
        n_frames = int(lines[0].split(":", 1)[1]) if lines[0].lower().startswith("frames:") else -1
        frame_time = (
            float(lines[1].split(":", 1)[1]) if lines[1].lower().startswith("frame time:") else -1.0
        )
    except (IndexError, ValueError) as exc:
        raise Key2MeshError(f"{source}: MOTION needs 'Frames: N' and 'Frame Time: dt'") from exc
    if n_frames < 1 or not (np.isfinite(frame_time) and frame_time > 0):
        raise Key2MeshError(
            f"{source}: MOTION needs Frames ≥ 1 and Frame Time > 0 (got {n_frames}, {frame_time})"
        )
    if not MIN_FRAME_TIME <= frame_time <= MAX_FRAME_TIME:
        raise Key2MeshError(
            f"{source}: Frame Time {frame_time:g} s is not a capture's (expected "
            f"{MIN_FRAME_TIME:g} to {MAX_FRAME_TIME:g} s per frame)"
        )
    starts, c = [], 0
    for j in joints:
        starts.append(c)
        c += len(j.channels)
    rows = lines[2:]
    if len(rows) < n_frames:
        raise Key2MeshError(f"{source}: header says {n_frames} frames, the file holds {len(rows)}")
    try:
        values = np.array(" ".join(rows[:n_frames]).split(), dtype=np.float64)
    except ValueError as exc:
        raise Key2MeshError(f"{source}: non-numeric value in MOTION data") from exc
    if values.size != n_frames * c:
        raise Key2MeshError(
            f"{source}: {values.size} motion values for {n_frames} frames × {c} channels"
        )
    values = values.reshape(n_frames, c)
    if not np.isfinite(values).all():
        raise Key2MeshError(f"{source}: MOTION data contains NaN/inf")
    return BvhMotion(joints, values, frame_time, source, starts)


def read_bvh(path: str | Path, text: str | None = None) -> BvhMotion:
    """Parse the BVH file at ``path`` (or its already-read ``text``)."""
    path = Path(path)
    if text is None:
        try:
            text = path.read_bytes().decode("utf-8", errors="replace")
        except OSError as exc:
            raise Key2MeshError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return parse_bvh(text, str(path))


def local_rotations(motion: BvhMotion) -> np.ndarray:
    """(F, J, 3, 3) rotation of every joint relative to its parent (identity without channels)."""
    f, nj = motion.num_frames, len(motion.joints)
    out = np.broadcast_to(np.eye(3), (f, nj, 3, 3)).copy()
    for j, joint in enumerate(motion.joints):  # one vectorised Euler call per joint (≤ ~100)
        cols = [k for k, ch in enumerate(joint.channels) if ch.lower() in _ROT_CHANNELS]
        if not cols:
            continue
        order = "".join(_ROT_CHANNELS[joint.channels[k].lower()] for k in cols)
        angles = motion.values[:, [motion.channel_start[j] + k for k in cols]]
        out[:, j] = Rotation.from_euler(order, angles, degrees=True).as_matrix()
    return out


def forward_kinematics(motion: BvhMotion) -> tuple[np.ndarray, tuple[str, ...]]:
    """World positions (F, J + E, 3) in file units and their names: every joint, then one
    ``<joint>_end`` per End Site (E of them)."""
    rot = local_rotations(motion)
    f, nj = motion.num_frames, len(motion.joints)
    glob = np.empty_like(rot)
    pos = np.empty((f, nj, 3))
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported below
        for j, joint in enumerate(motion.joints):  # parents come before children in a BVH file
            local = np.broadcast_to(joint.offset, (f, 3)).copy()
            for k, ch in enumerate(joint.channels):
                axis = _POS_CHANNELS.get(ch.lower())
                if axis is not None:
                    local[:, axis] += motion.values[:, motion.channel_start[j] + k]
            if joint.parent < 0:
                glob[:, j], pos[:, j] = rot[:, j], local
            else:
                p = joint.parent
                glob[:, j] = glob[:, p] @ rot[:, j]
                pos[:, j] = pos[:, p] + np.einsum("fab,fb->fa", glob[:, p], local)
        ends = [j for j, joint in enumerate(motion.joints) if joint.end_offset is not None]
        end_pos = (
            np.stack([pos[:, j] + glob[:, j] @ motion.joints[j].end_offset for j in ends], 1)
            if ends
            else np.zeros((f, 0, 3))
        )
    names = motion.joint_names + tuple(f"{motion.joints[j].name}_end" for j in ends)
    positions = np.concatenate([pos, end_pos], 1)
    if not np.isfinite(positions).all():  # offsets or position channels near the float range
        raise Key2MeshError(
            f"{motion.source}: joint positions overflow (offsets or position channels too large)"
        )
    return positions, names
