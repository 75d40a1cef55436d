"""Skeleton MoCap files (BVH, ASF/AMC) as joint-position clips, e.g. the CMU MoCap database.

``key2mesh data prepare --bvh PATH --asf-amc PATH`` reads folders of files or ``.tar.xz`` /
``.tar.gz`` / ``.zip`` archives in place (nothing is extracted to disk). Each file goes through
forward kinematics (:mod:`~key2mesh.data.mocap.bvh`, :mod:`~key2mesh.data.mocap.asf_amc`); its
joints are renamed to SMPL-24 names by one of the joint-name tables below (cgspeed/Daz,
CMU-ASF, MotionBuilder/Mixamo, chosen per file by the most matches) and scaled to metres; the
poses then come from the batched IK (:mod:`~key2mesh.data.mocap.ik`) in ``prepare``.

Per-trial facts come from an index file (CMU's ``INDEX.tsv`` layout: ``trial``, ``subject``,
``tpose_frames``, ``cmu_fps``), found next to the archive or given with ``--index``: the true
capture rate (cgspeed wrote 120 fps into the 60 fps salsa trials) and the added T-pose frames to
drop. ``--fps-override PATTERN=FPS`` (glob on the trial name) does the same without an index.
Without either, leading T-pose frames are detected (both arms horizontal, then a jump). After
a dropped T-pose, the few frames that ease from it into the motion are dropped too
(:func:`blend_prefix`).
Unreadable files and files of an unknown skeleton are skipped, counted and named.
"""

from __future__ import annotations

import csv
import fnmatch
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from key2mesh.data.mocap.clip import LoadReport, MotionClip, register_loader
from key2mesh.errors import Key2MeshError
from key2mesh.safe_extract import TAR_SUFFIXES, read_members

log = logging.getLogger(__name__)

_SIDES = (("l", "left"), ("r", "right"))


def _sided(pairs: dict[str, str], left: str, right: str) -> dict[str, str]:
    """Expand ``{"{s}Thigh": "hip"}`` into both sides with the file's side prefixes."""
    out = {}
    for pattern, joint in pairs.items():
        out[pattern.format(s=left)] = f"smpl_left_{joint}"
        out[pattern.format(s=right)] = f"smpl_right_{joint}"
    return out


# File joint name → SMPL-24 joint at about the same anatomical place (positions at the START of
# the named bone, as BVH joints are). Spine joints are matched by height above the pelvis.
# Collars are left out: cgspeed's and CMU's clavicles start at the spine (SMPL's ~7 cm to the
# side), and fitting them pulled the shoulders ~10 cm off; without them the IK puts elbows,
# wrists, knees and ankles within ~2-12 mm of the capture (measured on CMU 02_01, 05_02).
JOINT_TABLES: dict[str, dict[str, str]] = {
    # cgspeed's "Daz-friendly" CMU conversion (43 joints, ≈ cm, Y up)
    "cgspeed_daz": {
        "hip": "smpl_pelvis", "abdomen": "smpl_spine2", "chest": "smpl_spine3", "neck": "smpl_neck",
        "head": "smpl_head",
        **_sided({"{s}Shldr": "shoulder", "{s}ForeArm": "elbow", "{s}Hand": "wrist",
                  "{s}Mid1": "hand", "{s}Thigh": "hip", "{s}Shin": "knee", "{s}Foot": "ankle",
                  "{s}Foot_end": "foot"}, "l", "r"),
    },
    # CMU's Acclaim bone names (ASF/AMC, and BVH conversions that keep them)
    "cmu_asf": {
        "root": "smpl_pelvis", "upperback": "smpl_spine1", "thorax": "smpl_spine2", "lowerneck": "smpl_spine3",
        "upperneck": "smpl_neck", "head": "smpl_head",
        **_sided({"{s}humerus": "shoulder", "{s}radius": "elbow", "{s}wrist": "wrist",
                  "{s}fingers": "hand", "{s}femur": "hip", "{s}tibia": "knee", "{s}foot": "ankle", "{s}toes": "foot"},
                 "l", "r"),
    },
    # MotionBuilder / Mixamo naming (CMU's own BVH release, Mixamo exports)
    "motionbuilder": {
        "Hips": "smpl_pelvis", "Spine": "smpl_spine1", "Spine1": "smpl_spine2", "Spine2": "smpl_spine3",
        "Neck": "smpl_neck", "Head": "smpl_head",
        **_sided({"{s}Shoulder": "collar", "{s}Arm": "shoulder", "{s}ForeArm": "elbow", "{s}Hand": "wrist",
                  "{s}HandMiddle1": "hand", "{s}UpLeg": "hip", "{s}Leg": "knee", "{s}Foot": "ankle",
                  "{s}ToeBase": "foot"}, "Left", "Right"),
    },
}  # fmt: skip

