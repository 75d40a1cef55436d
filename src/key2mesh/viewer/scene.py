"""What the viewer shows, as plain arrays (no browser, no viewer library): every track's motion
on one clock, the ground, the cameras and the overlay video of a result folder.

Frame: the result's export frame (:mod:`~key2mesh.inference.world`): y up, metres, the ground
at y = 0 with ``--world ground``. Clock: video time in seconds (``frame_index / fps``), shared by
every track of a file, so a person who enters late appears late.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from key2mesh.errors import Key2MeshError

# OpenCV camera axes (x right, y down, z forward) from glTF / OpenGL ones (y up, z backward)
GL_TO_CV = np.diag([1.0, -1.0, -1.0])


@dataclass
class TrackScene:
    """One person's motion on a regular grid, T samples.

    name: label in the viewer; track: id in its file; color: RGB in [0, 1];
    frame_index (T,) source frames; times (T,) seconds on the scene clock;
    rotmats (T, 24, 3, 3) local rotations, the root's in the scene frame; root (T, 3) root joint
    (pelvis), scene frame, metres; shape (S,) body shape; body: body model name;
    interpolated (T,) bool: samples the detector missed (filled in); level: height of the
    ground this person stands on, metres (0 unless on a platform)."""

    name: str
    track: int
    color: tuple[float, float, float]
    frame_index: np.ndarray
    times: np.ndarray
    rotmats: np.ndarray
    root: np.ndarray
    shape: np.ndarray
    body: str
    interpolated: np.ndarray
    level: float = 0.0

    @property
    def start_s(self) -> float:
        return float(self.times[0])

    @property
    def end_s(self) -> float:
        return float(self.times[-1])

    @property
    def step_s(self) -> float:
        """Seconds between this track's samples (0 with one sample)."""
        d = np.diff(self.times)
        d = d[d > 1e-6]
        return float(d.min()) if len(d) else 0.0

    def sample_at(self, t: float, tolerance: float) -> int | None:
        """Index of the sample shown at clock time ``t`` (the nearest one within
        ``tolerance`` seconds), or None: the person is not tracked then."""
        k = int(np.clip(np.searchsorted(self.times, t), 0, len(self.times) - 1))
        best = min((k, k - 1), key=lambda i: abs(self.times[max(i, 0)] - t))
        best = max(best, 0)
        return best if abs(self.times[best] - t) <= tolerance else None


@dataclass
class CameraScene:
    """A camera in the scene frame: ``position`` (3,) metres; ``rotation`` (3, 3) whose columns
    are the camera's x right, y down, z forward (OpenCV) in the scene frame (``X_scene =
    rotation @ X_cam + position``); vertical field of view ``yfov`` radians; ``aspect`` width
    over height; ``image_size`` (H, W) px; ``focal_px``."""

    name: str
    position: np.ndarray
    rotation: np.ndarray
    yfov: float
    aspect: float
    image_size: tuple[int, int]
    focal_px: float

    @property
    def forward(self) -> np.ndarray:
        """(3,) the viewing direction in the scene frame."""
        return self.rotation[:, 2]

    @property
    def wxyz(self) -> np.ndarray:
        """The rotation as a quaternion (w, x, y, z)."""
        from scipy.spatial.transform import Rotation

        x, y, z, w = Rotation.from_matrix(self.rotation).as_quat()
        return np.array([w, x, y, z])


@dataclass
class Ground:
    """The ground plane y = ``height`` (metres): a square of side ``size`` m centred at
    ``center`` (x, z) under every track; ``levels`` {track name: y} of people standing above it
    (platforms, box tops); ``estimated``: False when the result is in the camera's frame (the
    plane is then only a guide under the lowest foot)."""

    height: float
    center: tuple[float, float]
    size: float
    levels: dict[str, float] = field(default_factory=dict)
    estimated: bool = True


@dataclass
class VideoScene:
    """An overlay video: ``path``; frame k shows clock time ``start_s + k * interval_s``;
    ``crop`` (x0, x1) columns of the mesh-overlay panel in the demo's side-by-side frame
    (None: the whole frame)."""

    path: Path
    start_s: float
    interval_s: float
    crop: tuple[int, int] | None = None

    def frame_at(self, t: float, num_frames: int | None = None) -> int | None:
        k = int(round((t - self.start_s) / self.interval_s))
        if k < 0 or (num_frames is not None and k >= num_frames):
            return None
        return k


