"""Identities across frames: detections → persistent track ids.

Each track keeps its last keypoints and box and a constant-velocity estimate (pixels per second,
from real timestamps, so skipped or missing frames are bridged correctly). Per frame, every (track,
detection) pair is scored by

    similarity = ½ · IoU(predicted box, box) + ½ · OKS(predicted keypoints, keypoints),

OKS being COCO's keypoint similarity ``mean_k exp(-d_k² / (2 s² κ²))`` over the points both trust
(``s²`` = box area, κ = 0.1), and the assignment maximising the total similarity is solved by the
Hungarian algorithm (:func:`scipy.optimize.linear_sum_assignment`). Pairs below ``min_similarity``
are not matched; tracks and detections left over are matched once more against the tracks' last
observations (one poor detection, e.g. two people merged where they overlap in the image, must not
make a bad velocity lose the track), and a third time by reach alone: a detection of the track's
size whose centre is within ``max_speed`` box sizes per second of its predicted one, for tracks
seen at most ``REACH_S`` ago (a runner at a frame stride, whose boxes no longer overlap).
Velocities are the median displacement of the keypoints (robust to partial detections), capped at
``max_speed`` box sizes per second (6: a sprinter's 10 m/s is ~5.5 body heights per second). The
constant-velocity prediction keeps two people apart while they cross; a track unseen for more than
``max_gap_s`` seconds ends, and an unmatched detection starts a new track while fewer than
``max_people`` are alive.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from key2mesh.errors import Key2MeshError

OKS_KAPPA = 0.1
REACH_S = 0.25  # seconds unseen up to which a track is matched by reach alone (stage 3)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU (N, M) of boxes a (N, 4) and b (M, 4), x0, y0, x1, y1."""
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(hi - lo, 0, None).prod(-1)
    area = lambda x: np.clip(x[:, 2:] - x[:, :2], 0, None).prod(-1)  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None, :] - inter, 1e-9)


def keypoint_similarity(
    a: np.ndarray, a_ok: np.ndarray, b: np.ndarray, b_ok: np.ndarray, area: np.ndarray
) -> np.ndarray:
    """OKS (N, M) between keypoints a (N, K, 2) and b (M, K, 2) pixels, trusted where a_ok (N, K)
    and b_ok (M, K); ``area`` (N, M) px² scale. 0 where no point is trusted by both."""
    d2 = ((a[:, None] - b[None]) ** 2).sum(-1)  # (N, M, K)
    both = a_ok[:, None] & b_ok[None]
    e = np.exp(-d2 / (2.0 * np.maximum(area, 1.0)[..., None] * OKS_KAPPA**2))
    return (e * both).sum(-1) / np.maximum(both.sum(-1), 1)


@dataclass
class _Track:
    id: int
    time: float
    box: np.ndarray  # (4,)
    keypoints: np.ndarray  # (K, 2)
    trusted: np.ndarray  # (K,)
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2))  # px / s
    hits: int = 1


