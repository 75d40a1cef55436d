"""Real demo inputs, extracted at run time from registry wheels (never committed).

- ``pose2sim-cam01`` … ``pose2sim-cam04``: the four synchronised views of Pose2Sim's
  single-person demo (``pose2sim`` wheel), with their Qualisys calibration
  (:func:`pose2sim_calibration`) for multi-view work such as triangulation.
- ``sports2d``: Sports2D's demo video (``sports2d`` wheel).

The wheels are fetched with pip (or taken from ``$KEY2MESH_WHEEL_DIR`` / the key2mesh cache) by
:func:`key2mesh.data.wheels.extract`; only the needed members are unpacked into the cache.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from key2mesh.errors import Key2MeshError

POSE2SIM_DEMO = "Pose2Sim/Demo_SinglePerson/"
POSE2SIM_CALIB = POSE2SIM_DEMO + "calibration/Calib.qca.txt"

DEMO_VIDEOS: dict[str, tuple[str, str]] = {
    **{
        f"pose2sim-cam0{i}": ("pose2sim", f"{POSE2SIM_DEMO}videos/cam0{i}.mp4") for i in range(1, 5)
    },
    "sports2d": ("sports2d", "Sports2D/Demo/demo.mp4"),
}


def demo_names() -> list[str]:
    return list(DEMO_VIDEOS)


def demo_available(name: str = "pose2sim-cam01") -> bool:
    """Whether the wheel holding demo ``name`` is already on disk, complete (no download needed:
    a truncated wheel, left by an interrupted download, is fetched again on use)."""
    import zipfile

    from key2mesh.data.wheels import cached_wheel

    dist = DEMO_VIDEOS[name][0] if name in DEMO_VIDEOS else name
    found = cached_wheel(dist)
    return found is not None and zipfile.is_zipfile(found)


def demo_video(name: str = "pose2sim-cam01") -> Path:
    """Path of a demo video in the cache (extracted from its wheel on first use)."""
    from key2mesh.data.wheels import extract

    if name not in DEMO_VIDEOS:
        raise Key2MeshError(f"unknown demo video {name!r}; available: {', '.join(DEMO_VIDEOS)}")
    dist, member = DEMO_VIDEOS[name]
    return extract(dist, member)[0]


def demo_frame(name: str = "pose2sim-cam01", index: int = 0) -> np.ndarray:
    """Frame ``index`` of a demo video as (H, W, 3) uint8 RGB."""
    from key2mesh.media.video import read_frame

    return read_frame(demo_video(name), index)


@dataclass
class MultiCameraCalibration:
    """Calibrated pinhole cameras (C of them), OpenCV conventions, metres.

    names (C,); size (C, 2) image width, height in pixels; K (C, 3, 3) intrinsics;
    dist (C, 4) distortion (k1, k2, p1, p2); R (C, 3, 3) and t (C, 3) world → camera:
    ``X_cam = R @ X + t`` (world z up for Qualisys).
    """

    names: list[str]
    size: np.ndarray
    K: np.ndarray
    dist: np.ndarray
    R: np.ndarray
    t: np.ndarray

    @property
    def centers(self) -> np.ndarray:
        """(C, 3) camera centres in the world frame: ``-Rᵀ t``."""
        return -np.einsum("cji,cj->ci", self.R, self.t)

    def projection_matrices(self) -> np.ndarray:
        """(C, 3, 4) ``P = K [R | t]`` (ignores distortion), for linear triangulation."""
        return self.K @ np.concatenate([self.R, self.t[..., None]], axis=-1)

    def project(self, points: np.ndarray, distorted: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """World points (N, 3) → pixels (C, N, 2) (lens distortion applied when ``distorted``),
        and depths (C, N); see :func:`key2mesh.geometry.triangulate.project_points`."""
        from key2mesh.geometry.triangulate import project_points

        return project_points(points, self.R, self.t, self.K, self.dist if distorted else None)


def _floats(tag: ET.Element, keys: tuple[str, ...], path: Path) -> list[float]:
    try:
        return [float(tag.attrib[k]) for k in keys]
    except (KeyError, ValueError) as exc:
        raise Key2MeshError(f"{path}: camera entry <{tag.tag}> lacks a numeric {exc}") from exc


def read_qca_calibration(path: str | Path, binning_factor: int = 1) -> MultiCameraCalibration:
    """Parse a Qualisys ``.qca.txt`` calibration into OpenCV-convention cameras.

    Qualisys stores, per camera, its position (mm) and a rotation whose rows ``r1*, r2*, r3*``
    map world to the Qualisys camera frame (x right, y up, looking along −z); flipping y and z
    gives OpenCV's frame: ``R = diag(1, −1, −1) · M``, ``t = −R · position``. Focal lengths and
    the centre point are in 1/64 sensor units relative to the sensor origin; the video field of
    view is subtracted (Pose2Sim's convention for the same files). The distortion coefficients
    act on normalised coordinates and are read as they are: Pose2Sim's reader also divides
    them by 64, but the corners of its demo's own checkerboard images are straightest with the
    file's values (scale 1 of 0 … 3; /64 is as good as no distortion at all). Cameras are
    returned sorted by name.
    """
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except FileNotFoundError as exc:
        raise Key2MeshError(f"{path}: no such calibration file") from exc
    except ET.ParseError as exc:
        raise Key2MeshError(f"{path}: not a valid Qualisys .qca.txt XML file ({exc})") from exc
    cams = root.findall("cameras/camera")
    if not cams:
        raise Key2MeshError(
            f"{path}: no <cameras><camera> entries (expected a Qualisys .qca.txt file)"
        )
    names, size, k_all, dist, r_all, t_all = [], [], [], [], [], []
    flip = np.diag([1.0, -1.0, -1.0])
    for cam in cams:
        fov, tr, intr = cam.find("fov_video"), cam.find("transform"), cam.find("intrinsic")
        if fov is None or tr is None or intr is None:
            raise Key2MeshError(
                f"{path}: camera {cam.attrib.get('serial')!r} lacks fov_video/transform/intrinsic"
            )
        left, top, right, bottom = _floats(fov, ("left", "top", "right", "bottom"), path)
        names.append(cam.attrib.get("serial", f"cam{len(names) + 1:02d}"))
        size.append([(right - left + 1) / binning_factor, (bottom - top + 1) / binning_factor])
        # sensor pixels (the video window's left/top too) → the binned video's pixels
        fu, fv, cu, cv = (
            x / 64.0
            for x in _floats(
                intr, ("focalLengthU", "focalLengthV", "centerPointU", "centerPointV"), path
            )
        )
        b = binning_factor
        k_all.append([[fu / b, 0.0, (cu - left) / b], [0.0, fv / b, (cv - top) / b], [0, 0, 1.0]])
        # on normalised coordinates (x/z, y/z): dimensionless, the same at any binning
        keys = ("radialDistortion1", "radialDistortion2", "tangentalDistortion1")
        dist.append(_floats(intr, (*keys, "tangentalDistortion2"), path))
        m = np.array(
            _floats(tr, tuple(f"r{i}{j}" for i in (1, 2, 3) for j in (1, 2, 3)), path)
        ).reshape(3, 3)
        pos = np.array(_floats(tr, ("x", "y", "z"), path)) / 1000.0
        r = flip @ m
        r_all.append(r)
        t_all.append(-r @ pos)
    order = sorted(range(len(names)), key=lambda i: names[i])
    return MultiCameraCalibration(
        names=[names[i] for i in order],
        size=np.array(size)[order],
        K=np.array(k_all)[order],
        dist=np.array(dist)[order],
        R=np.array(r_all)[order],
        t=np.array(t_all)[order],
    )


def pose2sim_calibration() -> MultiCameraCalibration:
    """The four cameras of Pose2Sim's single-person demo (extracted from the wheel)."""
    from key2mesh.data.wheels import extract

    return read_qca_calibration(extract("pose2sim", POSE2SIM_CALIB)[0])
