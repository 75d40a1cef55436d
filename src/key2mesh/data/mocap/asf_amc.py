"""Acclaim ASF/AMC motion capture (the CMU MoCap database's original format) with forward kinematics.

Two text files describe a take:

* the **ASF** (skeleton) file has ``:version``, ``:name``, ``:units`` (``mass``, ``length``,
  ``angle deg|rad``), ``:documentation`` (free text up to the next ``:`` keyword), ``:root``
  (``order TX TY TZ RX RY RZ``: the root's channels in the AMC; ``axis XYZ``; ``position`` and
  ``orientation``: a preset offset, zero in CMU files), ``:bonedata`` (``begin … end`` blocks with
  ``id``, ``name``, ``direction`` (unit vector in the world frame at rest), ``length``,
  ``axis ax ay az ORDER`` (the bone's local frame), ``dof rx ry rz`` (a subset, in AMC order) and
  ``limits (lo hi)`` lines, one per dof, which are skipped) and ``:hierarchy`` (``begin``,
  ``parent child child …`` lines, ``end``). ``#`` starts a comment; commas and parentheses are
  whitespace.
* the **AMC** (motion) file has header lines (``#…`` comments, ``:FULLY-SPECIFIED``,
  ``:DEGREES`` or ``:RADIANS``), then one block per frame: a line holding the frame number (CMU
  counts from 1) followed by ``bonename v1 v2 …`` lines, one per bone that has dofs plus ``root``
  (its values in ``:root order``).

Conventions (those of CMU's reference viewer and the common Python readers):

* An Euler order string lists rotations about fixed axes, applied first to last, so ``axis …
  XYZ`` gives ``C = Rz(az) @ Ry(ay) @ Rx(ax)``; ``Cinv = Cᵀ``.
* A bone's motion angles form ``M = Rz(rz) @ Ry(ry) @ Rx(rx)`` whatever order its ``dof`` line
  lists them in (CMU files always list ``rx ry rz``); a missing dof is 0. The root's ``RX RY RZ``
  channels are treated the same way, and its rest frame is ``:root axis`` with ``orientation``.
* ``L = C @ M @ Cinv`` is the bone's rotation in its parent's frame, ``G = G_parent @ L`` its global
  rotation (``G_root = C_root @ M_root @ C_rootᵀ``), and the bone ends at
  ``start + G @ (direction * length)``; a bone starts where its parent ends (the root bone's
  children start at the root translation ``TX TY TZ`` + ``:root position``).
* Lengths are in ASF length units; ``:units length 0.45`` (CMU) means ``0.0254 / 0.45 =
  0.056444`` metres per unit, the default ``metres_per_unit = 0.0254 / length_scale``. CMU data is
  y up, and the axes are kept as they are.

Shapes: :func:`parse_amc` gives ``{name: (F, ndof) float64}`` (angles in degrees, translations in
ASF units); :func:`asf_amc_joint_positions` gives ``(F, 1 + n_bones + n_leaves, 3)`` float32
metres named ``"root"``, each bone's name (the joint where that bone *starts*: ``lfemur`` is the
hip, ``ltibia`` the knee, ``lfoot`` the ankle, ``lhumerus`` the shoulder, ``lradius`` the elbow)
and ``"<leaf>_end"`` for the far end of every leaf bone (``head_end``, ``ltoes_end``, …).
The frame loop is vectorised; only the ~31 bones are looped over, parents first.

Malformed input raises :class:`~key2mesh.errors.Key2MeshError` naming the source and the line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from key2mesh.errors import Key2MeshError

DEFAULT_FPS = 120.0  # CMU captured at 120 Hz and the AMC files do not say so
ROOT = "root"
ROTATION_DOFS = ("rx", "ry", "rz")
KNOWN_DOFS = ("rx", "ry", "rz", "tx", "ty", "tz", "l")
ROOT_CHANNELS = ("TX", "TY", "TZ", "RX", "RY", "RZ")
_FPS_KEYWORDS = ("samples-per-second", "frame-rate", "framerate", "fps")


@dataclass
class AsfBone:
    """One ``begin … end`` block of ``:bonedata``; ``axis`` in the ASF angle unit."""

    name: str
    direction: np.ndarray  # (3,) world-frame direction at rest (unit in well-formed files)
    length: float  # ASF length units
    axis: np.ndarray  # (3,) angles about x, y, z
    axis_order: str  # e.g. "XYZ": x applied first
    dof: tuple[str, ...]  # e.g. ("rx", "ry", "rz"), the order of the AMC values
    parent: str = ROOT  # from :hierarchy; "root" or another bone's name


@dataclass
class AsfSkeleton:
    """A parsed ASF file; see the module docstring for the conventions."""

    name: str
    length_scale: float  # :units length (default 1.0)
    angle_unit: str  # "deg" or "rad": unit of the axis / orientation angles (and AMC default)
    root_order: tuple[str, ...]  # e.g. ("TX", "TY", "TZ", "RX", "RY", "RZ")
    root_axis: str  # e.g. "XYZ"
    root_position: np.ndarray  # (3,) ASF length units
    root_orientation: np.ndarray  # (3,) angles about x, y, z
    bones: list[AsfBone] = field(default_factory=list)  # file order

    def bone(self, name: str) -> AsfBone:
        """The bone called ``name`` (KeyError if absent)."""
        for b in self.bones:
            if b.name == name:
                return b
        raise KeyError(name)


# ---------------------------------------------------------------------------------------------
# rotations


def _axis_rotations(axis: str, angles: np.ndarray) -> np.ndarray:
    """Rotation matrices ``(..., 3, 3)`` about ``axis`` ("X", "Y" or "Z") by ``angles`` radians."""
    c, s = np.cos(angles), np.sin(angles)
    one, zero = np.ones_like(angles), np.zeros_like(angles)
    if axis == "X":
        rows = ((one, zero, zero), (zero, c, -s), (zero, s, c))
    elif axis == "Y":
        rows = ((c, zero, s), (zero, one, zero), (-s, zero, c))
    else:
        rows = ((c, -s, zero), (s, c, zero), (zero, zero, one))
    return np.stack([np.stack(r, axis=-1) for r in rows], axis=-2)


def euler_matrix(angles: np.ndarray, order: str = "XYZ") -> np.ndarray:
    """``(..., 3)`` radians about x, y, z → ``(..., 3, 3)``, rotations applied in ``order``.

    ``order="XYZ"`` gives ``Rz(z) @ Ry(y) @ Rx(x)`` (fixed axes, x first).
    """
    angles = np.asarray(angles, dtype=np.float64)
    out = np.broadcast_to(np.eye(3), (*angles.shape[:-1], 3, 3))
    for axis in order:
        out = _axis_rotations(axis, angles[..., "XYZ".index(axis)]) @ out
    return out


# ---------------------------------------------------------------------------------------------
# parsing helpers


def _tokens(line: str) -> list[str]:
    """Split one line: ``#`` comments dropped, commas and parentheses count as whitespace."""
    line = line.split("#", 1)[0]
    return line.replace(",", " ").replace("(", " ").replace(")", " ").split()


