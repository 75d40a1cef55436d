"""Several people per frame with the single-person MediaPipe BlazePose bundled in the wheel.

BlazePose (``solutions.pose``) returns one person per call and finds people only when they fill
a good part of its 224 px input. Nothing else ships inside a registry wheel without a download,
so several people are found by running it on *search regions* and hiding each person found:

1. hint crops: a square around each box the caller expects (e.g. a tracker's predicted boxes),
   1.6× the box's longer side, so a tracked person is re-detected at a good scale;
2. the whole frame, then overlapping square tiles of ``tile_fraction`` × the shorter image side
   (only on frames larger than ``min_tile`` px), so small people are seen large enough.

Each person found is painted grey in a working copy of the frame (every later region is cut
from that copy) and the same region is searched again, up to ``max_people`` people in all.
A detection that touches a tile edge inside the image is a cut-off body: it is searched again in
a square around it (the whole person); overlapping detections are merged by non-maximum suppression on the
intersection over the smaller box. Measured on the two-person sports2d demo video: see docs/notes/2026-12-06-demo-measurements.md.

That full search costs ~12 BlazePose runs per frame. In a video most frames need only the crops:
``full=False`` searches each hint crop once and stops there when every crop gave a new person,
else goes on with the whole frame and the tiles (a tracked person was lost, or moved far), unless
``fallback=False`` (the schedule then searches in full at its next turn).
:class:`SearchSchedule` says when a frame needs the full search anyway: nobody tracked yet, or
room for more people and ``every_s`` seconds since the last one (to find people who come in).
:class:`ChangeGate` makes that last case cheaper where the camera stands still: a newcomer changes
pixels outside the tracked people's crops, so frames where nothing changed there since the last
full search wait ``idle_s`` (8 × ``every_s``) instead. :class:`VideoSearch` puts the three
together for a stream of frames (the demo, the live view).
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from key2mesh.devices import cpu_share
from key2mesh.errors import Key2MeshError

MASK_VALUE = 127  # grey fill of people already found
# kinds of search region (last column of regions()): a tracked person's crop, the whole frame,
# a tile, a crop around a change (ChangeGate) where someone may have come in
HINT, WHOLE, TILE, PROBE = 0, 1, 2, 3


@dataclass
class PersonDetection:
    """One person in a frame: ``keypoints`` (33, 2) pixels (mediapipe33 order), ``confidence``
    (33,) visibility in [0, 1], ``box`` (4,) x0, y0, x1, y1 pixels of the confident keypoints,
    ``score`` the sum of confidences of the confident keypoints."""

    keypoints: np.ndarray
    confidence: np.ndarray
    box: np.ndarray
    score: float


def keypoint_box(keypoints: np.ndarray, confidence: np.ndarray, threshold: float) -> np.ndarray:
    """(..., 4) x0, y0, x1, y1 of the keypoints (..., K, 2) whose confidence (..., K) reaches
    ``threshold``; NaN where none does."""
    ok = (confidence >= threshold)[..., None] & np.isfinite(keypoints)
    lo = np.where(ok, keypoints, np.inf).min(axis=-2)
    hi = np.where(ok, keypoints, -np.inf).max(axis=-2)
    box = np.concatenate([lo, hi], axis=-1)
    return np.where(np.isfinite(box), box, np.nan)


def tile_grid(height: int, width: int, side: int, overlap: float = 0.3) -> np.ndarray:
    """(T, 4) integer x0, y0, x1, y1 (exclusive) of square tiles of ``side`` px covering an
    image, neighbours overlapping by ``overlap`` of the side; the last row/column is flush
    with the image border."""
    side = int(min(side, height, width))
    stride = max(1, int(round(side * (1.0 - overlap))))

    def starts(n: int) -> np.ndarray:
        s = np.arange(0, max(n - side, 0) + 1, stride)
        return np.unique(np.r_[s, n - side])

    ys, xs = np.meshgrid(starts(height), starts(width), indexing="ij")
    x0, y0 = xs.reshape(-1), ys.reshape(-1)
    return np.stack([x0, y0, x0 + side, y0 + side], axis=1)


def hint_region(box: np.ndarray, height: int, width: int, scale: float = 1.6) -> np.ndarray:
    """Square integer region (4,) around ``box`` (x0, y0, x1, y1), ``scale`` × its longer side,
    shifted (and, if needed, shrunk) to lie inside the image."""
    cx, cy = 0.5 * (box[0] + box[2]), 0.5 * (box[1] + box[3])
    side = int(min(max(box[2] - box[0], box[3] - box[1]) * scale, height, width))
    side = max(side, 1)
    x0 = int(np.clip(round(cx - side / 2), 0, width - side))
    y0 = int(np.clip(round(cy - side / 2), 0, height - side))
    return np.array([x0, y0, x0 + side, y0 + side])


def overlap_smaller(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over the smaller box's area, (N, M), of boxes a (N, 4) and b (M, 4)."""
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(hi - lo, 0, None).prod(-1)
    area = lambda x: np.clip(x[:, 2:] - x[:, :2], 1e-9, None).prod(-1)  # noqa: E731
    return inter / np.minimum(area(a)[:, None], area(b)[None, :])


