"""media/video.py reading what users bring: 16-bit images, images too long for OpenCV, videos
without a duration in their header."""

from __future__ import annotations

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
