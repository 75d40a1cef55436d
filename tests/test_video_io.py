"""media/video.py reading what users bring: 16-bit images, images too long for OpenCV, videos
without a duration in their header."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from key2mesh.errors import Key2MeshError


def test_16_bit_grey_png_is_scaled_not_clipped(tmp_path):
    from PIL import Image

    from key2mesh.media.video import read_image

    grey = (np.arange(48 * 64).reshape(48, 64) * 21).astype(np.uint16)  # 0 .. 64491
    Image.fromarray(grey).save(tmp_path / "g16.png")
    rgb = read_image(tmp_path / "g16.png")
    assert rgb.shape == (48, 64, 3) and rgb.dtype == np.uint8
    expected = np.rint(grey / 257.0).astype(np.uint8)
    assert np.array_equal(rgb[..., 0], expected) and np.array_equal(rgb[..., 2], expected)
    assert (rgb < 255).mean() > 0.99  # not the all-white image clipping gives


def test_image_too_long_for_opencv_is_refused(tmp_path):
    from PIL import Image

    from key2mesh.media.video import read_image

    Image.new("L", (40, 40_000), 128).save(tmp_path / "tall.png")  # 1.6 MP: under the pixel cap
    with pytest.raises(Key2MeshError, match=r"40x40000 image has a side over 32767 px"):
        read_image(tmp_path / "tall.png")


def test_video_without_duration_is_counted_to_the_end(tmp_path):
    """ffmpeg writing Matroska to a pipe cannot go back to store the duration: OpenCV then
    reports a negative frame count; the frames are counted by reading to the end."""
    import subprocess

    pytest.importorskip("cv2")
    ffmpeg = pytest.importorskip("imageio_ffmpeg").get_ffmpeg_exe()
    from key2mesh.media.video import iter_frames, source_info

    frames = np.random.default_rng(0).integers(0, 255, (5, 48, 64, 3), dtype=np.uint8)
    argv = [ffmpeg, "-v", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", "64x48"]
    argv += ["-r", "10", "-i", "pipe:0", "-c:v", "mjpeg", "-f", "matroska", "pipe:1"]
    done = subprocess.run(argv, input=frames.tobytes(), capture_output=True, check=True)
    path = tmp_path / "piped.mkv"
    path.write_bytes(done.stdout)
    info = source_info(path)
    assert (info.num_frames, info.width, info.height, info.fps) == (5, 64, 48, 10.0)
    assert len(list(iter_frames(path))) == 5


def test_prefetched_keeps_order_raises_in_place_and_stops_early():
    import threading

    from key2mesh.media.video import prefetched

    assert list(prefetched(iter(range(7)), depth=2)) == list(range(7))

    def failing():
        yield 1
        yield 2
        raise ValueError("bad frame 3")

    got = []
    with pytest.raises(ValueError, match="bad frame 3"):
        for x in prefetched(failing()):
            got.append(x)
    assert got == [1, 2]  # the items before the error arrive first

    produced = []

    def endless():
        i = 0
        while True:
            produced.append(i)
            yield i
            i += 1

    before = threading.active_count()
    for x in prefetched(endless(), depth=2):
        if x == 3:
            break
    assert threading.active_count() == before  # the reader thread has ended
    assert len(produced) <= 3 + 1 + 2 + 1  # read at most depth (+ one in hand) ahead


def test_background_writer_writes_the_same_frames_and_reports_errors(tmp_path):
    from key2mesh.media.video import VideoWriter, read_image

    frames = np.random.default_rng(1).integers(0, 255, (6, 24, 32, 3), dtype=np.uint8)
    for background in (False, True):
        with VideoWriter(tmp_path / f"png_{background}", background=background) as w:
            for f in frames:
                w.write(f)
        assert w.count == 6
        got = [read_image(tmp_path / f"png_{background}" / f"frame_{i:06d}.png") for i in range(6)]
        assert np.array_equal(np.stack(got), frames)
    # an encoding error in the worker is raised by close(), and no video is left behind
    pytest.importorskip("cv2")
    w = VideoWriter(tmp_path / "v.avi", background=True)

    def broken(item):
        raise OSError("disk full")

    w._background._fn = broken  # the worker's encoder fails
    w.write(frames[0])
    with pytest.raises(OSError, match="disk full"):
        w.close()
    assert not (tmp_path / "v.avi").exists()
    assert not list(tmp_path.glob("*.avi*"))


_FAKE_FFMPEG = """#!{python}
import os, sys, time
mode, out = os.environ["FAKE_FFMPEG_MODE"], sys.argv[-1]
if mode == "die":  # refuses at once, reads nothing
    sys.stderr.write("Unknown encoder 'libx264'\\n")
    sys.exit(1)