def _floats(tokens: list[str], n: int | None, what: str, where: str) -> list[float]:
    """``tokens`` as finite floats (exactly ``n`` of them unless ``n`` is None)."""
    if n is not None and len(tokens) != n:
        raise Key2MeshError(f"{where}: {what} needs {n} numbers, got {len(tokens)}")
    try:
        values = [float(t) for t in tokens]
    except ValueError:
        raise Key2MeshError(
            f"{where}: {what} has a non-numeric value in {' '.join(tokens)!r}"
        ) from None
    if not all(math.isfinite(v) for v in values):
        raise Key2MeshError(f"{where}: {what} has a non-finite value in {' '.join(tokens)!r}")
    return values


def _order(token: str, where: str) -> str:
    order = token.upper()
    if sorted(order) != ["X", "Y", "Z"]:
        raise Key2MeshError(f"{where}: rotation order {token!r} is not a permutation of XYZ")
    return order


def _angle_unit(token: str, where: str) -> str:
    unit = token.lower()
    if unit in ("deg", "degree", "degrees"):
        return "deg"
    if unit in ("rad", "radian", "radians"):
        return "rad"
    raise Key2MeshError(f"{where}: angle unit {token!r} is neither deg nor rad")


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


# ---------------------------------------------------------------------------------------------
# ASF


