"""Temporal smoothing of per-frame predictions with the One-Euro filter (Casiez et al., CHI 2012).

An adaptive low-pass filter: a low cutoff when the signal is slow (removes jitter), rising with
the signal's speed (limits lag): ``cutoff = min_cutoff + beta · |dx/dt|``. Each element of the
trailing dimensions is filtered independently, so it applies to keypoints (T, K, 2), 6D
rotations (T, J, 6) — re-orthonormalise them afterwards with
:func:`key2mesh.geometry.rotations.rot6d_to_matrix` — shape parameters or translations.

Real timestamps: :class:`OneEuroFilter` takes each sample's time step (``dt``), so skipped or
missing frames are filtered with the time that really passed. :func:`smooth_series` runs it along
one person's track, restarts after gaps longer than ``max_gap_s``, and offers an offline
**zero-phase** variant: the forward pass's output filtered again backwards in time (as
``filtfilt`` does for linear filters; with ``beta = 0`` the One-Euro filter is a first-order
low-pass and the two lags cancel exactly on evenly spaced samples).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from key2mesh.errors import Key2MeshError


def _alpha(cutoff, rate: float):
    """Smoothing factor of a first-order low-pass at ``cutoff`` Hz sampled at ``rate`` Hz."""
    tau = 1.0 / (2.0 * math.pi * cutoff)
    return 1.0 / (1.0 + tau * rate)


class OneEuroFilter:
    """Streaming One-Euro filter over arrays of any fixed shape (numpy, vectorised).

    Args:
        fps: sampling rate in Hz (frames per second).
        min_cutoff: cutoff (Hz) at zero speed; lower = smoother, more lag when slow.
        beta: speed coefficient (1 / signal unit); higher = less lag on fast motion.
        d_cutoff: cutoff (Hz) of the low-pass on the derivative.
    """

    def __init__(
        self, fps: float = 30.0, min_cutoff: float = 1.0, beta: float = 0.0, d_cutoff: float = 1.0
    ):
        if fps <= 0 or min_cutoff <= 0 or d_cutoff <= 0 or beta < 0:
            raise Key2MeshError(
                f"One-Euro filter needs fps, min_cutoff, d_cutoff > 0 and beta >= 0, got "
                f"fps={fps}, min_cutoff={min_cutoff}, beta={beta}, d_cutoff={d_cutoff}"
            )
        self.fps, self.min_cutoff, self.beta, self.d_cutoff = (
            float(fps),
            float(min_cutoff),
            float(beta),
            float(d_cutoff),
        )
        self.reset()

    def reset(self) -> None:
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None

    def __call__(self, x, valid=None, dt: float | None = None) -> np.ndarray:
        """Filter one sample ``x`` (any shape, fixed across calls). Elements where ``valid``
        (same shape, bool) is False keep their previous filtered value (or pass through while
        no value has been seen yet). ``dt``: seconds since the previous sample (default
        ``1 / fps``)."""
        x = np.asarray(x, dtype=np.float64)
        ok = (
            np.ones(x.shape, bool)
            if valid is None
            else np.broadcast_to(np.asarray(valid, bool), x.shape)
        )
        ok = ok & np.isfinite(x)
        if self._x is None:
            self._x = np.where(ok, x, np.nan)
            self._dx = np.zeros_like(x)
            return x.copy()
        if self._x.shape != x.shape:
            raise Key2MeshError(
                f"One-Euro filter: sample shape changed from {self._x.shape} to {x.shape}"
            )
        seen = np.isfinite(self._x)
        prev = np.where(seen, self._x, x)
        rate = self.fps if dt is None else 1.0 / max(float(dt), 1e-9)
        dx = (x - prev) * rate
        dx_hat = self._dx + _alpha(self.d_cutoff, rate) * (dx - self._dx)
        a = _alpha(self.min_cutoff + self.beta * np.abs(dx_hat), rate)
        x_hat = prev + a * (x - prev)
        self._x = np.where(ok, x_hat, self._x)
        self._dx = np.where(ok & seen, dx_hat, self._dx)
        return np.where(ok, x_hat, np.where(seen, self._x, x))


def one_euro(
    x,
    fps: float = 30.0,
    min_cutoff: float = 1.0,
    beta: float = 0.0,
    d_cutoff: float = 1.0,
    valid=None,
    times=None,
):
    """Filter a whole sequence (T, ...) along its first axis; returns the same type (numpy array
    or torch tensor, same dtype/device) and shape. ``valid`` (T, ...) bool, broadcastable,
    marks the samples to trust (e.g. keypoint confidence above a threshold). ``times`` (T,)
    seconds, non-decreasing: each step is filtered with the time that passed (default: ``1 / fps``
    per sample)."""
    is_torch = torch.is_tensor(x)
    arr = x.detach().cpu().numpy() if is_torch else np.asarray(x)
    if arr.ndim < 1 or arr.shape[0] == 0:
        raise Key2MeshError(f"one_euro expects a sequence (T, ...), got shape {arr.shape}")
    dts = [None] * arr.shape[0]
    if times is not None:
        times = np.asarray(times, dtype=np.float64).reshape(-1)
        if len(times) != arr.shape[0] or np.any(np.diff(times) < 0):
            raise Key2MeshError("one_euro needs one non-decreasing timestamp per sample")
        dts = [None, *np.diff(times).tolist()]
    if valid is not None:
        v = valid.detach().cpu().numpy() if torch.is_tensor(valid) else np.asarray(valid)
        v = (
            np.broadcast_to(v.astype(bool), arr.shape)
            if v.ndim == arr.ndim
            else np.broadcast_to(
                v.astype(bool).reshape(v.shape + (1,) * (arr.ndim - v.ndim)), arr.shape
            )
        )
    filt = OneEuroFilter(fps, min_cutoff, beta, d_cutoff)
    out = np.stack(
        [filt(arr[i], None if valid is None else v[i], dts[i]) for i in range(arr.shape[0])]
    )
    if is_torch:
        return torch.as_tensor(out, dtype=x.dtype, device=x.device)
    return out.astype(arr.dtype if np.issubdtype(arr.dtype, np.floating) else np.float64)


def smooth_series(
    x: np.ndarray,
    times: np.ndarray,
    min_cutoff: float = 1.0,
    beta: float = 0.0,
    zero_phase: bool = False,
    max_gap_s: float = 0.5,
    d_cutoff: float = 1.0,
) -> np.ndarray:
    """One-Euro along one track: ``x`` (T, ...) samples at ``times`` (T,) seconds, increasing
    (any spacing). The filter restarts after a gap longer than ``max_gap_s``; ``zero_phase``
    adds the backward pass (offline). Returns float64 (T, ...)."""
    x = np.asarray(x, dtype=np.float64)
    times = np.asarray(times, dtype=np.float64)
    if len(times) != len(x) or (len(times) > 1 and np.any(np.diff(times) <= 0)):
        raise Key2MeshError("smooth_series needs one increasing timestamp per sample")
    out = x.copy()
    cuts = np.flatnonzero(np.diff(times) > max_gap_s) + 1
    for seg in np.split(np.arange(len(x)), cuts):
        if len(seg) < 2:
            continue
        passes = (seg, seg[::-1]) if zero_phase else (seg,)
        for order in passes:
            filt = OneEuroFilter(30.0, min_cutoff, beta, d_cutoff)
            prev = None
            for i in order:
                dt = None if prev is None else abs(times[i] - times[prev])
                out[i] = filt(out[i], dt=dt)
                prev = i
    return out


@dataclass(frozen=True)
class SmoothingSettings:
    """One-Euro settings for body parameters: 6D rotations and shape, each its own (min_cutoff, beta)."""

    rotation_min_cutoff: float = 1.0
    rotation_beta: float = 0.0
    shape_min_cutoff: float = 1.0
    shape_beta: float = 0.0


# `key2mesh predict --smooth` on its parameter table (per tracked person, 30 fps assumed), and a
# faster-rotation / slower-shape preset for API users (the demo and the motion table smooth per
# track with :func:`smooth_track_series`, settings from the command line).
TRACK_SMOOTHING = SmoothingSettings()
DEMO_SMOOTHING = SmoothingSettings(
    rotation_min_cutoff=1.0, rotation_beta=0.05, shape_min_cutoff=0.3
)


def smooth_parameters(
    rotmats: torch.Tensor,
    shape: torch.Tensor,
    fps: float = 30.0,
    settings: SmoothingSettings = TRACK_SMOOTHING,
    times=None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The one smoothing of body parameters over a sequence (T, ...) of one person: One-Euro on
    the 6D rotations (re-orthonormalised) and on the shape; returns (rotmats (T,24,3,3), shape).
    ``times`` (T,) seconds (default: evenly spaced at ``fps``)."""
    from key2mesh.geometry.rotations import matrix_to_rot6d, rot6d_to_matrix

    six = one_euro(
        matrix_to_rot6d(rotmats),
        fps=fps,
        min_cutoff=settings.rotation_min_cutoff,
        beta=settings.rotation_beta,
        times=times,
    )
    return rot6d_to_matrix(six), one_euro(
        shape, fps=fps, min_cutoff=settings.shape_min_cutoff, beta=settings.shape_beta, times=times
    )


