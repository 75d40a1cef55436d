"""The multi-person detector's search schedule and its cheap path (tracked crops only), on a fake
single-person BlazePose: people are drawn as uniquely coloured rectangles, and the fake
"detects" the largest one left in the crop it is given (the real detector's grey fill hides the
people already found). No MediaPipe needed."""

from __future__ import annotations

import numpy as np
import pytest

from key2mesh.media.multi_detect import MultiPersonDetector, SearchSchedule

H, W = 400, 600


def _scene(boxes: list[tuple[int, int, int, int]]) -> np.ndarray:
    """A dark frame with one rectangle of colour (10 + 40 i, 200, 200) per box x0, y0, x1, y1."""
    img = np.full((H, W, 3), 20, np.uint8)
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        img[y0:y1, x0:x1] = (10 + 40 * i, 200, 200)
    return img


class FakePose:
    """Stand-in for ``detect.PoseDetector``: the largest visible rectangle inside the crop (a
    person cut by the crop's edge is not found) as 33 confident keypoints on a grid over it, or
    None."""

    def __init__(self, video: bool = True, **kwargs):
        self.calls = 0

    def __call__(self, crop: np.ndarray):
        self.calls += 1
        mask = (crop[..., 1] == 200) & (crop[..., 2] == 200)
        best = None
        for colour in np.unique(crop[..., 0][mask]):
            ys, xs = np.nonzero(mask & (crop[..., 0] == colour))
            h, w = crop.shape[:2]
            if min(xs.min(), ys.min()) == 0 or xs.max() == w - 1 or ys.max() == h - 1:
                continue
            if best is None or len(ys) > best[0]:
                best = (len(ys), xs.min(), ys.min(), xs.max(), ys.max())
        if best is None or best[0] < 100:
            return None
        _, x0, y0, x1, y1 = best
        gx, gy = np.meshgrid(np.linspace(x0, x1, 3), np.linspace(y0, y1, 11))
        kp = np.c_[gx.ravel(), gy.ravel()][:33].astype(np.float32)
        return kp, np.full(33, 0.9, np.float32)

    def close(self):
        return None


@pytest.fixture()
def detector(monkeypatch):
    monkeypatch.setattr("key2mesh.media.detect.PoseDetector", FakePose)
    with MultiPersonDetector(max_people=4, min_tile=128) as det:
        yield det


TWO = [(50, 60, 170, 330), (350, 80, 460, 360)]


def test_full_search_finds_everyone(detector):
    found = detector(_scene(TWO))
    assert len(found) == 2 and detector.searched_full
    boxes = sorted(f.box.tolist() for f in found)
    assert np.allclose(boxes, [[50, 60, 169, 329], [350, 80, 459, 359]])
    assert detector.calls > 6  # whole frame + tiles, each searched again after a find


def test_cheap_path_runs_once_per_tracked_crop(detector):
    img = _scene(TWO)
    full = detector(img)
    hints = np.stack([f.box for f in full]) + 3.0  # where the tracker expects them
    before = detector.calls
    cheap = detector(img, hints=hints, full=False)
    assert detector.calls - before == 2 and not detector.searched_full
    assert sorted(f.box.tolist() for f in cheap) == sorted(f.box.tolist() for f in full)
    # full=True with the same hints searches everything (the schedule's full frames)
    before = detector.calls
    assert len(detector(img, hints=hints, full=True)) == 2
    assert detector.calls - before > 2 and detector.searched_full


def test_cheap_path_falls_back_when_a_crop_loses_its_person(detector):
    img = _scene(TWO)
    hints = np.stack([f.box for f in detector(img)])
    moved = _scene([TWO[0], (420, 30, 530, 310)])  # the second person jumped away from its crop
    hints[1] = [200, 100, 260, 200]  # ... and the tracker expects them in an empty place
    found = detector(moved, hints=hints, full=False)
    assert detector.searched_full and len(found) == 2
    assert max(f.box[0] for f in found) == 420
    assert detector.lost == 1
    # without the fallback the frame stops after the crops: the lost person is reported only
    found = detector(moved, hints=hints, full=False, fallback=False)
    assert not detector.searched_full and detector.lost == 1 and len(found) == 1
    # nobody to follow: always the full search
    detector(img, hints=np.zeros((0, 4)), full=False)
    assert detector.searched_full
    assert detector.full_searches == 3


