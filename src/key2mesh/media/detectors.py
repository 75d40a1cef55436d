"""2D keypoint detectors behind one interface, found by name.

A detector is anything that satisfies :class:`Detector`: called on one RGB frame (H, W, 3)
uint8, it returns one person's ``(keypoints (K, 2) pixels, confidence (K,) in [0, 1])`` in its
keypoint set, or None, and has ``close()``. Several people per frame, tracking hints and
non-maximum suppression are added around any detector by
:class:`~key2mesh.media.multi_detect.MultiPersonDetector`; keypoints are converted to a model's
set by :func:`~key2mesh.keypoints.convert.convert_keypoints`.

Adding a detector is one file: a module that calls :func:`register_detector` with a name, its
keypoint set (a name of :mod:`key2mesh.keypoints.sets`) and a factory ``(video, model_complexity)
→ Detector`` (docs/design.md, "Adding a detector"). MediaPipe BlazePose (the ``[detect]`` extra)
is registered here as ``"mediapipe"``, the default.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from key2mesh.errors import Key2MeshError

DEFAULT_DETECTOR = "mediapipe"


@runtime_checkable
class Detector(Protocol):
    """One person's 2D keypoints per RGB frame."""

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """(keypoints (K, 2) pixels, pixel centres at integers; confidence (K,) in [0, 1]) of the
        most prominent person in ``image`` (H, W, 3) uint8 RGB, or None when nobody is found."""

    def close(self) -> None:
        """Release the detector's resources (models, sessions)."""


@dataclass(frozen=True)
class DetectorEntry:
    """A registered detector: its ``keypoint_set`` and ``factory(video, model_complexity)``:
    ``video`` True for consecutive frames (the detector may track), False for unrelated images;
    ``model_complexity`` 0 (fast), 1 (default) or 2 (accurate), ignored where there is no choice."""

    name: str
    keypoint_set: str
    factory: Callable[..., Detector]


_REGISTRY: dict[str, DetectorEntry] = {}


def register_detector(name: str, keypoint_set: str, factory: Callable[..., Detector]) -> None:
    """Make a detector available as ``name`` (replacing one of that name)."""
    from key2mesh.keypoints.sets import canonical_set_name

    _REGISTRY[name] = DetectorEntry(name, canonical_set_name(keypoint_set), factory)


def detector_names() -> list[str]:
    """Names of the registered detectors, sorted."""
    return sorted(_REGISTRY)


def detector_entry(name: str = DEFAULT_DETECTOR) -> DetectorEntry:
    """The registered detector ``name``; a clear error naming the others when there is none."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise Key2MeshError(
            f"unknown detector {name!r}; registered: {', '.join(detector_names())}"
        ) from None


def make_detector(
    name: str = DEFAULT_DETECTOR, video: bool = True, model_complexity: int = 1
) -> Detector:
    """A new detector ``name`` (see :class:`DetectorEntry` for the arguments)."""
    return detector_entry(name).factory(video=video, model_complexity=model_complexity)


def _mediapipe(video: bool = True, model_complexity: int = 1) -> Detector:
    from key2mesh.media import detect  # looked up at call time (tests replace PoseDetector)

    return detect.PoseDetector(video=video, model_complexity=model_complexity)


register_detector(DEFAULT_DETECTOR, "mediapipe33", _mediapipe)


def no_people(keypoint_set: str) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints (0, K, 2) and confidence (0, K) of a frame without a person, K of the set."""
    from key2mesh.keypoints.sets import num_keypoints

    k = num_keypoints(keypoint_set)
    return np.zeros((0, k, 2)), np.zeros((0, k))
