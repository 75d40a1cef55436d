"""Tracking on synthetic people: crossings, missed detections, gaps, max_people."""

from __future__ import annotations

import numpy as np
import pytest

from key2mesh.inference.tracking import Tracker, identity_switches
from key2mesh.media.multi_detect import keypoint_box, overlap_smaller, suppress, tile_grid

# a 17-point stick figure in a unit box (x right, y down)
_FIGURE = np.array(
    [[0.5, 0.05], [0.52, 0.04], [0.48, 0.04], [0.55, 0.05], [0.45, 0.05], [0.65, 0.2], [0.35, 0.2],
     [0.7, 0.37], [0.3, 0.37], [0.72, 0.52], [0.28, 0.52], [0.6, 0.52], [0.4, 0.52], [0.6, 0.75],
     [0.4, 0.75], [0.6, 0.97], [0.4, 0.97]]
)  # fmt: skip


def _people(n_frames=120, fps=30.0, miss=0.15, seed=0, speed=240.0):
    """Two people walking towards each other and crossing (person 1 slightly behind, smaller),
    with jitter and randomly missed detections. Returns per-detection arrays."""
    rng = np.random.default_rng(seed)
    rows = []
    for f in range(n_frames):
        t = f / fps
        for pid, (x0, v, y0, h) in enumerate(
            ((100.0, speed, 300.0, 400.0), (1100.0, -speed, 320.0, 360.0))
        ):
            if rng.random() < miss:
                continue
            w = 0.45 * h
            kp = _FIGURE * [w, h] + [x0 + v * t, y0] + rng.normal(0, 3.0, (17, 2))
            # a walking gait: the legs swing
            kp[13:, 0] += 0.1 * h * np.sin(2 * np.pi * t + np.array([0, np.pi, 0, np.pi]))
            rows.append((f, t, pid, kp))
    f, t, pid, kp = zip(*rows)
    return np.array(f), np.array(t), np.array(pid), np.stack(kp)


def _track(frames, times, truth, kps, tracker):
    pred = np.full(len(frames), -1)
    conf = np.ones(kps.shape[:2])
    for f in np.unique(frames):
        sel = np.nonzero(frames == f)[0]
        boxes = keypoint_box(kps[sel], conf[sel], 0.5)
        pred[sel] = tracker.update(times[sel[0]], boxes, kps[sel], conf[sel])
    return pred


@pytest.mark.parametrize("seed", range(5))
def test_two_people_crossing_with_missed_frames_keep_their_ids(seed):
    frames, times, truth, kps = _people(seed=seed)
    pred = _track(frames, times, truth, kps, Tracker(max_people=4, max_gap_s=0.5))
    assert identity_switches(truth, pred, frames) == 0
    assert len(np.unique(pred)) == 2 and (pred >= 0).all()


def test_crossing_with_a_long_occlusion_gap():
    """Person 0 is not detected for 8 frames (0.27 s) right while the two overlap."""
    frames, times, truth, kps = _people(miss=0.0)
    cross = np.abs(times - 1000.0 / 480.0) < 0.14
    keep = ~(cross & (truth == 0))
    frames, times, truth, kps = frames[keep], times[keep], truth[keep], kps[keep]
    pred = _track(frames, times, truth, kps, Tracker(max_gap_s=1.0))
    assert identity_switches(truth, pred, frames) == 0 and len(np.unique(pred)) == 2


def test_frame_stride_and_real_timestamps():
    """Every 4th frame only (a --frames a:b:4 run): velocities are per second, ids still hold."""
    frames, times, truth, kps = _people(miss=0.1, speed=120.0)
    sel = frames % 4 == 0
    pred = _track(frames[sel], times[sel], truth[sel], kps[sel], Tracker())
    assert identity_switches(truth[sel], pred, frames[sel]) == 0


def test_max_people_and_track_end():
    frames, times, truth, kps = _people(miss=0.0)
    pred = _track(frames, times, truth, kps, Tracker(max_people=1))
    assert set(np.unique(pred)) == {-1, 0}  # the second person is never tracked
    tracker = Tracker(max_gap_s=0.2)
    conf = np.ones((1, 17))
    kp = _FIGURE[None] * 100
    box = keypoint_box(kp, conf, 0.5)
    assert tracker.update(0.0, box, kp, conf).tolist() == [0]
    assert tracker.update(0.1, box, kp, conf).tolist() == [0]
    assert tracker.update(0.5, box, kp, conf).tolist() == [1]  # unseen for 0.4 s: a new track


