"""The frame motion exports are written in (``--world``): ``ground`` (default) puts a static
camera's people on a gravity-aligned ground estimated from their foot contacts; ``camera``
keeps the model's world frame seen from the camera (y up, the camera at the origin looking
along -z).

Ground: ankles (SMPL-24 joints 7, 8) moving slower than ``max_speed`` are contact candidates;
a robust plane through them over all tracks (:func:`~key2mesh.geometry.ground.fit_ground`,
one parallel level per track, so a person on a box stands on a higher level), lowered by each
body's ankle-to-sole height (its rest mesh), is the ground. Y up, ground at y = 0, x along the
camera's x projected on the ground; the origin (``--origin``) on the ground under the pelvis
of the first row in time with a camera fit (``first-pelvis``, default: the first person seen
starts at x = z = 0), under
the median pelvis of all rows (``people``: the scene centred) or under the camera (``camera``:
the camera at x = z = 0, its height on y); contacts are then the slow ankles within
``contact_height`` of their level. A contact-aware root correction
(:func:`~key2mesh.geometry.ground.contact_root_correction`) is kept when it lowers the foot
skate (mm of contact-foot slide per sample). Last, a no-penetration guard
(:func:`~key2mesh.geometry.ground.ground_lift`) lifts a row whose lowest ankle is below its
ankle-to-sole height over the track's level (a person entering the view, a landing: the fitted
depth puts the body too low) onto that height; higher feet are left as they are."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import torch

from key2mesh.errors import Key2MeshError
from key2mesh.geometry.ground import (
    GroundFit,
    contact_root_correction,
    fit_ground,
    foot_skate,
    foot_speeds,
    ground_frame,
    ground_lift,
)

log = logging.getLogger(__name__)
WORLD_MODES = ("ground", "camera")
ORIGINS = ("first-pelvis", "people", "camera")  # --origin: the ground point under ...
ANKLES = (7, 8)  # SMPL-24 left, right ankle
FLIP = np.diag([1.0, -1.0, -1.0])  # camera frame <-> the model's world frame


@dataclass
class World:
    """``X_world = rotation · (X_cam - origin)`` (metres); rows' roots are then moved by
    ``root_shift`` (N, 3) (world frame: the contact correction when kept, plus ``lift``).
    contact (N, 2) bool, left / right foot on the ground; fit: the ground fit (None in camera
    mode); skate_mm: foot skate before / after the correction; sole {track: ankle-to-sole m};
    lift (N,) metres the no-penetration guard raised each row (included in root_shift)."""

    mode: str
    rotation: np.ndarray
    origin: np.ndarray
    contact: np.ndarray
    root_shift: np.ndarray
    fit: GroundFit | None = None
    skate_mm: tuple[float, float] = (float("nan"), float("nan"))
    corrected: bool = False
    sole: dict[int, float] = field(default_factory=dict)
    origin_mode: str = "camera"  # ORIGINS (ground mode) or "camera" (the camera frame)
    lift: np.ndarray | None = None

    def points(self, x_cam: np.ndarray) -> np.ndarray:
        """Camera-frame points (..., 3) → world frame (no root shift)."""
        return (np.asarray(x_cam) - self.origin) @ self.rotation.T

    def root_rotation(self) -> np.ndarray:
        """(3, 3) what turns the model's world frame (rotmats' root) into this frame."""
        return self.rotation @ FLIP


def camera_world(n: int) -> World:
    """Today's export frame: the model's world seen from the camera (``diag(1, -1, -1)``)."""
    return World("camera", FLIP.copy(), np.zeros(3), np.zeros((n, 2), bool), np.zeros((n, 3)))


@torch.no_grad()
def sole_heights(model, motion) -> dict[int, float]:
    """{track: height of the ankles above the sole, metres} of each track's body (rest pose)."""
    body = model.mesh_body
    out = {}
    for t in motion.tracks():
        shape = np.median(motion.shape[motion.track_id == t], axis=0)
        rot = torch.eye(3, dtype=body.dtype, device=body.device).expand(1, 24, 3, 3)
        s = torch.as_tensor(shape, dtype=body.dtype, device=body.device).reshape(1, -1)
        res = body(rot, s)
        ankle_y = res.joints[0, list(ANKLES), 1].mean()
        out[t] = float(ankle_y - res.vertices[0, :, 1].min())
    return out


