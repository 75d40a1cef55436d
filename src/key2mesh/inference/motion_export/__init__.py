"""Motion exports per track: BVH (Blender and other animation tools), glTF binary (skinned
anny mesh with its animation: browsers, glTF viewers), TRC (3D markers for OpenSim / Pose2Sim)
and AMASS-style npz (SMPL bodies: the SMPL-X Blender add-on, AMASS tools).

Every format is written from :class:`~key2mesh.inference.motion.Motion` rows of one track,
resampled onto the track's regular frame grid (:func:`~.series.track_series`: frames the
detector missed are interpolated, rotations by slerp), in the motion's export frame
(:mod:`~key2mesh.inference.world`: the ground frame by default) and on one clock, the video's:
TRC ``Time`` and glTF keys are ``frame / fps``; a BVH starts at its track's first frame (its
``Frame Time`` is the sampling interval; the start is in the params sidecar's
``tracks.<id>.start_s``). With ``glb``, ``<stem>_all.glb`` holds every track on that timeline
and the video camera."""

from __future__ import annotations

import logging
import re
from pathlib import Path

from key2mesh.errors import Key2MeshError

log = logging.getLogger(__name__)

EXPORT_FORMATS = ("bvh", "glb", "trc", "amass")


def parse_formats(spec: str | None) -> tuple[str, ...]:
    """``"bvh,glb"`` → ("bvh", "glb"); a one-line error for unknown names."""
    if not spec:
        return ()
    names = tuple(dict.fromkeys(s.strip().lower() for s in spec.split(",") if s.strip()))
    bad = [n for n in names if n not in EXPORT_FORMATS]
    if bad:
        raise Key2MeshError(
            f"--export: unknown format(s) {', '.join(bad)}; choose from {', '.join(EXPORT_FORMATS)}"
        )
    return names


TAILS = {"bvh": ".bvh", "trc": ".trc", "glb": ".glb", "amass": "_amass.npz"}


def export_pattern(stem: str, formats) -> str:
    """A regular expression matching every file name :func:`export_motion` may write for
    ``stem`` and ``formats`` (any track id)."""
    formats = parse_formats(",".join(formats))
    tails = "|".join(re.escape(TAILS[f]) for f in formats)
    family = rf"{re.escape(stem)}_track-?\d+(?:{tails})"
    return rf"(?:{family}|{re.escape(stem)}_all\.glb)" if "glb" in formats else family


def check_formats(formats, body: str) -> None:
    """A one-line error, before any work, for a format the body model cannot be written as."""
    from key2mesh.body.traits import body_traits

    if "amass" in formats and not body_traits(body).supports_amass:
        raise Key2MeshError(
            "--export amass writes SMPL parameters (AMASS / SMPL-X add-on); this model's body is "
            f"{body}: use bvh, glb or trc, or an SMPL checkpoint"
        )


def export_motion(
    model, motion, out_dir: str | Path, stem: str, formats, names=None, what: str = "an export"
) -> list[Path]:
    """Write ``<stem>_track<ID><tail>`` for every track and format into ``out_dir`` (the tail
    appended, so a dotted stem keeps its track id); returns the paths. ``names``: an
    :class:`~key2mesh.safe_paths.OutputNames` each path is claimed in (as ``what``) before it is
    written. ``amass`` needs an SMPL body (a one-line error for anny). With ``glb``, also
    ``<stem>_all.glb``: every track on the video's timeline, with the video camera. A track
    without any camera fit (no position) is left out with a warning."""
    import numpy as np

    from key2mesh.inference.motion_export.series import track_series
    from key2mesh.safe_paths import remove_stale, stem_path

    formats = (
        parse_formats(",".join(formats)) if not isinstance(formats, str) else parse_formats(formats)
    )
    check_formats(formats, motion.body)
    camera = _camera(motion)
    written: list[Path] = []
    every = []
    fitted = np.isfinite(motion.transl).all(1)
    for track in motion.tracks():
        if not fitted[motion.track_id == track].any():  # nothing to place (as in the viewer)
            log.warning("track %s has no frame with a camera fit: not exported", track)
            continue
        series = track_series(motion, track)
        for fmt in (f for f in TAILS if f in formats):
            path = stem_path(out_dir, f"{stem}_track{track}", TAILS[fmt])
            if names is not None:
                names.claim(path, what)
            written.append(_WRITERS[fmt](model, series, path, camera))
        if "glb" in formats:
            every.append(series)
    if every:
        from key2mesh.inference.motion_export.gltf import write_glb

        path = stem_path(out_dir, f"{stem}_all", ".glb")
        if names is not None:
            names.claim(path, what)
        written.append(write_glb(model, every, path, camera))
    # an earlier run's files of this family that this one did not write (e.g. a track that is
    # gone) would pass for this motion's
    remove_stale(out_dir, export_pattern(stem, formats), written)
    return written


def _camera(motion) -> dict | None:
    """The video camera in the export frame (:func:`~key2mesh.inference.world.camera_pose`)."""
    from key2mesh.inference.world import camera_pose, camera_world

    if not len(motion):
        return None
    world = motion.world if motion.world is not None else camera_world(len(motion))
    return camera_pose(world, float(motion.focal_length[0]), motion.image_size)


def _bvh(model, series, path: Path, camera=None) -> Path:
    from key2mesh.inference.motion_export.bvh import write_bvh

    return write_bvh(model, series, path)


def _trc(model, series, path: Path, camera=None) -> Path:
    from key2mesh.inference.motion_export.trc import write_trc

    return write_trc(series, path)


def _glb(model, series, path: Path, camera=None) -> Path:
    from key2mesh.inference.motion_export.gltf import write_glb

    return write_glb(model, series, path, camera)


def _amass(model, series, path: Path, camera=None) -> Path:
    from key2mesh.inference.motion_export.amass import write_amass

    return write_amass(model, series, path)


_WRITERS = {"bvh": _bvh, "trc": _trc, "glb": _glb, "amass": _amass}
