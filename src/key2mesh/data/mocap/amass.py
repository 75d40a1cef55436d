"""AMASS motions (user-supplied ``.npz`` files; AMASS is not redistributable).

An AMASS file holds ``poses`` (F, 156) SMPL-H axis-angles (or (F, 72) SMPL, (F, 165) SMPL-X),
``betas`` (16,), ``mocap_framerate`` (``mocap_frame_rate`` in the SMPL-X release), ``trans`` and
``gender``. We keep the 22 body joints (``poses[:, :66]``), set the two SMPL hand joints to
identity (kept as given for 72-wide SMPL poses), keep ``betas[:10]`` and subsample to a target
frame rate. Clips of AMASS's CMU subset carry their CMU subject (``cmu_02``), as the CMU BVH/ASF
clips do, for held-out splits by subject.

AMASS global orientations live in a z-up world; key2mesh's world is y-up, so the root rotation is
left-multiplied by ``Rx(-90°)`` (a person standing along +z then stands along +y).
"""

from __future__ import annotations

import math
import re
import zipfile
from pathlib import Path

import numpy as np
import roma
import torch

from key2mesh.data.mocap.clip import LoadReport, MotionClip, register_loader
from key2mesh.errors import Key2MeshError

FPS_KEYS = ("mocap_framerate", "mocap_frame_rate")
# AMASS folders hold one shape.npz (SMPL+H) or <gender>_stagei.npz (SMPL-X; GRAB and SOMA in
# SMPL+H too) per subject: the shape and marker calibration, not a motion.
METADATA_FILES = frozenset({"shape.npz"})
METADATA_SUFFIX = "_stagei.npz"
# AMASS is downloaded as one .tar.bz2 per sub-dataset; the loader reads the extracted .npz files.
ARCHIVE_SUFFIXES = (".tar.bz2", ".tbz2", ".tar.gz", ".tgz", ".tar.xz", ".tar", ".zip")


def _extract_first(archives: list[Path]) -> str:
    """The message for AMASS archives given instead of their extracted .npz files."""
    names = ", ".join(a.name for a in archives[:3]) + (" ..." if len(archives) > 3 else "")
    first = archives[0].name
    tool = "unzip" if first.lower().endswith(".zip") else "tar xf"
    return (
        f"AMASS is read from extracted .npz files, not from its archives ({names}): "
        f"extract them first (e.g. `{tool} {first}`) and pass the folder"
    )


def _archives(paths) -> list[Path]:
    return [p for p in paths if p.name.lower().endswith(ARCHIVE_SUFFIXES)]


def zup_to_yup() -> np.ndarray:
    """(3, 3) Rx(-90°): z-up world coordinates → y-up world coordinates ((0,0,1) → (0,1,0))."""
    return np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])


NEEDED_KEYS = ("poses", "betas", *FPS_KEYS)