def parse_asf(text: str, source: str = "<asf>") -> AsfSkeleton:
    """Parse the text of an ASF skeleton file (errors name ``source``)."""
    text = text.removeprefix("\ufeff")  # a UTF-8 byte-order mark (files saved on Windows)
    name = ""
    length_scale = 1.0
    angle_unit = "deg"
    root: dict[str, list[str]] | None = None
    bones: list[AsfBone] = []
    block: dict[str, object] | None = None  # the bone being read
    block_line = 0
    last_key = ""
    parents: dict[str, str] | None = None  # child -> parent
    hier_open = False
    section = ""

    def finish_bone(where: str) -> None:
        assert block is not None
        for key in ("name", "direction", "length"):
            if key not in block:
                raise Key2MeshError(f"{source}: line {block_line}: bone has no {key}")
        bname = str(block["name"])
        if bname == ROOT or any(b.name == bname for b in bones):
            raise Key2MeshError(f"{where}: bone name {bname!r} is used twice (or is 'root')")
        axis = block.get("axis", ([0.0, 0.0, 0.0], "XYZ"))
        bones.append(
            AsfBone(
                name=bname,
                direction=np.asarray(block["direction"], dtype=np.float64),
                length=float(block["length"]),  # type: ignore[arg-type]
                axis=np.asarray(axis[0], dtype=np.float64),  # type: ignore[index]
                axis_order=axis[1],  # type: ignore[index]
                dof=tuple(block.get("dof", ())),  # type: ignore[arg-type]
            )
        )

    for lineno, raw in enumerate(text.splitlines(), start=1):
        where = f"{source}: line {lineno}"
        toks = _tokens(raw)
        if not toks:
            continue
        head = toks[0]
        if head.startswith(":"):
            if block is not None:
                raise Key2MeshError(f"{where}: bone block opened on line {block_line} has no 'end'")
            if hier_open:
                raise Key2MeshError(f"{where}: :hierarchy has no 'end'")
            section = head[1:].lower()
            rest = toks[1:]
            if section == "name":
                name = " ".join(rest)
            elif section == "units":
                rest_pairs = rest
                if rest_pairs:
                    length_scale, angle_unit = _units(rest_pairs, length_scale, angle_unit, where)
            elif section == "root":
                root = {}
            elif section == "hierarchy":
                if parents is not None:
                    raise Key2MeshError(f"{where}: second :hierarchy section")
                parents = {}
            continue

        if section == "units":
            length_scale, angle_unit = _units(toks, length_scale, angle_unit, where)
        elif section == "root":
            assert root is not None
            root[head.lower()] = toks[1:]
        elif section == "bonedata":
            key = head.lower()
            if key == "begin":
                if block is not None:
                    raise Key2MeshError(
                        f"{where}: 'begin' inside the bone block of line {block_line}"
                    )
                block, block_line, last_key = {}, lineno, ""
                continue
            if block is None:
                raise Key2MeshError(f"{where}: {head!r} outside a begin/end bone block")
            if key == "end":
                finish_bone(where)
                block = None
                continue
            if _is_number(head):
                if last_key == "limits":
                    continue  # a continuation line of limits: (lo hi)
                raise Key2MeshError(f"{where}: unexpected numbers in a bone block")
            last_key = key
            if key == "name":
                if len(toks) != 2:
                    raise Key2MeshError(f"{where}: 'name' needs exactly one word")
                block["name"] = toks[1]
            elif key == "direction":
                block["direction"] = _floats(toks[1:], 3, "direction", where)
            elif key == "length":
                (length,) = _floats(toks[1:], 1, "length", where)
                if length < 0:
                    raise Key2MeshError(f"{where}: negative bone length {length}")
                block["length"] = length
            elif key == "axis":
                if len(toks) != 5:
                    raise Key2MeshError(f"{where}: 'axis' needs three angles and an order like XYZ")
                block["axis"] = (_floats(toks[1:4], 3, "axis", where), _order(toks[4], where))
            elif key == "dof":
                dof = tuple(t.lower() for t in toks[1:])
                bad = [d for d in dof if d not in KNOWN_DOFS]
                if bad or len(set(dof)) != len(dof):
                    raise Key2MeshError(f"{where}: bad dof list {' '.join(toks[1:])!r}")
                block["dof"] = dof
            # id, limits, bodymass, cofmass and other keys are not needed for kinematics
        elif section == "hierarchy":
            assert parents is not None
            key = head.lower()
            if key == "begin":
                hier_open = True
            elif key == "end":
                hier_open = False
            elif not hier_open:
                raise Key2MeshError(f"{where}: {head!r} outside :hierarchy begin/end")
            else:
                if len(toks) < 2:
                    raise Key2MeshError(f"{where}: hierarchy line {head!r} lists no children")
                for child in toks[1:]:
                    if child in parents:
                        raise Key2MeshError(f"{where}: bone {child!r} has two parents")
                    parents[child] = head
        # :version, :documentation and unknown sections are ignored

    if block is not None:
        raise Key2MeshError(f"{source}: bone block opened on line {block_line} has no 'end'")
    if hier_open:
        raise Key2MeshError(f"{source}: :hierarchy has no 'end'")
    if root is None:
        raise Key2MeshError(f"{source}: no :root section")

    order = tuple(t.upper() for t in root.get("order", list(ROOT_CHANNELS)))
    if any(c not in ROOT_CHANNELS for c in order) or len(set(order)) != len(order):
        raise Key2MeshError(f"{source}: :root order {' '.join(order)!r} is not made of TX..RZ")
    root_axis = _order(root["axis"][0], f"{source}: :root axis") if root.get("axis") else "XYZ"
    position = _floats(root.get("position", ["0", "0", "0"]), 3, ":root position", source)
    orientation = _floats(root.get("orientation", ["0", "0", "0"]), 3, ":root orientation", source)

    skeleton = AsfSkeleton(
        name=name,
        length_scale=length_scale,
        angle_unit=angle_unit,
        root_order=order,
        root_axis=root_axis,
        root_position=np.asarray(position, dtype=np.float64),
        root_orientation=np.asarray(orientation, dtype=np.float64),
        bones=bones,
    )
    if bones and parents is None:
        raise Key2MeshError(f"{source}: no :hierarchy section")
    _attach(skeleton, parents or {}, source)
    return skeleton