@dataclass
class Scene:
    """Everything one viewer page shows: ``tracks``, ``cameras``, ``ground``, ``videos`` and
    ``title``; :attr:`clock` every sample time (s), :attr:`interval_s` the sampling step."""

    tracks: list[TrackScene]
    cameras: list[CameraScene]
    ground: Ground
    videos: list[VideoScene] = field(default_factory=list)
    title: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def clock(self) -> np.ndarray:
        """(K,) sorted sample times of all tracks (seconds), duplicates merged."""
        if not self.tracks:
            return np.zeros(1)
        t = np.sort(np.concatenate([tr.times for tr in self.tracks]))
        return t[np.concatenate([[True], np.diff(t) > 1e-6])]

    @property
    def interval_s(self) -> float:
        """The clock's sampling step (seconds; 1/30 when there is one sample)."""
        d = np.diff(self.clock)
        d = d[d > 1e-6]
        return float(d.min()) if len(d) else 1.0 / 30.0

    def visible(self, t: float) -> dict[str, int]:
        """{track name: sample index} of the people shown at clock time ``t``: each person's
        nearest sample within half their own step (at least half the clock's), so the people
        of a coarser file on a finer clock stay shown between their samples."""
        out = {}
        for tr in self.tracks:
            k = tr.sample_at(t, 0.5 * max(self.interval_s, tr.step_s) + 1e-6)
            if k is not None:
                out[tr.name] = k
        return out


def world_of(arrays) -> tuple:
    """(mode, World) of a params file's arrays: ``X = rotation (X_cam - origin)``, each row's
    root shifted by ``transl_world - X`` (the contact correction)."""
    from key2mesh.inference.world import FLIP, World

    n = len(arrays["track_id"])
    if "world_rotation" not in arrays:  # written before the world frame: the camera's
        rot, origin = FLIP.copy(), np.zeros(3)
    else:
        rot = np.asarray(arrays["world_rotation"], np.float64)
        origin = np.asarray(arrays["world_origin"], np.float64)
    transl = np.asarray(arrays["transl"], np.float64)
    shift = np.zeros((n, 3))
    if "transl_world" in arrays:
        base = (transl - origin) @ rot.T
        shift = np.nan_to_num(np.asarray(arrays["transl_world"], np.float64) - base)
    contact = np.asarray(arrays.get("foot_contact", np.zeros((n, 2), bool)), bool)
    mode = "camera" if np.allclose(rot, FLIP) and not np.any(origin) else "ground"
    return mode, World(mode, rot, origin, contact, shift)


def motion_from_params(path: str | Path):
    """A :class:`~key2mesh.inference.motion.Motion` read back from a ``<stem>_params.npz``
    (``demo`` / ``predict``), with its export frame; a one-line error for other files."""
    import zipfile
    import zlib

    from key2mesh.inference.motion import Motion

    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            a = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        raise Key2MeshError(f"{path}: not a readable params file ({err})") from None
    need = ("frame_index", "time_s", "track_id", "rotmats", "transl", "fps", "image_size")
    missing = [k for k in need if k not in a]
    if missing:
        raise Key2MeshError(f"{path}: not a key2mesh params file (no {', '.join(missing)})")
    shape = a.get("phenotypes", a.get("betas"))
    if shape is None:
        raise Key2MeshError(f"{path}: holds no body shape (phenotypes or betas)")
    if not (a["fps"].size == 1 and np.isfinite(a["fps"]) and a["fps"] > 0):
        raise Key2MeshError(f"{path}: fps must be a positive number, got {a['fps']}")
    n = len(a["track_id"])
    kp = a.get("keypoints2d", np.zeros((n, 0, 3), np.float32))
    kp3 = a.get("keypoints3d", np.zeros((n, kp.shape[1], 3), np.float32))
    motion = Motion(
        frame_index=a["frame_index"].astype(np.int64),
        time_s=a["time_s"].astype(np.float64),
        track_id=a["track_id"].astype(np.int64),
        rotmats=a["rotmats"].astype(np.float32),
        shape=shape.astype(np.float32),
        transl=a["transl"].astype(np.float64),
        focal_length=a.get("focal_length", np.zeros(n)).astype(np.float64),
        keypoints2d=kp[..., :2],
        confidence=kp[..., 2],
        joints3d=a.get("joints3d", np.zeros((n, 24, 3))).astype(np.float64),
        keypoints3d=kp3.astype(np.float64),
        reprojection_error=a.get("reprojection_error", np.zeros(n)),
        fps=float(a["fps"]),
        image_size=tuple(int(v) for v in a["image_size"]),
        body=str(a.get("body_model", "anny")),
        shape_names=[str(s) for s in a.get("phenotype_names", [])],
        keypoint_set=str(a.get("keypoint_set", "")),
    )
    motion.world = world_of(a)[1]
    return motion


