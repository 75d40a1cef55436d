"""Frames in and out: video files, single images, folders of images (RGB uint8 everywhere).

Images go through Pillow (a core dependency). Video files use OpenCV, which the ``detect`` extra
brings (MediaPipe depends on it, with its own FFmpeg inside the wheel): no system packages and
no second video stack. Written .mp4/.mov/.m4v videos are H.264 (yuv420p, BT.709, tagged so;
``+faststart``: browsers play them) through the FFmpeg binary inside the ``imageio-ffmpeg``
wheel (``[detect]`` extra); without it they fall back to OpenCV's MPEG-4 Part 2 (``mp4v``),
which browsers do not play. .avi is Motion-JPEG.
"""

from __future__ import annotations

import math
import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from key2mesh.devices import cpu_share
from key2mesh.errors import Key2MeshError
from key2mesh.safe_paths import natural_key

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
# .mts/.m2ts: camcorders' AVCHD (MPEG transport streams, as .ts); .3gp: older phones
VIDEO_SUFFIXES = (
    ".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg",
    ".ts", ".mts", ".m2ts", ".3gp", ".wmv", ".flv", ".ogv",
)  # fmt: skip
_FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG"}
# MPEG program streams store no frame count: OpenCV's is guessed from the bit rate (a 30-frame
# .mpg read as 1 frame, 90 as 68), so their frames are counted by decoding
_NO_COUNT = (".mpg", ".mpeg")
MAX_IMAGE_PIXELS = 100_000_000  # larger images are refused before decoding
# x264's speed preset: the demo's panels are wide (input | overlay | side view), and encoding
# them was the largest CPU cost of a two-person demo on 2 cores; superfast takes about half of
# veryfast's CPU for somewhat larger files (benchmarks/results/demo_speed.md, "encoder" table);
# x264 gets half the cores, so that the demo's rendering keeps the others (on 2 cores its
# default thread count slowed the rendering next to it more than it sped the encoding)
H264_PRESET = "superfast"
MAX_IMAGE_SIDE = 32767  # OpenCV aborts the process (SHRT_MAX) on a longer side: refused first


def _cv2():
    try:
        import cv2
    except ImportError as exc:
        raise Key2MeshError(
            "video files need OpenCV: pip install 'key2mesh[detect]' (or opencv-python-headless)"
        ) from exc
    return cv2


def _kind(path: Path) -> str:
    if path.is_dir():
        return "folder"
    if not path.exists():
        raise Key2MeshError(f"{path}: no such file or folder")
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return "image"
    if suffix in VIDEO_SUFFIXES:
        return "video"
    raise Key2MeshError(
        f"{path}: unknown input type {suffix!r}; expected a video ({', '.join(VIDEO_SUFFIXES)}), "
        f"an image ({', '.join(IMAGE_SUFFIXES)}) or a folder of images"
    )


def folder_images(folder: str | Path) -> list[Path]:
    """Image files of a folder in natural order (frame2 before frame10). Hidden files are left
    out: macOS writes a ``._name.png`` resource file beside every image copied to a FAT or
    network drive, and key2mesh's own unfinished writes are ``.name.tmp.png``."""
    folder = Path(folder)
    files = sorted(
        (
            p
            for p in folder.iterdir()
            if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file()
        ),
        key=lambda p: natural_key(p.name),
    )
    if not files:
        raise Key2MeshError(f"{folder}: folder holds no image ({', '.join(IMAGE_SUFFIXES)})")
    return files


def read_image(path: str | Path) -> np.ndarray:
    """One image file → (H, W, 3) uint8 RGB, turned as it displays (EXIF orientation). Images
    over ``MAX_IMAGE_PIXELS`` are refused from their header, before any decoding (a decompression
    bomb never reaches memory)."""
    import warnings

    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter(
                "ignore", Image.DecompressionBombWarning
            )  # our own limit applies below
            with Image.open(path) as im:
                w, h = im.size
                if w * h > MAX_IMAGE_PIXELS:
                    raise Key2MeshError(
                        f"{path}: {w}x{h} image ({w * h / 1e6:.0f} megapixels) is larger than the "
                        f"{MAX_IMAGE_PIXELS / 1e6:.0f} megapixels key2mesh reads; downscale it first"
                    )
                if max(w, h) > MAX_IMAGE_SIDE:
                    raise Key2MeshError(
                        f"{path}: {w}x{h} image has a side over {MAX_IMAGE_SIDE} px, more than "
                        "OpenCV handles; crop or downscale it first"
                    )
                # as the photo displays: a camera's EXIF orientation tag applied (phones store
                # portrait shots as landscape pixels plus "rotate 90°")
                return _rgb8(ImageOps.exif_transpose(im))
    except FileNotFoundError as exc:
        raise Key2MeshError(f"{path}: no such image file") from exc
    except Image.DecompressionBombError as exc:
        raise Key2MeshError(
            f"{path}: refused by Pillow as a decompression bomb ({exc})".splitlines()[0]
        ) from None
    except (UnidentifiedImageError, OSError) as exc:
        raise Key2MeshError(f"{path}: not a readable image ({exc.__class__.__name__})") from exc