def _units(toks: list[str], length: float, angle: str, where: str) -> tuple[float, str]:
    """Apply ``key value`` pairs of ``:units`` (mass is ignored)."""
    if len(toks) % 2:
        raise Key2MeshError(f"{where}: :units entries come in 'key value' pairs")
    for key, value in zip(toks[::2], toks[1::2]):
        key = key.lower()
        if key == "length":
            (length,) = _floats([value], 1, "units length", where)
            if length <= 0:
                raise Key2MeshError(f"{where}: units length must be positive, got {value}")
        elif key == "angle":
            angle = _angle_unit(value, where)
    return length, angle


def _attach(skeleton: AsfSkeleton, parents: dict[str, str], source: str) -> None:
    """Set each bone's parent from ``parents`` (child -> parent) and check it is a tree."""
    names = {b.name for b in skeleton.bones}
    for child, parent in parents.items():
        if child not in names:
            raise Key2MeshError(f"{source}: :hierarchy names {child!r}, which is not in :bonedata")
        if parent != ROOT and parent not in names:
            raise Key2MeshError(f"{source}: :hierarchy names {parent!r}, which is not in :bonedata")
    for b in skeleton.bones:
        if b.name not in parents:
            raise Key2MeshError(f"{source}: bone {b.name!r} has no parent in :hierarchy")
        b.parent = parents[b.name]
    _topological_order(skeleton, source)