def _sidecar(npz: Path) -> dict:
    js = npz.with_suffix(".json")
    if not js.exists():
        return {}
    try:
        side = json.loads(js.read_text())
    except (OSError, ValueError):
        return {}
    return side if isinstance(side, dict) else {}


def _levels(sidecar: dict) -> dict[int, float]:
    """{track id: ground level, metres} of a sidecar's ``world.levels_m`` ({} when it has none
    or it is not of that shape)."""
    levels = sidecar.get("world", {})
    levels = levels.get("levels_m", {}) if isinstance(levels, dict) else {}
    try:
        return {int(k): float(v) for k, v in levels.items()}
    except (AttributeError, TypeError, ValueError):
        return {}


def tracks_of(motion, prefix: str = "", levels: dict | None = None) -> list[TrackScene]:
    """Every track of ``motion`` as a :class:`TrackScene` (resampled onto its frame grid,
    :func:`~key2mesh.inference.motion_export.series.track_series`: the same samples as the
    exports); ``prefix`` names them ``<prefix>track<ID>``; ``levels`` {track id: ground level}."""
    from key2mesh.inference.motion_export.series import NoCameraFit, track_series
    from key2mesh.inference.render import track_color

    out = []
    for t in motion.tracks():
        try:
            s = track_series(motion, t)
        except NoCameraFit:
            continue  # nothing to place (a track twice in one frame is an error, not this)
        out.append(
            TrackScene(
                name=f"{prefix}track{t}",
                track=t,
                color=track_color(t),
                frame_index=s.frame_index,
                times=s.times,
                rotmats=s.rotmats,
                root=s.root,
                shape=s.shape,
                body=s.body,
                interpolated=s.interpolated,
                level=float((levels or {}).get(t, 0.0)),
            )
        )
    return out


def camera_of(motion, name: str = "video camera") -> CameraScene | None:
    """The video camera of ``motion`` in its export frame (None without a camera fit)."""
    from key2mesh.inference.world import camera_pose, camera_world

    if not len(motion) or not np.isfinite(motion.focal_length[0]) or motion.focal_length[0] <= 0:
        return None
    world = motion.world if motion.world is not None else camera_world(len(motion))
    pose = camera_pose(world, float(motion.focal_length[0]), motion.image_size)
    return CameraScene(
        name=name,
        position=np.asarray(pose["position"]),
        rotation=np.asarray(pose["rotation"]) @ GL_TO_CV,
        yfov=pose["yfov_rad"],
        aspect=pose["aspect_ratio"],
        image_size=tuple(pose["image_size"]),
        focal_px=pose["focal_px"],
    )


def ground_of(tracks: list[TrackScene], estimated: bool, sole: float = 0.08) -> Ground:
    """The ground under ``tracks``: y = 0 in a ground frame (``estimated``), else a guide plane
    under the lowest root minus a standing pelvis height; sized to cover every root path with
    a 2 m margin."""
    if not tracks:
        return Ground(0.0, (0.0, 0.0), 10.0, estimated=estimated)
    roots = np.concatenate([t.root for t in tracks])
    lo, hi = roots[:, [0, 2]].min(0), roots[:, [0, 2]].max(0)
    center = (float((lo[0] + hi[0]) / 2), float((lo[1] + hi[1]) / 2))
    size = float(max(hi - lo) + 4.0)
    height = 0.0 if estimated else float(roots[:, 1].min() - 0.95 - sole)
    levels = {t.name: t.level for t in tracks if abs(t.level) > 0.05}
    return Ground(height, center, size, levels, estimated)


