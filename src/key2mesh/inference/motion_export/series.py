"""One track of a motion on a regular time grid (what animation files need)."""

from __future__ import annotations

from dataclasses import dataclass
from math import gcd

import numpy as np

from key2mesh.errors import Key2MeshError


@dataclass
class TrackSeries:
    """One person's motion at regular frames, T of them, model world frame (y up, metres).

    track: id; frame_index (T,) source frames (first..last of the track, every ``step``);
    fps: frame rate of these samples (source fps / step); rotmats (T, 24, 3, 3) local rotations;
    shape (S,) the track's body shape; root (T, 3) root joint position in the world frame
    (camera at the origin looking along -z, y up); keypoints3d (T, K, 3) world frame;
    keypoint_set; interpolated (T,) bool, True for frames the detector missed (filled in);
    body: body model name."""

    track: int
    frame_index: np.ndarray
    fps: float
    rotmats: np.ndarray
    shape: np.ndarray
    root: np.ndarray
    keypoints3d: np.ndarray
    keypoint_set: str
    interpolated: np.ndarray
    body: str

    def __len__(self) -> int:
        return len(self.frame_index)


def frame_step(frames: np.ndarray) -> int:
    """The regular step of a set of frame indices: gcd of their differences (1 if one frame)."""
    d = np.diff(np.unique(frames))
    step = 0
    for x in d.tolist():
        step = gcd(step, int(x))
    return max(step, 1)


def _slerp(rot: np.ndarray, t_known: np.ndarray, t_all: np.ndarray) -> np.ndarray:
    """Rotations (n, J, 3, 3) at times t_known → (T, J, 3, 3) at t_all (slerp per joint)."""
    from scipy.spatial.transform import Rotation, Slerp

    if len(t_known) == 1:
        return np.repeat(rot, len(t_all), axis=0)
    out = np.empty((len(t_all), rot.shape[1], 3, 3))
    for j in range(rot.shape[1]):
        out[:, j] = Slerp(t_known, Rotation.from_matrix(rot[:, j]))(t_all).as_matrix()
    return out


def track_series(motion, track: int) -> TrackSeries:
    """Rows of ``track`` resampled onto frames first..last every :func:`frame_step` of the
    whole motion: rows at those frames are taken as they are, missing frames interpolated
    (slerp for rotations, linear for positions)."""
    rows = motion.rows_of(track)
    rows = rows[np.isfinite(motion.transl[rows]).all(1)]
    if len(rows) == 0:
        raise Key2MeshError(f"track {track} has no frame with a camera fit")
    step = frame_step(motion.frame_index)
    known = motion.frame_index[rows]
    grid = np.arange(known[0], known[-1] + 1, step)
    flip = np.array([1.0, -1.0, -1.0])
    root = motion.transl[rows] * flip
    kp3 = motion.keypoints3d[rows] * flip

    def interp(x: np.ndarray) -> np.ndarray:
        cols = [np.interp(grid, known, c) for c in x.reshape(len(x), -1).T]
        return np.stack(cols, axis=-1).reshape(len(grid), *x.shape[1:])

    return TrackSeries(
        track=int(track),
        frame_index=grid,
        fps=motion.fps / step,
        rotmats=_slerp(motion.rotmats[rows].astype(np.float64), known, grid),
        shape=np.median(motion.shape[rows], axis=0),
        root=interp(root),
        keypoints3d=interp(kp3),
        keypoint_set=motion.keypoint_set,
        interpolated=~np.isin(grid, known),
        body=motion.body,
    )