def _rgb8(im) -> np.ndarray:
    """(H, W, 3) uint8 RGB of a Pillow image; 16-bit (and 32-bit) grey images are scaled to
    8 bits (65535 → 255), not clipped (Pillow's ``convert`` makes them all white)."""
    if im.mode not in ("I", "F") and not im.mode.startswith("I;16"):
        return np.asarray(im.convert("RGB"))
    grey = np.nan_to_num(np.asarray(im, dtype=np.float64))
    if im.mode == "F" and grey.size and grey.max() <= 1.0:
        grey = grey * 255.0  # a float image in [0, 1]
    else:
        grey = grey / 257.0
    return np.repeat(np.clip(np.rint(grey), 0, 255).astype(np.uint8)[..., None], 3, axis=-1)


def write_image(path: str | Path, image: np.ndarray) -> Path:
    """Save (H, W, 3) uint8 RGB (atomically); the format follows the suffix."""
    from PIL import Image

    from key2mesh.safe_paths import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        Image.fromarray(np.ascontiguousarray(image)).save(tmp)
    return path


@dataclass
class SourceInfo:
    """What :func:`iter_frames` will read: ``kind`` is video / image / folder; ``fps`` is None
    for images (``num_frames`` of a video is the container's count and may be approximate;
    MPEG program streams and videos without a duration are counted by decoding)."""

    kind: str
    num_frames: int
    width: int
    height: int
    fps: float | None


def _open_video(path: Path):
    cv2 = _cv2()
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        cap.release()
        raise Key2MeshError(
            f"{path}: OpenCV cannot open this video (corrupt file or unsupported codec)"
        )
    return cap


def _pixel_aspect(cap) -> tuple[float, float]:
    """(x, y) stretch that makes a video's frames, as OpenCV gives them (turned upright), square
    pixels: anamorphic videos (HDV/AVCHD 1440x1080 shown 1920x1080, DVD and DV 720x480) store
    wider pixels (sample aspect ratio), which OpenCV does not apply. (1, 1) for square pixels."""
    cv2 = _cv2()
    num, den = cap.get(cv2.CAP_PROP_SAR_NUM), cap.get(cv2.CAP_PROP_SAR_DEN)
    if not (math.isfinite(num) and math.isfinite(den) and num > 0 and den > 0) or num == den:
        return 1.0, 1.0
    turned = round(cap.get(cv2.CAP_PROP_ORIENTATION_META)) % 180 == 90  # stored sideways
    return (1.0, num / den) if turned else (num / den, 1.0)


def _square_size(width: int, height: int, aspect: tuple[float, float]) -> tuple[int, int]:
    """(width, height) in square pixels of a frame of ``width`` x ``height`` stored pixels."""
    return max(1, round(width * aspect[0])), max(1, round(height * aspect[1]))


def source_info(path: str | Path) -> SourceInfo:
    """Frame count, size and frame rate of a video, image or folder of images (a video's size
    in square pixels: see :func:`iter_frames`)."""
    path = Path(path)
    kind = _kind(path)
    if kind == "video":
        cv2 = _cv2()
        cap = _open_video(path)
        try:
            fps = float(cap.get(cv2.CAP_PROP_FPS)) or None
            count = float(cap.get(cv2.CAP_PROP_FRAME_COUNT))
            w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
            w, h = _square_size(w, h, _pixel_aspect(cap))
            if fps is not None and not (math.isfinite(fps) and fps > 0):
                fps = None
            if math.isfinite(count) and count > 0 and path.suffix.lower() not in _NO_COUNT:
                n = int(count)
            else:  # no duration in the header (piped ffmpeg output, browser recordings): count
                n = 0
                while cap.grab():
                    n += 1
        finally:
            cap.release()
        return SourceInfo("video", n, w, h, fps)
    files = [path] if kind == "image" else folder_images(path)
    first = read_image(files[0])
    return SourceInfo(kind, len(files), first.shape[1], first.shape[0], None)


