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
    fps: frame rate of these samples (source fps / step); rotmats (T, 24, 3, 3) local rotations
    (the root's in the export frame); shape (S,) the track's body shape; root (T, 3) root joint
    position in the export frame (:class:`~key2mesh.inference.world.World`: the ground frame,
    or the camera at the origin looking along -z; y up); keypoints3d (T, K, 3) export frame;
    keypoint_set; interpolated (T,) bool, True for frames the detector missed (filled in);
    body: body model name; source_fps: the video's frame rate (time of a sample:
    frame_index / source_fps); contact (T, 2) bool feet on the ground (False where filled in)."""

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
    source_fps: float = 0.0
    contact: np.ndarray | None = None

    @property
    def times(self) -> np.ndarray:
        """(T,) seconds of video time of each sample: frame_index / source fps."""
        return self.frame_index / (self.source_fps or self.fps)

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


def _check_frame_order(track: int, frames: np.ndarray) -> None:
    """A one-line error unless a track's frames (in its rows' time order) strictly increase:
    one row per frame and track, ``time_s`` in frame order (slerp and the glTF / BVH / TRC
    clocks need it)."""
    d = np.diff(frames)
    if (d <= 0).any():
        i = int(np.flatnonzero(d <= 0)[0])
        a, b = int(frames[i]), int(frames[i + 1])
        raise Key2MeshError(
            f"track {track} has two rows in frame {a}: one row per frame and track"
            if a == b
            else f"track {track}: time_s is not in frame order (frame {b} after frame {a})"
        )


class NoCameraFit(Key2MeshError):
    """A track without any frame with a camera fit: nothing to place in the world (callers
    leave it out; other errors, e.g. a track twice in one frame, are real errors)."""


def track_series(motion, track: int) -> TrackSeries:
    """Rows of ``track`` resampled onto frames first..last every :func:`frame_step` of the
    whole motion: rows at those frames are taken as they are, missing frames interpolated
    (slerp for rotations, linear for positions), in the motion's export frame
    (``motion.world``; the camera's when it has none)."""
    from key2mesh.inference.world import camera_world

    world = motion.world if motion.world is not None else camera_world(len(motion))
    rows = motion.rows_of(track)
    rows = rows[np.isfinite(motion.transl[rows]).all(1)]
    if len(rows) == 0:
        raise NoCameraFit(f"track {track} has no frame with a camera fit")
    step = frame_step(motion.frame_index)
    known = motion.frame_index[rows]
    _check_frame_order(track, known)
    grid = np.arange(known[0], known[-1] + 1, step)
    root = world.points(motion.transl[rows]) + world.root_shift[rows]
    kp3 = world.points(motion.keypoints3d[rows]) + world.root_shift[rows, None]
    rot = motion.rotmats[rows].astype(np.float64)
    rot[:, 0] = world.root_rotation() @ rot[:, 0]

    def interp(x: np.ndarray) -> np.ndarray:
        cols = [np.interp(grid, known, c) for c in x.reshape(len(x), -1).T]
        return np.stack(cols, axis=-1).reshape(len(grid), *x.shape[1:])

    return TrackSeries(
        track=int(track),
        frame_index=grid,
        fps=motion.fps / step,
        rotmats=_slerp(rot, known, grid),
        shape=np.median(motion.shape[rows], axis=0),
        root=interp(root),
        keypoints3d=interp(kp3),
        keypoint_set=motion.keypoint_set,
        interpolated=~np.isin(grid, known),
        body=motion.body,
        source_fps=float(motion.fps),
        contact=np.isin(grid, known)[:, None]
        & (interp(world.contact[rows].astype(np.float64)) > 0.5),
    )
