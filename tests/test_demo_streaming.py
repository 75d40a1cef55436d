"""The demo streams: a long synthetic low-res video is processed with bounded memory, frame
ranges select the right frames, and the written video is H.264. MediaPipe is replaced by a
stand-in (a person in the middle of every frame), so no detector model is needed."""

from __future__ import annotations

import subprocess
import tracemalloc

import numpy as np
import pytest

from key2mesh.model.checkpoint import PRETRAINED, PRETRAINED_DIR

pytestmark = pytest.mark.skipif(
    not (PRETRAINED_DIR / PRETRAINED["anny-coco17"]).exists(), reason="no shipped checkpoint"
)


@pytest.fixture()
def detector(monkeypatch):
    from test_demo_skips import person

    class StandIn:
        def __init__(self, video: bool = True, **kwargs):
            pass

        def __call__(self, image):
            h, w = image.shape[:2]
            if (image[h // 2, w // 2] == 127).all():  # the person is already greyed out
                return None
            kp, conf = person(w // 2, h)
            return kp + [w // 4, 0], conf

        def close(self):
            return None

    monkeypatch.setattr("key2mesh.media.detect.PoseDetector", StandIn)
    return StandIn


@pytest.fixture(scope="module")
def model():
    from key2mesh.inference.predictor import Key2Mesh

    return Key2Mesh.from_pretrained("anny-coco17", device="cpu", full_mesh=False)


@pytest.fixture(scope="module")
def long_video(tmp_path_factory):
    """200 frames of 120x160 px at 30 fps (a moving gradient), H.264 when available."""
    from key2mesh.media.video import write_video

    path = tmp_path_factory.mktemp("video") / "long.mp4"
    y, x = np.mgrid[0:120, 0:160]
    frames = (
        np.stack([(x * 2 + i) % 256, (y * 3) % 256, np.full_like(x, 90)], -1).astype(np.uint8)
        for i in range(200)
    )
    return write_video(path, frames, fps=30.0)


def _peak(model, path, stop, tmp_path):
    from key2mesh.inference.demo import run_demo
    from key2mesh.media.video import iter_frames

    tracemalloc.start()
    try:
        report = run_demo(
            model,
            lambda: iter_frames(path, 0, stop, 1),
            tmp_path / f"out{stop}" / "v_key2mesh.mp4",
            is_video=True,
            fps=30.0,
            frame_indices=range(0, stop),
        )
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return report, peak


def test_memory_stays_bounded_on_a_long_video(tmp_path, detector, model, long_video):
    _peak(model, long_video, 3, tmp_path)  # one-time allocations (caches, imports) first
    short, peak_short = _peak(model, long_video, 20, tmp_path)
    long, peak_long = _peak(model, long_video, 200, tmp_path)
    assert short.written == 20 and long.written == 200 and long.tracks == [0]
    assert len(long.motion) == 200
    # 10x the frames: the peak grows with the compact per-row arrays only (measured ~14 KB a
    # row, a few copies while the npz is written), never with frames: 180 more decoded frames
    # alone would take 10 MB, their rendered panels 30 MB
    assert peak_long < peak_short + 5_000_000, (peak_short, peak_long)


def test_frame_range_and_max_frames_through_the_cli(tmp_path, detector, long_video, capsys):
    from key2mesh.cli import main

    out = tmp_path / "out"
    args = ["demo", str(long_video), "--out", str(out), "--frames", "10:200:5"]
    more = ["--max-frames", "6", "--no-side-view", "--smooth", "zero-phase", "--save-meshes", "ply"]
    assert main([*args, *more, "--device", "cpu"]) == 0
    meshes = sorted(p.name for p in (out / "long_meshes").iterdir())
    assert meshes[0] == "frame000010_track0.ply" and len(meshes) == 6
    d = np.load(out / "long_params.npz")
    assert d["frame_index"].tolist() == [10, 15, 20, 25, 30, 35]
    assert np.allclose(d["time_s"], d["frame_index"] / 30.0)
    assert "6 of 6 frames written; 1 track(s)" in capsys.readouterr().out
    from key2mesh.media.video import source_info

    info = source_info(out / "long_key2mesh.mp4")
    assert info.num_frames == 6 and info.fps == pytest.approx(6.0)
    assert info.width == 2 * 160  # no side view


def test_videos_are_h264(long_video):
    from key2mesh.media.video import h264_available

    if not h264_available():
        pytest.skip("imageio-ffmpeg not installed (videos fall back to mp4v)")
    import imageio_ffmpeg

    probe = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(long_video)],
        capture_output=True,
        text=True,
    )
    assert "Video: h264" in probe.stderr and "yuv420p" in probe.stderr


def test_odd_sizes_and_fallback(tmp_path, monkeypatch):
    from key2mesh.media import video

    frames = [np.full((33, 47, 3), i * 20, np.uint8) for i in range(5)]
    path = video.write_video(tmp_path / "odd.mp4", frames, fps=10.0)
    assert video.source_info(path).num_frames == 5
    monkeypatch.setattr(video, "h264_available", lambda: False)
    with video.VideoWriter(tmp_path / "mp4v.mp4", 10.0) as writer:
        for f in frames:
            writer.write(f)
    assert writer.codec == "mp4v" and video.source_info(tmp_path / "mp4v.mp4").num_frames == 5


def test_max_height_renders_at_the_output_size(tmp_path, detector, model):
    """Frames taller than ``max_height`` are shown, meshed and keypoint-drawn scaled down: the
    panels are that high, and the mesh covers the same part of the frame as at full size."""
    from key2mesh.inference.demo import DemoOptions, run_demo
    from key2mesh.media.video import read_image

    y, x = np.mgrid[0:240, 0:160]
    frame = np.stack([x % 256, (y * 2) % 256, np.full_like(x, 90)], -1).astype(np.uint8)
    masks = {}
    for height in (None, 120):
        out = tmp_path / f"h{height}"
        report = run_demo(
            model, [frame], out, is_video=False, options=DemoOptions(max_height=height)
        )
        (png,) = [p for p in report.outputs if p.suffix == ".png"]
        panel = read_image(png).astype(int)
        h, w = (240, 160) if height is None else (120, 80)
        assert panel.shape[0] == h and panel.shape[1] == 2 * w + max(h // 2, 64)
        shown = frame if height is None else frame.reshape(120, 2, 80, 2, 3).mean((1, 3))
        masks[height] = np.abs(panel[:, w : 2 * w] - shown).sum(-1) > 30
        assert report.timings["render"] > 0 and report.timings["detect"] > 0
        assert sum(report.timings.values()) <= report.seconds
    full = masks[None].reshape(120, 2, 80, 2).mean((1, 3))  # the full-size mask, pooled
    assert 0.02 < masks[120].mean() < 0.6
    assert np.abs(full - masks[120]).mean() < 0.05  # the same place and size


def test_demo_cli_searches_whole_frames_on_schedule(tmp_path, detector, long_video, capsys):
    """On a video with one person found on their crop every frame, the whole frame is searched
    every --search-every seconds only (0: every frame), and on this still picture, where
    nothing changes outside the person, every 8 x --search-every; the CLI prints the stage
    timings."""
    from key2mesh.cli import main

    runs = {}
    for every in ("0", "0.1", "0.25"):
        out = tmp_path / every
        args = ["demo", str(long_video), "--out", str(out), "--frames", "0:30"]
        assert main([*args, "--search-every", every, "--no-side-view", "--device", "cpu"]) == 0
        printed = capsys.readouterr().out
        assert "time: " in printed and "detect " in printed and "render " in printed
        runs[every] = printed
    assert "30 frame(s) searched whole" in runs["0"]
    assert "2 frame(s) searched whole" in runs["0.1"]  # frames 0, 24 (0.8 s at 30 fps)
    assert "1 frame(s) searched whole" in runs["0.25"]  # frame 0 (the next: 2 s, frame 60)


def test_replayable_frames_decode_a_short_clip_once_and_a_long_one_twice():
    from key2mesh.inference.demo import ReplayableFrames

    frames = [np.full((4, 5, 3), i, np.uint8) for i in range(6)]  # 60 bytes each
    reads = []

    def source():
        reads.append(1)
        return iter(frames)

    short = ReplayableFrames(source, budget=360)  # all six fit
    assert [f[0, 0, 0] for f in short()] == list(range(6))
    again = list(short())
    assert len(reads) == 1 and all(a is b for a, b in zip(again, frames))
    assert short.kept is None  # handed over: let go as they are shown
    long = ReplayableFrames(source, budget=300)  # the sixth does not fit: none are kept
    list(long())
    assert long.kept is None and len(list(long())) == 6 and len(reads) == 3
    cut = ReplayableFrames(source, budget=1e9)  # a first read that did not end: none replayed
    next(cut())
    assert len(list(cut())) == 6 and len(reads) == 5


def test_demo_reads_a_replayed_clip_twice_through_a_wrapper(tmp_path, detector, model, long_video):
    """run_demo reads its source twice; a wrapper around a ReplayableFrames (as the --view page
    wraps the command's source) sees both reads while the clip is decoded once."""
    from key2mesh.inference.demo import ReplayableFrames, run_demo
    from key2mesh.media.video import iter_frames

    decoded, wrapper_calls = [], []

    def decode():
        decoded.append(1)
        return iter_frames(long_video, 0, 6, 1)

    replay = ReplayableFrames(decode)

    def view():
        wrapper_calls.append(1)
        return replay()

    report = run_demo(
        model, view, tmp_path / "v_key2mesh.mp4", is_video=True, frame_indices=range(6)
    )
    assert report.written == 6 and len(wrapper_calls) == 2 and len(decoded) == 1