# Retargeting hints per table (MotionClip.ik_weights / ik_prior), measured on CMU 02_01, 05_02,
# 07_12 and 14_37. cgspeed's root "hip" sits 2.6 cm BELOW its thighs (SMPL's and anny's pelvis is
# above the hip joints), so fitting it pitched the pelvis ~100° forward with the spine and both
# hips bent back by as much; its clavicles start at the spine and its shoulders sit ~6 cm inside
# anny's, so the free collars rolled ~50° and the shoulders came 7 cm narrower (COCO shoulder width
# 254 mm vs 305-318 mm in the other sources). Without the root target, with the collars and the
# axial chain held near rest and the spine/neck/head targets down-weighted, spine angles are
# 1-7°, collars stay near rest, and elbows/wrists/knees/ankles are still within 1-6 mm.
_AXIAL = ("smpl_spine1", "smpl_spine2", "smpl_spine3", "smpl_neck", "smpl_head")
IK_HINTS: dict[str, dict[str, dict[str, float]]] = {
    "cgspeed_daz": {
        "ik_weights": {
            "smpl_pelvis": 0.0,
            "smpl_spine2": 0.2,
            "smpl_spine3": 0.2,
            "smpl_neck": 0.2,
            "smpl_head": 0.2,
        },
        "ik_prior": {
            "default": 1e-5,
            "smpl_left_collar": 1e-2,
            "smpl_right_collar": 1e-2,
            **dict.fromkeys(_AXIAL, 1e-3),
        },
    },
}

# Joints a file must have (after renaming) to be usable: pelvis and the 12 limb joints.
REQUIRED = ("smpl_pelvis",) + tuple(
    f"smpl_{side}_{j}"
    for side in ("left", "right")
    for j in ("hip", "knee", "ankle", "shoulder", "elbow", "wrist")
)
# Metres per file unit, per skeleton naming (BVH from cgspeed: cm; Mixamo: cm).
UNIT_SCALE: dict[str, float] = {"cgspeed_daz": 0.01, "cmu_asf": 1.0, "motionbuilder": 0.01}


def match_joint_table(
    names: tuple[str, ...] | list[str], source: str = ""
) -> tuple[str, dict[str, str]]:
    """The table covering most of ``names``, and its map restricted to ``names``.

    Raises :class:`Key2MeshError` listing the names when no table maps the pelvis and all 12 limb
    joints (an unknown skeleton). A namespace prefix (``mixamorig:Hips``) is ignored."""
    best, best_map = "", {}
    for table, mapping in JOINT_TABLES.items():
        found = {n: mapping[n.rsplit(":", 1)[-1]] for n in names if n.rsplit(":", 1)[-1] in mapping}
        if len(found) > len(best_map):
            best, best_map = table, found
    missing = [j for j in REQUIRED if j not in best_map.values()]
    if missing:
        known = set().union(*JOINT_TABLES.values())
        unknown = [n for n in names if n not in known]
        raise Key2MeshError(
            f"{source}: unknown skeleton: its joint names match none of the tables "
            f"({', '.join(JOINT_TABLES)}); closest {best or 'none'} lacks {[m.removeprefix('smpl_') for m in missing]}; "
            f"names not in any table: {unknown[:40]}{' …' if len(unknown) > 40 else ''}"
        )
    return best, best_map