def suppress(boxes: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Greedy non-maximum suppression on :func:`overlap_smaller`; indices kept, best first."""
    order = np.argsort(-scores, kind="stable")
    ov = overlap_smaller(boxes, boxes)
    keep: list[int] = []
    for i in order:
        if not keep or ov[i, keep].max() <= threshold:
            keep.append(int(i))
    return np.array(keep, dtype=int)


@dataclass
class SearchSchedule:
    """When a video frame gets the detector's full search (whole frame + tiles) besides the
    crops around the people already tracked.

    Full search when nobody is tracked, else at most every ``every_s`` seconds of video while
    there is room for someone new (fewer than ``max_people`` tracked: a person who comes in is
    found within ``every_s``) or a tracked person was lost on their crop (found again within
    ``every_s``, or their track ends). ``every_s = 0``: every frame that needs it.

    ``watched``: a :class:`ChangeGate` watches the still picture for people coming in (its
    changes are searched as probes), so the full search for room waits ``idle_s`` instead
    (default 8 × ``every_s``, 2 s; someone it misses, e.g. a person who stood still behind a
    tracked one, is found within that).
    """

    every_s: float = 0.25
    last_full: float | None = None  # video time of the last full search
    lost: bool = False  # a tracked person was not found on their crop since then
    idle_s: float | None = None  # None: 8 x every_s

    def full(self, time_s: float, num_tracked: int, max_people: int, watched: bool = False) -> bool:
        """Whether the frame at ``time_s`` seconds needs the full search."""
        if num_tracked == 0:
            return True
        since = math.inf if self.last_full is None else time_s - self.last_full
        if since < self.every_s - 1e-9:
            return False
        if self.lost:
            return True
        if num_tracked >= max_people:
            return False
        idle = 8.0 * self.every_s if self.idle_s is None else self.idle_s
        return not watched or since >= idle - 1e-9

    def searched(self, time_s: float, full: bool, lost: int = 0) -> None:
        """Record what the detector did on the frame at ``time_s``: ``full``: the whole frame
        and the tiles were searched; ``lost``: tracked people not found on their crops."""
        if full:
            self.last_full, self.lost = time_s, False
        else:
            self.lost = self.lost or lost > 0


def _thumbnail(image: np.ndarray, scale: int) -> np.ndarray:
    """(H // scale, W // scale) float32 mean of the green channel over scale x scale blocks (the
    channel closest to luminance; block means smooth out compression noise)."""
    h, w = image.shape[0] // scale, image.shape[1] // scale
    g = image[: h * scale, : w * scale, 1].astype(np.float32)
    return g.reshape(h, scale, w, scale).mean(axis=(1, 3))


class ChangeGate:
    """Where a still camera's picture changed, outside the people tracked, since the last full
    search: where someone may have come in.

    Frames are compared as ``scale``-times smaller thumbnails (:func:`_thumbnail`); a block
    changed when its mean moved by more than ``level`` grey levels (8-bit). The crops of the
    people tracked now and of those found at the reference frame (:func:`hint_region`) are
    left out, so tracked people who walk do not count, while someone coming in does, however
    slowly, as the reference stays the frame of the last full search. A change counts when it
    covers a quarter of the smallest person the detector accepts (``min_size`` × the shorter
    image side, squared). When the change covers more than ``moving`` of the picture, the
    camera or the light moved (or someone came in very close): nothing can be said, and the
    schedule's plain interval applies.
    """

    def __init__(
        self, min_size: float = 0.08, scale: int = 8, level: float = 25.0, moving: float = 0.25
    ):
        self.min_size, self.scale, self.level = float(min_size), int(scale), float(level)
        self.moving = float(moving)
        self.reference: np.ndarray | None = None
        self.reference_boxes = np.zeros((0, 4))
        self.latest: np.ndarray | None = None

    def _watched(self, shape: tuple[int, ...], boxes: np.ndarray, image_hw) -> np.ndarray:
        """(h, w) bool of the thumbnail blocks outside every box's search crop."""
        keep = np.ones(shape, dtype=bool)
        s = self.scale
        for box in boxes:
            if np.all(np.isfinite(box)):
                x0, y0, x1, y1 = hint_region(box, *image_hw)
                keep[y0 // s : -(-y1 // s), x0 // s : -(-x1 // s)] = False
        return keep

    def changes(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray | None:
        """The box (1, 4) x0, y0, x1, y1 pixels of what changed in ``image`` (H, W, 3) outside
        ``boxes`` (M, 4) (the people tracked) since the reference frame, (0, 4) when nothing
        did; None when nothing can be said (no reference yet, or the camera moved)."""
        self.latest = _thumbnail(np.asarray(image), self.scale)
        if self.reference is None or self.reference.shape != self.latest.shape:
            return None
        hw = np.shape(image)[:2]
        boxes = np.concatenate([np.reshape(boxes, (-1, 4)), self.reference_boxes])
        watched = self._watched(self.latest.shape, boxes, hw)
        moved = (np.abs(self.latest - self.reference) > self.level) & watched
        count = int(moved.sum())
        if count > self.moving * moved.size:
            return None
        if count < (self.min_size * min(hw) / self.scale) ** 2 / 4:
            return np.zeros((0, 4))
        ys, xs = np.nonzero(moved)
        s = self.scale
        return np.array([[xs.min() * s, ys.min() * s, (xs.max() + 1) * s, (ys.max() + 1) * s]])

    def rebase(self, boxes: np.ndarray) -> None:
        """The frame last passed to :meth:`changes` becomes the reference, with the boxes
        (M, 4) of the people found on it."""
        self.reference = self.latest
        self.reference_boxes = np.reshape(np.asarray(boxes, dtype=np.float64), (-1, 4))


class MultiPersonDetector:
    """Up to ``max_people`` detections per RGB frame (MediaPipe BlazePose by default; see module
    doc).

    Args:
        max_people: most people returned per frame (best score first).
        tile_fraction: tile side as a fraction of the shorter image side.
        min_tile: frames whose shorter side is under ``min_tile / tile_fraction`` px are searched
            whole only (no tiles).
        min_confidence: keypoint visibility counted as confident (box, score, usability).
        min_points: fewer confident keypoints than this is no person.
        min_size: a person's box must span this fraction of the shorter image side.
        model_complexity: BlazePose model (1 is the one bundled in the wheel).
        detector: name of the single-person detector run on each region
            (:mod:`key2mesh.media.detectors`); ``keypoint_set`` is its set.
        workers: regions are searched this many at once, one detector each, in threads
            (MediaPipe releases the GIL): a region's first run is made ahead on the frame as it
            was then, and made again if a person found since was greyed into the region, so
            the results are the sequential search's (see :meth:`_batch` for which regions go
            together). Default: the process's cores (:func:`key2mesh.devices.cpu_share`).
    """

    def __init__(
        self,
        max_people: int = 4,
        tile_fraction: float = 0.7,
        min_tile: int = 256,
        overlap: float = 0.3,
        min_confidence: float = 0.5,
        min_points: int = 8,
        min_size: float = 0.08,
        model_complexity: int = 1,
        detector: str = "mediapipe",
        workers: int | None = None,
    ):
        if max_people < 1:
            raise Key2MeshError(f"max_people must be at least 1, got {max_people}")
        from key2mesh.media.detectors import detector_entry, make_detector

        self.max_people = int(max_people)
        self.tile_fraction, self.min_tile, self.overlap = tile_fraction, min_tile, overlap
        self.min_confidence, self.min_points, self.min_size = min_confidence, min_points, min_size
        self.keypoint_set = detector_entry(detector).keypoint_set
        self._make = lambda: make_detector(detector, video=False, model_complexity=model_complexity)
        self._pose = self._make()  # this thread's; _extra: one more per region searched meanwhile
        self.workers = max(1, int(workers if workers is not None else cpu_share()))
        self._extra: list = []  # one more detector per parallel crop
        self._pool: ThreadPoolExecutor | None = None
        self.calls = 0  # BlazePose runs so far (cost accounting)
        self.full_searches = 0  # frames searched whole + tiles so far
        self.searched_full = False  # whether the last frame was searched whole + tiles
        self.lost = 0  # hint crops of the last frame that gave no new person
        # the first raw detection of the last frame that was rejected as no person (keypoints
        # (33, 2), confidence (33,)), so callers can say why a frame gave nobody
        self.rejected: tuple[np.ndarray, np.ndarray] | None = None

    def regions(
        self,
        height: int,
        width: int,
        hints: np.ndarray | None = None,
        probes: np.ndarray | None = None,
    ) -> np.ndarray:
        """(R, 5) search regions x0, y0, x1, y1, kind (HINT, PROBE, WHOLE or TILE) in search
        order. A probe box's crop is at least 4 × the smallest person (``min_size``) wide, so a
        change that is part of a person shows the whole of them."""
        hints = [b for b in (hints if hints is not None else []) if np.all(np.isfinite(b))]
        out = [np.r_[hint_region(b, height, width), HINT] for b in hints]
        least = 4 * self.min_size * min(height, width)
        for b in probes if probes is not None else []:
            c = 0.5 * (b[:2] + b[2:])
            half = 0.5 * max(float(np.max(b[2:] - b[:2])) * 1.6, least) / 1.6
            out.append(np.r_[hint_region(np.r_[c - half, c + half], height, width), PROBE])
        out.append(np.array([0, 0, width, height, WHOLE]))
        side = int(self.tile_fraction * min(height, width))
        if side >= self.min_tile:
            tiles = tile_grid(height, width, side, self.overlap)
            out += [np.r_[t, TILE] for t in tiles]
        return np.stack(out).astype(int)

    def _batch(self, regions: np.ndarray, row: int, ready: dict, full: bool) -> list[int]:
        """Rows to search at once with ``row`` (its first run): the next regions of the same
        phase not searched yet, up to ``workers``. Hint crops only when no other hint crop
        overlaps them (a person found in one would be greyed into the other); the whole frame
        and the tiles (during a full search) overlap, but a person found there is rare, as
        the tracked ones are greyed out already."""
        kinds = regions[:, 4]
        if self.workers < 2:
            return [row]
        if kinds[row] == HINT:
            hints = np.flatnonzero(kinds == HINT)
            boxes = regions[hints, :4].astype(float)
            ov = overlap_smaller(boxes, boxes)
            np.fill_diagonal(ov, 0.0)
            alone = set(hints[ov.max(axis=1) <= 0].tolist())
            if row not in alone:
                return [row]
            same = [r for r in range(row + 1, len(regions)) if r in alone]
        elif kinds[row] in (WHOLE, TILE) and full:
            same = [r for r in range(row + 1, len(regions)) if kinds[r] in (WHOLE, TILE)]
        else:
            same = [r for r in range(row + 1, len(regions)) if kinds[r] == kinds[row]]
        return [row] + [r for r in same if r not in ready][: self.workers - 1]

    def _speculate(self, work: np.ndarray, regions: np.ndarray, rows: list[int], version: int):
        """First runs of ``rows`` on ``work``, at once (this thread and the pool's detectors):
        {row: (detection, version)}; ``version``: how many areas were greyed out then."""
        while len(self._extra) < len(rows) - 1:
            self._extra.append(self._make())
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers - 1, thread_name_prefix="key2mesh-pose")
        crops = [np.ascontiguousarray(work[y0:y1, x0:x1]) for x0, y0, x1, y1 in regions[rows, :4]]
        jobs = [self._pool.submit(d, c) for d, c in zip(self._extra, crops[1:])]
        dets = [self._pose(crops[0])] + [job.result() for job in jobs]
        self.calls += len(rows)
        return {r: (self._shift(d, *regions[r, :2]), version) for r, d in zip(rows, dets)}

    def _next_detection(
        self,
        work: np.ndarray,
        regions: np.ndarray,
        row: int,
        ready: dict,
        greyed: list[np.ndarray],
        first: bool,
    ):
        """The detector's next result in region ``row`` of ``work``. A region's first run is
        the one made ahead in ``ready`` (made now with the next regions', at once, when there
        is none), unless a person found since was greyed into the region (``greyed``: x0, y0,
        x1, y1 inclusive): then it is made again, as the sequential search would."""
        x0, y0, x1, y1 = (int(v) for v in regions[row, :4])
        if first and row not in ready:
            batch = self._batch(regions, row, ready, self.searched_full)
            if len(batch) > 1:
                ready.update(self._speculate(work, regions, batch, len(greyed)))
        if first and row in ready:
            det, version = ready.pop(row)
            if not any(
                g[0] < x1 and g[2] >= x0 and g[1] < y1 and g[3] >= y0 for g in greyed[version:]
            ):
                return det
        return self._run(np.ascontiguousarray(work[y0:y1, x0:x1]), x0, y0)

    @staticmethod
    def _shift(det, x0: int, y0: int):
        """A detector's (keypoints, confidence) in a crop → in the image (float32), or None."""
        if det is None:
            return None
        kp, conf = det
        return np.asarray(kp, np.float32) + np.array([x0, y0], np.float32), np.asarray(
            conf, np.float32
        )

    def _run(self, crop: np.ndarray, x0: int, y0: int):
        self.calls += 1
        return self._shift(self._pose(crop), x0, y0)

    def _refine(self, work: np.ndarray, box: np.ndarray):
        """Detect again in a square around ``box`` (1.6× its longer side); (keypoints,
        confidence, box) of a person found there, or None."""
        h, w = work.shape[:2]
        x0, y0, x1, y1 = hint_region(box, h, w)
        det = self._run(np.ascontiguousarray(work[y0:y1, x0:x1]), x0, y0)
        if det is None or (det[1] >= self.min_confidence).sum() < self.min_points:
            return None
        return det[0], det[1], keypoint_box(det[0], det[1], self.min_confidence)

    def __call__(
        self,
        image,
        hints: np.ndarray | None = None,
        full: bool = True,
        fallback: bool = True,
        probes: np.ndarray | None = None,
    ) -> list[PersonDetection]:
        """Detect people in ``image`` (H, W, 3) uint8 RGB; ``hints`` (M, 4) boxes where people
        are expected (pixels). ``full=False``: each hint crop is searched once, and the whole
        frame and the tiles only when a crop found no new person and ``fallback`` is set
        (``searched_full`` says which happened, ``lost`` how many crops found nobody new).
        ``probes`` (P, 4): boxes where someone may have come in, each searched once after the
        hint crops (a probe that finds nobody loses no one). Returns at most ``max_people``
        detections, best score first."""
        img = np.asarray(image)
        h, w = img.shape[:2]
        work = img.copy()
        found: list[PersonDetection] = []
        self.rejected = None
        min_side = self.min_size * min(h, w)
        regions = self.regions(h, w, hints, probes)
        num_hints = int((regions[:, 4] == HINT).sum())
        self.searched_full = full or num_hints == 0
        self.lost, hints_done = 0, False
        ready: dict[int, tuple] = {}  # row: (first run's detection, len(greyed) then)
        greyed: list[np.ndarray] = []  # x0, y0, x1, y1 (inclusive) of the areas greyed out
        for row, (x0, y0, x1, y1, kind) in enumerate(regions):
            is_tile = kind == TILE
            if kind != HINT and not hints_done:  # the hint crops come first, a person each
                self.lost, hints_done = num_hints - len(found), True
            if kind in (WHOLE, TILE) and not self.searched_full:
                if not self.lost or not fallback:
                    break  # every crop gave its person (or no fallback): no full search
                self.searched_full = True  # a crop lost its person: search everywhere
            inner = np.array([x0 > 0, y0 > 0, x1 < w, y1 < h])  # region edges inside the image
            once = kind in (HINT, PROBE)  # a crop: searched once (the others: full search)
            first = True
            while len(found) < self.max_people:
                det = self._next_detection(work, regions, row, ready, greyed, first)
                first = False
                if det is None:
                    break
                kp, conf = det
                ok = conf >= self.min_confidence
                box = keypoint_box(kp, conf, self.min_confidence)
                size = box[2:] - box[:2]
                if ok.sum() < self.min_points or not size.max() >= min_side:
                    if self.rejected is None:
                        self.rejected = (kp, conf)
                    break
                margin = 0.02 * (x1 - x0)
                touches = np.array([box[0] - x0, box[1] - y0, x1 - box[2], y1 - box[3]]) < margin
                if is_tile and np.any(touches & inner):
                    # a body cut by the tile edge: search again around it, whole
                    again = self._refine(work, box)
                    if again is None:
                        break
                    kp, conf, box = again
                    ok = conf >= self.min_confidence
                    size = box[2:] - box[:2]
                if (
                    found
                    and overlap_smaller(box[None], np.stack([f.box for f in found])).max() > 0.5
                ):
                    break  # the same person again (the grey fill did not hide them)
                found.append(PersonDetection(kp, conf, box, float(conf[ok].sum())))
                pad = 0.1 * size.max()
                a = np.floor(np.maximum(box[:2] - pad, 0)).astype(int)
                b = np.ceil(box[2:] + pad).astype(int)
                work[a[1] : b[1] + 1, a[0] : b[0] + 1] = MASK_VALUE
                greyed.append(np.r_[a, b])
                if once:
                    break  # a tracked person's crop: searched once
            if len(found) >= self.max_people:
                break
        self.full_searches += self.searched_full
        if not found:
            return []
        keep = suppress(np.stack([f.box for f in found]), np.array([f.score for f in found]))
        return [found[i] for i in keep]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        for d in [self._pose, *self._extra]:
            d.close()
        self._extra = []

    def __enter__(self) -> MultiPersonDetector:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class VideoSearch:
    """Detection for a stream of video frames: the crops of the people tracked on every frame,
    a crop around what changed outside them when someone may be missing (``gate``: a
    :class:`ChangeGate`, for a still camera), and the whole frame and the tiles when
    :class:`SearchSchedule` says so; ``max_people`` of ``detector``. ``fallback``: a crop
    that loses its person makes the frame's full search at once (unrelated images), not at
    the schedule's next turn."""

    def __init__(
        self,
        detector: MultiPersonDetector,
        every_s: float,
        gate: bool = True,
        fallback: bool = False,
    ):
        self.detector, self.fallback = detector, fallback
        self.schedule = SearchSchedule(every_s)
        self.gate = ChangeGate(detector.min_size) if gate else None

    def __call__(self, frame: np.ndarray, time_s: float, hints: np.ndarray) -> list:
        """The people in ``frame`` (H, W, 3) uint8 RGB at ``time_s`` s, given the tracker's
        predicted boxes ``hints`` (M, 4); see :meth:`MultiPersonDetector.__call__`."""
        det = self.detector
        change = self.gate.changes(frame, hints) if self.gate is not None else None
        full = self.schedule.full(time_s, len(hints), det.max_people, change is not None)
        room = len(hints) < det.max_people
        probes = change if change is not None and room and not full else None
        people = det(frame, hints=hints, full=full, fallback=self.fallback, probes=probes)
        self.schedule.searched(time_s, det.searched_full, det.lost)
        if self.gate is not None and det.searched_full:
            self.gate.rebase(np.array([p.box for p in people]).reshape(-1, 4))
        return people