def _topological_order(skeleton: AsfSkeleton, source: str) -> list[int]:
    """Indices of ``skeleton.bones``, every parent before its children."""
    index = {b.name: i for i, b in enumerate(skeleton.bones)}
    children: dict[str, list[int]] = {}
    for i, b in enumerate(skeleton.bones):
        children.setdefault(b.parent, []).append(i)
    order: list[int] = []
    stack = [ROOT]
    while stack:
        for i in reversed(children.get(stack.pop(), [])):
            order.append(i)
            stack.append(skeleton.bones[i].name)
    if len(order) != len(skeleton.bones):
        reached = {skeleton.bones[i].name for i in order}
        lost = sorted(n for n in index if n not in reached)
        raise Key2MeshError(f"{source}: :hierarchy has a cycle through {', '.join(lost)}")
    return order


# ---------------------------------------------------------------------------------------------
# AMC


def _amc_channels(skeleton: AsfSkeleton) -> dict[str, tuple[str, ...]]:
    """Name -> channels as the AMC lists them (root first, then bones that have dofs)."""
    channels = {ROOT: tuple(c.lower() for c in skeleton.root_order)}
    channels.update({b.name: b.dof for b in skeleton.bones if b.dof})
    return channels


def parse_amc(text: str, skeleton: AsfSkeleton, source: str = "<amc>") -> dict[str, np.ndarray]:
    """Parse an AMC motion for ``skeleton``: ``{name: (F, ndof) float64}`` in dof order.

    ``"root"`` and every bone with dofs are present; rotation values are returned in **degrees**
    (converted from radians under ``:RADIANS``, or when the ASF's angle unit is rad and the AMC
    states neither), translations in ASF length units.
    """
    text = text.removeprefix("\ufeff")  # a UTF-8 byte-order mark (files saved on Windows)
    channels = _amc_channels(skeleton)
    radians = skeleton.angle_unit == "rad"
    values: dict[str, list[list[float]]] = {n: [] for n in channels}
    seen: set[str] = set()
    frame: int | None = None
    frame_line = 0

    def close_frame() -> None:
        if frame is not None and len(seen) != len(channels):
            missing = [n for n in channels if n not in seen]
            raise Key2MeshError(
                f"{source}: line {frame_line}: frame {frame} has no values for "
                f"{', '.join(missing[:5])}{' …' if len(missing) > 5 else ''}"
            )

    n_frames = 0
    for lineno, raw in enumerate(text.splitlines(), start=1):
        toks = _tokens(raw)
        if not toks:
            continue
        head = toks[0]
        if head.startswith(":"):
            key = head[1:].lower()
            if key in ("degrees", "deg"):
                radians = False
            elif key in ("radians", "rad"):
                radians = True
            continue  # :FULLY-SPECIFIED and other header keywords
        if (
            len(toks) == 1 and head.isascii() and head.isdigit()
        ):  # not "²": str.isdigit() is wider than int()
            close_frame()
            number = int(head)
            if frame is not None and number != frame + 1:
                raise Key2MeshError(
                    f"{source}: line {lineno}: frame {number} follows frame {frame}"
                )
            frame, frame_line, n_frames = number, lineno, n_frames + 1
            seen = set()
            continue
        where = f"{source}: line {lineno}"
        if frame is None:
            raise Key2MeshError(f"{where}: {head!r} before the first frame number")
        if head not in channels:
            if any(b.name == head for b in skeleton.bones):
                if len(toks) == 1:
                    continue  # a bone without dofs listed with no values
                raise Key2MeshError(f"{where}: bone {head!r} has no dofs but has values")
            raise Key2MeshError(f"{where}: unknown bone {head!r} (not in the skeleton)")
        if head in seen:
            raise Key2MeshError(f"{where}: bone {head!r} appears twice in frame {frame}")
        seen.add(head)
        values[head].append(_floats(toks[1:], len(channels[head]), f"bone {head!r}", where))
    close_frame()
    if n_frames == 0:
        raise Key2MeshError(f"{source}: no frames")

    motion: dict[str, np.ndarray] = {}
    for name, chans in channels.items():
        arr = np.asarray(values[name], dtype=np.float64).reshape(n_frames, len(chans))
        if radians:
            rot = [i for i, c in enumerate(chans) if c.startswith("r")]
            with np.errstate(over="ignore"):
                arr[:, rot] = np.degrees(arr[:, rot])
            if not np.isfinite(arr).all():
                raise Key2MeshError(
                    f"{source}: {name!r} has an angle too large to convert from radians"
                )
        motion[name] = arr
    return motion