@dataclass
class TrialInfo:
    """Per-trial facts from an index file: subject id, true capture fps, added T-pose frames."""

    subject: str | None = None
    fps: float | None = None
    tpose_frames: int | None = None


def read_index(path: str | Path) -> dict[str, TrialInfo]:
    """Trial name → :class:`TrialInfo` from a tab-separated index (columns ``trial`` and any of
    ``subject``, ``cmu_fps`` / ``fps``, ``tpose_frames``)."""
    path = Path(path)
    try:
        rows = list(csv.DictReader(path.read_text(encoding="utf-8").splitlines(), delimiter="\t"))
    except (OSError, UnicodeDecodeError) as exc:
        raise Key2MeshError(f"cannot read index {path}: {exc}") from exc
    if not rows or "trial" not in rows[0]:
        raise Key2MeshError(f"{path}: an index needs a tab-separated header with a 'trial' column")
    out = {}
    for r in rows:

        def num(key: str, typ=float, r=r):
            v = (r.get(key) or "").strip()
            try:
                return typ(float(v)) if v else None
            except ValueError as exc:
                raise Key2MeshError(
                    f"{path}: trial {r['trial']}: {key} = {v!r} is not a number"
                ) from exc

        fps = num("cmu_fps") or num("fps")
        subj = (r.get("subject") or "").strip()
        out[r["trial"].strip()] = TrialInfo(
            f"cmu_{int(subj):02d}" if subj.isdigit() else (subj or None),
            fps,
            num("tpose_frames", int),
        )
    return out


def parse_fps_overrides(items: list[str] | None) -> dict[str, float]:
    """``["60_*=60", "61_*=60"]`` → ``{"60_*": 60.0, ...}`` (glob pattern on the trial name)."""
    out = {}
    for item in items or []:
        for part in item.split(","):
            pat, sep, val = part.partition("=")
            try:
                fps = float(val)
            except ValueError:
                fps = -1.0
            if not sep or not pat or not (np.isfinite(fps) and fps > 0):
                raise Key2MeshError(f"--fps-override {part!r}: expected PATTERN=FPS, e.g. 60_*=60")
            out[pat.strip()] = fps
    return out


def _iter_files(path: Path, suffixes: tuple[str, ...]) -> Iterator[tuple[str, bytes | bytearray]]:
    """(name, bytes) of every file with one of ``suffixes`` in a folder, a file, or an archive
    (members read one at a time, checked and size-capped by :func:`~key2mesh.safe_extract.read_members`)."""
    name = path.name.lower()
    if path.is_dir():
        for f in sorted(p for p in path.rglob("*") if p.suffix.lower() in suffixes and p.is_file()):
            yield str(f), f.read_bytes()
    elif name.endswith((*TAR_SUFFIXES, ".zip")):
        for member, data in read_members(path, lambda m: Path(m).suffix.lower() in suffixes):
            yield f"{path}:{member}", data
    elif path.is_file() and path.suffix.lower() in suffixes:
        yield str(path), path.read_bytes()
    elif not path.exists():
        raise Key2MeshError(f"{path} does not exist")
    else:
        raise Key2MeshError(
            f"{path}: expected a folder, a {'/'.join(suffixes)} file, or a .tar.xz/.tar.gz/.zip archive"
        )


def _find_index(paths: list[Path]) -> Path | None:
    for p in paths:
        cand = (p if p.is_dir() else p.parent) / "INDEX.tsv"
        if cand.is_file():
            return cand
    return None


def _trial_name(member: str) -> str:
    return Path(member.split(":")[-1]).stem


def _subject_from_name(trial: str) -> str | None:
    m = re.match(r"^(\d+)_\d+", trial)
    return f"cmu_{int(m.group(1)):02d}" if m else None