def ground_world(
    motion,
    sole: dict[int, float] | None = None,
    max_speed: float = 0.8,
    contact_height: float = 0.1,
    max_gap_s: float = 0.5,
    correct: bool | None = None,
    origin: str = "first-pelvis",
    guard: bool = True,
    max_tilt_deg: float = 45.0,
) -> World:
    """Estimate the ground of a static camera's motion (see module doc). ``sole`` {track: m}
    (default 0.08 m each); ``origin``: one of :data:`ORIGINS`; ``correct``: keep the contact root correction (None: only when it
    lowers the foot skate); ``guard``: the no-penetration lift (see module doc). A one-line
    error when there is no foot contact to fit, or when the feet's plane is more than
    ``max_tilt_deg`` from the people's mean trunk direction (feet that do not lie on one level
    ground per person, e.g. someone climbing stairs, tilt the fit)."""
    n = len(motion.track_id)
    ok = np.isfinite(motion.joints3d).all((1, 2))
    if not ok.any():
        raise Key2MeshError("--world ground: no frame with a camera fit to find the ground from")
    track, time_s = motion.track_id, motion.time_s
    sole = {t: (sole or {}).get(t, 0.08) for t in motion.tracks()}
    feet = np.where(ok[:, None, None], motion.joints3d[:, list(ANKLES)], np.nan)
    speed = foot_speeds(feet, track, time_s, max_gap_s)
    slow = ok[:, None] & (speed < max_speed)
    if slow.sum() < 3:
        raise Key2MeshError(
            "--world ground: fewer than 3 slow foot positions to find the ground from "
            "(use --world camera)"
        )
    trunk = motion.joints3d[ok, 12] - motion.joints3d[ok, 0]  # pelvis → neck, camera frame
    up = (trunk / np.linalg.norm(trunk, axis=1, keepdims=True)).mean(0)
    up = up if np.linalg.norm(up) > 0.5 else np.array([0.0, -1.0, 0.0])
    rows, foot = np.nonzero(slow)
    fit = fit_ground(feet[rows, foot], track[rows], up, sole)
    tilt = float(np.degrees(np.arccos(np.clip(fit.normal @ up / np.linalg.norm(up), -1, 1))))
    if tilt > max_tilt_deg:
        raise Key2MeshError(
            f"--world ground: the plane through the feet is {tilt:.0f}° from the people's trunks "
            "(not one level ground per person, e.g. stairs or a slope; use --world camera)"
        )
    for t in motion.tracks():  # a track never slow (one frame, always running): on the ground
        fit.level.setdefault(int(t), 0.0)
    level = np.array([fit.level[int(t)] + sole[int(t)] for t in track])  # ankle height standing
    height = feet @ fit.normal - fit.ground  # ankle height above the ground
    contact = slow & (height - level[:, None] < contact_height)
    rot, o = ground_frame(fit.normal, fit.ground, origin_point(motion, ok, origin))
    world = World("ground", rot, o, contact, np.zeros((n, 3)), fit, sole=sole, origin_mode=origin)
    fw = world.points(np.nan_to_num(feet))
    shift = contact_root_correction(fw, contact, track, time_s, level, max_gap_s=max_gap_s)
    before = foot_skate(fw, contact, track, time_s, max_gap_s)
    after = foot_skate(fw + shift[:, None], contact, track, time_s, max_gap_s)
    keep = correct if correct is not None else bool(after < before)
    world.skate_mm, world.corrected = (before, after), keep
    if keep:
        world.root_shift = np.where(ok[:, None], shift, 0.0)
    world.lift = np.zeros(n)
    if guard:
        low = (fw + world.root_shift[:, None])[..., 1]
        world.lift = np.where(ok, ground_lift(low, level), 0.0)
        world.root_shift[:, 1] += world.lift
    return world


