"""Pose2Sim's OpenSim setup for key2mesh's TRC files, with the upstream RHip marker corrected.

Pose2Sim (0.10.49, fetched as a wheel, never installed: :mod:`key2mesh.data.wheels`) ships a
generic model (``Model_Pose2Sim_simple.osim``), a marker set per keypoint set
(``Markers_Coco17.xml``, ``Markers_Body25.xml``) and scaling / IK setups. Its COCO_17 marker set
places ``RHip`` on the pelvis at (-0.005, -0.398, -0.001) m: on the midline, 0.4 m below the
pelvis origin, where no hip is, while ``LHip`` sits at (-0.064, -0.081, -0.105) (its BODY_25
set has both right). Scaling and IK then pull the right leg towards that point (sports2d,
``--frames 0:120:4``: IK RMS 100-104 mm with it, 17-23 mm corrected;
benchmarks/results/world_frame.md). :func:`corrected_markers` moves
``RHip`` to ``LHip`` mirrored across the pelvis' sagittal plane (z → -z), and
:func:`write_setup` writes the model, the corrected marker set and the setups into a folder.

:func:`run_ik` (needs the optional ``opensim`` package, e.g. ``pip install opensim``) scales
the model on a TRC and runs inverse kinematics; it returns the per-frame RMS marker error.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from key2mesh.errors import Key2MeshError

SETUP_DIR = "Pose2Sim/OpenSim_Setup/"
MODEL = "Model_Pose2Sim_simple.osim"
SETUPS = {  # keypoint set → Pose2Sim's (marker set, scaling setup, IK setup)
    "coco17": ("Markers_Coco17.xml", "Scaling_Setup_Pose2Sim_Coco17.xml", "IK_Setup_Pose2Sim_Coco17.xml"),
    "openpose_body25": ("Markers_Body25.xml", "Scaling_Setup_Pose2Sim_Body25.xml", "IK_Setup_Pose2Sim_Body25.xml"),
}  # fmt: skip
MIDLINE_M = 0.02  # a hip marker this close to the pelvis' sagittal plane is misplaced


def _setup_key(keypoint_set: str) -> str:
    from key2mesh.keypoints.sets import canonical_set_name

    key = canonical_set_name(keypoint_set)
    if key not in SETUPS:
        raise Key2MeshError(
            f"no Pose2Sim OpenSim setup for keypoint set {keypoint_set!r}; "
            f"known: {', '.join(SETUPS)}"
        )
    return key


def marker_locations(xml: str) -> dict[str, tuple[str, np.ndarray]]:
    """{marker: (parent frame, location (3,) m)} of an OpenSim marker set / model text."""
    out = {}
    for m in re.finditer(r'<Marker name="([^"]+)">(.*?)</Marker>', xml, re.S):
        body = m.group(2)
        parent = re.search(r"<socket_parent_frame>([^<]*)</socket_parent_frame>", body)
        loc = re.search(r"<location>([^<]*)</location>", body)
        if parent and loc:
            out[m.group(1)] = (parent.group(1).strip(), np.array(loc.group(1).split(), float))
    return out


def corrected_markers(xml: str) -> tuple[str, list[str]]:
    """A marker set text with a hip marker on the pelvis midline (see module doc) moved to its
    mirrored partner; returns (text, notes on what was moved)."""
    locs = marker_locations(xml)
    notes = []
    for bad, good in (("RHip", "LHip"), ("LHip", "RHip")):
        if bad not in locs or good not in locs:
            continue
        (pb, lb), (pg, lg) = locs[bad], locs[good]
        if pb != pg or abs(lb[2]) > MIDLINE_M or abs(lg[2]) <= MIDLINE_M:
            continue
        new = lg * np.array([1.0, 1.0, -1.0])
        pattern = rf'(<Marker name="{bad}">.*?<location>)[^<]*(</location>)'
        value = " ".join(f"{v:.8g}" for v in new)
        xml = re.sub(pattern, rf"\g<1>{value}\g<2>", xml, count=1, flags=re.S)
        notes.append(
            f"{bad} moved from {np.round(lb, 4).tolist()} to {np.round(new, 4).tolist()} "
            f"({good} mirrored across the pelvis' sagittal plane; upstream places it on the "
            "midline)"
        )
    return xml, notes


def check_trc_markers(names: list[str], marker_xml: str, keypoint_set: str, trc) -> None:
    """A one-line :class:`Key2MeshError` when fewer than half the markers of ``keypoint_set``'s
    marker set are columns of the TRC (``names``): a TRC of another keypoint set (COCO-17 with
    the BODY_25 setup) ran silently, OpenSim ignoring the markers it lacks."""
    expected = list(marker_locations(marker_xml))
    missing = [m for m in expected if m not in set(names)]
    if expected and len(missing) > len(expected) / 2:
        raise Key2MeshError(
            f"{trc}: {len(missing)} of the {len(expected)} markers of the {keypoint_set} "
            f"setup are not in it (e.g. {', '.join(missing[:4])}); its markers are "
            f"{', '.join(names[:6])}{' ...' if len(names) > 6 else ''}: give its keypoint set"
        )


def pose2sim_members(keypoint_set: str) -> dict[str, Path]:
    """The model, marker set, scaling and IK setups of ``keypoint_set`` extracted from the
    pose2sim wheel: {"model", "markers", "scaling", "ik": path}."""
    from key2mesh.data.wheels import extract

    key = _setup_key(keypoint_set)
    names = (MODEL, *SETUPS[key])
    paths = {p.name: p for p in extract("pose2sim", SETUP_DIR, names)}
    return dict(zip(("model", "markers", "scaling", "ik"), (paths[n] for n in names)))


def write_setup(
    out_dir: str | Path, keypoint_set: str = "coco17", correct: bool = True
) -> dict[str, Path]:
    """Write Pose2Sim's model, the corrected marker set (:func:`corrected_markers`; upstream's
    with ``correct=False``) and the scaling / IK setups for ``keypoint_set`` into ``out_dir``
    (with a ``README.txt`` saying what was changed); returns their paths."""
    from key2mesh.safe_paths import atomic_write_text

    out = Path(out_dir)
    written = {}
    notes: list[str] = []
    for role, src in pose2sim_members(keypoint_set).items():
        text = src.read_text(encoding="utf-8")
        if role == "markers" and correct:
            text, notes = corrected_markers(text)
        # atomic: never a half-written model; a bad folder is a one-line Key2MeshError
        written[role] = atomic_write_text(out / src.name, text)
    readme = atomic_write_text(
        out / "README.txt",
        "Pose2Sim 0.10.49's OpenSim setup for key2mesh TRC files (markers in mm, y up).\n"
        + "".join(f"Changed: {n}\n" for n in notes),
    )
    written["readme"] = readme
    return written


def _sto(path: Path) -> dict[str, np.ndarray]:
    """Columns of an OpenSim .sto file."""
    lines = path.read_text().splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.strip() == "endheader") + 1
    names = lines[start].split("\t")
    data = np.array([[float(v) for v in ln.split("\t")] for ln in lines[start + 1 :] if ln.strip()])
    return {n: data[:, k] for k, n in enumerate(names)}


def run_ik(
    trc: str | Path,
    out_dir: str | Path,
    keypoint_set: str = "coco17",
    mass_kg: float = 69.0,
    correct: bool = True,
) -> dict:
    """Scale Pose2Sim's model on a TRC and run OpenSim's inverse kinematics over the whole
    file; returns {"rms_m": (T,) per-frame RMS marker error, "max_m": (T,), "motion": .mot
    path, "model": scaled .osim path, "notes": marker corrections}. ``correct``: the corrected
    RHip (:func:`corrected_markers`). Needs ``opensim``."""
    try:
        import opensim
    except ImportError:
        raise Key2MeshError(
            "OpenSim IK needs the optional opensim package (pip install opensim)"
        ) from None
    import shutil

    from key2mesh.inference.motion_export.trc import read_trc

    if not Path(trc).is_file():
        raise Key2MeshError(f"no TRC file {trc}")
    markers = pose2sim_members(keypoint_set)["markers"].read_text(encoding="utf-8")
    names, times, _, _ = read_trc(trc)  # read once: the copy below has the same content
    check_trc_markers(names, markers, keypoint_set, trc)
    out = Path(out_dir).resolve()
    setup = write_setup(out, keypoint_set, correct)
    # OpenSim resolves a setup's file names against the setup's folder: everything goes there
    # (a TRC already there is used as it is: copying a file onto itself fails)
    there = out / Path(trc).name
    trc = there if there.exists() and there.samefile(trc) else Path(shutil.copy(trc, there))
    t0, t1 = float(times[0]), float(times[-1])
    opensim.Logger.setLevelString("error")
    opensim.Logger.removeFileSink()  # no opensim.log in the working folder
    scale = opensim.ScaleTool(str(setup["scaling"]))
    scale.setSubjectMass(mass_kg)
    maker = scale.getGenericModelMaker()
    maker.setModelFileName(setup["model"].name)
    maker.setMarkerSetFileName(setup["markers"].name)
    scaler = scale.getModelScaler()
    scaler.setMarkerFileName(trc.name)
    scaler.setTimeRange(_range(opensim, t0, t1))
    scaled = out / f"{trc.stem}_scaled.osim"
    scaler.setOutputModelFileName(scaled.name)
    scaler.setOutputScaleFileName("Unassigned")
    placer = scale.getMarkerPlacer()
    placer.setMarkerFileName(trc.name)
    placer.setTimeRange(_range(opensim, t0, t1))
    placer.setOutputModelFileName(scaled.name)
    placer.setOutputMotionFileName("Unassigned")
    placer.setOutputMarkerFileName("Unassigned")
    scale.run()  # (its return value is False even when the scaled model is written)
    if not scaled.is_file():
        raise Key2MeshError(f"OpenSim scaling failed on {trc}")
    ik = opensim.InverseKinematicsTool(str(setup["ik"]))
    model = opensim.Model(str(scaled))
    ik.setModel(model)
    ik.set_model_file(str(scaled))
    ik.setMarkerDataFileName(str(trc))
    ik.setStartTime(t0)
    ik.setEndTime(t1)
    motion = out / f"{trc.stem}.mot"
    ik.setOutputMotionFileName(str(motion))
    ik.setResultsDir(str(out))
    ik.set_report_errors(True)
    if not ik.run():
        raise Key2MeshError(f"OpenSim IK failed on {trc}")
    errors = _sto(out / f"{ik.getName()}_ik_marker_errors.sto")
    notes = [ln for ln in setup["readme"].read_text().splitlines() if ln.startswith("Changed")]
    return {
        "rms_m": errors["marker_error_RMS"],
        "max_m": errors["marker_error_max"],
        "motion": motion,
        "model": scaled,
        "notes": notes,
    }


def _range(opensim, t0: float, t1: float):
    arr = opensim.ArrayDouble()
    arr.append(t0)
    arr.append(t1)
    return arr