def iter_frames(
    path: str | Path,
    start: int = 0,
    stop: int | None = None,
    step: int = 1,
    seek: bool = False,
    square_pixels: bool = True,
) -> Iterator[np.ndarray]:
    """Yield RGB frames (H, W, 3) uint8 with indices ``range(start, stop, step)`` of a video,
    a single image (one frame) or a folder of images (natural order).

    A video's frames before ``start`` are decoded and dropped (not converted), so frame ``i``
    is the ``i``-th frame of the file. ``seek``: jump to ``start`` through the container's
    timestamps instead (fast, but OpenCV lands one or more frames off in MPEG program streams
    (.mpg) and in variable-frame-rate videos; right for constant-rate files such as the demo's
    own H.264 outputs).

    ``square_pixels``: an anamorphic video's frames (stored pixels wider or higher than they
    show) are stretched to square pixels, the size :func:`source_info` gives; False: the stored
    pixels (those of a camera calibration made on them)."""
    path = Path(path)
    if start < 0 or step < 1 or (stop is not None and stop < 0):
        raise Key2MeshError(
            f"frame range needs start >= 0, stop >= 0 and step >= 1, got {start}:{stop}:{step}"
        )
    kind = _kind(path)
    if kind != "video":
        files = [path] if kind == "image" else folder_images(path)
        for f in files[start:stop:step]:
            yield read_image(f)
        return
    cv2 = _cv2()
    cap = _open_video(path)
    try:
        aspect, size = _pixel_aspect(cap) if square_pixels else (1.0, 1.0), None
        index = 0
        if start and seek:
            cap.set(cv2.CAP_PROP_POS_FRAMES, start)
            index = start
        while stop is None or index < stop:
            if index < start or (index - start) % step:
                if not cap.grab():  # a frame before or between the kept ones: not converted
                    break
            else:
                ok, bgr = cap.read()
                if not ok:
                    break
                if aspect != (1.0, 1.0):  # anamorphic: stretched to square pixels
                    size = size or _square_size(bgr.shape[1], bgr.shape[0], aspect)
                    smaller = size[0] * size[1] < bgr.shape[0] * bgr.shape[1]
                    bgr = cv2.resize(
                        bgr, size, interpolation=cv2.INTER_AREA if smaller else cv2.INTER_LINEAR
                    )
                yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            index += 1
    finally:
        cap.release()


T = TypeVar("T")
_DONE = object()