def tpose_prefix(joints: np.ndarray, names: tuple[str, ...], max_frames: int = 5) -> int:
    """How many leading frames of (F, J, 3) metre positions are an added T-pose: both arms
    (shoulder → elbow → wrist) within 20° of horizontal, followed by a jump (mean joint move
    > 5 cm to the next frame)."""
    idx = {n: i for i, n in enumerate(names)}
    need = [f"smpl_{s}_{j}" for s in ("left", "right") for j in ("shoulder", "elbow", "wrist")]
    if any(n not in idx for n in need) or len(joints) < 2:
        return 0
    k = 0
    while k < min(max_frames, len(joints) - 1):
        f = joints[k]
        horizontal = True
        for s in ("left", "right"):
            for a, b in (("shoulder", "elbow"), ("elbow", "wrist")):
                v = f[idx[f"smpl_{s}_{b}"]] - f[idx[f"smpl_{s}_{a}"]]
                horizontal &= abs(v[1]) < np.sin(np.radians(20)) * np.linalg.norm(v)
        jump = np.linalg.norm(joints[k + 1] - joints[k], axis=-1).mean() > 0.05
        if not (horizontal and jump):
            break
        k += 1
    return k


def blend_prefix(
    joints: np.ndarray, ratio: float = 2.0, max_frames: int = 6, min_frames: int = 10
) -> int:
    """How many leading frames of (F, J, 3) positions still blend from an added T-pose into the
    motion: frames whose step to the next frame (mean joint move) is above ``ratio`` times the
    clip's median step, at most ``max_frames``; 0 for clips shorter than ``min_frames``.

    cgspeed's BVH files ease from their T-pose frame into the first captured pose over a few
    frames; ``benchmarks/cmu_blend_frames.py`` measures the steps on the 185 cgspeed trials and
    what this rule drops (``benchmarks/results/cmu_blend_frames.md``)."""
    if len(joints) < min_frames:
        return 0
    step = np.linalg.norm(np.diff(joints, axis=0), axis=-1).mean(axis=1)  # (F-1,)
    big = step[:max_frames] > ratio * np.median(step)
    return int(np.argmin(big)) if not big.all() else len(big)


def _to_clip(
    positions: np.ndarray,
    names: tuple[str, ...],
    fps: float,
    trial: str,
    source: str,
    member: str,
    info: TrialInfo | None,
    overrides: dict[str, float],
    metres: float | None,
) -> MotionClip:
    table, mapping = match_joint_table(names, member)
    keep = [i for i, n in enumerate(names) if n in mapping]
    scale = UNIT_SCALE[table] if metres is None else metres
    joints = (positions[:, keep] * scale).astype(np.float32)
    smpl_names = tuple(mapping[names[i]] for i in keep)
    _check_body_size(joints, smpl_names, member, table, scale)
    info = info or TrialInfo()
    fps = info.fps or fps  # the index's true rate, then any matching override (the last one wins)
    for pat, val in overrides.items():
        if fnmatch.fnmatch(trial, pat):
            fps = val
    drop = info.tpose_frames if info.tpose_frames is not None else tpose_prefix(joints, smpl_names)
    if drop >= len(joints):
        raise Key2MeshError(f"{member}: no frames left after dropping {drop} T-pose frame(s)")
    if drop:  # and the frames easing from the T-pose into the motion
        drop += blend_prefix(joints[drop:])
    subject = info.subject or _subject_from_name(trial)
    return MotionClip(
        name=trial,
        source=source,
        fps=float(fps),
        joints=joints[drop:],
        joint_names=smpl_names,
        subject=subject,
        **IK_HINTS.get(table, {}),
    ).validate()


def _trial_facts(paths: list[Path], index: str | Path | None, fps_override: list[str] | None):
    """(trial → :class:`TrialInfo` from ``index`` or an INDEX.tsv beside ``paths``, fps overrides)."""
    idx_path = Path(index) if index else _find_index(paths)
    return (read_index(idx_path) if idx_path else {}), parse_fps_overrides(fps_override)


# A thigh (hip to knee, median over the frames) outside this range (metres) means the file's
# units are not the ones assumed: a child's is ~0.2 m, an adult's ~0.4-0.5 m.
THIGH_RANGE_M = (0.12, 1.0)