def _declared_fps(text: str) -> float | None:
    """A frame rate stated by a ``:samples-per-second N`` style keyword line, if any."""
    for raw in text.splitlines():
        toks = _tokens(raw)
        if len(toks) == 2 and toks[0].startswith(":") and toks[0][1:].lower() in _FPS_KEYWORDS:
            try:
                fps = float(toks[1])
            except ValueError:
                return None
            return fps if math.isfinite(fps) and fps > 0 else None
        if toks and toks[0].isdigit() and len(toks) == 1:
            break  # AMC frames started: the header is over
    return None


# ---------------------------------------------------------------------------------------------
# forward kinematics


def _channel_array(
    motion: dict[str, np.ndarray], name: str, n: int, frames: int | None
) -> np.ndarray:
    if name not in motion:
        raise Key2MeshError(f"motion has no values for {name!r}")
    arr = np.asarray(motion[name], dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != n or (frames is not None and arr.shape[0] != frames):
        want = f"({frames if frames is not None else 'F'}, {n})"
        raise Key2MeshError(f"motion[{name!r}] has shape {arr.shape}, expected {want}")
    if not np.isfinite(arr).all():
        raise Key2MeshError(f"motion[{name!r}] has non-finite values")
    return arr


def asf_amc_joint_positions(
    skeleton: AsfSkeleton,
    motion: dict[str, np.ndarray],
    metres_per_unit: float | None = None,
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Forward kinematics: ``(F, 1 + n_bones + n_leaves, 3)`` float32 metres (y up) and names.

    ``motion`` is :func:`parse_amc`'s output (angles in degrees). Names are ``"root"`` (the root
    translation), each bone in file order (the joint where it starts, i.e. its parent's end) and
    ``"<leaf>_end"`` for each leaf bone in file order. ``metres_per_unit`` defaults to
    ``0.0254 / skeleton.length_scale`` (0.056444 for CMU's ``length 0.45``).
    """
    if metres_per_unit is None:
        metres_per_unit = 0.0254 / skeleton.length_scale
    channels = _amc_channels(skeleton)
    unknown = sorted(set(motion) - set(channels))
    if unknown:
        raise Key2MeshError(f"motion has values for {', '.join(unknown)}, not in the skeleton")
    root_vals = _channel_array(motion, ROOT, len(channels[ROOT]), None)
    frames = root_vals.shape[0]
    if frames == 0:
        raise Key2MeshError("motion has no frames")
    to_rad = np.radians if skeleton.angle_unit == "deg" else (lambda a: np.asarray(a, float))

    # root
    translation = np.zeros((frames, 3))
    rotation = np.zeros((frames, 3))
    for i, chan in enumerate(channels[ROOT]):
        target = translation if chan[0] == "t" else rotation
        target[:, "xyz".index(chan[1])] = root_vals[:, i]
    c_root = euler_matrix(to_rad(skeleton.root_orientation), skeleton.root_axis)
    g_root = c_root @ euler_matrix(np.radians(rotation)) @ c_root.T  # (F, 3, 3)
    with np.errstate(over="ignore"):
        root_pos = translation + skeleton.root_position

    starts: dict[str, np.ndarray] = {}
    ends: dict[str, np.ndarray] = {ROOT: root_pos}
    rots: dict[str, np.ndarray] = {ROOT: g_root}
    for i in _topological_order(skeleton, "skeleton"):
        bone = skeleton.bones[i]
        angles = np.zeros((frames, 3))
        if bone.dof:
            vals = _channel_array(motion, bone.name, len(bone.dof), frames)
            for j, d in enumerate(bone.dof):
                if d not in ROTATION_DOFS:
                    raise Key2MeshError(
                        f"bone {bone.name!r} has dof {d!r}; only rx ry rz are supported"
                    )
                angles[:, "xyz".index(d[1])] = vals[:, j]
        c = euler_matrix(to_rad(bone.axis), bone.axis_order)
        local = c @ euler_matrix(np.radians(angles)) @ c.T
        rots[bone.name] = rots[bone.parent] @ local
        starts[bone.name] = ends[bone.parent]
        with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported at the end
            offset = bone.direction * bone.length  # (3,)
            ends[bone.name] = starts[bone.name] + rots[bone.name] @ offset

    parents = {b.parent for b in skeleton.bones}
    leaves = [b.name for b in skeleton.bones if b.name not in parents]
    names = (ROOT, *(b.name for b in skeleton.bones), *(f"{n}_end" for n in leaves))
    stacked = [root_pos, *(starts[b.name] for b in skeleton.bones), *(ends[n] for n in leaves)]
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported below
        positions = (np.stack(stacked, axis=1) * metres_per_unit).astype(np.float32)
    if not np.isfinite(positions).all():
        raise Key2MeshError(
            "joint positions overflow (bone lengths, offsets or translations too large for metres "
            f"in float32 at {metres_per_unit:g} m per unit)"
        )
    return positions, names


# ---------------------------------------------------------------------------------------------
# files


def _read_text(path: str | Path) -> str:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise Key2MeshError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def read_asf_amc(
    asf_path: str | Path, amc_path: str | Path
) -> tuple[np.ndarray, tuple[str, ...], float]:
    """Read an ASF + AMC pair: ``(positions (F, J, 3) float32 metres, names, fps)``.

    ``fps`` is 120 (CMU's capture rate) unless a ``:samples-per-second N`` line (or
    ``:frame-rate``/``:fps``) in the AMC header or the ASF says otherwise.
    """
    return asf_amc_from_text(
        _read_text(asf_path), _read_text(amc_path), str(asf_path), str(amc_path)
    )


def asf_amc_from_text(
    asf_text: str, amc_text: str, asf_source: str = "<asf>", amc_source: str = "<amc>"
) -> tuple[np.ndarray, tuple[str, ...], float]:
    """:func:`read_asf_amc` on already-read texts (e.g. members of an archive); the sources name
    the files in errors."""
    skeleton = parse_asf(asf_text, source=asf_source)
    motion = parse_amc(amc_text, skeleton, source=amc_source)
    try:
        positions, names = asf_amc_joint_positions(skeleton, motion)
    except Key2MeshError as exc:
        raise Key2MeshError(f"{amc_source}: {exc}") from None
    fps = _declared_fps(amc_text) or _declared_fps(asf_text) or DEFAULT_FPS
    return positions, names, fps
