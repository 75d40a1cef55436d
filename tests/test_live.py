"""`key2mesh live` without a camera or a browser: Ctrl-C prints the latency table of what was
measured, the run's statistics stay bounded, the viewer keeps a bounded set of bodies, and a
camera's clock follows the frames' arrival (fake capture on a fake clock)."""

from __future__ import annotations

import sys
import types
from types import SimpleNamespace

import numpy as np
import pytest

import key2mesh.viewer.live as live
from key2mesh.viewer.live import LIVE_STAGES, FrameTiming, LiveStats


def _timings(n: int, seed: int = 0) -> list[FrameTiming]:
    rng = np.random.default_rng(seed)
    return [
        FrameTiming(3 * i, {s: float(rng.uniform(0, 0.05)) for s in LIVE_STAGES},
                    float(rng.uniform(0.05, 0.4)), people=int(rng.integers(0, 3)))
        for i in range(n)
    ]  # fmt: skip


def _reference(rows: list[FrameTiming], skip: int, wall_s: float, source: int) -> dict:
    """The summary computed from every frame kept (what LiveStats printed before)."""
    kept = rows[skip:]
    lat = 1000 * np.array([r.latency for r in kept])
    out = {f"{s}_ms": 1000 * float(np.mean([r.stages[s] for r in kept])) for s in LIVE_STAGES}
    out.update(
        latency_ms=float(lat.mean()),
        latency_p50_ms=float(np.percentile(lat, 50)),
        latency_p95_ms=float(np.percentile(lat, 95)),
        fps=len(rows) / wall_s,
        dropped=1 - len(rows) / source,
        people=float(np.mean([r.people for r in kept])),
    )
    return out


@pytest.mark.parametrize("n", [1, 3, 6, 40])
def test_live_stats_match_every_frame_kept(n):
    """Running sums give the summary (and the printed table) of the full list of frames,
    warm-up left out as before: min(5, frames - 1) first frames."""
    from key2mesh.commands.live import latency_table

    rows = _timings(n)
    stats = LiveStats(wall_s=4.0, source_frames=3 * n)
    for r in rows:
        stats.add(r)
    assert stats.count == n
    want = _reference(rows, min(5, n - 1), 4.0, 3 * n)
    got = stats.summary()
    assert got == pytest.approx(want, rel=1e-12)
    assert latency_table(got) == latency_table(want)


def test_live_stats_memory_is_bounded():
    """A long session keeps at most ``max_samples`` latencies (a uniform sample for the
    percentiles); the means stay exact."""
    rows = _timings(3000, seed=1)
    stats = LiveStats(wall_s=100.0, source_frames=9000, max_samples=200)
    for r in rows:
        stats.add(r)
    assert not hasattr(stats, "frames")
    assert sum(len(v) for v in vars(stats).values() if isinstance(v, list)) <= 200 + 5
    got, want = stats.summary(), _reference(rows, 5, 100.0, 9000)
    for key in ("latency_ms", "detect_ms", "people", "fps", "dropped"):
        assert got[key] == pytest.approx(want[key], rel=1e-9)
    # latencies uniform on [50, 400] ms: a 200-sample median within ~4 standard errors
    assert got["latency_p50_ms"] == pytest.approx(want["latency_p50_ms"], abs=50)
    assert got["latency_p95_ms"] == pytest.approx(want["latency_p95_ms"], abs=30)