if mode == "hang":  # never reads its input
    time.sleep(60)
    sys.exit(0)
with open(out, "wb") as f:  # mode "fail_end": takes every frame, then fails to finish
    while chunk := sys.stdin.buffer.read(1 << 16):
        f.write(chunk)
sys.stderr.write("Error writing trailer: No space left on device\\n")
sys.exit(1)
"""


@pytest.fixture
def fake_ffmpeg(tmp_path, monkeypatch):
    """The H.264 writer's FFmpeg replaced by a script whose behaviour FAKE_FFMPEG_MODE sets."""
    import sys

    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
    exe = tmp_path / "fake-ffmpeg"
    exe.write_text(_FAKE_FFMPEG.format(python=sys.executable))
    exe.chmod(0o755)
    monkeypatch.setattr(imageio_ffmpeg, "get_ffmpeg_exe", lambda: str(exe))
    return lambda mode: monkeypatch.setenv("FAKE_FFMPEG_MODE", mode)


def _writer_threads() -> int:
    return sum(t.name == "key2mesh-writer" for t in threading.enumerate())


@pytest.mark.parametrize("background", [False, True])
def test_h264_failures_are_raised_and_leave_no_file(tmp_path, fake_ffmpeg, background):
    """FFmpeg failing to finish the file (a full disk during the +faststart rewrite) or dying
    while frames are piped is an error with FFmpeg's message, not a broken video in place."""
    from key2mesh.errors import Key2MeshError
    from key2mesh.media.video import VideoWriter

    frame = np.zeros((200, 200, 3), np.uint8)  # 120 KB: more than a pipe's buffer
    fake_ffmpeg("fail_end")
    w = VideoWriter(tmp_path / "end.mp4", background=background)
    assert w.codec == "h264"
    for _ in range(3):
        w.write(frame)
    with pytest.raises(Key2MeshError, match="to finish the file: .*No space left on device"):
        w.close()
    fake_ffmpeg("die")
    w = VideoWriter(tmp_path / "die.mp4", background=background)
    with pytest.raises(Key2MeshError, match="while encoding: Unknown encoder 'libx264'"):
        for _ in range(20):  # the error comes from a write (or, at the latest, close)
            w.write(frame)
        w.close()
    w.close(discard=True)  # after a failure: cleans up, raises nothing
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fake-ffmpeg"]
    assert _writer_threads() == 0


def test_h264_discard_does_not_wait_for_a_stuck_encoder(tmp_path, fake_ffmpeg):
    """close(discard=True) (the demo on Ctrl-C) stops FFmpeg instead of waiting for the frames
    still queued; the worker thread, the process and the temporary file are gone after it."""
    import time

    from key2mesh.media.video import VideoWriter

    fake_ffmpeg("hang")
    w = VideoWriter(tmp_path / "v.mp4", background=True)
    frame = np.zeros((200, 200, 3), np.uint8)
    for _ in range(3):  # the worker blocks on the first (FFmpeg reads nothing), two wait
        w.write(frame)
    time.sleep(0.2)
    proc = w._writer._proc
    t0 = time.perf_counter()
    w.close(discard=True)
    assert time.perf_counter() - t0 < 5
    assert proc.poll() is not None
    assert _writer_threads() == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fake-ffmpeg"]


def test_interrupt_while_finishing_removes_the_temporary_file(tmp_path):
    """Ctrl-C while the encoder finishes the file: the interrupt goes on, no temporary file."""
    pytest.importorskip("cv2")
    from key2mesh.media.video import VideoWriter

    w = VideoWriter(tmp_path / "v.avi")
    w.write(np.zeros((16, 16, 3), np.uint8))

    w._writer.release()  # the file is written; the next release is "interrupted"
    assert len(list(tmp_path.iterdir())) == 1

    class Interrupted:
        def release(self):
            raise KeyboardInterrupt

    w._writer = Interrupted()
    with pytest.raises(KeyboardInterrupt):
        w.close()
    assert list(tmp_path.iterdir()) == []


def test_refused_background_writer_leaves_no_thread(tmp_path):
    from key2mesh.errors import Key2MeshError
    from key2mesh.media.video import VideoWriter

    before = _writer_threads()
    for _ in range(3):
        with pytest.raises(Key2MeshError, match="cannot write .mkv"):
            VideoWriter(tmp_path / "v.mkv", background=True)
    assert _writer_threads() == before


