"""Live mode: a camera (or a video file played as one) → MediaPipe detection → tracking →
Key2Mesh + camera fit → the viewer, one frame at a time, with the time of every stage.

A stream does not wait for a slow consumer: frames are taken at the source's pace (a file is
played at its frame rate against the wall clock) and the frames that arrive while one is being
processed are dropped, so what is shown is always the newest frame. End-to-end latency is the
wall time from a frame's arrival (when the source delivered it, or, for a file, when its time
came on the playback clock) to its bodies being sent to the viewer.

The scene is the camera's frame (y up, the camera at the origin looking along -z): a live stream
has no clip to estimate the ground from, so the plane is a guide under the lowest foot seen.
Each person keeps the body shape of their first frame.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from key2mesh.errors import Key2MeshError

# what each frame goes through, as timed in FrameTiming.stages
LIVE_STAGES = ("read", "detect", "track", "predict", "view")


@dataclass
class FrameTiming:
    """One processed frame: ``index`` in the source, seconds per stage (:data:`LIVE_STAGES`),
    ``latency`` arrival → sent to the viewer (s), ``people`` meshed, ``dropped`` frames skipped
    before this one."""

    index: int
    stages: dict[str, float]
    latency: float
    people: int
    dropped: int = 0


def _values(timing: FrameTiming) -> dict[str, float]:
    """What :class:`LiveStats` averages: seconds per stage, ``latency`` (s), ``people``."""
    return {**timing.stages, "latency": timing.latency, "people": timing.people}


@dataclass
class LiveStats:
    """Timings of a live run in bounded memory (a session may run for hours): the first
    ``warmup`` frames kept apart, running sums over the rest and at most ``max_samples`` of
    their latencies (a uniform sample beyond, for the percentiles); :meth:`summary` gives means,
    percentiles and the frame rate."""

    wall_s: float = 0.0
    source_frames: int = 0  # frames the source delivered (processed + dropped)
    warmup: int = 5
    max_samples: int = 50_000
    count: int = 0  # frames processed
    _head: list[FrameTiming] = field(default_factory=list)  # the first ``warmup`` frames
    _sums: dict[str, float] = field(default_factory=dict)  # over the frames after them (s)
    _latency: list[float] = field(default_factory=list)  # s
    _rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))

    def add(self, timing: FrameTiming) -> None:
        self.count += 1
        if len(self._head) < self.warmup:
            self._head.append(timing)
            return
        for key, value in _values(timing).items():
            self._sums[key] = self._sums.get(key, 0.0) + value
        n = self.count - len(self._head)
        if len(self._latency) < self.max_samples:
            self._latency.append(timing.latency)
        elif (j := int(self._rng.integers(n))) < self.max_samples:
            self._latency[j] = timing.latency  # reservoir sampling: each frame kept alike

    def summary(self, skip: int | None = None) -> dict[str, float]:
        """Means (ms) per stage, latency mean / p50 / p95 (ms), processed fps over the run's
        wall time, the dropped fraction; ``skip`` (at most ``warmup``) first frames left out,
        by default min(``warmup``, frames - 1)."""
        skip = min(self.warmup, self.count - 1) if skip is None else min(skip, self.warmup)
        head = self._head[skip:]
        n = len(head) + self.count - len(self._head)
        if n <= 0:
            return {}

        def mean(key: str) -> float:
            own = sum(_values(r).get(key, 0.0) for r in head)
            return (own + self._sums.get(key, 0.0)) / n

        lat = 1000 * np.array([r.latency for r in head] + self._latency)
        out = {f"{s}_ms": 1000 * mean(s) for s in LIVE_STAGES}
        out.update(
            latency_ms=1000 * mean("latency"),
            latency_p50_ms=float(np.percentile(lat, 50)),
            latency_p95_ms=float(np.percentile(lat, 95)),
            fps=self.count / self.wall_s if self.wall_s > 0 else 0.0,
            dropped=1 - self.count / max(self.source_frames, 1),
            people=mean("people"),
        )
        return out


class StreamFrame(NamedTuple):
    """A frame taken from a stream: ``index`` in the source, ``rgb`` (H, W, 3) uint8,
    ``arrival`` when the source delivered it (perf_counter s), ``dropped`` frames skipped since
    the last one taken, ``time_s`` its time on the source's clock (s)."""

    index: int
    rgb: np.ndarray
    arrival: float
    dropped: int
    time_s: float