def origin_point(motion, ok: np.ndarray, origin: str) -> np.ndarray:
    """(3,) camera-frame point the ground origin lies under (see :data:`ORIGINS`); ``ok`` (N,)
    rows with a camera fit."""
    if origin == "camera":
        return np.zeros(3)
    if origin == "people":
        return np.median(motion.transl[ok], axis=0)
    if origin != "first-pelvis":
        raise Key2MeshError(f"--origin {origin!r}: choose from {', '.join(ORIGINS)}")
    rows = np.flatnonzero(ok)
    if not len(rows):
        raise Key2MeshError("--world ground: no frame with a camera fit to put the origin under")
    # the person seen first (not the lowest track id: a tracked file's ids need not follow
    # time), at their first row with a camera fit; ties: the lowest id
    first = rows[np.lexsort((motion.track_id[rows], motion.time_s[rows]))[0]]
    return motion.transl[first]


def estimate_world(model, motion, mode: str = "ground", **kw) -> World:
    """The :class:`World` of ``motion`` in ``mode``: ground | camera | auto (the ground, or the
    camera's frame with a warning when the feet do not show one, e.g. single images)."""
    if mode not in (*WORLD_MODES, "auto"):
        raise Key2MeshError(f"--world {mode!r}: choose from {', '.join(WORLD_MODES)}")
    if mode == "camera" or not len(motion):
        return camera_world(len(motion))
    try:
        return ground_world(motion, sole_heights(model, motion), **kw)
    except Key2MeshError as err:
        if mode != "auto":
            raise
        log.warning("exports in the camera frame: %s", err)
        return camera_world(len(motion))


def camera_pose(world: World, focal: float, image_size: tuple[int, int]) -> dict:
    """The video camera in the world frame: position (3,) m, rotation (3, 3) whose columns are
    the camera's x right, y up, z backward (glTF / OpenGL camera axes), the same as a quaternion
    (x, y, z, w), focal length px, vertical field of view (rad), aspect ratio."""
    from scipy.spatial.transform import Rotation

    h, w = image_size
    r = world.rotation @ FLIP  # glTF camera axes = OpenCV's with y and z flipped
    return {
        "position": (-world.rotation @ world.origin).tolist(),
        "rotation": r.tolist(),
        "quaternion_xyzw": Rotation.from_matrix(r).as_quat().tolist(),
        "focal_px": float(focal),
        "yfov_rad": float(2 * np.arctan(0.5 * h / focal)),
        "aspect_ratio": float(w / h),
        "image_size": [int(h), int(w)],
    }


def world_summary(world: World, motion) -> dict:
    """The sidecar's ``world`` entry: frame, ground fit, camera pose, foot skate."""
    f = float(motion.focal_length[0]) if len(motion) else 0.0
    out = {
        "mode": world.mode,
        "x_world": "rotation @ (x_cam - origin) (+ root_shift of the row's root)",
        "rotation": world.rotation.tolist(),
        "origin_camera_m": world.origin.tolist(),
        "camera": camera_pose(world, f, motion.image_size) if f > 0 else None,
    }
    if world.fit is not None:
        out.update(
            {
                "origin": world.origin_mode,
                "up_in_camera": world.fit.normal.tolist(),
                "camera_height_m": float(world.points(np.zeros(3))[1]),
                "levels_m": {str(k): v for k, v in world.fit.level.items()},
                "ankle_to_sole_m": {str(k): v for k, v in world.sole.items()},
                "contact_points": world.fit.points,
                "plane_residual_m": world.fit.scale,
                "foot_skate_mm": {
                    "before": world.skate_mm[0],
                    "after_root_correction": world.skate_mm[1],
                    "correction_kept": world.corrected,
                },
            }
        )
        if world.lift is not None:
            out["ground_guard"] = {
                "rows_lifted": int((world.lift > 1e-6).sum()),  # (more than float noise)
                "max_lift_m": float(world.lift.max(initial=0.0)),
            }
    return out