def test_ctrl_c_while_close_waits_for_a_slow_encoder_start(tmp_path, fake_ffmpeg, monkeypatch):
    """Ctrl-C while close(discard=True) waits for a worker that is still starting FFmpeg: the
    wait goes on until the worker has ended, then FFmpeg is stopped, the temporary file removed
    and the interrupt raised."""
    import time

    from key2mesh.media import video

    fake_ffmpeg("fail_end")  # writes what it reads into the file until its input ends
    real_init = video._H264.__init__

    def slow_start(self, *args, **kwargs):
        time.sleep(0.3)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(video._H264, "__init__", slow_start)
    w = video.VideoWriter(tmp_path / "v.mp4", background=True)
    w.write(np.zeros((64, 64, 3), np.uint8))
    time.sleep(0.05)  # the worker is in slow_start

    class CtrlCOnFirstWait(threading.Event):
        calls = 0

        def wait(self, timeout=None):
            CtrlCOnFirstWait.calls += 1
            if CtrlCOnFirstWait.calls == 1:
                raise KeyboardInterrupt
            return super().wait(timeout)

    w._background._ended = CtrlCOnFirstWait()  # the worker sets this one as it ends
    with pytest.raises(KeyboardInterrupt):
        w.close(discard=True)
    assert CtrlCOnFirstWait.calls > 1  # it went on waiting after the interrupt
    assert _writer_threads() == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fake-ffmpeg"]


def test_read_image_turns_a_photo_as_its_exif_orientation_says(tmp_path):
    """A phone's portrait photo is landscape pixels plus EXIF orientation 6 ("rotate 90° clockwise
    to display"): it is read as displayed, portrait, its left column on top."""
    from PIL import Image

    from key2mesh.media.video import read_image

    pixels = np.zeros((100, 200, 3), np.uint8)  # H 100, W 200: stored landscape
    pixels[:, :20] = (255, 0, 0)  # the stored left edge is red
    im = Image.fromarray(pixels)
    exif = im.getexif()
    exif[0x0112] = 6  # Orientation: rotate 90° CW to display
    im.save(tmp_path / "portrait.jpg", exif=exif, quality=95)
    im.save(tmp_path / "plain.jpg", quality=95)
    shown = read_image(tmp_path / "portrait.jpg")
    assert shown.shape == (200, 100, 3)  # portrait
    assert shown[:15, :, 0].mean() > 200 and shown[-15:, :, 0].mean() < 60  # red edge on top
    assert read_image(tmp_path / "plain.jpg").shape == (100, 200, 3)  # no tag: as stored


def test_folder_skips_hidden_files_and_folders(tmp_path):
    """A folder copied by macOS to a FAT/network drive holds a ``._name.png`` resource file per
    image (not an image), and an interrupted write leaves ``.name.tmp.png``: both are left out,
    as is a sub-folder whose name ends in .png; the real images are read in natural order."""
    from key2mesh.media.video import folder_images, iter_frames, source_info, write_image

    for i in (2, 10, 1):
        write_image(tmp_path / f"frame{i}.png", np.full((8, 12, 3), i, np.uint8))
    (tmp_path / "._frame1.png").write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X")
    (tmp_path / ".frame2.png.host-1.tmp.png").write_bytes(b"")
    (tmp_path / "thumbs.png").mkdir()
    assert [p.name for p in folder_images(tmp_path)] == ["frame1.png", "frame2.png", "frame10.png"]
    assert source_info(tmp_path).num_frames == 3
    assert [int(f[0, 0, 0]) for f in iter_frames(tmp_path)] == [1, 2, 10]


def test_folder_with_a_superscript_digit_in_a_name_is_sorted(tmp_path):
    """'²' is a digit to ``str.isdigit`` but not to ``int``: a folder holding '²1.png' crashed
    the natural sort with a ValueError; it sorts as text among the names."""
    from key2mesh.media.video import folder_images, write_image

    for name in ("a10.png", "²1.png", "a9.png"):
        write_image(tmp_path / name, np.zeros((4, 4, 3), np.uint8))
    assert [p.name for p in folder_images(tmp_path)] == ["a9.png", "a10.png", "²1.png"]


def _numbered_frame(i: int) -> np.ndarray:
    """(32, 64, 3) frame whose 8 vertical bars spell ``i`` in binary (white: bit set)."""
    bits = (i >> np.arange(8)) & 1
    return np.repeat(np.repeat(bits * 255, 8)[None, :, None], 32, 0).repeat(3, 2).astype(np.uint8)


