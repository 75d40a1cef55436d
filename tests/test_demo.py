"""The demo on a real frame of the pose2sim demo video (needs the [detect] extra and the wheel)."""

import numpy as np
import pytest

from key2mesh.model.checkpoint import PRETRAINED, PRETRAINED_DIR

pytest.importorskip("mediapipe")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (PRETRAINED_DIR / PRETRAINED["anny-body25"]).exists(), reason="no shipped checkpoint"
    ),
]


def test_demo_overlay_on_real_frame(tmp_path):
    from key2mesh.data.demo_inputs import demo_frame
    from key2mesh.inference.demo import run_demo
    from key2mesh.inference.predictor import Key2Mesh
    from key2mesh.media.video import read_image

    frame = demo_frame("pose2sim-cam01", 30)
    model = Key2Mesh.from_pretrained("anny-body25", device="cpu")
    report = run_demo(model, [frame], tmp_path, is_video=False)
    assert report.written == 1 and not report.skipped
    (png,) = [p for p in report.outputs if p.suffix == ".png"]  # beside the params npz + json
    panel = read_image(png)
    h, w = frame.shape[:2]
    assert panel.shape[0] == h and panel.shape[1] > 2 * w
    overlay = panel[:, w : 2 * w].astype(int)
    changed = np.abs(overlay - frame.astype(int)).sum(-1) > 30
    ys, xs = np.nonzero(changed)
    # the mesh covers a person-sized region in the middle of the frame, not the whole image
    assert 0.02 < changed.mean() < 0.4
    assert 0.2 * h < ys.mean() < 0.8 * h and 0.2 * w < xs.mean() < 0.8 * w