def smooth_tracks(
    rotmats: torch.Tensor,
    shape: torch.Tensor,
    frames: np.ndarray,
    person_ids: np.ndarray,
    fps: float = 30.0,
    settings: SmoothingSettings = TRACK_SMOOTHING,
    max_gap_s: float = 0.5,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`smooth_parameters` along frames (``frames / fps`` seconds: skipped frames are
    filtered with the time that passed), separately per person id and restarted after a gap of
    more than ``max_gap_s`` (a person leaving and re-entering); pieces shorter than 3 frames are
    left as they are; rows in any order."""
    rotmats, shape = rotmats.clone(), shape.clone()
    for pid in np.unique(person_ids):
        sel = np.nonzero(person_ids == pid)[0]
        sel = sel[np.argsort(frames[sel], kind="stable")]
        times = np.asarray(frames, np.float64)[sel] / fps
        for piece in np.split(np.arange(len(sel)), np.flatnonzero(np.diff(times) > max_gap_s) + 1):
            if len(piece) < 3:
                continue
            rows = sel[piece]
            rotmats[rows], shape[rows] = smooth_parameters(
                rotmats[rows], shape[rows], fps, settings, times=times[piece]
            )
    return rotmats, shape


def smooth_track_series(
    x: np.ndarray,
    track_ids: np.ndarray,
    times: np.ndarray,
    min_cutoff: float = 1.0,
    beta: float = 0.0,
    zero_phase: bool = False,
    max_gap_s: float = 0.5,
) -> np.ndarray:
    """:func:`smooth_series` on rows (N, ...) of many tracks: each ``track_ids`` (N,) value is
    filtered along its own ``times`` (N,) seconds; rows in any order. Returns float64."""
    x = np.asarray(x, dtype=np.float64)
    out = x.copy()
    for tid in np.unique(track_ids):
        sel = np.flatnonzero(track_ids == tid)
        sel = sel[np.argsort(times[sel], kind="stable")]
        out[sel] = smooth_series(x[sel], times[sel], min_cutoff, beta, zero_phase, max_gap_s)
    return out