class FileStream:
    """A video file played as a camera, on the file's own clock (frame index / fps).
    ``realtime``: a reader thread decodes the frames at the file's frame rate, as a camera
    delivers them, keeping only the newest; :meth:`latest` waits for a frame newer than the
    last one taken (the ones in between are dropped). Otherwise every frame is given as soon as
    asked (arrival = when it was read). ``repeat``: play the file that many times in a row
    (longer timing runs; the indices go on counting)."""

    def __init__(
        self,
        path: str | Path,
        realtime: bool = True,
        max_frames: int | None = None,
        repeat: int = 1,
    ):
        import threading

        from key2mesh.media.video import iter_frames, source_info

        info = source_info(path)
        if info.kind != "video":
            raise Key2MeshError(f"--camera {path}: not a video file")
        self.fps = info.fps or 30.0
        n = info.num_frames or None
        self.total = n if max_frames is None else min(n or max_frames, max_frames)
        self._frames = (f for _ in range(repeat) for f in iter_frames(path, 0, self.total))
        self.realtime = realtime
        self._next = 0
        self._taken = -1
        self._slot: tuple[int, np.ndarray, float] | None = None
        self._done = False
        self._error: BaseException | None = None  # what ended the reader thread early
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True) if realtime else None

    def _read(self) -> None:
        """The reader thread; an error of the decoder is kept for :meth:`latest` to raise
        (the stream ends either way, so nobody waits for a frame that never comes)."""
        start = time.perf_counter()
        try:
            for i, frame in enumerate(self._frames):
                if self._stop.is_set():
                    break
                wait = start + i / self.fps - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
                with self._cond:
                    self._slot = (i, frame, time.perf_counter())
                    self._cond.notify_all()
        except BaseException as err:  # handed over to the consumer's thread
            self._error = err
        finally:
            self._frames.close()  # the reader's file, also when stopped early
            with self._cond:
                self._done = True
                self._cond.notify_all()

    def latest(self) -> StreamFrame | None:
        """The next frame (realtime: the newest one) or None at the end."""
        if not self.realtime:
            frame = next(self._frames, None)
            if frame is None:
                return None
            self._next += 1
            i = self._next - 1
            return StreamFrame(i, frame, time.perf_counter(), 0, i / self.fps)
        if not self._thread.is_alive() and not self._done:
            self._thread.start()  # the stream starts when first read
        with self._cond:
            while not self._done and (self._slot is None or self._slot[0] <= self._taken):
                self._cond.wait(0.5)
            if self._slot is None or self._slot[0] <= self._taken:
                if self._error is not None:
                    raise self._error
                return None
            index, frame, arrival = self._slot
        dropped, self._taken = index - self._taken - 1, index
        return StreamFrame(index, frame, arrival, dropped, index / self.fps)

    def close(self) -> None:
        """Stop reading and release the file (the reader thread releases it when it runs)."""
        self._stop.set()
        if self._thread is None or not self._thread.is_alive():
            self._frames.close()


class DeviceStream:
    """A camera by index (OpenCV): each :meth:`latest` grabs the newest frame. The camera does
    not wait for us, so its clock is the wall clock: a frame's time is its arrival after the
    first frame's (s), its index that time × the camera's fps; the frames in between (never
    read while one was processed) are the dropped ones."""

    def __init__(self, index: int):
        import cv2

        self.cap = cv2.VideoCapture(index)
        if not self.cap.isOpened():
            raise Key2MeshError(f"--camera {index}: no camera with that index could be opened")
        self.cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        self.fps = self.cap.get(cv2.CAP_PROP_FPS) or 30.0
        self.total = None
        self._start: float | None = None  # the first frame's arrival (perf_counter s)
        self._last = -1  # the last index given

    def close(self) -> None:
        self.cap.release()

    def latest(self) -> StreamFrame | None:
        """The camera's newest frame, or None when it stops delivering."""
        import cv2

        ok, bgr = self.cap.read()
        arrival = time.perf_counter()
        if not ok:
            return None
        if self._start is None:
            self._start = arrival
        t = arrival - self._start
        index = max(round(t * self.fps), self._last + 1)
        dropped, self._last = index - self._last - 1, index
        return StreamFrame(index, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), arrival, dropped, t)


def open_stream(spec: str, realtime: bool = True, max_frames: int | None = None):
    """``--camera N`` (a device index) or a video file / demo video name played as a stream."""
    if spec.isdigit():
        return DeviceStream(int(spec))
    from key2mesh.data.demo_inputs import DEMO_VIDEOS, demo_video

    path = Path(demo_video(spec)) if spec in DEMO_VIDEOS else Path(spec)
    if not path.exists():
        raise Key2MeshError(f"--camera {spec}: no such device index or video file")
    return FileStream(path, realtime, max_frames)


@dataclass
class LivePerson:
    """One tracked person in a frame: ``track`` id, local ``rotmats`` (24, 3, 3) (the root's in
    the scene frame), ``shape`` (S,), ``root`` (3,) pelvis in the scene frame, metres."""

    track: int
    rotmats: np.ndarray
    shape: np.ndarray
    root: np.ndarray