def _frame_number(frame: np.ndarray) -> int:
    bars = frame[8:24, :, 1].reshape(16, 8, 8)[:, :, 2:6].mean(axis=(0, 2))
    return int(((bars > 127) << np.arange(8)).sum())


@pytest.mark.parametrize(
    "suffix, codec",
    [
        (".mpeg", ["-c:v", "mpeg1video", "-g", "12"]),  # MPEG program stream
        # variable frame rate: frames 30.. come 0.5 s late (a pause, dropped frames)
        (".mp4", ["-vf", "setpts='(N+15*gte(N,30))/30/TB'", "-fps_mode", "vfr", "-c:v", "mpeg4"]),
    ],
)
def test_frame_range_starts_on_the_right_frame(tmp_path, suffix, codec):
    """``iter_frames(path, start, ...)`` gives the file's frame ``start`` first: OpenCV's seek
    by frame number lands one frame early in MPEG program streams (from frame ~32 of 90) and
    several frames off after a pause in a variable-frame-rate video."""
    import subprocess

    pytest.importorskip("cv2")
    ffmpeg = pytest.importorskip("imageio_ffmpeg").get_ffmpeg_exe()
    from key2mesh.media.video import iter_frames, read_frame

    frames = np.stack([_numbered_frame(i) for i in range(60)])
    path = tmp_path / f"numbered{suffix}"
    argv = [ffmpeg, "-v", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", "64x32"]
    argv += ["-r", "30", "-i", "pipe:0", *codec, "-q:v", "2", str(path)]
    subprocess.run(argv, input=frames.tobytes(), check=True)
    assert [_frame_number(f) for f in iter_frames(path)] == list(range(60))
    for start in (33, 45, 50, 57):
        assert [_frame_number(f) for f in iter_frames(path, start, start + 3)] == [
            start,
            start + 1,
            start + 2,
        ]
    assert [_frame_number(f) for f in iter_frames(path, 41, 59, 6)] == [41, 47, 53]
    assert _frame_number(read_frame(path, 58)) == 58


def test_mpeg_program_stream_frames_are_counted(tmp_path):
    """An .mpg stores no frame count and OpenCV's guess is far off (a 30-frame file read as 1
    frame, which made the demo take it for a still image and process frame 0 only): MPEG
    program streams are counted by decoding."""
    import subprocess

    pytest.importorskip("cv2")
    ffmpeg = pytest.importorskip("imageio_ffmpeg").get_ffmpeg_exe()
    from key2mesh.media.video import iter_frames, source_info

    frames = np.stack([_numbered_frame(i) for i in range(30)])
    path = tmp_path / "clip.mpg"
    argv = [ffmpeg, "-v", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", "64x32"]
    argv += ["-r", "30", "-i", "pipe:0", "-c:v", "mpeg2video", str(path)]
    subprocess.run(argv, input=frames.tobytes(), check=True)
    info = source_info(path)
    assert (info.kind, info.num_frames, info.width, info.height, info.fps) == (
        "video",
        30,
        64,
        32,
        30.0,
    )
    assert [_frame_number(f) for f in iter_frames(path)] == list(range(30))


@pytest.mark.parametrize("suffix", [".avi", ".mp4"])
def test_opencv_writers_keep_the_last_column_and_row_of_odd_sizes(tmp_path, suffix):
    """OpenCV's MJPG (.avi) and mp4v (.mp4 without imageio-ffmpeg) writers cropped an odd
    width/height to even, losing the frame's last column and row (a 17x33 frame came back
    16x32): the frame is padded by a black column/row instead, as the H.264 writer does."""
    pytest.importorskip("cv2")
    from key2mesh.media.video import VideoWriter, iter_frames

    frame = np.zeros((17, 33, 3), np.uint8)
    frame[:, -1] = 255  # white last column and row (brightness: not subsampled)
    frame[-1] = 255
    with VideoWriter(tmp_path / f"odd{suffix}", fps=10, h264=False) as writer:
        for _ in range(3):
            writer.write(frame)
    assert writer.codec == ("MJPG" if suffix == ".avi" else "mp4v")
    got = next(iter_frames(tmp_path / f"odd{suffix}")).astype(int)
    assert got.shape == (18, 34, 3)
    assert got[:17, 32].mean() > 200 and got[16, :33].mean() > 200  # the last column and row
    assert got[:17, 33].mean() < 100 and got[17, :33].mean() < 100  # the black padding
    assert got[4:13, 4:28].mean() < 20  # the black inside


@pytest.mark.parametrize(
    "name, codec",
    [("clip.MTS", ["-c:v", "mpeg2video", "-f", "mpegts"]), ("clip.3gp", ["-c:v", "mpeg4"])],
)
def test_camcorder_and_phone_videos_are_read(tmp_path, name, codec):
    """AVCHD camcorder clips (.MTS, an MPEG transport stream, where OpenCV's seek also lands
    off) and old phones' .3gp were refused as an unknown input type although OpenCV reads them."""
    import subprocess

    pytest.importorskip("cv2")
    ffmpeg = pytest.importorskip("imageio_ffmpeg").get_ffmpeg_exe()
    from key2mesh.media.video import iter_frames, source_info

    frames = np.stack([_numbered_frame(i) for i in range(20)])
    path = tmp_path / name
    argv = [ffmpeg, "-v", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", "64x32"]
    argv += ["-r", "30", "-i", "pipe:0", *codec, "-q:v", "2", str(path)]
    subprocess.run(argv, input=frames.tobytes(), check=True)
    info = source_info(path)
    assert (info.kind, info.num_frames, info.width, info.height) == ("video", 20, 64, 32)
    assert [_frame_number(f) for f in iter_frames(path, 12, 15)] == [12, 13, 14]


def test_anamorphic_video_is_read_in_square_pixels(tmp_path):
    """An anamorphic video (HDV/AVCHD 1440x1080 shown 1920x1080, DVD, DV) stores wider pixels
    (sample aspect ratio 4:3 here): OpenCV gives the stored pixels, so people came out 25%
    narrower, and the 3D fit saw squeezed bodies. Frames are stretched to square pixels (a
    turned one, stored sideways, along its height), and ``source_info`` gives that size."""
    import subprocess

    pytest.importorskip("cv2")
    ffmpeg = pytest.importorskip("imageio_ffmpeg").get_ffmpeg_exe()
    from key2mesh.media.video import iter_frames, source_info

    frames = np.zeros((3, 32, 48, 3), np.uint8)
    frames[:, :, :24] = 255  # the left half white
    path, turned = tmp_path / "anamorphic.mp4", tmp_path / "turned.mp4"
    argv = [ffmpeg, "-v", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", "48x32"]
    argv += ["-r", "10", "-i", "pipe:0", "-vf", "setsar=4/3", "-c:v", "mpeg4", "-q:v", "2"]
    subprocess.run([*argv, str(path)], input=frames.tobytes(), check=True)
    rotate = [ffmpeg, "-v", "error", "-display_rotation", "90", "-i", str(path), "-c", "copy"]
    subprocess.run([*rotate, str(turned)], check=True)
    info = source_info(path)
    assert (info.width, info.height) == (64, 32)
    frame = next(iter_frames(path, 1, 2)).astype(int)
    assert frame.shape == (32, 64, 3)
    assert frame[:, :30].min() > 200 and frame[:, 34:].max() < 50  # white on the left 32 px
    info = source_info(turned)
    assert (info.width, info.height) == (32, 64)
    assert next(iter_frames(turned)).shape == (64, 32, 3)
    # the stored pixels, for a camera calibration made on them (multi-view detection)
    assert next(iter_frames(path, square_pixels=False)).shape == (32, 48, 3)


def test_h264_video_is_bt709_and_says_so(tmp_path):
    """The H.264 writer converts RGB with BT.709's matrix and tags the stream (colour matrix,
    primaries, transfer, limited range): untagged, players guess BT.709 for HD sizes while
    FFmpeg's default conversion was BT.601's, shifting saturated colours. A saturated red and
    green come back within a few levels of what was written."""
    import subprocess

    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
    from key2mesh.media.video import VideoWriter

    frame = np.zeros((64, 64, 3), np.uint8)
    frame[:, :32] = (220, 30, 30)
    frame[:, 32:] = (30, 200, 60)
    path = tmp_path / "colours.mp4"
    w = VideoWriter(path, fps=10)
    if w.codec != "h264":
        pytest.skip("no H.264 writer here")
    for _ in range(5):
        w.write(frame)
    w.close()
    probe = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path)],
        capture_output=True,
        text=True,
    )
    stream = next(line for line in probe.stderr.splitlines() if "Video:" in line)
    assert "yuv420p(tv, bt709" in stream, stream
    frames = imageio_ffmpeg.read_frames(str(path))  # FFmpeg decodes by the stream's tags
    meta = next(frames)
    back = np.frombuffer(next(frames), np.uint8).reshape(meta["size"][1], meta["size"][0], 3)
    assert np.abs(back[8:56, 4:28].astype(int) - (220, 30, 30)).max() <= 8
    assert np.abs(back[8:56, 36:60].astype(int) - (30, 200, 60)).max() <= 8