def _read_npz(path: Path) -> tuple[dict[str, np.ndarray], list[str]]:
    """The needed arrays of ``path`` and the names of all its keys (other keys, such as an
    object-dtype ``gender``, are never unpickled)."""
    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise Key2MeshError(f"{path}: holds a single array, expected an AMASS .npz archive")
        with data:
            return {k: data[k] for k in data.files if k in NEEDED_KEYS}, list(data.files)
    except FileNotFoundError as exc:
        raise Key2MeshError(f"{path}: AMASS file not found") from exc
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise Key2MeshError(
            f"{path}: not a readable .npz file ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        ) from exc


def cmu_subject(path: Path) -> str | None:
    """The CMU subject of a file of AMASS's CMU subset (``CMU/<subject>/<subject>_<trial>_*.npz``),
    named as the CMU BVH/ASF loaders name it (``cmu_02``): a subject held out for validation then
    stays out of training whichever source carries its takes. None for other AMASS subsets."""
    parts = path.parts
    match = re.match(r"^(\d+)_\d+", path.stem)
    if len(parts) < 3 or parts[-3].lower() != "cmu" or match is None:
        return None
    return f"cmu_{int(match.group(1)):02d}"


# the take-name endings of AMASS's releases: SMPL+H ``<take>_poses.npz``, SMPL-X ``<take>_stageii.npz``
RELEASE_SUFFIXES = ("_poses", "_stageii")


def take_key(path: Path) -> tuple[str, str, str]:
    """(sub-dataset, subject, take) of an AMASS file, the same for a take's SMPL+H and SMPL-X
    files (``CMU/01/01_01_poses.npz`` and ``CMU/01/01_01_stageii.npz``): a folder holding both
    releases reads each take once (their contents differ, so no content check finds them)."""
    stem = path.stem
    for suffix in RELEASE_SUFFIXES:
        stem = stem.removesuffix(suffix)
    parts = path.parts
    return (
        parts[-3].lower() if len(parts) > 2 else "",
        parts[-2].lower() if len(parts) > 1 else "",
        stem.lower(),
    )


def load_amass_file(path: str | Path, target_fps: float | None = 30.0) -> MotionClip:
    """One AMASS ``.npz`` → :class:`MotionClip` with rotmats (F', 24, 3, 3) in key2mesh's y-up world,
    betas (10,) (or None when the file has none), subsampled to ``target_fps`` (None keeps all)."""
    path = Path(path)
    data, keys = _read_npz(path)
    found = ", ".join(sorted(keys)) or "none"
    fps_key = next((k for k in FPS_KEYS if k in data), None)
    if "poses" not in data or fps_key is None:
        raise Key2MeshError(
            f"{path}: expected AMASS keys 'poses' and 'mocap_framerate' (or 'mocap_frame_rate'), found: {found}"
        )
    poses = np.asarray(data["poses"])
    if poses.dtype.kind not in "iuf":
        raise Key2MeshError(f"{path}: 'poses' must hold numbers, got dtype {poses.dtype}")
    if poses.ndim != 2 or poses.shape[1] < 66 or poses.shape[1] % 3:
        raise Key2MeshError(
            f"{path}: 'poses' has shape {poses.shape}, expected (F, 156) SMPL-H, (F, 72) SMPL or (F, 165) SMPL-X axis-angles"
        )
    if poses.shape[0] == 0:
        raise Key2MeshError(f"{path}: 'poses' has zero frames")
    bad = np.flatnonzero(~np.isfinite(poses).all(axis=1))
    if len(bad):
        raise Key2MeshError(
            f"{path}: 'poses' has {len(bad)} frames with NaN/inf values (first: frame {int(bad[0])})"
        )
    try:
        fps = float(np.asarray(data[fps_key]).reshape(-1)[0])
    except (IndexError, TypeError, ValueError) as exc:
        raise Key2MeshError(f"{path}: '{fps_key}' is not a number") from exc
    if not (math.isfinite(fps) and fps > 0):
        raise Key2MeshError(f"{path}: '{fps_key}' = {fps}, expected a frame rate > 0")
    betas = None
    if "betas" in data:
        if np.asarray(data["betas"]).dtype.kind not in "iuf":
            raise Key2MeshError(
                f"{path}: 'betas' must hold numbers, got dtype {np.asarray(data['betas']).dtype}"
            )
        betas = np.asarray(data["betas"], dtype=np.float32).reshape(-1)[:10]
        if betas.shape[0] < 10 or not np.isfinite(betas).all():
            raise Key2MeshError(
                f"{path}: 'betas' must hold at least 10 finite values, got {data['betas'].shape}"
            )

    n_joints = 24 if poses.shape[1] == 72 else 22
    aa = np.zeros((poses.shape[0], 24, 3), dtype=np.float64)
    aa[:, :n_joints] = poses[:, : 3 * n_joints].reshape(-1, n_joints, 3)
    rotmats = roma.rotvec_to_rotmat(torch.from_numpy(aa)).numpy()
    rotmats[:, 0] = zup_to_yup() @ rotmats[:, 0]
    clip = MotionClip(
        name=path.stem,
        source="amass",
        fps=fps,
        rotmats=rotmats.astype(np.float32),
        betas=betas,
        subject=cmu_subject(path),
    )
    if target_fps is not None:
        clip = clip.subsample(target_fps)
    return clip.validate()


def load_amass(paths: str | Path | list[str | Path], target_fps: float | None = 30.0) -> LoadReport:
    """AMASS files and/or folders (searched recursively for ``*.npz``) → :class:`LoadReport`.

    A bad file given explicitly raises :class:`Key2MeshError`; inside a folder it is skipped with a
    warning and counted in ``LoadReport.skipped``. An empty folder raises.
    """
    items = [paths] if isinstance(paths, (str, Path)) else list(paths)
    if not items:
        raise Key2MeshError("no AMASS path given")
    report = LoadReport()
    seen: dict[tuple[str, str, str], Path] = {}  # a take → the file it was read from
    for item in map(Path, items):
        if item.is_dir():
            files = sorted(
                p
                for p in item.rglob("*.npz")
                if p.name not in METADATA_FILES and not p.name.endswith(METADATA_SUFFIX)
            )
            if not files:
                archives = _archives(sorted(p for p in item.rglob("*") if p.is_file()))
                hint = f"; {_extract_first(archives)}" if archives else ""
                raise Key2MeshError(f"{item}: folder holds no AMASS .npz motion file{hint}")
            for f in files:
                first = seen.setdefault(take_key(f), f)
                if first != f:  # the other release of a take already read
                    report.skip(f, f"the same take as {first} (another AMASS release): read once")
                    continue
                try:
                    report.clips.append(load_amass_file(f, target_fps))
                except Key2MeshError as exc:
                    report.skip(f, str(exc))
        elif _archives([item]):
            raise Key2MeshError(f"{item}: {_extract_first([item])}")
        elif item.exists() or item.suffix == ".npz":
            report.clips.append(load_amass_file(item, target_fps))
        else:
            raise Key2MeshError(f"{item}: no such AMASS file or folder")
    return report


register_loader("amass", load_amass)
