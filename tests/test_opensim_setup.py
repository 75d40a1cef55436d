"""TRC markers against Pose2Sim's OpenSim marker sets, the corrected RHip, and (slow, optional
``opensim``) inverse kinematics on the sports2d export."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from key2mesh.errors import Key2MeshError
from key2mesh.inference.motion_export.opensim_setup import (
    SETUP_DIR,
    SETUPS,
    check_trc_markers,
    corrected_markers,
    marker_locations,
)
from key2mesh.inference.motion_export.trc import marker_names

MARKER = """<Marker name="{n}">
  <socket_parent_frame>/bodyset/pelvis</socket_parent_frame>
  <location>{x} {y} {z}</location>
  <fixed>true</fixed>
</Marker>"""


def _set(**markers) -> str:
    return (
        "<MarkerSet>"
        + "".join(MARKER.format(n=n, x=a, y=b, z=c) for n, (a, b, c) in markers.items())
        + "</MarkerSet>"
    )


def test_rhip_on_the_midline_is_mirrored_from_lhip():
    xml = _set(LHip=(-0.064, -0.081, -0.105), RHip=(-0.005, -0.398, -0.001), Neck=(0, 0.4, 0))
    fixed, notes = corrected_markers(xml)
    locs = marker_locations(fixed)
    assert np.allclose(locs["RHip"][1], [-0.064, -0.081, 0.105])
    assert np.allclose(locs["LHip"][1], [-0.064, -0.081, -0.105])
    assert np.allclose(locs["Neck"][1], [0, 0.4, 0]) and len(notes) == 1 and "RHip" in notes[0]
    good = _set(LHip=(-0.064, -0.081, -0.105), RHip=(-0.064, -0.081, 0.105))
    assert corrected_markers(good) == (good, [])  # a sound marker set is left alone


def _pose2sim_wheel():
    from key2mesh.data.wheels import cached_wheel

    wheel = cached_wheel("pose2sim")
    if wheel is None:
        pytest.skip("the pose2sim wheel is not cached (key2mesh data pose2sim fetches it)")
    return wheel


@pytest.mark.parametrize("keypoint_set", ["coco17", "openpose_body25"])
def test_trc_names_cover_pose2sim_marker_sets(keypoint_set):
    """Every marker of Pose2Sim's OpenSim marker set (and IK tasks) is a TRC marker of ours;
    its COCO_17 marker set really places RHip on the midline (what we correct), its BODY_25
    set does not (left alone)."""
    with zipfile.ZipFile(_pose2sim_wheel()) as z:
        markers = z.read(SETUP_DIR + SETUPS[keypoint_set][0]).decode()
        ik = z.read(SETUP_DIR + SETUPS[keypoint_set][2]).decode()
    import re

    wanted = set(marker_locations(markers))
    tasks = set(re.findall(r'IKMarkerTask name="([^"]+)"', ik))
    ours = set(marker_names(keypoint_set))
    assert wanted and wanted <= ours, wanted - ours
    assert tasks <= ours, tasks - ours
    fixed, notes = corrected_markers(markers)
    if keypoint_set == "coco17":
        assert abs(marker_locations(markers)["RHip"][1][2]) < 0.02  # upstream's misplaced RHip
        assert notes and abs(marker_locations(fixed)["RHip"][1][2]) > 0.05
    else:
        assert fixed == markers and not notes


@pytest.mark.slow
def test_opensim_ik_on_the_sports2d_export(tmp_path):
    """`demo sports2d --frames 0:120:4 --export trc`, each track's TRC scaled and solved by
    OpenSim IK with Pose2Sim's COCO_17 model (RHip corrected): RMS marker error <= 30 mm."""
    pytest.importorskip("opensim")
    _pose2sim_wheel()
    from key2mesh.cli import main
    from key2mesh.inference.motion_export.opensim_setup import run_ik

    out = tmp_path / "demo"
    args = ["demo", "sports2d", "--frames", "0:120:4", "--export", "trc", "--out", str(out)]
    assert main([*args, "--no-side-view", "--max-height", "240"]) == 0
    trcs = sorted(out.glob("sports2d_track*.trc"))
    assert len(trcs) == 2
    for trc in trcs:
        res = run_ik(trc, tmp_path / trc.stem)
        rms = float(np.mean(res["rms_m"])) * 1000
        print(f"{trc.name}: IK RMS {rms:.1f} mm (max {1000 * res['max_m'].max():.1f})")
        assert rms <= 30.0, rms
        assert res["notes"] and res["motion"].is_file()


