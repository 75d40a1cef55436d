"""Tracked 2D detections → a motion table: body parameters, translation and 3D joints per
(frame, person), and its files (``<stem>_params.npz`` + a JSON sidecar describing every key).

Per track the body shape is the median of its per-frame predictions (one person keeps one
body; the per-frame shapes jitter), set to the subject's height and sex where the user gives
them (:mod:`~key2mesh.inference.subject`), rotations are optionally smoothed (One-Euro on the 6D
representation, or its zero-phase offline variant), the camera translation is fitted per row
(:func:`~key2mesh.inference.camera_fit.fit_camera`) and smoothed the same way. Everything is
computed in chunks of ``chunk_size`` rows, so memory does not grow with the video beyond these
compact per-row arrays.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from key2mesh.body.traits import body_traits
from key2mesh.errors import Key2MeshError
from key2mesh.inference.camera_fit import WORLD_TO_CAMERA, fit_camera
from key2mesh.inference.predictor import Key2Mesh
from key2mesh.inference.world import World
from key2mesh.keypoints.sets import SMPL24, keypoint_names, num_keypoints

CHUNK = 2048
SMOOTHING_MODES = ("none", "one-euro", "zero-phase")  # MotionSmoothing.mode


@dataclass(frozen=True)
class MotionSmoothing:
    """Temporal smoothing of a motion: ``mode`` none | one-euro (online, causal) | zero-phase
    (offline, forward + backward); One-Euro ``min_cutoff`` (Hz) and ``beta`` (1 / unit) for the
    6D rotations and the translation (metres); tracks restart after ``max_gap_s`` seconds."""

    mode: str = "none"
    min_cutoff: float = 1.0
    beta: float = 0.05
    max_gap_s: float = 0.5

    def __post_init__(self) -> None:
        if self.mode not in SMOOTHING_MODES:  # (any other name ran One-Euro, unsaid)
            raise Key2MeshError(
                f"smoothing mode {self.mode!r}: choose from {', '.join(SMOOTHING_MODES)}"
            )


@dataclass
class Motion:
    """One row per (frame, person), N rows. Frames: the model's world frame is SMPL's (y up,
    body faces +z, metres); the camera frame is OpenCV's (x right, y down, z forward, metres),
    ``X_cam = diag(1, -1, -1) · X_world + transl``.

    frame_index (N,) int video frame; time_s (N,) seconds; track_id (N,) int;
    rotmats (N, 24, 3, 3) local joint rotations, world frame (SMPL layout);
    shape (N, S) body shape (anny phenotypes in [0, 1] or SMPL betas);
    transl (N, 3) root joint (pelvis) in the camera frame, metres; focal_length (N,) pixels;
    keypoints2d (N, K, 2) pixels and confidence (N, K) in the model's keypoint set;
    joints3d (N, 24, 3) kinematic joints, camera frame, metres;
    keypoints3d (N, K, 3) body keypoints of the model's set, camera frame, metres;
    reprojection_error (N,) pixels. Plus fps (frame rate of the source), image_size (H, W),
    body (model name), shape_names (S,), keypoint_set."""

    frame_index: np.ndarray
    time_s: np.ndarray
    track_id: np.ndarray
    rotmats: np.ndarray
    shape: np.ndarray
    transl: np.ndarray
    focal_length: np.ndarray
    keypoints2d: np.ndarray
    confidence: np.ndarray
    joints3d: np.ndarray
    keypoints3d: np.ndarray
    reprojection_error: np.ndarray
    fps: float
    image_size: tuple[int, int]
    body: str
    shape_names: list[str]
    keypoint_set: str
    world: World | None = None  # the export frame (None: the camera's); estimate_world
    # per track: {"height_m": stature of its body, "subject": height / sex given or None}
    bodies: dict[int, dict] | None = None

    def __len__(self) -> int:
        return len(self.frame_index)

    def tracks(self) -> list[int]:
        return [int(t) for t in np.unique(self.track_id)]

    def rows_of(self, track: int) -> np.ndarray:
        """Row indices of one track, in time order."""
        sel = np.flatnonzero(self.track_id == track)
        return sel[np.argsort(self.time_s[sel], kind="stable")]

    def rows_of_frame(self, frame: int) -> np.ndarray:
        return np.flatnonzero(self.frame_index == frame)

    def world_root(self) -> np.ndarray:
        """(N, 3) the root joint in the world frame (y up, camera at the origin looking
        along -z): ``diag(1, -1, -1) · transl``."""
        return self.transl * np.array([1.0, -1.0, -1.0])


def shape_names(model: Key2Mesh) -> list[str]:
    """Names of the shape parameters: anny phenotypes, or ``beta0..`` for SMPL."""
    labels = getattr(model.body, "phenotype_labels", None)
    if labels:
        return list(labels)
    return [f"beta{i}" for i in range(model.body.shape_dim)]


@torch.no_grad()
def build_motion(
    model: Key2Mesh,
    frame_index: np.ndarray,
    time_s: np.ndarray,
    track_id: np.ndarray,
    keypoints2d: np.ndarray,
    confidence: np.ndarray,
    image_size: tuple[int, int],
    fps: float,
    focal: float | None = None,
    smoothing: MotionSmoothing = MotionSmoothing(),
    track_shape: bool = True,
    chunk_size: int = CHUNK,
    world: str = "camera",
    origin: str = "first-pelvis",
    subjects=None,
) -> Motion:
    """Predict, fit and smooth N tracked detections (keypoints2d (N, K, 2) pixels of the
    model's set, confidence (N, K)) into a :class:`Motion`. ``focal`` pixels (default
    max(H, W)); ``track_shape``: one (median) shape per track; ``subjects`` {track or None
    (every track): :class:`~key2mesh.inference.subject.Subject`}: the height / sex of the
    people (:func:`~key2mesh.inference.subject.track_shapes`; needs ``track_shape``);
    ``world``: the export frame, ground | camera | auto, ``origin`` its origin
    (:func:`~key2mesh.inference.world.estimate_world`)."""
    from key2mesh.inference.world import ORIGINS, WORLD_MODES

    if world not in (*WORLD_MODES, "auto"):
        raise Key2MeshError(f"--world {world!r}: choose from {', '.join(WORLD_MODES)}")
    if origin not in ORIGINS:
        raise Key2MeshError(f"--origin {origin!r}: choose from {', '.join(ORIGINS)}")
    if subjects and not track_shape:
        raise Key2MeshError("a subject's height / sex needs one shape per track (track_shape)")
    from key2mesh.geometry.rotations import matrix_to_rot6d, rot6d_to_matrix
    from key2mesh.inference.camera_fit import check_image_size, default_focal
    from key2mesh.inference.smoothing import smooth_track_series

    check_image_size(image_size)
    n = len(frame_index)
    k = num_keypoints(model.keypoint_set)
    _check_rows(n, k, model.keypoint_set, time_s, track_id, keypoints2d, confidence, fps)
    kp2 = np.asarray(keypoints2d, np.float32).reshape(n, k, 2)
    conf = np.asarray(confidence, np.float32).reshape(n, k)
    rot, shape, valid = [], [], []
    for _, pred in model.predict_chunks(kp2, conf, mesh=False, chunk_size=chunk_size):
        rot.append(pred.rotmats.cpu())
        shape.append(pred.shape.cpu())
        valid.append(pred.valid.cpu())
    rot = torch.cat(rot).double() if n else torch.zeros(0, 24, 3, 3, dtype=torch.float64)
    shape = torch.cat(shape).double() if n else torch.zeros(0, model.body.shape_dim)
    # rows without usable keypoints (too few, all on one spot) are predicted, but neither enter
    # a track's shape nor the smoothing of their neighbours (the demo makes no such rows)
    valid = torch.cat(valid).numpy().astype(bool) if n else np.zeros(0, bool)
    track_id, time_s = np.asarray(track_id), np.asarray(time_s, np.float64)
    bodies = None
    if track_shape and n:
        from key2mesh.inference.subject import track_shapes

        one, bodies = track_shapes(model.mesh_body, shape.numpy(), track_id, subjects, valid)
        shape = torch.from_numpy(one).double()
    smooth = smoothing.mode != "none"
    args = (smoothing.min_cutoff, smoothing.beta, smoothing.mode == "zero-phase")
    if smooth and valid.any():
        six = matrix_to_rot6d(rot).numpy()
        six[valid] = smooth_track_series(
            six[valid], track_id[valid], time_s[valid], *args, smoothing.max_gap_s
        )
        rot = rot6d_to_matrix(torch.from_numpy(six))
    f = float(focal) if focal is not None else default_focal(*image_size)
    transl = np.zeros((n, 3))
    err = np.zeros(n)
    kp3 = np.zeros((n, kp2.shape[1], 3))
    joints = np.zeros((n, 24, 3))
    for i in range(0, n, chunk_size):
        part = slice(i, min(i + chunk_size, n))
        r = rot[part].to(model.device, model.body.dtype)
        s = shape[part].to(model.device, model.body.dtype)
        out = model.body(r, s)
        k = model.body.regress(out.vertices, model.keypoint_set).cpu().double()
        cam = fit_camera(k, kp2[part], conf[part], image_size=image_size, focal=f)
        transl[part] = cam.translation.numpy()
        err[part] = cam.error.numpy()
        kp3[part] = k.numpy()
        joints[part] = out.joints.cpu().double().numpy()
    if smooth and n:
        ok = np.isfinite(transl).all(1) & valid
        transl[ok] = smooth_track_series(
            transl[ok], track_id[ok], time_s[ok], *args, smoothing.max_gap_s
        )
    r_wc = WORLD_TO_CAMERA.double().numpy()
    motion = Motion(
        frame_index=np.asarray(frame_index, np.int64),
        time_s=time_s,
        track_id=track_id.astype(np.int64),
        rotmats=rot.float().numpy(),
        shape=shape.float().numpy(),
        transl=transl,
        focal_length=np.full(n, f),
        keypoints2d=kp2,
        confidence=conf,
        joints3d=joints @ r_wc.T + transl[:, None],
        keypoints3d=kp3 @ r_wc.T + transl[:, None],
        reprojection_error=err,
        fps=float(fps),
        image_size=(int(image_size[0]), int(image_size[1])),
        body=str(model.checkpoint.body.get("name", "anny")),
        shape_names=shape_names(model),
        keypoint_set=model.keypoint_set,
        bodies=bodies,
    )
    from key2mesh.inference.world import estimate_world

    motion.world = estimate_world(model, motion, world, origin=origin)
    return motion


def _check_rows(n, k, keypoint_set, time_s, track_id, keypoints2d, confidence, fps) -> None:
    """A one-line error for inputs :func:`build_motion` cannot turn into a motion: a frame rate
    that is not a positive number (every export's clock divides by it), or per-row arrays whose
    lengths differ from the ``n`` frame indices (``k`` keypoints of ``keypoint_set``)."""
    try:
        rate = float(fps)
    except (TypeError, ValueError):
        rate = float("nan")
    if not (np.isfinite(rate) and rate > 0):
        raise Key2MeshError(f"fps must be a positive number (Hz), got {fps!r}")
    arrays = {
        "time_s": (time_s, (n,)),
        "track_id": (track_id, (n,)),
        "keypoints2d": (keypoints2d, (n, k, 2)),
        "confidence": (confidence, (n, k)),
    }
    for name, (array, shape) in arrays.items():
        if np.size(array) != np.prod(shape):
            raise Key2MeshError(
                f"{name} must be {shape} for {n} frame indices ({keypoint_set}: {k} keypoints), "
                f"got {np.shape(array)}"
            )


def axis_angle(rotmats: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) → axis-angle vectors (..., 3), radians."""
    from scipy.spatial.transform import Rotation

    r = np.asarray(rotmats, np.float64)
    return Rotation.from_matrix(r.reshape(-1, 3, 3)).as_rotvec().reshape(*r.shape[:-2], 3)


# key → (shape, unit, meaning); written into the JSON sidecar and the table of docs/output-formats.md
PARAMS_KEYS: dict[str, tuple[str, str, str]] = {
    "frame_index": ("(N,) int", "-", "video frame of the row (0-based, in the source video)"),
    "time_s": ("(N,)", "s", "time of the frame: frame_index / fps"),
    "track_id": ("(N,) int", "-", "person identity, kept across frames"),
    "global_orient": (
        "(N, 3)",
        "rad",
        "root rotation, axis-angle, camera frame (x right, y down, z forward)",
    ),
    "body_pose": (
        "(N, 69)",
        "rad",
        "23 joint rotations relative to their parents, axis-angle, SMPL joint order 1..23",
    ),
    "rotmats": ("(N, 24, 3, 3)", "-", "all 24 local rotations, model world frame (y up)"),
    "transl": ("(N, 3)", "m", "root joint (pelvis) in the camera frame, from the camera fit"),
    "focal_length": ("(N,)", "px", "focal length used by the camera fit"),
    "keypoints2d": ("(N, K, 3)", "px", "detected keypoints (x, y, confidence), model's set"),
    "joints3d": ("(N, 24, 3)", "m", "SMPL-24 kinematic joints, camera frame"),
    "keypoints3d": ("(N, K, 3)", "m", "body keypoints of the model's set, camera frame"),
    "reprojection_error": ("(N,)", "px", "mean reprojection error of the camera fit"),
    "fps": ("()", "Hz", "frame rate of the source video"),
    "image_size": ("(2,) int", "px", "height, width"),
    "body_model": ("()", "-", "body model name (anny or smpl)"),
    "keypoint_set": ("()", "-", "keypoint set of keypoints2d / keypoints3d"),
    "joint_names": ("(24,)", "-", "SMPL-24 joint names"),
    "world_rotation": ("(3, 3)", "-", "camera → export frame: X_world = R (X_cam - world_origin)"),
    "world_origin": ("(3,)", "m", "origin of the export frame, camera frame"),
    "transl_world": (
        "(N, 3)",
        "m",
        "root joint in the export frame (y up; ground at y = 0 with --world ground), as exported",
    ),
    "foot_contact": ("(N, 2) bool", "-", "left, right ankle on the ground (slow, at its level)"),
}


def params_arrays(motion: Motion) -> dict[str, np.ndarray]:
    """The ``_params.npz`` arrays of a motion (keys: :data:`PARAMS_KEYS` + the shape key)."""
    r_wc = WORLD_TO_CAMERA.double().numpy()
    rot = motion.rotmats.astype(np.float64)
    arrays = {
        "frame_index": motion.frame_index,
        "time_s": motion.time_s,
        "track_id": motion.track_id,
        "global_orient": axis_angle(r_wc @ rot[:, 0]).astype(np.float32),
        "body_pose": axis_angle(rot[:, 1:]).reshape(len(motion), 69).astype(np.float32),
        "rotmats": motion.rotmats.astype(np.float32),
        "transl": motion.transl.astype(np.float32),
        "focal_length": motion.focal_length.astype(np.float32),
        "keypoints2d": np.concatenate(
            [motion.keypoints2d, motion.confidence[..., None]], axis=-1
        ).astype(np.float32),
        "joints3d": motion.joints3d.astype(np.float32),
        "keypoints3d": motion.keypoints3d.astype(np.float32),
        "reprojection_error": motion.reprojection_error.astype(np.float32),
        "fps": np.float64(motion.fps),
        "image_size": np.array(motion.image_size, np.int64),
        "body_model": np.array(motion.body),
        "keypoint_set": np.array(motion.keypoint_set),
        "joint_names": np.array([n.removeprefix("smpl_") for n in SMPL24]),
    }
    from key2mesh.inference.world import camera_world

    world = motion.world if motion.world is not None else camera_world(len(motion))
    arrays["world_rotation"] = world.rotation
    arrays["world_origin"] = world.origin
    arrays["transl_world"] = (world.points(motion.transl) + world.root_shift).astype(np.float32)
    arrays["foot_contact"] = world.contact.astype(bool)
    traits = body_traits(motion.body)
    arrays[traits.shape_key] = motion.shape.astype(np.float32)
    if traits.shape_names_key is not None:
        arrays[traits.shape_names_key] = np.array(motion.shape_names)
    return arrays


def _export_start(motion: Motion, track: int) -> float | None:
    """Seconds (video clock: frame / fps) of a track's first row with a camera fit: where its
    exports start (:func:`~key2mesh.inference.motion_export.series.track_series` skips rows
    without one); None when it has none (it is not exported)."""
    sel = (motion.track_id == track) & np.isfinite(motion.transl).all(1)
    return float(motion.frame_index[sel].min() / motion.fps) if sel.any() else None


def write_params(motion: Motion, path: str | Path, source: str = "") -> tuple[Path, Path]:
    """Write ``path`` (``*_params.npz``) and its JSON sidecar (``*_params.json``: keys with
    shapes, units and meaning, frames, tracks with their start on the video clock, the export
    frame and the camera); returns both paths."""
    from key2mesh.inference.motion_export.series import frame_step
    from key2mesh.inference.world import camera_world, world_summary
    from key2mesh.safe_paths import atomic_savez, atomic_write_text

    path = Path(path)
    arrays = params_arrays(motion)
    npz = atomic_savez(path, compressed=True, **arrays)
    keys = dict(PARAMS_KEYS)
    if "betas" in arrays:
        keys["betas"] = (
            "(N, S)",
            "-",
            "SMPL shape coefficients (one per track: the median, set to its subject's height)",
        )
    else:
        keys["phenotypes"] = (
            "(N, 6)",
            "[0, 1]",
            "anny phenotypes (one per track: the median, set to its subject's height / sex), "
            "named by phenotype_names",
        )
        keys["phenotype_names"] = ("(6,)", "-", "names of the phenotypes columns")
    sidecar = {
        "source": source,
        "rows": len(motion),
        "fps": motion.fps,
        "image_size": list(motion.image_size),
        "body_model": motion.body,
        "keypoint_set": motion.keypoint_set,
        "keypoint_names": list(keypoint_names(motion.keypoint_set)),
        "frames": {
            "world": "SMPL's: y up, body faces +z, metres (rotmats, body_pose)",
            "camera": "OpenCV: x right, y down, z forward, metres; X_cam = diag(1,-1,-1) X_world + transl",
        },
        "frame_range": [int(motion.frame_index.min()), int(motion.frame_index.max())]
        if len(motion)
        else [],
        "tracks": {
            str(t): {
                "rows": int((motion.track_id == t).sum()),
                "first_frame": int(motion.frame_index[motion.track_id == t].min()),
                "last_frame": int(motion.frame_index[motion.track_id == t].max()),
                "start_s": _export_start(motion, t),
                "sample_interval_s": frame_step(motion.frame_index) / motion.fps,
                **((motion.bodies or {}).get(t, {})),
            }
            for t in motion.tracks()
        },
        "world": world_summary(
            motion.world if motion.world is not None else camera_world(len(motion)), motion
        ),
        "keys": {k: {"shape": s, "unit": u, "meaning": m} for k, (s, u, m) in keys.items()},
    }
    js = atomic_write_text(npz.with_suffix(".json"), json.dumps(sidecar, indent=1) + "\n")
    return npz, js
