"""One-Euro temporal filter."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from key2mesh.errors import Key2MeshError
from key2mesh.inference.smoothing import OneEuroFilter, one_euro

FPS = 30.0


def _alpha(cutoff: float) -> float:
    # first-order low-pass: alpha = 1 / (1 + tau·fps), tau = 1 / (2π·cutoff)
    return 1.0 / (1.0 + FPS / (2.0 * math.pi * cutoff))


def test_reduces_jitter_of_noisy_constant():
    rng = np.random.default_rng(0)
    x = 2.0 + rng.normal(0.0, 0.05, size=(300, 17, 2))
    y = one_euro(x, fps=FPS, min_cutoff=1.0, beta=0.0)
    assert y.shape == x.shape and y.dtype == x.dtype
    # steady-state noise std of an EMA: sqrt(a / (2 - a)) · sigma ≈ 0.31 sigma for a = 0.173
    a = _alpha(1.0)
    ratio = y[50:].std() / x[50:].std()
    assert ratio == pytest.approx(math.sqrt(a / (2 - a)), rel=0.15)
    assert abs(y[50:].mean() - 2.0) < 0.01  # no bias


def test_step_response_matches_hand_computed_lag():
    x = np.r_[np.zeros(10), np.ones(40)]
    a = _alpha(1.0)  # 0.17318
    y = one_euro(x, fps=FPS, min_cutoff=1.0, beta=0.0)
    k = np.arange(40)
    assert np.allclose(y[10:], 1.0 - (1.0 - a) ** (k + 1))  # exponential smoothing at beta = 0
    lag0 = int(np.argmax(y[10:] >= 0.9))
    assert lag0 == 12  # (1 - a)^13 < 0.1 <= (1 - a)^12
    # the speed term shortens the lag on fast changes, and never overshoots
    y_fast = one_euro(x, fps=FPS, min_cutoff=1.0, beta=0.5)
    lag_fast = int(np.argmax(y_fast[10:] >= 0.9))
    assert lag_fast <= 4 and lag_fast < lag0
    assert y_fast.max() <= 1.0 + 1e-9 and (np.diff(y_fast) >= -1e-12).all()


def test_vectorised_over_trailing_dims_and_torch():
    rng = np.random.default_rng(1)
    x = np.cumsum(rng.normal(size=(60, 4, 6)), axis=0)
    y = one_euro(x, fps=FPS, min_cutoff=0.5, beta=0.3)
    y_col = one_euro(x[:, 2, 5], fps=FPS, min_cutoff=0.5, beta=0.3)
    assert np.allclose(y[:, 2, 5], y_col)
    t = torch.tensor(x, dtype=torch.float32)
    yt = one_euro(t, fps=FPS, min_cutoff=0.5, beta=0.3)
    assert torch.is_tensor(yt) and yt.dtype == torch.float32 and yt.shape == t.shape
    assert np.allclose(yt.numpy(), y, atol=1e-4)


def test_invalid_samples_hold_previous_value():
    x = np.array([1.0, 1.0, 50.0, 50.0, 1.0])
    valid = np.array([True, True, False, False, True])
    y = one_euro(x, fps=FPS, valid=valid)
    assert np.allclose(y, 1.0)
    # per-joint validity (T, K) broadcast over coordinates (T, K, 2)
    kp = np.ones((4, 3, 2))
    kp[2, 1] = 99.0
    conf_ok = np.ones((4, 3), bool)
    conf_ok[2, 1] = False
    assert np.allclose(one_euro(kp, valid=conf_ok), 1.0)


def test_streaming_equals_batch_and_errors():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(20, 3))
    f = OneEuroFilter(fps=FPS, min_cutoff=1.5, beta=0.1)
    streamed = np.stack([f(s) for s in x])
    assert np.allclose(streamed, one_euro(x, fps=FPS, min_cutoff=1.5, beta=0.1))
    with pytest.raises(Key2MeshError):
        f(np.zeros(4))
    with pytest.raises(Key2MeshError):
        OneEuroFilter(fps=0)
    with pytest.raises(Key2MeshError):
        one_euro(np.zeros((0, 3)))


def test_one_smoothing_function_for_predict_and_demo():
    """smooth_parameters is the demo's smoothing and smooth_tracks predict's, per person id."""
    import numpy as np
    import torch

    from key2mesh.geometry.rotations import axis_angle_to_matrix, matrix_to_rot6d, rot6d_to_matrix
    from key2mesh.inference.smoothing import (
        DEMO_SMOOTHING,
        one_euro,
        smooth_parameters,
        smooth_tracks,
    )

    g = torch.Generator().manual_seed(0)
    rot = axis_angle_to_matrix(torch.randn(40, 24, 3, generator=g)).float()
    shape = torch.rand(40, 6, generator=g)
    r, s = smooth_parameters(rot, shape, 25.0, DEMO_SMOOTHING)
    assert torch.equal(
        r, rot6d_to_matrix(one_euro(matrix_to_rot6d(rot), fps=25.0, min_cutoff=1.0, beta=0.05))
    )
    assert torch.equal(s, one_euro(shape, fps=25.0, min_cutoff=0.3))
    frames, pids = np.arange(40) % 20, np.repeat([0, 1], 20)
    r, s = smooth_tracks(rot, shape, frames[::-1].copy(), pids)  # rows in any order
    for pid in (0, 1):
        sel = np.nonzero(pids == pid)[0][::-1]  # in frame order
        want_r, want_s = smooth_parameters(rot[sel.copy()], shape[sel.copy()])
        torch.testing.assert_close(r[sel.copy()], want_r)
        torch.testing.assert_close(s[sel.copy()], want_s)


def test_smooth_tracks_restarts_after_a_gap_and_uses_real_time_steps():
    """A person seen in frames 0-29 and again in 300-329 (left the view): the second visit is
    filtered afresh, not as if frame 300 followed frame 29; a skipped frame uses its real dt."""
    import numpy as np
    import torch

    from key2mesh.inference.smoothing import one_euro, smooth_tracks

    frames = np.r_[np.arange(30), np.arange(300, 330)]
    rot = torch.eye(3).repeat(60, 24, 1, 1)
    shape = torch.zeros(60, 6)
    shape[30:] = 1.0
    _, s = smooth_tracks(rot, shape, frames, np.zeros(60, int), fps=30.0)
    torch.testing.assert_close(s[30:], torch.ones(30, 6))
    # frames 0, 2, 4, ... at 30 fps: the same as a 15 fps filter
    x = torch.linspace(0, 1, 20)[:, None].expand(20, 6).contiguous()
    _, s2 = smooth_tracks(torch.eye(3).repeat(20, 24, 1, 1), x, 2 * np.arange(20), np.zeros(20))
    torch.testing.assert_close(s2, one_euro(x, fps=15.0), rtol=1e-5, atol=1e-6)


def test_series_timestamps_zero_phase_and_gaps():
    """smooth_series: real timestamps (even spacing = the fixed-rate filter), the zero-phase
    variant has no lag, and the filter restarts after a gap."""
    import numpy as np

    from key2mesh.inference.smoothing import one_euro, smooth_series, smooth_track_series

    t = np.arange(90) / 30.0
    x = np.sin(2 * np.pi * 1.0 * t)[:, None]
    assert np.allclose(smooth_series(x, t, 2.0), one_euro(x, fps=30.0, min_cutoff=2.0))
    # strided sampling (every 3rd frame): same as a 10 fps filter
    assert np.allclose(
        smooth_series(x[::3], t[::3], 2.0), one_euro(x[::3], fps=10.0, min_cutoff=2.0)
    )

    def lag(y):  # samples by which y trails x (cross-correlation peak)
        shifts = range(-6, 7)
        err = [np.abs(np.roll(y[:, 0], -s)[10:-10] - x[10:-10, 0]).mean() for s in shifts]
        return list(shifts)[int(np.argmin(err))]

    assert lag(smooth_series(x, t, 2.0)) >= 2
    assert lag(smooth_series(x, t, 2.0, zero_phase=True)) == 0
    # a gap longer than max_gap_s: the second piece starts afresh (its first sample unfiltered)
    tg = np.r_[t[:30], t[30:] + 2.0]
    xg = np.r_[np.zeros(30), np.ones(60)][:, None]
    y = smooth_series(xg, tg, 1.0, max_gap_s=0.5)
    assert y[30, 0] == 1.0 and np.allclose(y[:30], 0.0)
    # without the restart, the step is filtered with the 2.03 s that really passed
    dt = tg[30] - tg[29]
    want = 1.0 / (1.0 + 1.0 / (2 * np.pi * 1.0) / dt)
    assert smooth_series(xg, tg, 1.0, max_gap_s=5.0)[30, 0] == pytest.approx(want)
    # per track, rows in any order
    ids = np.r_[np.zeros(45, int), np.ones(45, int)]
    perm = np.random.default_rng(0).permutation(90)
    y = smooth_track_series(x[perm], ids[perm], np.r_[t[:45], t[:45]][perm], 2.0)
    back = np.empty_like(y)
    back[perm] = y
    assert np.allclose(back[:45], smooth_series(x[:45], t[:45], 2.0))
