"""TRC export: 3D keypoints as OpenSim / Pose2Sim markers (mm, y up), one file per track.

The header is OpenSim's (``PathFileType 4 (X/Y/Z)``, the DataRate / CameraRate / NumFrames /
NumMarkers / Units / OrigDataRate / OrigDataStartFrame / OrigNumFrames line, marker names,
``X1 Y1 Z1 ...``), tab-separated; markers get Pose2Sim's names (its ``skeletons.py`` and
``OpenSim_Setup/Markers_*.xml``, pose2sim 0.10.49): COCO_17's, plus ``Neck`` (mid-shoulders,
used by its COCO_17 OpenSim marker set) and ``Hip`` (mid-hips, its COCO_17 skeleton's root);
BODY_25's, whose mid-hip is ``CHip``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from key2mesh.inference.motion_export.series import TrackSeries
from key2mesh.keypoints.sets import keypoint_names
from key2mesh.safe_paths import atomic_write_text

# Pose2Sim's marker names for the COCO-17 points (its skeletons.py / OpenSim models)
POSE2SIM_NAMES = {
    "nose": "Nose", "left_eye": "LEye", "right_eye": "REye", "left_ear": "LEar",
    "right_ear": "REar", "left_shoulder": "LShoulder", "right_shoulder": "RShoulder",
    "left_elbow": "LElbow", "right_elbow": "RElbow", "left_wrist": "LWrist",
    "right_wrist": "RWrist", "left_hip": "LHip", "right_hip": "RHip", "left_knee": "LKnee",
    "right_knee": "RKnee", "left_ankle": "LAnkle", "right_ankle": "RAnkle",
    "neck": "Neck", "mid_hip": "Hip", "left_big_toe": "LBigToe", "right_big_toe": "RBigToe",
    "left_small_toe": "LSmallToe", "right_small_toe": "RSmallToe", "left_heel": "LHeel",
    "right_heel": "RHeel",
}  # fmt: skip
# per keypoint set, names that differ from POSE2SIM_NAMES (Pose2Sim's BODY_25 root is "CHip")
SET_NAMES = {"openpose_body25": {"mid_hip": "CHip"}}

# markers Pose2Sim derives when a set lacks them: name → (the keypoint it stands for, the two
# keypoints it is the middle of)
MIDPOINTS = {
    "Neck": ("neck", "left_shoulder", "right_shoulder"),
    "Hip": ("mid_hip", "left_hip", "right_hip"),
}


def _midpoints(keypoint_set: str) -> dict[str, tuple[int, int]]:
    """{marker: (keypoint a, keypoint b)} of the :data:`MIDPOINTS` the set lacks but can make."""
    names = list(keypoint_names(keypoint_set))
    return {
        m: (names.index(a), names.index(b))
        for m, (own, a, b) in MIDPOINTS.items()
        if own not in names and a in names and b in names
    }


def marker_names(keypoint_set: str) -> list[str]:
    """TRC marker names of a keypoint set (Pose2Sim's where it has one), then the added
    midpoints (``Neck``, ``Hip``)."""
    from key2mesh.keypoints.sets import canonical_set_name

    rename = {**POSE2SIM_NAMES, **SET_NAMES.get(canonical_set_name(keypoint_set), {})}
    own = [
        rename.get(n, "".join(p.capitalize() for p in n.split("_")))
        for n in keypoint_names(keypoint_set)
    ]
    return own + list(_midpoints(keypoint_set))


def marker_positions(keypoints3d: np.ndarray, keypoint_set: str) -> np.ndarray:
    """(T, M, 3) markers of :func:`marker_names` from keypoints (T, K, 3)."""
    mids = [
        0.5 * (keypoints3d[:, a] + keypoints3d[:, b]) for a, b in _midpoints(keypoint_set).values()
    ]
    return np.concatenate([keypoints3d, *(m[:, None] for m in mids)], axis=1)


def trc_text(series: TrackSeries, name: str = "key2mesh.trc") -> str:
    """The TRC file of one track: markers = the model's keypoints, mm, export frame (y up);
    ``Time`` is video time (frame / fps), so every track's file is on one clock."""
    names = marker_names(series.keypoint_set)
    t, m = len(series), len(names)
    rate = f"{series.fps:.6g}"
    head = [
        f"PathFileType\t4\t(X/Y/Z)\t{name}",
        "DataRate\tCameraRate\tNumFrames\tNumMarkers\tUnits\tOrigDataRate\tOrigDataStartFrame\tOrigNumFrames",
        f"{rate}\t{rate}\t{t}\t{m}\tmm\t{rate}\t1\t{t}",
        "Frame#\tTime\t" + "\t\t\t".join(names) + "\t\t",
        "\t\t" + "\t".join(f"X{i}\tY{i}\tZ{i}" for i in range(1, m + 1)),
        "",
    ]
    xyz = marker_positions(series.keypoints3d, series.keypoint_set).reshape(t, m * 3) * 1000.0
    times = series.times  # video time: frame / fps
    rows = [f"{k + 1}\t{times[k]:.6f}\t" + "\t".join(f"{v:.3f}" for v in xyz[k]) for k in range(t)]
    return "\n".join(head + rows) + "\n"


def write_trc(series: TrackSeries, path: str | Path) -> Path:
    path = Path(path)
    return atomic_write_text(path, trc_text(series, path.name))


def read_trc(path: str | Path) -> tuple[list[str], np.ndarray, np.ndarray, dict[str, str]]:
    """Parse a TRC file: (marker names, times (T,), positions (T, M, 3), header values).
    Also other writers' files (Pose2Sim's: no blank line before the data, trailing tabs): an
    empty field (a marker missing in that frame) is NaN."""
    lines = Path(path).read_text().splitlines()
    keys, vals = lines[1].split("\t"), lines[2].split("\t")
    header = dict(zip(keys, vals))
    names = [n for n in lines[3].split("\t")[2:] if n]
    width = 2 + 3 * len(names)
    data = np.array(
        [
            [float(v) if v.strip() else np.nan for v in (ln.split("\t") + [""] * width)[:width]]
            for ln in lines[5:]
            if ln.strip()
        ]
    ).reshape(-1, width)
    return names, data[:, 1], data[:, 2:].reshape(len(data), len(names), 3), header
