"""`key2mesh live` without a camera or a browser: Ctrl-C prints the latency table of what was
measured and the run's statistics stay bounded."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

import key2mesh.viewer.live as live
from key2mesh.viewer.live import LIVE_STAGES, FrameTiming, LiveStats


def _timings(n: int, seed: int = 0) -> list[FrameTiming]:
    rng = np.random.default_rng(seed)
    return [
        FrameTiming(3 * i, {s: float(rng.uniform(0, 0.05)) for s in LIVE_STAGES},
                    float(rng.uniform(0.05, 0.4)), people=int(rng.integers(0, 3)))
        for i in range(n)
    ]  # fmt: skip


def _reference(rows: list[FrameTiming], skip: int, wall_s: float, source: int) -> dict:
    """The summary computed from every frame kept (what LiveStats printed before)."""
    kept = rows[skip:]
    lat = 1000 * np.array([r.latency for r in kept])
    out = {f"{s}_ms": 1000 * float(np.mean([r.stages[s] for r in kept])) for s in LIVE_STAGES}
    out.update(
        latency_ms=float(lat.mean()),
        latency_p50_ms=float(np.percentile(lat, 50)),
        latency_p95_ms=float(np.percentile(lat, 95)),
        fps=len(rows) / wall_s,
        dropped=1 - len(rows) / source,
        people=float(np.mean([r.people for r in kept])),
    )
    return out


@pytest.mark.parametrize("n", [1, 3, 6, 40])
def test_live_stats_match_every_frame_kept(n):
    """Running sums give the summary (and the printed table) of the full list of frames,
    warm-up left out as before: min(5, frames - 1) first frames."""
    from key2mesh.commands.live import latency_table

    rows = _timings(n)
    stats = LiveStats(wall_s=4.0, source_frames=3 * n)
    for r in rows:
        stats.add(r)
    assert stats.count == n
    want = _reference(rows, min(5, n - 1), 4.0, 3 * n)
    got = stats.summary()
    assert got == pytest.approx(want, rel=1e-12)
    assert latency_table(got) == latency_table(want)


def test_live_stats_memory_is_bounded():
    """A long session keeps at most ``max_samples`` latencies (a uniform sample for the
    percentiles); the means stay exact."""
    rows = _timings(3000, seed=1)
    stats = LiveStats(wall_s=100.0, source_frames=9000, max_samples=200)
    for r in rows:
        stats.add(r)
    assert not hasattr(stats, "frames")
    assert sum(len(v) for v in vars(stats).values() if isinstance(v, list)) <= 200 + 5
    got, want = stats.summary(), _reference(rows, 5, 100.0, 9000)
    for key in ("latency_ms", "detect_ms", "people", "fps", "dropped"):
        assert got[key] == pytest.approx(want[key], rel=1e-9)
    # latencies uniform on [50, 400] ms: a 200-sample median within ~4 standard errors
    assert got["latency_p50_ms"] == pytest.approx(want["latency_p50_ms"], abs=50)
    assert got["latency_p95_ms"] == pytest.approx(want["latency_p95_ms"], abs=30)


def test_ctrl_c_prints_the_table_and_exits_130(monkeypatch, capsys):
    """A camera only stops on Ctrl-C: the frames measured until then are summarised, and the
    exit status is the CLI's for an interrupt."""
    import key2mesh.inference.predictor as predictor
    from key2mesh.cli import main

    monkeypatch.setitem(sys.modules, "mediapipe", types.ModuleType("mediapipe"))
    monkeypatch.setattr(predictor.Key2Mesh, "from_pretrained", lambda *a, **k: "model")
    monkeypatch.setattr(live, "open_stream", lambda *a: "stream")

    def interrupted_run(model, stream, viewer, max_people, stats=None):
        for r in _timings(8):
            stats.add(r)
        stats.wall_s, stats.source_frames = 2.0, 30
        raise KeyboardInterrupt

    monkeypatch.setattr(live, "run_live", interrupted_run)
    assert main(["live", "--camera", "0", "--no-viewer"]) == 130
    out, err = capsys.readouterr()
    assert out.startswith("8 frames: 4.00 frames/s processed (73 % of the source's frames dropped)")
    assert "interrupted" in err

    def interrupted_at_once(model, stream, viewer, max_people, stats=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(live, "run_live", interrupted_at_once)
    assert main(["live", "--camera", "0", "--no-viewer"]) == 130
    out, err = capsys.readouterr()
    assert out == "" and "interrupted" in err  # nothing measured: no table