def test_schedule():
    s = SearchSchedule(every_s=0.25)
    assert s.full(0.0, 0, 4)  # nobody tracked
    s.searched(0.0, True)
    assert not s.full(0.1, 1, 4) and not s.full(0.2, 1, 4)
    assert s.full(0.25, 1, 4)  # room for someone new and the interval is over
    assert not s.full(0.25, 4, 4)  # everyone tracked that may be
    s.searched(0.3, False)  # cheap frames do not restart the interval
    assert s.full(0.3, 2, 4)
    s.searched(0.4, True)  # a fallback full search does
    assert not s.full(0.5, 2, 4) and s.full(0.65, 2, 4)
    every = SearchSchedule(every_s=0.0)
    every.searched(1.0, True)
    assert every.full(1.0, 3, 4)
    # with max_people tracked, only a person lost on their crop makes a full search due
    full = SearchSchedule(every_s=0.25)
    full.searched(0.0, True)
    assert not full.full(0.3, 2, 2)
    full.searched(0.3, False, lost=1)
    assert not full.full(0.2, 2, 2) and full.full(0.35, 2, 2)  # ... at its turn
    full.searched(0.4, False, lost=0)  # found again on the crop: still due (not searched yet)
    assert full.full(0.4, 2, 2)
    full.searched(0.4, True)
    assert not full.full(0.8, 2, 2)


def test_schedule_in_a_video(monkeypatch, tmp_path):
    """A person walks right; a second one enters at frame 12. With the schedule, most frames
    cost one BlazePose run per person, and the newcomer is found within ``every_s``."""
    monkeypatch.setattr("key2mesh.media.detect.PoseDetector", FakePose)
    from key2mesh.inference.tracking import Tracker

    frames = [
        _scene([(40 + 5 * i, 60, 160 + 5 * i, 330)] + ([(420, 80, 530, 360)] if i >= 12 else []))
        for i in range(30)
    ]
    fps, counts = 30.0, {}
    for every in (0.0, 0.2):
        tracker, schedule = Tracker(), SearchSchedule(every)
        with MultiPersonDetector(max_people=4, min_tile=128) as det:
            seen = []
            for i, img in enumerate(frames):
                t = i / fps
                hints = tracker.predicted_boxes(t)
                people = det(img, hints, schedule.full(t, len(hints), 4), fallback=False)
                schedule.searched(t, det.searched_full, det.lost)
                boxes = np.stack([p.box for p in people])
                kp = np.stack([p.keypoints for p in people])
                tracker.update(t, boxes, kp, np.stack([p.confidence for p in people]))
                seen.append(len(people))
        counts[every] = (det.calls, det.full_searches, seen)
    calls_all, full_all, seen_all = counts[0.0]
    calls, full, seen = counts[0.2]
    assert full_all == 30 and seen_all == [1] * 12 + [2] * 18
    assert full <= 6 and calls < calls_all / 3
    # found at the first full search after entering (frame 12 is 0.4 s: a scheduled one)
    assert seen == [1] * 12 + [2] * 18