class Tracker:
    """Online multi-person tracker (see module doc).

    Args:
        max_people: most tracks alive at once (extra unmatched detections are dropped).
        max_gap_s: a track unseen for longer than this (seconds) ends.
        min_similarity: least similarity for a match.
        min_confidence: keypoint confidence trusted for OKS.
        velocity_smoothing: weight of the newest velocity measurement (exponential average).
        max_speed: fastest motion believed, in the person's box sizes per second.
    """

    def __init__(
        self,
        max_people: int = 4,
        max_gap_s: float = 1.0,
        min_similarity: float = 0.1,
        min_confidence: float = 0.3,
        velocity_smoothing: float = 0.5,
        max_speed: float = 6.0,
    ):
        if max_people < 1 or max_gap_s <= 0:
            raise Key2MeshError(
                f"tracker needs max_people >= 1 and max_gap_s > 0, got {max_people}, {max_gap_s}"
            )
        self.max_people, self.max_gap_s = int(max_people), float(max_gap_s)
        self.min_similarity, self.min_confidence = min_similarity, min_confidence
        self.velocity_smoothing, self.max_speed = velocity_smoothing, max_speed
        self.tracks: list[_Track] = []
        self.next_id = 0

    def _alive(self, time_s: float) -> list[_Track]:
        self.tracks = [t for t in self.tracks if time_s - t.time <= self.max_gap_s]
        return self.tracks

    def predicted_boxes(self, time_s: float) -> np.ndarray:
        """(M, 4) where the alive tracks are expected at ``time_s`` (constant velocity)."""
        tracks = self._alive(time_s)
        if not tracks:
            return np.zeros((0, 4))
        shift = np.stack([t.velocity * (time_s - t.time) for t in tracks])
        return np.stack([t.box for t in tracks]) + np.tile(shift, 2)

    def update(
        self, time_s: float, boxes: np.ndarray, keypoints: np.ndarray, confidence: np.ndarray
    ) -> np.ndarray:
        """Assign the detections of the frame at ``time_s`` (seconds, increasing): ``boxes``
        (N, 4), ``keypoints`` (N, K, 2) pixels, ``confidence`` (N, K). Returns track ids (N,)
        int, -1 for detections left untracked (over ``max_people``, or a box that is not finite).
        Non-finite keypoints (a missing point written as NaN) are untrusted."""
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        kp = np.asarray(keypoints, np.float64)
        finite = np.isfinite(kp).all(-1)
        conf = np.nan_to_num(np.asarray(confidence, np.float64), nan=0.0)
        ok = (conf >= self.min_confidence) & finite
        kp = np.where(finite[..., None], kp, 0.0)
        n = len(boxes)
        ids = np.full(n, -1, dtype=int)
        tracks = self._alive(time_s)
        # a detection without a finite box can be neither matched nor start a track
        matched_det: set[int] = set(np.flatnonzero(~np.isfinite(boxes).all(1)).tolist())
        if tracks and n:
            dt = np.array([time_s - t.time for t in tracks])
            vel = np.stack([t.velocity for t in tracks])
            box = np.stack([t.box for t in tracks])
            pkp = np.stack([t.keypoints for t in tracks])
            pok = np.stack([t.trusted for t in tracks])
            shift = vel * dt[:, None]
            # stage 1 with the constant-velocity prediction; stage 2, for what is left, with the
            # last observation (a bad velocity from one poor detection must not lose the track);
            # stage 3: a detection of the track's size within reach of its motion (a fast
            # person at a frame stride, whose boxes no longer overlap)
            free_t = list(range(len(tracks)))
            for stage in range(3):
                free_d = [c for c in range(n) if c not in matched_det]
                if not free_t or not free_d:
                    break
                if stage < 2:
                    tb, tk = (
                        (box + np.tile(shift, 2), pkp + shift[:, None])
                        if stage == 0
                        else (box, pkp)
                    )
                    sim = self._similarity(
                        tb[free_t], tk[free_t], pok[free_t], boxes[free_d], kp[free_d], ok[free_d]
                    )
                else:
                    sim = self._within_reach(box[free_t], shift[free_t], dt[free_t], boxes[free_d])
                rows, cols = linear_sum_assignment(-sim)
                done = []
                for r, c in zip(rows, cols):
                    if sim[r, c] < self.min_similarity:
                        continue
                    tr, dc = tracks[free_t[r]], free_d[c]
                    self._advance(tr, time_s, boxes[dc], kp[dc], ok[dc])
                    ids[dc] = tr.id
                    matched_det.add(dc)
                    done.append(free_t[r])
                free_t = [t for t in free_t if t not in done]
        # unmatched detections start tracks (best-trusted first) while there is room
        order = sorted(set(range(n)) - matched_det, key=lambda i: -int(ok[i].sum()))
        for c in order:
            if len(self.tracks) >= self.max_people:
                break
            self.tracks.append(_Track(self.next_id, time_s, boxes[c], kp[c], ok[c]))
            ids[c] = self.next_id
            self.next_id += 1
        return ids

    def _within_reach(
        self, tbox: np.ndarray, shift: np.ndarray, dt: np.ndarray, dbox: np.ndarray
    ) -> np.ndarray:
        """(T, D) for track boxes tbox (T, 4) moved by shift (T, 2) over dt (T,) s and detection
        boxes dbox (D, 4): in [min_similarity, 1], falling with the distance of the box centres
        over ``max_speed`` box sizes per second of reach, where the sizes agree within 1.5x and
        the distance is within reach and the track was seen at most ``REACH_S`` ago (a stride
        or a missed frame, not someone else coming in where it left); -1 elsewhere."""
        size_t = np.clip((tbox[:, 2:] - tbox[:, :2]).max(-1), 1.0, None)
        size_d = np.clip((dbox[:, 2:] - dbox[:, :2]).max(-1), 1.0, None)
        ct = 0.5 * (tbox[:, :2] + tbox[:, 2:]) + shift
        cd = 0.5 * (dbox[:, :2] + dbox[:, 2:])
        d = np.linalg.norm(ct[:, None] - cd[None], axis=-1)
        reach = (self.max_speed * size_t * np.maximum(dt, 1e-3))[:, None]
        ratio = size_d[None] / size_t[:, None]
        near = (d < reach) & (ratio < 1.5) & (ratio > 1 / 1.5) & (dt <= REACH_S)[:, None]
        lo = max(self.min_similarity, 1e-6)
        return np.where(near, lo + (1 - lo) * (1 - d / reach), -1.0)

    @staticmethod
    def _similarity(tbox, tkp, tok, dbox, dkp, dok) -> np.ndarray:
        """(T, D) ½ IoU + ½ OKS between track boxes/keypoints and detections."""
        wh = np.clip(dbox[:, 2:] - dbox[:, :2], 1.0, None)
        area = np.broadcast_to(wh.prod(-1)[None], (len(tbox), len(dbox)))
        return 0.5 * box_iou(tbox, dbox) + 0.5 * keypoint_similarity(tkp, tok, dkp, dok, area)

    def _advance(
        self, t: _Track, time_s: float, box: np.ndarray, kp: np.ndarray, ok: np.ndarray
    ) -> None:
        dt = time_s - t.time
        if dt > 0:
            # median displacement of the points trusted in both (robust to a partial or merged
            # detection, which moves the box), else of the box centre; at most max_speed
            both = ok & t.trusted
            if both.sum() >= 3:
                v = np.median(kp[both] - t.keypoints[both], axis=0) / dt
            else:
                v = (0.5 * (box[:2] + box[2:]) - 0.5 * (t.box[:2] + t.box[2:])) / dt
            size = max(float(np.max(box[2:] - box[:2])), 1.0)
            speed = float(np.linalg.norm(v))
            if speed > self.max_speed * size:
                v = v * (self.max_speed * size / speed)
            a = self.velocity_smoothing if t.hits > 1 else 1.0
            t.velocity = (1 - a) * t.velocity + a * v
        # keep the last trusted position of points not seen now (for OKS on the next frame)
        t.keypoints = np.where(ok[:, None], kp, t.keypoints + t.velocity * max(dt, 0.0))
        t.trusted = ok | t.trusted
        t.box, t.time, t.hits = box, time_s, t.hits + 1


def identity_switches(truth: np.ndarray, predicted: np.ndarray, frames: np.ndarray) -> int:
    """MOT identity switches: over detections sorted by frame, how often a true identity's
    predicted track id differs from the one it last had (untracked detections, -1, ignored).
    ``truth``, ``predicted``, ``frames`` (N,) per detection."""
    last: dict[int, int] = {}
    switches = 0
    for i in np.argsort(frames, kind="stable"):
        g, p = int(truth[i]), int(predicted[i])
        if p < 0:
            continue
        if g in last and last[g] != p:
            switches += 1
        last[g] = p
    return switches
