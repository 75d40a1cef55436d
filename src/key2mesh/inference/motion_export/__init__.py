"""Motion exports per track: BVH (Blender and other animation tools), glTF binary (skinned
anny mesh with its animation: browsers, glTF viewers), TRC (3D markers for OpenSim / Pose2Sim)
and AMASS-style npz (SMPL bodies: the SMPL-X Blender add-on, AMASS tools).

Every format is written from :class:`~key2mesh.inference.motion.Motion` rows of one track,
resampled onto the track's regular frame grid (:func:`~.series.track_series`: frames the
detector missed are interpolated, rotations by slerp)."""

from __future__ import annotations

from pathlib import Path

from key2mesh.errors import Key2MeshError

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


def export_motion(model, motion, out_dir: str | Path, stem: str, formats) -> list[Path]:
    """Write ``<stem>_track<ID>.<ext>`` for every track and format into ``out_dir``; returns
    the paths. ``amass`` needs an SMPL body (a one-line error for anny)."""
    from key2mesh.inference.motion_export.series import track_series

    formats = (
        parse_formats(",".join(formats)) if not isinstance(formats, str) else parse_formats(formats)
    )
    if "amass" in formats and motion.body != "smpl":
        raise Key2MeshError(
            "--export amass writes SMPL parameters (AMASS / SMPL-X add-on); this model's body is "
            f"{motion.body}: use bvh, glb or trc, or an SMPL checkpoint"
        )
    out_dir = Path(out_dir)
    written: list[Path] = []
    for track in motion.tracks():
        series = track_series(motion, track)
        base = out_dir / f"{stem}_track{track}"
        if "bvh" in formats:
            from key2mesh.inference.motion_export.bvh import write_bvh

            written.append(write_bvh(model, series, base.with_suffix(".bvh")))
        if "trc" in formats:
            from key2mesh.inference.motion_export.trc import write_trc

            written.append(write_trc(series, base.with_suffix(".trc")))
        if "glb" in formats:
            from key2mesh.inference.motion_export.gltf import write_glb

            written.append(write_glb(model, series, base.with_suffix(".glb")))
        if "amass" in formats:
            from key2mesh.inference.motion_export.amass import write_amass

            written.append(write_amass(model, series, base.with_name(base.name + "_amass.npz")))
    return written