def prefetched(items: Iterable[T], depth: int = 2) -> Iterator[T]:
    """``items`` produced ahead by a background thread, at most ``depth`` waiting: decoding
    overlaps the caller's work (OpenCV and FFmpeg release the GIL). An error of ``items`` is
    raised here, in order; leaving the loop early stops the thread."""
    out: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def put(x) -> bool:
        while not stop.is_set():
            try:
                out.put(x, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for x in items:
                if not put((x, None)):
                    return
            put((_DONE, None))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            put((_DONE, exc))

    thread = threading.Thread(target=produce, name="key2mesh-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            x, exc = out.get()
            if exc is not None:
                raise exc
            if x is _DONE:
                return
            yield x
    finally:
        stop.set()
        thread.join()


class _Background:
    """Calls ``fn(item)`` for each :meth:`submit`-ted item in a worker thread, in order, at most
    ``depth`` waiting; the worker's first error is raised by the next :meth:`submit` or by
    :meth:`finish` (which waits for the rest). :meth:`cancel` drops what is waiting."""

    def __init__(self, fn: Callable[[object], None], depth: int = 2):
        self._fn, self._error, self._cancelled = fn, None, False
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        # set by the worker as it ends: Thread.join() interrupted by Ctrl-C can leave
        # is_alive() False while the thread still runs (CPython 3.11), so cancel() waits on this
        self._ended = threading.Event()
        self._thread = threading.Thread(target=self._work, name="key2mesh-writer", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        try:
            while (item := self._queue.get()) is not _DONE:
                if self._error is None and not self._cancelled:
                    try:
                        self._fn(item)
                    except BaseException as exc:  # noqa: BLE001 - raised in the caller
                        self._error = exc
        finally:
            self._ended.set()

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def submit(self, item) -> None:
        self._raise()
        self._queue.put(item)

    def finish(self) -> None:
        self._queue.put(_DONE)
        self._thread.join()
        self._raise()

    def cancel(self) -> BaseException | None:
        """Drop the waiting items, let the one in hand finish (the caller unblocks it first if
        it can block) and wait for the worker, through Ctrl-C too: a KeyboardInterrupt that
        arrives while waiting is returned (for the caller to raise once it has cleaned up), and
        the worker's error is dropped."""
        self._cancelled = True
        interrupted = None
        while not self._ended.is_set():
            try:
                while True:  # empty the queue without blocking: only this thread puts
                    try:
                        self._queue.get_nowait()
                    except queue.Empty:
                        break
                self._queue.put_nowait(_DONE)
                while not self._ended.wait(0.1):
                    pass
            except queue.Full:  # cannot happen after the draining; try again all the same
                continue
            except KeyboardInterrupt as exc:
                interrupted = exc
        self._error = None
        return interrupted


def read_frame(path: str | Path, index: int = 0) -> np.ndarray:
    """Frame ``index`` of a video / folder (or the image itself, index 0) as RGB uint8."""
    for frame in iter_frames(path, start=index, stop=index + 1):
        return frame
    raise Key2MeshError(f"{path}: has no frame {index} (frames: {source_info(path).num_frames})")


def read_frames(
    path: str | Path, start: int = 0, stop: int | None = None, step: int = 1
) -> np.ndarray:
    """All selected frames stacked: (T, H, W, 3) uint8."""
    frames = list(iter_frames(path, start, stop, step))
    if not frames:
        raise Key2MeshError(f"{path}: no frame in range {start}:{stop}:{step}")
    return np.stack(frames)


def fit_height(image: np.ndarray, max_height: int | None) -> np.ndarray:
    """``image`` (H, W, 3) uint8 scaled down to ``max_height`` rows, the aspect ratio kept (width
    rounded): bilinear down to half the size (8x faster than area averaging here, no aliasing
    yet), area averaging below; as it is when it is no higher or ``max_height`` is None/0."""
    h, w = image.shape[:2]
    if not max_height or h <= max_height:
        return image
    size = (max(1, round(w * max_height / h)), int(max_height))  # (width, height)
    try:
        import cv2
    except ImportError:
        from PIL import Image

        return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BOX))
    method = cv2.INTER_LINEAR if 2 * max_height >= h else cv2.INTER_AREA
    return cv2.resize(image, size, interpolation=method)


def h264_available() -> bool:
    """Whether H.264 can be written (the ``imageio-ffmpeg`` wheel and its FFmpeg binary)."""
    try:
        import imageio_ffmpeg

        return Path(imageio_ffmpeg.get_ffmpeg_exe()).exists()
    except (ImportError, RuntimeError):
        return False


class _H264:
    """Frames piped to the FFmpeg of ``imageio-ffmpeg`` (libx264 at ``preset``, CRF 23, yuv420p,
    BT.709 limited range, tagged so; half the cores); odd sizes are padded by one black
    row/column (yuv420p needs even sizes).

    FFmpeg runs as our own subprocess (only its binary comes from ``imageio-ffmpeg``), so that a
    failure is seen: :meth:`write` and :meth:`release` raise with FFmpeg's last error lines when
    it has died or exits non-zero (a full disk during the ``+faststart`` rewrite, say);
    :meth:`abort` stops it without waiting for the encoding to finish."""

    def __init__(
        self, path: Path, fps: float, size: tuple[int, int], fmt: str, preset: str = H264_PRESET
    ):
        import subprocess
        import tempfile
        from fractions import Fraction

        import imageio_ffmpeg

        self.path = Path(path)
        self.even = (size[0] + size[0] % 2, size[1] + size[1] % 2)
        rate = Fraction(fps).limit_denominator()
        command = [
            imageio_ffmpeg.get_ffmpeg_exe(),
            "-y",
            "-v",
            "error",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-s",
            f"{self.even[0]}x{self.even[1]}",
            "-r",
            str(rate),
            "-i",
            "-",
            "-an",
            # RGB → BT.709 limited-range YUV, and the stream says so: untagged, players guess
            # (HD sizes as BT.709), and FFmpeg's default conversion is BT.601's, so reds and
            # greens came out shifted in players that trust the tags
            "-vf",
            "scale=out_color_matrix=bt709:out_range=tv",
            "-colorspace",
            "bt709",
            "-color_primaries",
            "bt709",
            "-color_trc",
            "bt709",
            "-color_range",
            "tv",
            "-vcodec",
            "libx264",
            "-pix_fmt",
            "yuv420p",
            "-crf",
            "23",
            "-preset",
            preset,
            "-threads",  # half the cores: the others render (x264's default took them all)
            str(max(1, cpu_share() // 2)),
            "-movflags",
            "+faststart",
            "-f",
            fmt,
            str(self.path),
        ]
        self._log = tempfile.TemporaryFile()  # FFmpeg's messages (a pipe could fill up)
        self._proc = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._log
        )

    def _failure(self, what: str) -> Key2MeshError:
        self._log.seek(0)
        lines = self._log.read().decode(errors="replace").strip().splitlines()
        detail = "; ".join(lines[-3:]) or f"exit status {self._proc.returncode}"
        return Key2MeshError(f"{self.path}: FFmpeg failed {what}: {detail}")

    def write(self, frame: np.ndarray) -> None:
        w, h = self.even
        if frame.shape[:2] != (h, w):
            frame = np.pad(frame, ((0, h - frame.shape[0]), (0, w - frame.shape[1]), (0, 0)))
        try:
            self._proc.stdin.write(memoryview(np.ascontiguousarray(frame)).cast("B"))
        except (BrokenPipeError, ValueError):  # FFmpeg has died (or was aborted)
            self._proc.wait()
            raise self._failure("while encoding") from None

    def release(self) -> None:
        """Finish the file; raises if FFmpeg did not end with status 0 (Ctrl-C kills it)."""
        try:
            try:
                self._proc.stdin.close()
            except BrokenPipeError:
                pass
            code = self._proc.wait()
        except BaseException:
            self.abort()
            raise
        try:
            if code != 0:
                raise self._failure("to finish the file")
        finally:
            self._log.close()

    def abort(self) -> None:
        """Stop FFmpeg now (the file is left incomplete, for the caller to remove)."""
        self._proc.kill()
        try:
            self._proc.stdin.close()
        except (BrokenPipeError, ValueError):
            pass
        self._proc.wait()
        self._log.close()


class VideoWriter:
    """Write RGB frames to a video file (.mp4/.mov/.m4v: H.264, or mp4v without imageio-ffmpeg;
    .avi: MJPG) or, for a path without a video suffix, to numbered PNGs in that folder. Use as a
    context manager; ``codec`` says what was used (h264, mp4v, MJPG or png). A video of an odd
    width or height gets one more black column or row (the codecs need even sizes).

    A video is written to a temporary file next to ``path`` and renamed to ``path`` by
    :meth:`close`; ``close(discard=True)`` (or leaving the ``with`` block on an error) removes it,
    so an interrupted run never leaves a truncated video (or replaces a good one).

    ``background``: frames are encoded by a worker thread (FFmpeg's pipe and OpenCV release the
    GIL), so encoding overlaps the caller's next frame; a frame must not be changed after
    :meth:`write`; an encoding error is raised by a later :meth:`write` or by :meth:`close`."""

    def __init__(
        self, path: str | Path, fps: float = 30.0, h264: bool = True, background: bool = False
    ):
        self.path = Path(path)
        self.fps = float(fps)
        self.count = 0
        self._writer = None
        self._size: tuple[int, int] | None = None
        self._background: _Background | None = None
        suffix = self.path.suffix.lower()
        if suffix in VIDEO_SUFFIXES and suffix not in _FOURCC:
            raise Key2MeshError(
                f"{self.path}: cannot write {suffix} videos; use one of {', '.join(_FOURCC)}"
            )
        self._folder = suffix not in _FOURCC
        self.codec = (
            "png"
            if self._folder
            else "h264"
            if (suffix != ".avi" and h264 and h264_available())
            else _FOURCC[suffix]
        )
        if self._folder:
            self.path.mkdir(parents=True, exist_ok=True)
        else:
            from key2mesh.safe_paths import temp_name, write_error

            if self.codec != "h264":
                _cv2()
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise write_error(self.path, exc) from None
            self._tmp = temp_name(self.path)
        if background:  # last: a refused writer leaves no thread behind
            self._background = _Background(self._encode)

    def write(self, frame: np.ndarray) -> None:
        """Append one (H, W, 3) uint8 RGB frame (all frames must share the first one's size)."""
        frame = np.asarray(frame)
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise Key2MeshError(
                f"{self.path}: frames must be (H, W, 3) uint8 RGB, got {frame.shape} {frame.dtype}"
            )
        size = (frame.shape[1], frame.shape[0])
        if self._size is None:
            self._size = size
        elif size != self._size:
            raise Key2MeshError(
                f"{self.path}: frame {self.count} is {size[0]}x{size[1]}, earlier frames {self._size[0]}x{self._size[1]}"
            )
        if self._background is not None:
            self._background.submit((self.count, frame))
        else:
            self._encode((self.count, frame))
        self.count += 1

    def _encode(self, item: tuple[int, np.ndarray]) -> None:
        """Write frame number ``item[0]``, ``item[1]`` (checked by :meth:`write`)."""
        count, frame = item
        size = (frame.shape[1], frame.shape[0])
        if self._folder:
            write_image(self.path / f"frame_{count:06d}.png", frame)
        elif self.codec == "h264":
            if self._writer is None:
                fmt = "mov" if self.path.suffix.lower() == ".mov" else "mp4"
                self._writer = _H264(self._tmp, self.fps, size, fmt)
            self._writer.write(np.ascontiguousarray(frame))
        else:
            cv2 = _cv2()
            # OpenCV's MJPG and mp4v writers crop an odd size to even (the last column or row
            # lost): padded by a black one instead, as for H.264
            w, h = (size[0] + size[0] % 2, size[1] + size[1] % 2)
            if self._writer is None:
                fourcc = cv2.VideoWriter_fourcc(*_FOURCC[self.path.suffix.lower()])
                self._writer = cv2.VideoWriter(str(self._tmp), fourcc, self.fps, (w, h))
                if not self._writer.isOpened():
                    raise Key2MeshError(f"{self.path}: OpenCV cannot write this video file")
            if (w, h) != size:
                frame = np.pad(frame, ((0, h - size[1]), (0, w - size[0]), (0, 0)))
            self._writer.write(cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2BGR))

    def close(self, discard: bool = False) -> None:
        """Finish the video: rename it into place (or remove it with ``discard``).

        With ``background``, ``close()`` waits for the frames still queued; ``discard`` (or an
        error or Ctrl-C while waiting) stops the encoder instead, waits for the worker and
        removes the file, so no thread, FFmpeg process or temporary file is left behind."""
        background, self._background = self._background, None
        if background is not None:
            done = False
            try:
                if not discard:
                    background.finish()
                    done = True
            finally:
                if not done:
                    self._stop_encoder()  # unblocks a write the worker may be stuck in
                    interrupted = background.cancel()
                    self._finish(discard=True)
                    if interrupted is not None:
                        raise interrupted
            if not done:
                return
        self._finish(discard)

    def _stop_encoder(self) -> None:
        writer = self._writer
        if isinstance(writer, _H264):
            writer.abort()

    def _finish(self, discard: bool) -> None:
        writer, self._writer = self._writer, None
        if writer is None:
            return
        try:
            if discard and isinstance(writer, _H264):
                writer.abort()
            else:
                writer.release()
        except BaseException:
            self._tmp.unlink(missing_ok=True)
            raise
        if discard:
            self._tmp.unlink(missing_ok=True)
            return
        from key2mesh.safe_paths import fsync_file, write_error

        fsync_file(self._tmp)  # the frames are on disk before the final name points at them
        try:
            os.replace(self._tmp, self.path)
        except OSError as exc:
            self._tmp.unlink(missing_ok=True)
            raise write_error(self.path, exc) from None

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, *exc) -> None:
        self.close(discard=exc_type is not None)


def write_video(path: str | Path, frames: Iterable[np.ndarray], fps: float = 30.0) -> Path:
    """Write frames (iterable of (H, W, 3) uint8 RGB) to ``path``; returns the path."""
    with VideoWriter(path, fps) as writer:
        for frame in frames:
            writer.write(frame)
    if writer.count == 0:
        raise Key2MeshError(f"{path}: no frames to write")
    return Path(path)
