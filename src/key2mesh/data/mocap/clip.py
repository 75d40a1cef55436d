"""The shared MoCap clip type and the loader registry.

Every MoCap source (AMASS, DeepMimic, holosoma, ...) produces :class:`MotionClip` objects:
SMPL-convention local rotations (identity = SMPL T-pose) and/or world joint positions
(metres, y up, body faces +z). Sources register a loader with :func:`register_loader`;
:func:`load_clips` dispatches on the source name.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from key2mesh.errors import Key2MeshError

log = logging.getLogger(__name__)


@dataclass
class MotionClip:
    """One motion sequence.

    rotmats: (F, 24, 3, 3) float32 SMPL-layout local rotations, each relative to its parent in
        the world-aligned rest frame, identity = SMPL T-pose; the root is in the y-up world.
    joints: (F, J, 3) float32 world joint positions in metres (y up), named by ``joint_names``.
    betas: (10,) SMPL shape coefficients, or None.
    subject: the captured person's id (e.g. ``cmu_02``) when the source knows it, for held-out
        splits by subject; None otherwise.
    ik_weights / ik_prior: retargeting hints of a joint-only clip's skeleton for the IK
        (:func:`~key2mesh.data.mocap.ik.fit_joints`): per-target weights by SMPL-24 name (over the
        defaults) and the per-joint pull toward rest; None: the IK's defaults.
    """

    name: str
    source: str
    fps: float
    rotmats: np.ndarray | None = None
    joints: np.ndarray | None = None
    joint_names: tuple[str, ...] | None = None
    betas: np.ndarray | None = None
    subject: str | None = None
    ik_weights: dict[str, float] | None = None
    ik_prior: dict[str, float] | None = None

    @property
    def num_frames(self) -> int:
        """Number of frames F."""
        arr = self.rotmats if self.rotmats is not None else self.joints
        return 0 if arr is None else int(arr.shape[0])

    def validate(self) -> MotionClip:
        """Check shapes, frame count and finiteness; raise :class:`Key2MeshError` naming the clip."""
        where = f"clip {self.name!r} ({self.source})"
        if self.rotmats is None and self.joints is None:
            raise Key2MeshError(f"{where} has neither rotations nor joints")
        if not (np.isfinite(self.fps) and self.fps > 0):
            raise Key2MeshError(f"{where} has an invalid frame rate {self.fps!r} (expected > 0)")
        if self.rotmats is not None:
            if self.rotmats.ndim != 4 or self.rotmats.shape[1:] != (24, 3, 3):
                raise Key2MeshError(
                    f"{where}: rotmats has shape {self.rotmats.shape}, expected (F, 24, 3, 3)"
                )
        if self.joints is not None:
            if self.joints.ndim != 3 or self.joints.shape[2] != 3:
                raise Key2MeshError(
                    f"{where}: joints has shape {self.joints.shape}, expected (F, J, 3)"
                )
            if self.joint_names is not None and len(self.joint_names) != self.joints.shape[1]:
                raise Key2MeshError(
                    f"{where}: {len(self.joint_names)} joint names for {self.joints.shape[1]} joints"
                )
            if self.rotmats is not None and self.joints.shape[0] != self.rotmats.shape[0]:
                raise Key2MeshError(
                    f"{where}: {self.rotmats.shape[0]} rotation frames but {self.joints.shape[0]} joint frames"
                )
        if self.num_frames == 0:
            raise Key2MeshError(f"{where} has zero frames")
        for label, arr in (
            ("rotmats", self.rotmats),
            ("joints", self.joints),
            ("betas", self.betas),
        ):
            if arr is not None and not np.isfinite(arr).all():
                bad = (
                    np.flatnonzero(~np.isfinite(arr.reshape(arr.shape[0], -1)).all(axis=1))
                    if label != "betas"
                    else []
                )
                first = f" (first bad frame {int(bad[0])})" if len(bad) else ""
                raise Key2MeshError(f"{where}: {label} contains NaN/inf values{first}")
        return self

    def subsample(self, target_fps: float) -> MotionClip:
        """A copy at about ``target_fps``; never upsamples.

        When fps / target_fps is (within 2 %) an integer k, every k-th frame is kept. Otherwise a
        joint-only clip is resampled exactly at t = n / target_fps by linear interpolation of the
        positions; a clip with rotations keeps the nearest frames (no rotation interpolation)."""
        if not (np.isfinite(target_fps) and target_fps > 0):
            raise Key2MeshError(f"target fps must be > 0, got {target_fps}")
        ratio = self.fps / target_fps
        if ratio <= 1.0:
            return self
        step = int(round(ratio))
        if abs(ratio - step) <= 0.02 * step:
            return replace(
                self,
                fps=self.fps / step,
                rotmats=None if self.rotmats is None else self.rotmats[::step],
                joints=None if self.joints is None else self.joints[::step],
            )
        t = (
            np.arange(0.0, (self.num_frames - 1) / self.fps + 1e-9, 1.0 / target_fps) * self.fps
        )  # source frame units
        if self.rotmats is None and self.joints is not None:
            lo = np.minimum(np.floor(t).astype(int), self.num_frames - 1)
            hi = np.minimum(lo + 1, self.num_frames - 1)
            a = (t - lo)[:, None, None].astype(np.float32)
            return replace(
                self, fps=float(target_fps), joints=(1 - a) * self.joints[lo] + a * self.joints[hi]
            )
        near = np.minimum(np.round(t).astype(int), self.num_frames - 1)
        return replace(
            self,
            fps=float(target_fps),
            rotmats=None if self.rotmats is None else self.rotmats[near],
            joints=None if self.joints is None else self.joints[near],
        )


@dataclass
class LoadReport:
    """What a loader did: the clips it produced and the files it skipped (path, reason)."""

    clips: list[MotionClip] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def num_skipped(self) -> int:
        return len(self.skipped)

    def skip(self, path: str | Path, reason: str) -> None:
        """Record a skipped file and log a warning."""
        log.warning("skipping %s: %s", path, reason)
        self.skipped.append((str(path), reason))


Loader = Callable[..., LoadReport]
_LOADERS: dict[str, Loader] = {}
# source -> module that calls register_loader(source, ...) when imported (imported lazily)
SOURCE_MODULES: dict[str, str] = {
    "amass": "key2mesh.data.mocap.amass",
    "deepmimic": "key2mesh.data.mocap.deepmimic",
    "holosoma": "key2mesh.data.mocap.holosoma",
    "bvh": "key2mesh.data.mocap.cmu",
    "asf_amc": "key2mesh.data.mocap.cmu",
}


def register_loader(source: str, loader: Loader) -> None:
    """Register ``loader(**opts) -> LoadReport`` under ``source``."""
    _LOADERS[source] = loader


def load_report(source: str, **opts) -> LoadReport:
    """Run the loader registered for ``source`` and return its :class:`LoadReport`.

    Built-in sources live in :data:`SOURCE_MODULES`; their module is imported on first use and
    either calls :func:`register_loader` or defines ``load_<source>(**opts) -> LoadReport``."""
    if source not in _LOADERS and source in SOURCE_MODULES:
        try:
            module = importlib.import_module(SOURCE_MODULES[source])
        except ModuleNotFoundError as exc:
            if exc.name != SOURCE_MODULES[source]:
                raise
            raise Key2MeshError(
                f"MoCap source {source!r} is not available in this installation"
            ) from exc
        # a module may also just define ``load_<source>(**opts) -> LoadReport``
        if source not in _LOADERS and callable(getattr(module, f"load_{source}", None)):
            register_loader(source, getattr(module, f"load_{source}"))
    if source not in _LOADERS:
        known = ", ".join(sorted(set(_LOADERS) | set(SOURCE_MODULES)))
        raise Key2MeshError(f"unknown MoCap source {source!r}; known: {known}")
    result = _LOADERS[source](**opts)
    return result if isinstance(result, LoadReport) else LoadReport(clips=list(result))


def load_clips(source: str, **opts) -> list[MotionClip]:
    """Clips of ``source`` ("amass" with ``paths=``, "deepmimic", "holosoma", ...); bad files
    in folders are skipped with a warning (use :func:`load_report` to get their count)."""
    return load_report(source, **opts).clips