def test_change_gate_finds_what_came_in_outside_the_tracked_people():
    from key2mesh.media.multi_detect import ChangeGate

    gate = ChangeGate(min_size=0.08, scale=8)
    first = _scene([TWO[0]])
    assert gate.changes(first, np.zeros((0, 4))) is None  # no reference yet
    gate.rebase(np.array([[50, 60, 169, 329]]))
    # the tracked person walked 30 px (inside their crop, or where the reference had them)
    walked = _scene([(80, 60, 200, 330)])
    tracked = np.array([[80, 60, 199, 329]])
    assert gate.changes(walked, tracked).shape == (0, 4)
    # someone came in on the right: the change's box, on the 8 px grid, holds them
    came = _scene([(80, 60, 200, 330), (420, 100, 500, 330)])
    box = gate.changes(came, tracked)
    assert box.shape == (1, 4)
    assert np.allclose(box[0], [416, 96, 504, 336])
    # a change under a quarter of the smallest person ((0.08 x 400 / 8)² / 4 = 4 blocks)
    speck = _scene([(80, 60, 200, 330), (424, 104, 440, 112)])  # 2 blocks of 8 x 8
    assert gate.changes(speck, tracked).shape == (0, 4)
    # a moving camera changes most of the picture: nothing can be said
    rng = np.random.default_rng(0)
    patches = rng.integers(0, 255, (H // 16, W // 16 + 1, 3), dtype=np.uint8)
    texture = np.kron(patches, np.ones((16, 16, 1), np.uint8))  # 16 px patches
    gate = ChangeGate(scale=8)
    gate.changes(texture[:, :W], np.zeros((0, 4)))
    gate.rebase(np.zeros((0, 4)))
    assert gate.changes(texture[:, 16:], np.zeros((0, 4))) is None


def test_schedule_waits_longer_while_a_gate_watches():
    s = SearchSchedule(every_s=0.25)
    s.searched(0.0, True)
    assert s.full(0.25, 1, 4) and not s.full(0.25, 1, 4, watched=True)
    assert not s.full(1.9, 1, 4, watched=True) and s.full(2.0, 1, 4, watched=True)  # 8 x 0.25
    s.searched(2.0, True)
    s.searched(2.1, False, lost=1)  # a tracked person lost on their crop: due at its turn
    assert not s.full(2.2, 1, 4, watched=True) and s.full(2.25, 1, 4, watched=True)
    assert SearchSchedule(every_s=0.25, idle_s=0.5).full(0.5, 1, 4, watched=True)


def test_probe_searches_once_and_loses_no_one(detector):
    img = _scene(TWO)
    hints = np.array([[50, 60, 169, 329]], dtype=float)
    found = detector(img, hints=hints, full=False, fallback=False, probes=np.array([TWO[1]]))
    assert len(found) == 2 and detector.calls == 2 and not detector.searched_full
    assert detector.lost == 0
    # a probe where nobody is: one more run, nobody lost, no full search
    found = detector(
        img, hints=hints, full=False, fallback=False, probes=np.array([[500, 10, 520, 30]])
    )
    assert len(found) == 1 and detector.calls == 4 and detector.lost == 0
    # its crop is at least 4 x the smallest person (0.08 x 400 px) wide, around the change
    region = detector.regions(H, W, hints, np.array([[500, 10, 520, 30]]))[1]
    assert region[4] == 3 and region[2] - region[0] == 128


def test_video_search_finds_a_newcomer_where_the_picture_changed(monkeypatch):
    """The scene of test_schedule_in_a_video with VideoSearch: the newcomer is found on the
    frame she comes in (a probe around the change), with a full search only at the start and
    after the idle interval (8 x 0.2 s)."""
    monkeypatch.setattr("key2mesh.media.detect.PoseDetector", FakePose)
    from key2mesh.inference.tracking import Tracker
    from key2mesh.media.multi_detect import VideoSearch

    frames = [
        _scene([(40 + 5 * i, 60, 160 + 5 * i, 330)] + ([(420, 80, 530, 360)] if i >= 12 else []))
        for i in range(30)
    ]
    tracker = Tracker()
    with MultiPersonDetector(max_people=4, min_tile=128) as det:
        search, seen, fulls = VideoSearch(det, 0.2), [], []
        for i, img in enumerate(frames):
            t = i / 30.0
            people = search(img, t, tracker.predicted_boxes(t))
            fulls.append(det.searched_full)
            tracker.update(
                t,
                np.stack([p.box for p in people]),
                np.stack([p.keypoints for p in people]),
                np.stack([p.confidence for p in people]),
            )
            seen.append(len(people))
    assert seen == [1] * 12 + [2] * 18
    assert np.flatnonzero(fulls).tolist() == [0]  # at the start (the next: 1.6 s, frame 48)
    assert det.calls < 30 + 18 + 2 * 12  # crops, the probe, two full searches


def test_lone_hint_crops_are_searched_at_once_with_the_same_results(monkeypatch):
    """Three people whose crops do not overlap: with two workers two crops are searched at once
    (one detector each), and the people, their order and the run count are the sequential
    search's."""
    monkeypatch.setattr("key2mesh.media.detect.PoseDetector", FakePose)
    boxes = [(45, 100, 95, 200), (275, 150, 325, 250), (505, 220, 555, 320)]
    img = _scene(boxes)
    hints = np.array(boxes, float) - [0, 0, 1, 1]  # crops of 160 px: none overlaps another
    results = {}
    made = []
    init = FakePose.__init__
    monkeypatch.setattr(FakePose, "__init__", lambda self, **kw: made.append(kw) or init(self))
    for workers in (1, 2):
        made.clear()
        with MultiPersonDetector(max_people=4, min_tile=128, workers=workers) as det:
            found = det(img, hints=hints, full=False, fallback=False)
            results[workers] = ([f.box.tolist() for f in found], det.calls, list(made))
    assert len(results[1][0]) == 3 and results[2][0] == results[1][0]
    assert results[1][1] == results[2][1] == 3
    # single-image detectors: this thread's, and one more for the crop searched meanwhile
    assert [m["video"] for m in results[1][2]] == [False]
    assert [m["video"] for m in results[2][2]] == [False, False]


@pytest.mark.parametrize(
    "people",
    [TWO, [(20, 30, 120, 250), (130, 60, 230, 330), (380, 40, 470, 300)], [(60, 60, 200, 360)]],
)
def test_full_search_at_once_finds_what_the_sequential_one_finds(monkeypatch, people):
    """Regions searched two at once (first runs made ahead, made again where someone found
    since was greyed in) give the sequential search's people, in the same order."""
    monkeypatch.setattr("key2mesh.media.detect.PoseDetector", FakePose)
    img = _scene(people)
    got = {}
    for workers in (1, 2):
        with MultiPersonDetector(max_people=4, min_tile=128, workers=workers) as det:
            got[workers] = [f.box.tolist() for f in det(img)]
            calls = det.calls
    assert got[1] == got[2] and len(got[1]) == len(people)
    assert calls >= len(people)
