"""A real-footage benchmark from free data: detections in each view, 3D from triangulating all views.

Pose2Sim's single-person demo (``pose2sim`` wheel, extracted at run time, never committed) films
one person with 4 calibrated, roughly synchronised cameras. :func:`build_multiview_benchmark`

1. runs the 2D detector (MediaPipe BlazePose, the ``[detect]`` extra) through each video,
2. estimates the residual frame offset of each camera against the first one (the offset that
   minimises the triangulation reprojection error, as no hardware sync is documented),
3. triangulates every MediaPipe point robustly from all views
   (:func:`key2mesh.geometry.triangulate.triangulate_robust`),
4. writes one sample per (camera, frame): that camera's own detections as the input and the
   triangulated points, moved into that camera's frame, as the ground truth.

The ground truth is the detector's own multi-view consensus, not marker MoCap: it measures how
well a single view is lifted to 3D, in the detector's keypoint definition (COCO-17 names).
Samples whose evaluation joints could not be triangulated are excluded and counted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch

from key2mesh.errors import Key2MeshError
from key2mesh.geometry.triangulate import Triangulation, triangulate_robust
from key2mesh.keypoints.sets import COCO17, MEDIAPIPE33

GT_SET = "coco17"  # the triangulated points kept as ground truth (all present in MediaPipe-33)
_GT_INDEX = [MEDIAPIPE33.index(n) for n in COCO17]


@dataclass
class MultiViewDetections:
    """Detections of one person in C synchronised videos of T frames.

    keypoints (C, T, K, 2) pixels and confidence (C, T, K) of ``keypoint_set``; camera names (C,).
    """

    keypoints: np.ndarray
    confidence: np.ndarray
    keypoint_set: str
    cameras: list[str]


def detect_videos(
    videos: list, cameras: list[str], model_complexity: int = 1, progress: bool = True
) -> MultiViewDetections:
    """MediaPipe BlazePose through each video (tracking mode); videos are cut to the shortest."""
    from key2mesh.media.detect import KEYPOINT_SET, detect_frames
    from key2mesh.media.video import iter_frames

    kps, confs = [], []
    for cam, video in zip(cameras, videos):
        frames = iter_frames(video, square_pixels=False)  # the calibration's pixels
        if progress:
            from tqdm import tqdm

            frames = tqdm(frames, desc=f"detect {cam}", unit="frame", leave=False)
        kp, conf = detect_frames(frames, model_complexity=model_complexity)
        kps.append(kp)
        confs.append(conf)
    t = min(len(k) for k in kps)
    return MultiViewDetections(
        np.stack([k[:t] for k in kps]).astype(np.float64),
        np.stack([c[:t] for c in confs]).astype(np.float64),
        KEYPOINT_SET,
        list(cameras),
    )


def _shifted(values: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """(C, T, ...) → (C, T', ...) with camera c read at frame f + offsets[c] (common frames only)."""
    t = values.shape[1]
    lo, hi = max(0, -int(offsets.min())), min(t, t - int(offsets.max()))
    if hi - lo < 1:
        raise Key2MeshError(f"frame offsets {offsets.tolist()} leave no common frame of {t}")
    idx = np.arange(lo, hi)
    return np.stack([values[c, idx + offsets[c]] for c in range(len(offsets))])


def _triangulate(kp: np.ndarray, conf: np.ndarray, calib, **kw) -> Triangulation:
    """Synchronised keypoints (C, T, K, 2) and confidence (C, T, K) → T·K points (frame-major)."""
    c, t, k = conf.shape
    return triangulate_robust(
        kp.reshape(c, t * k, 2), conf.reshape(c, t * k), calib.K, calib.dist, calib.R, calib.t, **kw
    )


def estimate_frame_offsets(
    det: MultiViewDetections, calib, max_offset: int = 6, rounds: int = 2
) -> np.ndarray:
    """(C,) integer frame offsets of each camera relative to camera 0 (offsets[0] = 0).

    Coordinate search: each camera's offset in [−max_offset, max_offset] is chosen to minimise the
    mean reprojection error of the COCO-17 points triangulated from ALL views (no view rejection,
    which would let a wrong offset hide its errors by dropping views), the others held fixed.
    """
    c = len(det.cameras)
    offsets = np.zeros(c, dtype=np.int64)
    pts = _GT_INDEX if det.keypoint_set == "mediapipe33" else slice(None)
    kp_all, conf_all = det.keypoints[:, :, pts], det.confidence[:, :, pts]
    for _ in range(rounds):
        for cam in range(1, c):
            errors = []
            for o in range(-max_offset, max_offset + 1):
                trial = offsets.copy()
                trial[cam] = o
                tri = _triangulate(
                    _shifted(kp_all, trial),
                    _shifted(conf_all, trial),
                    calib,
                    min_views=c,
                    conf_threshold=0.0,
                    max_error=np.inf,
                )
                errors.append(float(np.nanmean(tri.error)) if tri.valid.any() else np.inf)
            offsets[cam] = int(np.argmin(errors)) - max_offset
    return offsets


@dataclass
class MultiViewReport:
    """What :func:`build_multiview_benchmark` measured (printed by the CLI, stored in the file)."""

    frames: int
    offsets: list[int]
    samples: int
    excluded: int
    reprojection_px: float
    views_per_point: float
    bone_cv: float

    def lines(self) -> list[str]:
        return [
            f"{self.frames} synchronised frames (frame offsets vs camera 1: {self.offsets})",
            f"{self.samples} samples (camera × frame), {self.excluded} excluded (evaluation joints not triangulated)",
            f"triangulation: {self.views_per_point:.2f} views per point, mean reprojection error "
            f"{self.reprojection_px:.1f} px, limb-length variation over time {100 * self.bone_cv:.1f}%",
        ]


LIMB_BONES = (
    ("left_shoulder", "left_elbow"),
    ("left_elbow", "left_wrist"),
    ("right_shoulder", "right_elbow"),
    ("right_elbow", "right_wrist"),
    ("left_hip", "left_knee"),
    ("left_knee", "left_ankle"),
    ("right_hip", "right_knee"),
    ("right_knee", "right_ankle"),
)


def limb_length_variation(points: np.ndarray, names: tuple[str, ...] = COCO17) -> float:
    """Mean coefficient of variation over time of the 8 limb lengths of (T, K, 3) points (a rigid
    skeleton gives 0; noisy or mis-synchronised triangulation gives more). NaN frames are ignored."""
    a = points[:, [names.index(p) for p, _ in LIMB_BONES]]
    b = points[:, [names.index(q) for _, q in LIMB_BONES]]
    lengths = np.linalg.norm(a - b, axis=-1)
    return float(np.nanmean(np.nanstd(lengths, 0) / np.nanmean(lengths, 0)))


def check_options(cameras: int, offsets, max_offset: int, min_views: int) -> None:
    """Key2MeshError for options :func:`build_multiview_benchmark` cannot use with ``cameras``
    views (checked before the slow detection)."""
    if offsets is not None and len(offsets) != cameras:
        raise Key2MeshError(f"{len(offsets)} frame offsets for {cameras} cameras")
    if offsets is None and max_offset < 0:
        raise Key2MeshError(f"the largest frame offset searched must be >= 0, got {max_offset}")
    if not 2 <= min_views <= cameras:
        raise Key2MeshError(
            f"min_views must be in [2, {cameras}] (a point needs 2 views), got {min_views}"
        )


def build_multiview_benchmark(
    det: MultiViewDetections,
    calib,
    offsets: np.ndarray | None = None,
    max_offset: int = 6,
    name: str = "pose2sim",
    min_views: int = 2,
    conf_threshold: float = 0.3,
    max_error: float = 25.0,
):
    """Detections of C views + calibration → (BenchmarkSet, MultiViewReport).

    Samples are ordered camera-major (all frames of camera 1, then camera 2, ...); their ground
    truth ``joints3d`` (N, 17, 3) are the triangulated COCO-17 points in that camera's frame
    (OpenCV: x right, y down, z forward; metres). A sample is kept when all 17 were triangulated.
    """
    from key2mesh.data.benchmark import MULTIVIEW_BUILD_VERSION, BenchmarkSet

    if det.keypoint_set != "mediapipe33":
        raise Key2MeshError(
            f"multi-view benchmark expects MediaPipe-33 detections, got {det.keypoint_set!r}"
        )
    if len(det.cameras) != len(calib.names):
        raise Key2MeshError(f"{len(det.cameras)} videos for {len(calib.names)} calibrated cameras")
    check_options(len(det.cameras), offsets, max_offset, min_views)
    kw = {"min_views": min_views, "conf_threshold": conf_threshold, "max_error": max_error}
    offsets = (
        estimate_frame_offsets(det, calib, max_offset)
        if offsets is None
        else np.asarray(offsets, np.int64)
    )
    kp, conf = _shifted(det.keypoints, offsets), _shifted(det.confidence, offsets)  # (C,T,33,.)
    t = kp.shape[1]
    tri = _triangulate(kp[:, :, _GT_INDEX], conf[:, :, _GT_INDEX], calib, **kw)
    world = tri.points.reshape(t, len(_GT_INDEX), 3)  # (T,17,3)
    ok = np.isfinite(world).all((-1, -2))  # (T,)
    if not ok.any():
        raise Key2MeshError(
            f"{name}: no frame could be triangulated from {len(det.cameras)} views "
            f"(min_views={min_views}, conf_threshold={conf_threshold}, max_error={max_error} px)"
        )
    c = len(det.cameras)
    cam_pts = np.einsum("cij,tkj->ctki", calib.R, world) + calib.t[:, None, None, :]  # (C,T,17,3)
    frame0 = max(0, -int(offsets.min()))
    keep = np.broadcast_to(ok, (c, t)).reshape(-1)
    names = [
        f"{cam}/frame_{frame0 + f + int(offsets[i]):05d}"
        for i, cam in enumerate(det.cameras)
        for f in range(t)
    ]
    bench = BenchmarkSet(
        name=name,
        keypoints2d=torch.from_numpy(kp.reshape(c * t, -1, 2)[keep]).float(),
        confidence=torch.from_numpy(conf.reshape(c * t, -1)[keep]).float(),
        keypoint_set=det.keypoint_set,
        pose=None,
        betas=None,
        genders=["neutral"] * int(keep.sum()),
        image_names=[n for n, k in zip(names, keep) if k],
        joints3d=torch.from_numpy(cam_pts.reshape(c * t, -1, 3)[keep]).float(),
        joints3d_set=GT_SET,
        intrinsics=torch.from_numpy(np.repeat(calib.K, t, 0)[keep]).float(),
        excluded={"evaluation joints not triangulated": int((~keep).sum())},
        source=name,
        # synchronised frame index: equal for the views of one instant (not the raw frame numbers
        # of the names, which differ by the cameras' offsets)
        instants=torch.from_numpy(np.tile(frame0 + np.arange(t), c)[keep]),
        build_version=MULTIVIEW_BUILD_VERSION,
    )
    report = MultiViewReport(
        frames=t,
        offsets=offsets.tolist(),
        samples=len(bench),
        excluded=int((~keep).sum()),
        reprojection_px=float(np.nanmean(tri.error)),
        views_per_point=float(tri.views.sum(0)[tri.valid].mean()),
        bone_cv=limb_length_variation(world[ok]),
    )
    return bench, report


def instant_groups(frame_names, offsets: dict[str, int] | None = None) -> np.ndarray:
    """Sample names ``CAMERA/FRAME`` (as :func:`build_multiview_benchmark` writes them) → (N,)
    int64 instant ids, equal for the views of one instant, numbered in time order.

    Without ``offsets`` the views of one instant are those with the same FRAME part. ``offsets``
    ({camera: frames}) says camera c's frame f + offsets[c] shows the instant of frame f of a
    camera with offset 0 (what ``key2mesh data pose2sim`` reports): FRAME must then end in the
    frame number, and the instant is that number minus the camera's offset."""
    cameras, frames = [], []
    for name in frame_names:
        camera, sep, frame = str(name).rpartition("/")
        if not sep or not camera or not frame:
            raise Key2MeshError(
                f"frame name {name!r} is not CAMERA/FRAME: the views of one instant cannot be grouped"
            )
        cameras.append(camera)
        frames.append(frame)
    if offsets is None:
        key = np.asarray(frames)
    else:
        unknown = sorted(set(cameras) - set(offsets))
        if unknown:
            raise Key2MeshError(
                f"no frame offset for camera(s) {unknown} (offsets given for {sorted(offsets)})"
            )
        numbers = [re.search(r"(\d+)$", f) for f in frames]
        bad = next((f for f, m in zip(frames, numbers) if m is None), None)
        if bad is not None:
            raise Key2MeshError(
                f"frame {bad!r} does not end in a frame number: cannot apply offsets"
            )
        key = np.array([int(m.group(1)) - offsets[c] for m, c in zip(numbers, cameras)])
    _, inverse = np.unique(key, return_inverse=True)  # sorted: time order for numbered frames
    return inverse.reshape(-1).astype(np.int64)


def stored_instants(path) -> np.ndarray | None:
    """The (N,) instant ids a benchmark / detections ``.npz`` stores under ``instants`` (written by
    ``key2mesh data pose2sim``), or None for other files."""
    from pathlib import Path

    path = Path(path)
    if path.suffix.lower() != ".npz" or not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if "instants" not in z.files:
                return None
            value = z["instants"]
    except Exception as exc:  # noqa: BLE001 - the detections reader reports bad files first
        raise Key2MeshError(f"{path}: cannot read 'instants' ({exc})".splitlines()[0]) from None
    if value.ndim != 1 or value.dtype.kind not in "iu":
        raise Key2MeshError(
            f"{path}: 'instants' must be one integer per sample, got {value.shape} {value.dtype}"
        )
    return value.astype(np.int64)


def pose2sim_benchmark(progress: bool = True, **kw):
    """The Pose2Sim demo (4 cameras, extracted from the wheel) as (BenchmarkSet, MultiViewReport)."""
    from key2mesh.data.demo_inputs import demo_video, pose2sim_calibration

    calib = pose2sim_calibration()
    check_options(
        len(calib.names), kw.get("offsets"), kw.get("max_offset", 6), kw.get("min_views", 2)
    )
    videos = [demo_video(f"pose2sim-{cam}") for cam in calib.names]
    det = detect_videos(videos, calib.names, progress=progress)
    return build_multiview_benchmark(det, calib, name="pose2sim-demo", **kw)
