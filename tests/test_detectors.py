"""The detector registry (media/detectors.py): a detector registered by name (one file) is what
MultiPersonDetector runs, with its own keypoint set; MediaPipe is the default entry; unknown
names fail clearly. No MediaPipe needed (stand-ins)."""

from __future__ import annotations

import numpy as np
import pytest

from key2mesh.errors import Key2MeshError
from key2mesh.media import detectors
from key2mesh.media.multi_detect import MultiPersonDetector


class SquareDetector:
    """A COCO-17 stand-in: the 17 keypoints on a 10-px grid around (100, 100), all confident."""

    made: list[dict] = []

    def __init__(self, video: bool = True, model_complexity: int = 1):
        SquareDetector.made.append({"video": video, "model_complexity": model_complexity})

    def __call__(self, image):
        kp = 100 + 10 * np.stack(np.divmod(np.arange(17), 4), axis=1)[:, ::-1].astype(np.float32)
        return kp, np.full(17, 0.9, np.float32)

    def close(self):
        return None


@pytest.fixture()
def square(monkeypatch):
    monkeypatch.setattr(detectors, "_REGISTRY", dict(detectors._REGISTRY))
    SquareDetector.made = []
    detectors.register_detector("square", "coco", SquareDetector)
    return "square"


def test_mediapipe_is_the_default_entry():
    entry = detectors.detector_entry()
    assert entry.name == "mediapipe" == detectors.DEFAULT_DETECTOR
    assert entry.keypoint_set == "mediapipe33"
    assert "mediapipe" in detectors.detector_names()


def test_mediapipe_entry_builds_pose_detector(monkeypatch):
    made = []
    monkeypatch.setattr(
        "key2mesh.media.detect.PoseDetector", lambda **kw: made.append(kw) or SquareDetector()
    )
    det = detectors.make_detector("mediapipe", video=False, model_complexity=2)
    assert isinstance(det, detectors.Detector)
    assert made == [{"video": False, "model_complexity": 2}]


def test_a_registered_detector_runs_in_the_multi_person_search(square):
    with MultiPersonDetector(max_people=1, detector=square) as det:
        people = det(np.zeros((300, 300, 3), np.uint8))
    assert det.keypoint_set == "coco17"  # canonical name of the alias "coco"
    assert SquareDetector.made == [{"video": False, "model_complexity": 1}]
    assert len(people) == 1 and people[0].keypoints.shape == (17, 2)
    np.testing.assert_allclose(people[0].box, [100, 100, 130, 140])
    kp, conf = detectors.no_people(det.keypoint_set)
    assert kp.shape == (0, 17, 2) and conf.shape == (0, 17)


def test_unknown_detector_names_the_registered_ones():
    with pytest.raises(Key2MeshError, match="unknown detector 'nope'.*mediapipe"):
        detectors.make_detector("nope")
    with pytest.raises(Key2MeshError, match="unknown detector"):
        MultiPersonDetector(detector="nope")


def test_mediapipe_model_choice_errors_are_one_line(monkeypatch):
    """BlazePose's models 0 and 2 are not in the wheel: MediaPipe downloads them on first use,
    and offline that was a raw URLError traceback; a model_complexity other than 0, 1, 2 made
    MediaPipe abort the whole process (a C++ check). Both are a Key2MeshError now."""
    import subprocess
    import sys
    import urllib.error

    code = (
        "from key2mesh.errors import Key2MeshError\n"
        "from key2mesh.media.detect import PoseDetector\n"
        "try:\n    PoseDetector(video=False, model_complexity=3)\n"
        "except Key2MeshError as exc:\n    print('refused:', exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-500:]
    assert "refused: model_complexity must be 0, 1 or 2, got 3" in done.stdout

    pytest.importorskip("mediapipe")
    from mediapipe.python.solutions import download_utils

    from key2mesh.media.detect import PoseDetector

    def offline(path):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(download_utils, "download_oss_model", offline)
    with pytest.raises(Key2MeshError, match="could not download its model_complexity=2 pose"):
        PoseDetector(video=False, model_complexity=2)
