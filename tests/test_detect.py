"""MediaPipe BlazePose detection (optional extra) on a real demo frame; skipped without MediaPipe."""

from __future__ import annotations

import sys

import numpy as np
import pytest

pytest.importorskip("mediapipe")

from key2mesh.errors import Key2MeshError  # noqa: E402
from key2mesh.keypoints.convert import convert_keypoints  # noqa: E402
from key2mesh.keypoints.sets import keypoint_names  # noqa: E402
from key2mesh.media import detect  # noqa: E402


@pytest.fixture(scope="module")
def demo_image():
    from key2mesh.data.demo_inputs import demo_available, demo_frame

    if not demo_available("pose2sim-cam01"):
        pytest.skip("pose2sim wheel not cached (needs a download)")

    pytest.importorskip("cv2")
    return demo_frame("pose2sim-cam01", 0)


def test_detects_the_person_on_a_real_frame(demo_image):
    h, w = demo_image.shape[:2]
    assert (h, w) == (1920, 1080)
    out = detect.detect_image(demo_image)
    assert out is not None
    kp, conf = out
    assert kp.shape == (33, 2) and conf.shape == (33,)
    assert ((conf >= 0) & (conf <= 1)).all() and conf.mean() > 0.8
    names = keypoint_names("mediapipe33")
    at = {n: kp[i] for i, n in enumerate(names)}
    assert ((kp >= 0) & (kp < [w, h])).all()
    # an upright person facing the camera: head above shoulders above hips above knees above ankles
    assert (
        at["nose"][1]
        < at["left_shoulder"][1]
        < at["left_hip"][1]
        < at["left_knee"][1]
        < at["left_ankle"][1]
    )
    # facing the camera, the person's right side is on the image's left
    assert at["right_shoulder"][0] < at["left_shoulder"][0]
    # standing 1.6-2 m tall in a 1920 px portrait frame taken from ~3 m: hundreds of pixels
    assert 500 < at["left_ankle"][1] - at["nose"][1] < 1500
    kp17, c17 = convert_keypoints(kp, conf, "mediapipe33", "coco17")
    assert kp17.shape == (17, 2) and (c17 > 0.5).all()


def test_video_tracking_and_empty_frames(demo_image):
    blank = np.zeros((240, 320, 3), np.uint8)
    assert detect.detect_image(blank) is None
    kps, confs = detect.detect_frames([demo_image, demo_image, blank])
    assert kps.shape == (3, 33, 2) and confs.shape == (3, 33)
    assert (confs[2] == 0).all() and (confs[:2].mean(1) > 0.8).all()
    assert np.abs(kps[1] - kps[0]).max() < 20  # same frame twice: tracked landmarks agree


def test_bad_input_and_missing_extra(monkeypatch):
    with pytest.raises(Key2MeshError, match="uint8"):
        detect.detect_image(np.zeros((10, 10, 3), np.float32))
    monkeypatch.setitem(sys.modules, "mediapipe.python.solutions", None)
    with pytest.raises(Key2MeshError, match=r"key2mesh\[detect\]"):
        detect.PoseDetector()