class LivePipeline:
    """Detection → tracking → Key2Mesh + camera fit for one frame at a time (see module doc)."""

    def __init__(self, model, fps: float, max_people: int = 2, search_every_s: float = 0.25):
        from key2mesh.inference.tracking import Tracker
        from key2mesh.media.multi_detect import MultiPersonDetector, VideoSearch

        self.model, self.fps, self.max_people = model, fps, max_people
        self.tracker = Tracker(max_people=max_people, max_gap_s=1.0)
        self.detector = MultiPersonDetector(max_people=max_people)
        self.search = VideoSearch(self.detector, search_every_s)

    def close(self) -> None:
        self.detector.close()

    @torch.no_grad()
    def __call__(self, index: int, frame: np.ndarray, t: float) -> tuple[list[LivePerson], dict]:
        """The people of ``frame`` (video time ``t`` s) and the seconds of each stage."""
        from key2mesh.inference.motion import build_motion
        from key2mesh.keypoints.convert import convert_keypoints
        from key2mesh.media.detectors import no_people

        times = {}
        t0 = time.perf_counter()
        people = self.search(frame, t, self.tracker.predicted_boxes(t))
        usable = [p for p in people if bool(self.model.check(p.keypoints, p.confidence).usable)]
        t1 = time.perf_counter()
        times["detect"] = t1 - t0
        if not usable:
            self.tracker.update(t, np.zeros((0, 4)), *no_people(self.detector.keypoint_set))
            times["track"] = time.perf_counter() - t1
            times["predict"] = 0.0
            return [], times
        kp33 = np.stack([p.keypoints for p in usable])
        conf33 = np.stack([p.confidence for p in usable])
        ids = self.tracker.update(t, np.stack([p.box for p in usable]), kp33, conf33)
        t2 = time.perf_counter()
        times["track"] = t2 - t1
        keep = np.flatnonzero(ids >= 0)
        kp, conf = convert_keypoints(
            torch.from_numpy(kp33[keep]).float(),
            torch.from_numpy(conf33[keep]).float(),
            self.detector.keypoint_set,
            self.model.keypoint_set,
        )
        n = len(keep)
        motion = build_motion(
            self.model,
            np.full(n, index),
            np.full(n, t),
            ids[keep],
            kp.numpy(),
            conf.numpy(),
            frame.shape[:2],
            self.fps,
            world="camera",
        )
        root = motion.world_root()
        out = [
            LivePerson(int(motion.track_id[i]), motion.rotmats[i], motion.shape[i], root[i])
            for i in range(n)
            if np.isfinite(root[i]).all()
        ]
        times["predict"] = time.perf_counter() - t2
        return out, times


def frames_of(stream) -> Iterator[StreamFrame]:
    while True:
        item = stream.latest()
        if item is None:
            return
        yield item


def run_live(model, stream, viewer=None, max_people: int = 2, stats: LiveStats | None = None):
    """Process ``stream`` until it ends (or Ctrl-C) into ``viewer`` (a
    :class:`~key2mesh.viewer.live_app.LiveViewer`, or None: timing only); returns the
    :class:`LiveStats`."""
    stats = LiveStats() if stats is None else stats
    pipeline = LivePipeline(model, stream.fps, max_people)
    start = time.perf_counter()
    try:
        read0 = time.perf_counter()
        for index, frame, arrival, dropped, t in frames_of(stream):
            read = time.perf_counter() - read0
            people, stages = pipeline(index, frame, t)
            stages["read"] = read
            t_view = time.perf_counter()
            if viewer is not None:
                viewer.update(people, frame)
            done = time.perf_counter()
            stages["view"] = done - t_view
            timing = FrameTiming(index, stages, done - arrival, len(people), dropped)
            stats.source_frames = index + 1
            stats.add(timing)
            if viewer is not None:
                viewer.report(timing)
            read0 = time.perf_counter()
    finally:
        stats.wall_s = time.perf_counter() - start
        pipeline.close()
        stream.close()
    return stats


class RecentStats:
    """Running means of the last ``n`` frames' stage times (ms), latency and fps."""

    def __init__(self, n: int = 30):
        self.rows: deque[FrameTiming] = deque(maxlen=n)
        self.stamps: deque[float] = deque(maxlen=n)

    def add(self, timing: FrameTiming) -> None:
        self.rows.append(timing)
        self.stamps.append(time.perf_counter())

    def table(self) -> str:
        """A markdown table: stage | ms, then latency and fps."""
        if not self.rows:
            return ""
        lines = ["| stage | ms |", "|---|---:|"]
        for s in LIVE_STAGES:
            lines.append(
                f"| {s} | {1000 * np.mean([r.stages.get(s, 0.0) for r in self.rows]):.1f} |"
            )
        lat = 1000 * np.mean([r.latency for r in self.rows])
        span = self.stamps[-1] - self.stamps[0]
        fps = (len(self.stamps) - 1) / span if span > 0 else 0.0
        lines.append(f"| **end to end** | **{lat:.0f}** |")
        return "\n".join(lines) + f"\n\n{fps:.1f} frames/s shown, {self.rows[-1].people} people"
