"""The ground under people seen by a static camera: foot contacts, a robust plane through the
feet in contact, the gravity-aligned frame it defines, and foot skate. Pure numpy.

Conventions: points are in one fixed frame (the camera's, metres); ``track`` (N,) ids and
``time_s`` (N,) seconds per row; feet (N, F, 3) one point per foot (ankles). A track's rows
need not be sorted or regular: neighbours are found per track in time order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TUKEY_C = 4.685  # biweight constant (95 % efficiency for Gaussian residuals)


def _neighbours(track: np.ndarray, time_s: np.ndarray, max_gap_s: float):
    """Row order by (track, time) and, per row, its previous / next row of the same track within
    ``max_gap_s`` (-1: none)."""
    order = np.lexsort((time_s, track))
    n = len(order)
    prev, nxt = np.full(n, -1), np.full(n, -1)
    if n > 1:
        a, b = order[:-1], order[1:]
        ok = (track[a] == track[b]) & (time_s[b] - time_s[a] <= max_gap_s) & (time_s[b] > time_s[a])
        prev[b[ok]] = a[ok]
        nxt[a[ok]] = b[ok]
    return order, prev, nxt


def foot_speeds(
    feet: np.ndarray, track: np.ndarray, time_s: np.ndarray, max_gap_s: float = 0.5
) -> np.ndarray:
    """(N, F) speed of each foot, m/s: the smaller of the backward and forward finite differences
    (a foot landing or lifting is still at one side); inf for a row with no neighbour."""
    _, prev, nxt = _neighbours(np.asarray(track), np.asarray(time_s, np.float64), max_gap_s)
    speed = np.full(feet.shape[:2], np.inf)
    for other in (prev, nxt):
        has = other >= 0
        idx = np.flatnonzero(has)
        dt = np.abs(time_s[idx] - time_s[other[idx]])[:, None]
        v = np.linalg.norm(feet[idx] - feet[other[idx]], axis=-1) / dt
        speed[idx] = np.minimum(speed[idx], v)
    return speed


@dataclass
class GroundFit:
    """A gravity direction and the levels people stand on.

    normal (3,) unit up vector (fit frame); ground (float): the ground plane is
    ``normal · X = ground`` (sole level, metres); level {track: metres above the ground of the
    level that track stands on, 0 on the ground}; weights (M,) robust weight of each contact
    point in [0, 1]; scale: robust residual scale, metres; points: contact points used."""

    normal: np.ndarray
    ground: float
    level: dict[int, float]
    weights: np.ndarray
    scale: float
    points: int


def fit_ground(
    points: np.ndarray,
    groups: np.ndarray,
    up_hint: np.ndarray,
    sole: dict[int, float] | None = None,
    iterations: int = 20,
    prior_m: float = 0.1,
    level_tol_m: float = 0.1,
    min_points: int = 4,
) -> GroundFit:
    """Robust planes through contact points (M, 3) (ankles), one parallel level per group (M,)
    (a track: a person on a box stands on a higher level than one on the floor).

    Iteratively reweighted least squares (Tukey biweight) for one normal n and per-group offsets:
    ``min Σ w (n · (p - c_group))² + λ (1 - (n · u)²)``, where the weak prior towards
    ``up_hint`` u (e.g. the people's mean trunk direction) only decides directions the points
    leave open (all of them on one line); λ = Σw · prior_m². ``sole`` {group: metres from the
    point down to the sole} (default 0). The ground is the lowest level with at least
    ``min_points`` points of weight; groups within ``level_tol_m`` of it stand on it."""
    p = np.asarray(points, np.float64).reshape(-1, 3)
    g = np.asarray(groups)
    u = np.asarray(up_hint, np.float64) / np.linalg.norm(up_hint)
    ids, gi = np.unique(g, return_inverse=True)
    w = np.ones(len(p))
    n, scale = u, 0.0
    for _ in range(iterations):
        tot = np.bincount(gi, w, len(ids))
        c = np.stack([np.bincount(gi, w * p[:, k], len(ids)) for k in range(3)], 1)
        c = c / np.maximum(tot, 1e-12)[:, None]
        q = p - c[gi]
        s = (q * w[:, None]).T @ q + w.sum() * prior_m**2 * (np.eye(3) - np.outer(u, u))
        n = np.linalg.eigh(s)[1][:, 0]
        n = n if n @ u > 0 else -n
        r = q @ n
        scale = max(1.4826 * float(np.median(np.abs(r[w > 0]))) if (w > 0).any() else 0.0, 0.01)
        w = np.clip(1.0 - (r / (TUKEY_C * scale)) ** 2, 0.0, None) ** 2
    sole = sole or {}
    height = p @ n - np.array([sole.get(int(t), 0.0) for t in ids])[gi]  # sole level per point
    tot = np.bincount(gi, w, len(ids))
    off = np.bincount(gi, w * height, len(ids)) / np.maximum(tot, 1e-12)
    # a group whose every point lost its weight (e.g. two contacts far apart in height) has no
    # weighted level: its plain mean, not 0 (which put it |ground| metres above the ground)
    cnt = np.bincount(gi, minlength=len(ids))
    off = np.where(tot > 1e-12, off, np.bincount(gi, height, len(ids)) / np.maximum(cnt, 1))
    supported = tot >= min(min_points, max(tot.max(), 1e-12))
    ground = float(off[supported].min())
    on = supported & (off < ground + level_tol_m)
    ground = float((off[on] * tot[on]).sum() / tot[on].sum())  # the ground: its people's mean
    level = {int(t): (0.0 if on[k] else float(off[k] - ground)) for k, t in enumerate(ids.tolist())}
    return GroundFit(n, ground, level, w, scale, len(p))


def ground_frame(normal: np.ndarray, ground: float, origin: np.ndarray) -> tuple:
    """The gravity-aligned frame of a plane ``normal · X = ground`` (fit frame, e.g. the camera's,
    x right, y down, z forward): returns (R (3, 3), o (3,)) with ``X_world = R (X - o)``: y up
    (the normal), x the fit frame's x projected onto the ground, z = x × y (towards the camera),
    the origin ``o`` the ground point under ``origin`` (3,)."""
    n = np.asarray(normal, np.float64) / np.linalg.norm(normal)
    x = np.array([1.0, 0.0, 0.0]) - n[0] * n
    if np.linalg.norm(x) < 1e-6:  # looking straight down the normal's x: take z instead
        x = np.array([0.0, 0.0, 1.0]) - n[2] * n
    x = x / np.linalg.norm(x)
    r = np.stack([x, n, np.cross(x, n)])
    o = np.asarray(origin, np.float64)
    return r, o - (n @ o - ground) * n


def foot_skate(
    feet: np.ndarray,
    contact: np.ndarray,
    track: np.ndarray,
    time_s: np.ndarray,
    max_gap_s: float = 0.5,
) -> float:
    """Mean horizontal slide of feet in contact, mm per sample: over consecutive rows of a track
    (within ``max_gap_s``) where a foot is in contact in both, the (x, z) distance it moved.
    ``feet`` (N, F, 3) in a y-up frame, metres; ``contact`` (N, F) bool. NaN if no such pair."""
    _, prev, _ = _neighbours(np.asarray(track), np.asarray(time_s, np.float64), max_gap_s)
    b = np.flatnonzero(prev >= 0)
    a = prev[b]
    both = contact[a] & contact[b]
    d = feet[b][..., [0, 2]] - feet[a][..., [0, 2]]
    slide = np.linalg.norm(d, axis=-1)[both]
    return float(slide.mean() * 1000.0) if len(slide) else float("nan")


def contact_root_correction(
    feet: np.ndarray,
    contact: np.ndarray,
    track: np.ndarray,
    time_s: np.ndarray,
    floor: np.ndarray,
    window_s: float = 1.0,
    max_gap_s: float = 0.5,
) -> np.ndarray:
    """(N, 3) shift of each row's root (y-up frame) that pins feet in contact: horizontally, the
    contact feet's slide between consecutive rows is integrated per track and its fast part
    (minus a ``window_s`` moving average, so the track stays where the camera fit put it)
    removed; vertically, the lowest contact foot is put on ``floor`` (N,) (its height when
    standing: the level + the sole-to-ankle height), interpolated between contacts.
    ``feet`` (N, F, 3), ``contact`` (N, F) bool."""
    order, prev, _ = _neighbours(np.asarray(track), np.asarray(time_s, np.float64), max_gap_s)
    n = len(order)
    shift = np.zeros((n, 3))
    if n == 0:
        return shift
    both = np.zeros_like(contact)
    has = prev >= 0
    both[has] = contact[prev[has]] & contact[has]
    step = np.zeros((n, 2))
    d = feet[has][..., [0, 2]] - feet[prev[has]][..., [0, 2]]
    cnt = both[has].sum(1)
    step[has] = np.where(
        cnt[:, None] > 0, (d * both[has][..., None]).sum(1) / np.maximum(cnt, 1)[:, None], 0.0
    )
    low = np.where(contact, feet[..., 1], np.inf).min(1)  # lowest contact foot per row
    err_y = np.where(np.isfinite(low), low - floor, np.nan)
    tracks = track[order]
    starts = np.flatnonzero(np.r_[True, tracks[1:] != tracks[:-1]])
    for lo, hi in zip(starts, np.r_[starts[1:], n]):  # per track (a few tracks, not samples)
        rows = order[lo:hi]
        t = time_s[rows]
        drift = np.cumsum(step[rows], axis=0)
        mean = _moving_average(drift, t, window_s)
        fix = np.zeros((len(rows), 3))
        fix[:, [0, 2]] = -(drift - mean)
        e = err_y[rows]
        ok = np.isfinite(e)
        if ok.any():
            fix[:, 1] = -np.interp(t, t[ok], e[ok])
        shift[rows] = fix
    return shift


def _moving_average(x: np.ndarray, t: np.ndarray, window_s: float) -> np.ndarray:
    """(T, D) centred moving average of ``x`` over ``window_s`` seconds (times ``t`` (T,))."""
    cs = np.vstack([np.zeros((1, x.shape[1])), np.cumsum(x, axis=0)])
    lo = np.searchsorted(t, t - window_s / 2, side="left")
    hi = np.searchsorted(t, t + window_s / 2, side="right")
    return (cs[hi] - cs[lo]) / (hi - lo)[:, None]


def ground_lift(feet_y: np.ndarray, floor: np.ndarray) -> np.ndarray:
    """(N,) upward shift (metres, >= 0) of each row that keeps its lowest foot from going
    through the ground: ``max(0, floor - min_f feet_y)``; ``feet_y`` (N, F) heights in a y-up
    frame (ankles), ``floor`` (N,) the lowest a foot may be (the level + the ankle-to-sole
    height). Rows with a non-finite foot height are not moved."""
    low = np.min(np.asarray(feet_y, np.float64), axis=1)
    lift = np.asarray(floor, np.float64) - low
    return np.where(np.isfinite(lift), np.maximum(lift, 0.0), 0.0)