def _check_body_size(
    joints: np.ndarray, names: tuple[str, ...], member: str, table: str, scale: float
) -> None:
    """A :class:`Key2MeshError` (the file is skipped, the reason reported) when the body is not
    human-sized in metres: e.g. a BVH converted from ASF that keeps CMU's bone names (read as
    metres) but is in inches or ASF units would train on a body 17-39x too tall."""
    at = {n: i for i, n in enumerate(names)}
    thighs = [
        np.linalg.norm(joints[:, at[f"smpl_{s}_hip"]] - joints[:, at[f"smpl_{s}_knee"]], axis=-1)
        for s in ("left", "right")
    ]
    thigh = float(np.median(np.concatenate(thighs)))
    low, high = THIGH_RANGE_M
    if not low <= thigh <= high:
        raise Key2MeshError(
            f"{member}: its thigh is {thigh:.3g} m long with {scale:g} m per file unit (the "
            f"{table} skeleton's unit): the file's units are not that naming's (expected "
            f"{low}-{high} m)"
        )


def load_bvh_files(
    paths: list[str | Path],
    index: str | Path | None = None,
    fps_override: list[str] | None = None,
    source: str = "bvh",
) -> LoadReport:
    """Every ``.bvh`` in ``paths`` (folders, files, archives) → joint clips (metres, SMPL names)."""
    from key2mesh.data.mocap.bvh import forward_kinematics, parse_bvh

    paths = [Path(p) for p in paths]
    info, overrides = _trial_facts(paths, index, fps_override)
    report = LoadReport()
    for path in paths:
        for member, data in _iter_files(path, (".bvh",)):
            trial = _trial_name(member)
            try:
                motion = parse_bvh(data.decode("utf-8", errors="replace"), member)
                pos, names = forward_kinematics(motion)
                report.clips.append(
                    _to_clip(
                        pos,
                        names,
                        motion.fps,
                        trial,
                        source,
                        member,
                        info.get(trial),
                        overrides,
                        None,
                    )
                )
            except Key2MeshError as exc:
                report.skip(member, str(exc))
    return report


def load_asf_amc_files(
    paths: list[str | Path],
    index: str | Path | None = None,
    fps_override: list[str] | None = None,
    source: str = "asf_amc",
) -> LoadReport:
    """Every ``.amc`` in ``paths`` with its subject's ``.asf`` (same folder: ``<subject>.asf``, or
    the only ``.asf`` there) → joint clips (metres, SMPL names). CMU's rate is 120 fps unless
    the AMC (or ASF) states one (``:samples-per-second N``)."""
    from key2mesh.data.mocap.asf_amc import asf_amc_from_text

    paths = [Path(p) for p in paths]
    info, overrides = _trial_facts(paths, index, fps_override)
    report = LoadReport()
    for path in paths:
        files = dict(
            _iter_files(path, (".asf", ".amc"))
        )  # ASF/AMC sets are small (≈ 100 MB for CMU 01+03)
        asfs: dict[str, list[str]] = {}
        for m in files:
            if m.lower().endswith(".asf"):
                asfs.setdefault(str(Path(m).parent), []).append(m)
        for member in sorted(m for m in files if m.lower().endswith(".amc")):
            trial = _trial_name(member)
            folder = asfs.get(str(Path(member).parent), [])
            subj = trial.split("_")[0]
            asf = next(
                (a for a in folder if Path(a).stem == subj), folder[0] if len(folder) == 1 else None
            )
            if asf is None:
                report.skip(member, f"no skeleton .asf beside it (looked for {subj}.asf)")
                continue
            try:
                asf_text, amc_text = (
                    files[m].decode("utf-8", errors="replace") for m in (asf, member)
                )
                pos, names, fps = asf_amc_from_text(asf_text, amc_text, asf, member)
                report.clips.append(
                    _to_clip(
                        pos, names, fps, trial, source, member, info.get(trial), overrides, 1.0
                    )
                )
            except Key2MeshError as exc:
                report.skip(member, str(exc))
    return report


register_loader("bvh", lambda paths=(), **kw: load_bvh_files(list(paths), **kw))
register_loader("asf_amc", lambda paths=(), **kw: load_asf_amc_files(list(paths), **kw))