def test_ctrl_c_prints_the_table_and_exits_130(monkeypatch, capsys):
    """A camera only stops on Ctrl-C: the frames measured until then are summarised, and the
    exit status is the CLI's for an interrupt."""
    import key2mesh.inference.predictor as predictor
    from key2mesh.cli import main

    monkeypatch.setitem(sys.modules, "mediapipe", types.ModuleType("mediapipe"))
    monkeypatch.setattr(predictor.Key2Mesh, "from_pretrained", lambda *a, **k: "model")
    monkeypatch.setattr(live, "open_stream", lambda *a: "stream")

    def interrupted_run(model, stream, viewer, max_people, stats=None):
        for r in _timings(8):
            stats.add(r)
        stats.wall_s, stats.source_frames = 2.0, 30
        raise KeyboardInterrupt

    monkeypatch.setattr(live, "run_live", interrupted_run)
    assert main(["live", "--camera", "0", "--no-viewer"]) == 130
    out, err = capsys.readouterr()
    assert out.startswith("8 frames: 4.00 frames/s processed (73 % of the source's frames dropped)")
    assert "interrupted" in err

    def interrupted_at_once(model, stream, viewer, max_people, stats=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(live, "run_live", interrupted_at_once)
    assert main(["live", "--camera", "0", "--no-viewer"]) == 130
    out, err = capsys.readouterr()
    assert out == "" and "interrupted" in err  # nothing measured: no table


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def perf_counter(self) -> float:
        return self.now


class FakeCapture:
    """A camera at ``fps`` on ``clock`` holding one frame (CAP_PROP_BUFFERSIZE 1): ``read``
    returns the newest frame if one arrived since the last read, else waits for the next;
    frame k (k = 1, 2, ...) arrives at 100 s + k / fps; the camera stops after ``until`` s."""

    def __init__(self, clock: FakeClock, fps: float = 50.0, until: float = 3.0):
        self.clock, self.fps, self.until, self.last = clock, fps, until, 0

    def isOpened(self):
        return True

    def set(self, *a):
        return True

    def get(self, prop):
        import cv2

        return self.fps if prop == cv2.CAP_PROP_FPS else 0.0

    def release(self):
        pass

    def read(self):
        k = int(np.floor((self.clock.now - 100.0) * self.fps + 1e-6))
        if k <= self.last:  # nothing new: wait for the next frame
            k = self.last + 1
            self.clock.now = 100.0 + k / self.fps
        if self.clock.now - 100.0 > self.until:
            return False, None
        self.last = k
        return True, np.full((4, 6, 3), k % 256, np.uint8)


def test_device_clock_follows_arrival_when_processing_is_slow(monkeypatch):
    """A 50 fps camera, 0.1 s per processed frame: every processed frame is 5 camera frames
    (0.1 s) after the last, 4 dropped in between; the pipeline's clock is the arrival time."""
    import cv2

    clock = FakeClock()
    monkeypatch.setattr(live, "time", SimpleNamespace(perf_counter=clock.perf_counter))
    monkeypatch.setattr(cv2, "VideoCapture", lambda index: FakeCapture(clock))
    calls = []

    class SlowPipeline:
        def __init__(self, model, fps, max_people):
            assert fps == 50.0

        def __call__(self, index, frame, t):
            calls.append((index, t))
            clock.now += 0.1
            return [], {"detect": 0.1, "track": 0.0, "predict": 0.0}

        def close(self):
            pass

    monkeypatch.setattr(live, "LivePipeline", SlowPipeline)
    stream = live.open_stream("0")
    stats = live.run_live("model", stream, None)
    index = np.array([c[0] for c in calls])
    t = np.array([c[1] for c in calls])
    n = len(calls)
    assert 25 <= n <= 31
    np.testing.assert_allclose(t, 0.1 * np.arange(n), atol=1e-6)  # arrival - first arrival
    np.testing.assert_array_equal(index, 5 * np.arange(n))
    assert stats.source_frames == index[-1] + 1
    assert stats.summary()["dropped"] == pytest.approx(1 - n / (5 * (n - 1) + 1))


def test_file_stream_keeps_its_own_clock(tmp_path):
    from key2mesh.media.video import VideoWriter

    path = tmp_path / "clip.mp4"
    with VideoWriter(path, 25.0) as w:
        for i in range(5):
            w.write(np.full((32, 48, 3), 40 * i, np.uint8))
    stream = live.FileStream(path, realtime=False)
    items = []
    while (item := stream.latest()) is not None:
        items.append(item)
    assert [i.index for i in items] == list(range(5))
    np.testing.assert_allclose([i.time_s for i in items], np.arange(5) / 25.0)


def _tiny_body():
    """A 3-joint chain, one triangle per bone (stands in for a body model's skinned mesh)."""
    from key2mesh.inference.motion_export.skeleton import Skeleton
    from key2mesh.viewer.bodies import SkinnedBody

    offsets = np.array([[0.0, 1.0, 0.0], [0.0, 0.5, 0.0], [0.0, 0.5, 0.0]])
    sk = Skeleton(
        np.array([0, 3, 6]), ["pelvis", "spine1", "spine2"], np.array([-1, 0, 1]), offsets, {},
        np.cumsum(offsets, axis=0),
    )  # fmt: skip
    verts = np.array([[0, 1, 0], [0.1, 1.2, 0], [0, 1.5, 0.1], [0.1, 1.7, 0], [0, 2, 0.1]])
    faces = np.array([[0, 1, 2], [2, 3, 4]])
    weights = np.eye(3)[[0, 0, 1, 1, 2]]
    return SkinnedBody(verts, faces, weights, sk, np.zeros((1, 3, 3, 3)), np.zeros((1, 3, 3)))


def test_live_viewer_keeps_a_bounded_set_of_bodies(monkeypatch):
    """30 frames, each with a person never seen before (track ids never repeat): the bodies of
    the people gone are removed from the scene, only a few recent ones kept hidden; a person
    who comes back soon keeps their body."""
    pytest.importorskip("viser")
    import key2mesh.viewer.bodies as bodies
    from key2mesh.viewer.app import LiveViewer
    from key2mesh.viewer.live import LivePerson

    made = []

    def skinned_body(kit, track):
        made.append(track.track)
        return _tiny_body()

    monkeypatch.setattr(bodies, "skinned_body", skinned_body)
    kit = SimpleNamespace(body=SimpleNamespace(name="anny"))
    viewer = LiveViewer(kit, port=0)

    def person(track):
        return LivePerson(track, np.tile(np.eye(3), (24, 1, 1)), np.zeros(6), np.zeros(3))

    def in_scene():
        names = viewer.server.scene._handle_from_node_name
        return sorted(int(n[len("/people/track") :]) for n in names if n.startswith("/people/"))

    try:
        for track in range(30):
            viewer.update([person(track)])
            kept = in_scene()
            assert len(kept) <= 1 + viewer.hidden and sorted(viewer.meshes) == kept
            visible = [t for t in kept if viewer.meshes[t][1].visible]
            assert visible == [track]
        assert kept == list(range(29 - viewer.hidden, 30))  # the most recently seen
        viewer.update([person(28), person(29)])  # 28 comes back: the same body, both shown
        assert made.count(28) == 1
        assert [t for t in in_scene() if viewer.meshes[t][1].visible] == [28, 29]
    finally:
        viewer.close()


def test_file_stream_ends_with_the_readers_error(tmp_path, monkeypatch):
    """A realtime file stream whose decoder fails mid-file raises that error in the consumer
    after the frames read before it (the reader thread used to die and leave latest() waiting
    forever)."""
    import threading

    import key2mesh.media.video as video
    from key2mesh.errors import Key2MeshError
    from key2mesh.media.video import VideoWriter

    path = tmp_path / "clip.mp4"
    with VideoWriter(path, 30.0) as w:
        for i in range(6):
            w.write(np.full((32, 48, 3), 40 * i, np.uint8))
    real = video.iter_frames

    def failing(*args, **kwargs):
        for i, frame in enumerate(real(*args, **kwargs)):
            if i == 2:
                raise Key2MeshError("decoder failed at frame 2")
            yield frame

    monkeypatch.setattr(video, "iter_frames", failing)
    stream = live.FileStream(path, realtime=True)
    got = []

    def consume():
        try:
            while (item := stream.latest()) is not None:
                got.append(item.index)
        except Key2MeshError as err:
            got.append(str(err))

    reader = threading.Thread(target=consume, daemon=True)
    reader.start()
    reader.join(10)
    assert not reader.is_alive(), "latest() still waiting for a frame after the reader died"
    assert got[-1] == "decoder failed at frame 2"
    assert got[:-1] == sorted(got[:-1]) and set(got[:-1]) <= {0, 1}


@pytest.mark.parametrize(
    "flags, refused",
    [(("--camera", "0", "--max-frames", "5"), "--max-frames would be ignored"),
     (("--camera", "1", "--as-fast-as-possible"), "--as-fast-as-possible would be ignored"),
     (("--camera", "clip.mp4", "--no-viewer", "--port", "9000"), "--port would be ignored"),
     (("--no-viewer", "--no-browser"), "--no-browser would be ignored")],
)  # fmt: skip
def test_live_options_the_source_ignores_are_refused(monkeypatch, capsys, flags, refused):
    """--max-frames / --as-fast-as-possible with a camera index (a camera ran until Ctrl-C
    whatever --max-frames said), viewer options with --no-viewer: one line, status 2."""
    from key2mesh.cli import main

    monkeypatch.setattr(live, "open_stream", lambda *a: pytest.fail("the stream was opened"))
    assert main(["live", *flags]) == 2
    assert refused in capsys.readouterr().err


@pytest.mark.parametrize("realtime", [False, True])
def test_closing_a_file_stream_releases_the_file(tmp_path, monkeypatch, realtime):
    """FileStream.close() after a few frames releases the video reader (it stayed open)."""
    import time

    from tests.helpers.video_readers import record_reader_releases

    from key2mesh.media.video import VideoWriter

    path = tmp_path / "clip.mp4"
    with VideoWriter(path, 30.0) as w:
        for i in range(30):
            w.write(np.full((32, 48, 3), 8 * i, np.uint8))
    released = record_reader_releases(monkeypatch)
    stream = live.FileStream(path, realtime=realtime)
    assert stream.latest() is not None and stream.latest() is not None
    stream.close()
    end = time.monotonic() + 5
    while not released and time.monotonic() < end:  # realtime: the reader's next frame
        time.sleep(0.01)
    assert released == [True]