def test_identity_switch_count():
    truth = np.array([0, 1, 0, 1, 0, 1])
    frames = np.array([0, 0, 1, 1, 2, 2])
    assert identity_switches(truth, np.array([5, 6, 5, 6, 5, 6]), frames) == 0
    assert identity_switches(truth, np.array([5, 6, 6, 5, 6, 5]), frames) == 2
    assert identity_switches(truth, np.array([5, 6, -1, 6, 5, 6]), frames) == 0


def test_detector_geometry_helpers():
    tiles = tile_grid(994, 1768, 695, 0.3)
    assert (tiles[:, 2] - tiles[:, 0] == 695).all() and tiles[:, 2].max() == 1768
    assert tiles[:, 3].max() == 994 and tiles[:, :2].min() == 0
    boxes = np.array([[0, 0, 10, 10], [2, 2, 8, 8], [20, 20, 30, 30]], float)
    assert overlap_smaller(boxes, boxes)[0, 1] == pytest.approx(1.0)
    assert suppress(boxes, np.array([1.0, 2.0, 0.5])).tolist() == [1, 2]
    conf = np.array([[1.0, 0.0, 1.0]])
    kp = np.array([[[1, 2], [100, 100], [3, 5]]], float)
    assert keypoint_box(kp, conf, 0.5).tolist() == [[1, 2, 3, 5]]


def test_one_corrupted_detection_does_not_lose_the_tracks():
    """Two people overlapping in the image (one above the other); for one frame the detector
    merges them (the upper one's lower points slide onto the lower one, which loses its head):
    neither track is lost and no identity switches."""
    frames, times, truth, kps = _people(miss=0.0, speed=60.0)
    kps[truth == 1] += [0, 350]  # person 1 walks below person 0, overlapping in x
    bad = np.flatnonzero(frames == 60)
    kps[bad[0], 9:] += [40, 180]  # person 0's hips/legs pulled down onto person 1
    kps[bad[1], :5] += [30, 150]  # person 1's head lost into its torso
    pred = _track(frames, times, truth, kps, Tracker())
    assert identity_switches(truth, pred, frames) == 0 and len(np.unique(pred)) == 2


def test_nan_keypoints_and_boxes_do_not_break_the_tracks():
    """A missing point written as NaN (with confidence 0, or even 1) is untrusted and a
    detection with a NaN box stays untracked (-1); before, the similarity matrix held NaN and
    scipy raised "matrix contains invalid numeric entries" on the next frame."""
    tracker = Tracker()
    conf = np.ones((2, 17))
    kp = np.stack([_FIGURE * [90, 200] + [100, 50], _FIGURE * [90, 200] + [600, 50]])
    box = keypoint_box(kp, conf, 0.5)
    assert tracker.update(0.0, box, kp, conf).tolist() == [0, 1]
    holes, hconf = kp.copy(), conf.copy()
    holes[0, 3] = np.nan
    hconf[0, 3] = 0.0
    holes[1, 5] = [np.nan, 7.0]  # confident but not a number
    hconf[1, 0] = np.nan
    assert tracker.update(1 / 30, box, holes, hconf).tolist() == [0, 1]
    nan_box = np.vstack([box[:1], np.full((1, 4), np.nan)])
    assert tracker.update(2 / 30, nan_box, kp, conf).tolist() == [0, -1]
    assert tracker.update(3 / 30, box + 2.0, kp + 2.0, conf).tolist() == [0, 1]
    assert all(
        np.isfinite(t.keypoints).all() and np.isfinite(t.velocity).all() for t in tracker.tracks
    )


@pytest.mark.parametrize("stride", [1, 2, 4])
def test_a_runner_at_a_frame_stride_keeps_one_track(stride):
    """One person running at 3-5 body heights per second (5-9 m/s), every ``stride``-th frame of
    a 30 fps video (``--frames ::4``: 7.5 samples/s): their boxes of consecutive samples no
    longer overlap. Before, each sample started a new track (7 ids for 10 samples at 3 h/s,
    stride 4; velocities were capped at 2 heights/s)."""
    rng = np.random.default_rng(stride)
    h = 300.0
    for speed in (3.0, 5.0):
        frames = np.arange(0, int(90 / speed) + 8, stride)
        times = frames / 30.0
        kps = _FIGURE * [0.45 * h, h] + [50.0, 300.0] + rng.normal(0, 3, (len(frames), 17, 2))
        kps[..., 0] += speed * h * times[:, None]
        swing = np.sin(2 * np.pi * 2.5 * times[:, None] + np.array([0, np.pi, 0, np.pi]))
        kps[:, 13:, 0] += 0.25 * h * swing  # running legs
        pred = _track(frames, times, np.zeros(len(frames), int), kps, Tracker())
        assert np.unique(pred).tolist() == [0], (speed, pred)