def demo_video(npz: Path, sidecar: dict, motion) -> VideoScene | None:
    """The demo's overlay video next to ``npz`` (``<stem>_key2mesh.mp4``), aligned to the clock:
    its frame k is the k-th processed frame, taken as ``frame_range[0] + k * step``."""
    from key2mesh.inference.motion_export.series import frame_step

    stem = npz.name[: -len("_params.npz")]
    video = npz.with_name(f"{stem}_key2mesh.mp4")
    if not video.exists() or not len(motion):
        return None
    step = frame_step(motion.frame_index)
    first = int(motion.frame_index.min())
    try:
        first = int(sidecar.get("frame_range", [first])[0])
    except (TypeError, ValueError, IndexError, KeyError):
        pass  # a sidecar of another shape: the first processed frame
    return VideoScene(video, first / motion.fps, step / motion.fps, None)


def overlay_crop(frame_width: int, height: int, image_size: tuple[int, int]) -> tuple[int, int]:
    """Columns (x0, x1) of the mesh-overlay panel in a demo frame ``frame_width`` px wide and
    ``height`` high ([input | overlay | side view], the side view max(h // 2, 64) wide, or
    [input | overlay] without it); the source ``image_size`` (H, W) gives the panels' width."""
    h, w = image_size
    panel = int(round(w * height / h))
    return (panel, 2 * panel) if 2 * panel <= frame_width else (0, frame_width)


def load_params_scene(paths: list[Path], title: str = "") -> Scene:
    """The scene of one or several params files (``demo`` / ``predict`` outputs): their tracks
    (named ``<stem>/track<ID>`` when there are several files), each file's video camera, the
    ground and the overlay videos found next to them (one that cannot be read is left out,
    with a note)."""
    from key2mesh.media.video import source_info

    tracks, cameras, videos, notes = [], [], [], []
    estimated = True
    for npz in paths:
        motion = motion_from_params(npz)
        side = _sidecar(npz)
        stem = npz.name[: -len("_params.npz")] if npz.name.endswith("_params.npz") else npz.stem
        prefix = f"{stem}/" if len(paths) > 1 else ""
        levels = _levels(side)
        tracks += tracks_of(motion, prefix, levels)
        if motion.world is None or motion.world.mode != "ground":
            estimated = False
            notes.append(f"{npz.name}: camera frame (no ground estimated); the plane is a guide")
        cam = camera_of(motion, f"{prefix}video camera")
        if cam is not None:
            cameras.append(cam)
        video = demo_video(npz, side, motion)
        if video is not None:
            try:  # an optional extra: an unreadable one is left out, the bodies still shown
                source_info(video.path)
            except Key2MeshError as err:
                notes.append(f"overlay video left out: {err}")
            else:
                videos.append(video)
    if not tracks:
        raise Key2MeshError(f"{', '.join(str(p) for p in paths)}: no track to show")
    ground = ground_of(tracks, estimated)
    return Scene(tracks, cameras, ground, videos, title, notes)


def find_results(path: str | Path) -> list[Path]:
    """The params files of a result: ``path`` itself (a ``*_params.npz``) or every
    ``*_params.npz`` in the folder ``path``; a one-line error when there is none."""
    path = Path(path)
    if not path.exists():
        raise Key2MeshError(f"{path} does not exist")
    if path.is_file():
        if not path.name.endswith(".npz"):
            raise Key2MeshError(f"{path}: give a result folder or a <stem>_params.npz file")
        return [path]
    found = sorted(path.glob("*_params.npz"))
    if not found:
        raise Key2MeshError(
            f"{path}: no <stem>_params.npz here (a `key2mesh demo` or `key2mesh predict` output "
            "folder, or an adapt run folder with best.pt)"
        )
    return found
