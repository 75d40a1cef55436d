"""Slow, optional: the exported GLBs in ``<model-viewer>`` with its default camera show the
people (before the ground frame and the first-pose node transforms, the canvas stayed empty:
the viewer framed the bind pose at the origin, the people were elsewhere), and the combined
``_all.glb`` opens with every person in it (a late person was hidden, scaled to 0, until they
came in: the sports2d ``_all.glb`` opened with one person of two, 1.2 % of the canvas)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow


def _viewer_js() -> Path:
    js = os.environ.get("KEY2MESH_MODEL_VIEWER_JS")
    if not shutil.which("chromium-headless-shell"):
        pytest.skip("no chromium-headless-shell (apt-get install chromium-headless-shell)")
    if not js or not Path(js).is_file():
        pytest.skip("KEY2MESH_MODEL_VIEWER_JS does not name model-viewer.min.js")
    pytest.importorskip("websockets")
    return Path(js)


def test_model_viewer_shows_the_people(tmp_path):
    from helpers.browser_shot import model_viewer_shot, track_shares
    from key2mesh.inference.motion import build_motion
    from key2mesh.inference.motion_export import export_motion
    from key2mesh.inference.predictor import Key2Mesh
    from key2mesh.inference.render import track_color
    from test_motion_export import _COCO

    js = _viewer_js()
    model = Key2Mesh.from_pretrained("anny-coco17", device="cpu", full_mesh=False)
    rows = []
    for f in range(0, 60, 2):  # two people walking right, far from the camera; one comes late
        for pid, (x, h, first) in enumerate(((100.0, 300.0, 0), (600.0, 260.0, 20))):
            if f < first:
                continue
            kp = _COCO * [0.45 * h, h] + [x + 6 * f, 300.0]
            step = np.sin(f / 3)
            kp[15, 0] += 12 * max(step, 0)
            kp[16, 0] += 12 * max(-step, 0)
            rows.append((f, f / 30.0, pid, kp))
    f, t, pid, kp = (np.array(x) for x in zip(*rows))
    motion = build_motion(
        model, f, t, pid, kp, np.full(kp.shape[:2], 0.9), (720, 1280), 30.0, world="ground"
    )
    paths = export_motion(model, motion, tmp_path, "w", ["glb"])
    for glb in paths:  # as they open: animation time 0, before the late person's first frame
        png = model_viewer_shot(glb, js, tmp_path / f"page_{glb.stem}", time_s=0.0)
        shares = track_shares(png, [track_color(t) for t in motion.tracks()])
        drawn = sum(shares.values())
        print(f"{glb.name}: {100 * drawn:.1f} % of the canvas drawn, per track colour {shares}")
        assert drawn > 0.005, (glb.name, drawn)
        if glb.stem == "w_all":  # both people, each in their own colour
            assert min(shares.values()) > 0.002, shares