def test_read_trc_reads_pose2sim_style_files(tmp_path):
    """run_ik takes its time range from read_trc: a TRC as Pose2Sim's triangulation writes it
    (no blank line before the data, trailing tabs, a missing marker as empty fields) reads with
    NaN for the missing marker (was ValueError: could not convert string to float: '')."""
    from key2mesh.inference.motion_export.trc import read_trc

    head = [
        "PathFileType\t4\t(X/Y/Z)\tx.trc",
        "DataRate\tCameraRate\tNumFrames\tNumMarkers\tUnits\tOrigDataRate\tOrigDataStartFrame"
        "\tOrigNumFrames",
        "30\t30\t3\t2\tm\t30\t5\t3",
        "Frame#\tTime\tNose\t\t\tLEye\t\t\t",
        "\t\tX1\tY1\tZ1\tX2\tY2\tZ2\t",
    ]
    rows = ["5\t0.1667\t1\t2\t3\t4\t5\t6", "6\t0.2\t1\t2\t3\t\t\t", "7\t0.2333\t1\t2\t3\t4\t5\t6"]
    (tmp_path / "x.trc").write_text("\n".join(head + rows) + "\n")
    names, times, xyz, header = read_trc(tmp_path / "x.trc")
    assert names == ["Nose", "LEye"] and header["Units"] == "m"
    assert np.allclose(times, [0.1667, 0.2, 0.2333]) and xyz.shape == (3, 2, 3)
    assert np.isnan(xyz[1, 1]).all() and np.allclose(xyz[[0, 2], 1], [4, 5, 6])
    assert np.allclose(xyz[:, 0], [1, 2, 3])


def test_write_setup_writes_the_corrected_set_and_refuses_a_file_as_folder(tmp_path):
    """write_setup writes the model, the corrected marker set, the setups and a README
    (atomically); a folder that is a file is one line (was FileExistsError /
    NotADirectoryError tracebacks)."""
    _pose2sim_wheel()
    from key2mesh.errors import Key2MeshError
    from key2mesh.inference.motion_export.opensim_setup import write_setup

    paths = write_setup(tmp_path / "setup", "coco17")
    assert set(paths) == {"model", "markers", "scaling", "ik", "readme"}
    rhip = marker_locations(paths["markers"].read_text())["RHip"][1]
    assert abs(rhip[2]) > 0.05 and "Changed: RHip" in paths["readme"].read_text()
    assert not [p for p in (tmp_path / "setup").iterdir() if p.name.startswith(".")]
    (tmp_path / "taken").write_text("x")
    for out in (tmp_path / "taken", tmp_path / "taken" / "sub"):
        with pytest.raises(Key2MeshError, match="is a file, not a folder"):
            write_setup(out, "coco17")


def test_a_trc_of_another_keypoint_set_is_refused_before_ik():
    """``run_ik`` checks the TRC's markers against the setup's marker set: a COCO-17 TRC with
    the BODY_25 setup (most markers missing) ran silently, OpenSim ignoring what it lacks."""
    body25 = _set(**{n: (0, 0, 0) for n in ("Neck", "MidHip", "RBigToe", "LBigToe", "RHip")})
    coco17 = ["Nose", "LEye", "REye", "LHip", "RHip", "LKnee", "RKnee"]
    with pytest.raises(Key2MeshError, match=r"4 of the 5 markers of the body25 setup are not"):
        check_trc_markers(coco17, body25, "body25", "x.trc")
    check_trc_markers(["Neck", "MidHip", "RBigToe", "RHip", "Nose"], body25, "body25", "x.trc")
