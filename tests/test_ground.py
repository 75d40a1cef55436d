"""The ground under tracked people (geometry/ground.py, inference/world.py) on a synthetic
scene: a camera with known pitch, roll and height; walkers on flat ground and one on a
platform, their ankles seen with noise."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from key2mesh.errors import Key2MeshError
from key2mesh.geometry.ground import fit_ground, foot_skate, foot_speeds, ground_frame

PITCH, ROLL, HEIGHT, PLATFORM = 12.0, 4.0, 1.6, 0.4  # degrees, degrees, metres, metres
ANKLE = 0.08  # ankle above the sole, metres
FPS = 7.5


def _camera():
    """World (y up, ground y = 0) → camera (OpenCV) rotation and the camera centre."""
    from scipy.spatial.transform import Rotation

    # a level camera looking along world -z, then pitched down and rolled
    base = np.diag([1.0, -1.0, -1.0])
    tilt = Rotation.from_euler("xz", [-PITCH, ROLL], degrees=True).as_matrix()
    return tilt @ base, np.array([0.0, HEIGHT, 0.0])


def _walker(start, direction, t, base=0.0, speed=1.2):
    """Ankles (T, 2, 3), pelvis and neck (T, 3), world frame: each foot still in stance (60 % of
    a 1 s cycle), swinging at 3 m/s otherwise; ``base``: the height of the level walked on."""
    d = np.asarray(direction, float) / np.linalg.norm(direction)
    side = np.cross([0.0, 1.0, 0.0], d)
    feet = []
    for offset, lateral in ((0.0, 0.1), (0.5, -0.1)):
        cyc = t + offset
        k, phase = np.floor(cyc), cyc - np.floor(cyc)
        swing = np.clip((phase - 0.6) / 0.4, 0.0, 1.0)
        s = speed * (k + swing) - speed * offset
        y = base + ANKLE + 0.1 * np.sin(np.pi * swing)
        feet.append(start + s[:, None] * d + lateral * side + y[:, None] * [0, 1, 0])
    feet = np.stack(feet, 1)
    pelvis = feet.mean(1) + [0.0, 0.85, 0.0]
    pelvis[:, 1] = base + 0.9
    return feet, pelvis, pelvis + [0.0, 0.5, 0.0]


def _scene(noise=0.02, seed=0):
    """A fake motion (the fields ground_world reads) in the camera frame + the truth."""
    rng = np.random.default_rng(seed)
    r, c = _camera()
    t = np.arange(0, 4.0, 1 / FPS)
    people = [
        _walker(np.array([-2.0, 0, -5.0]), [1.0, 0, 0], t),
        _walker(np.array([1.0, 0, -4.0]), [-0.3, 0, -1.0], t),
        _walker(np.array([-1.0, 0, -8.0]), [1.0, 0, 0.1], t, base=PLATFORM, speed=0.8),
    ]
    joints, tracks, times = [], [], []
    for k, (feet, pelvis, neck) in enumerate(people):
        j = np.zeros((len(t), 24, 3))
        j[:, 0], j[:, 12], j[:, 7:9] = pelvis, neck, feet
        j = (j - c) @ r.T + rng.normal(0, noise, j.shape)
        joints.append(j)
        tracks += [k] * len(t)
        times.append(t)
    joints = np.concatenate(joints)
    track = np.array(tracks)
    motion = SimpleNamespace(
        joints3d=joints,
        transl=joints[:, 0],
        track_id=track,
        time_s=np.concatenate(times),
        tracks=lambda: [0, 1, 2],
        rows_of=lambda k: np.flatnonzero(track == k),
    )
    return motion, r, c


def _angle(a, b):
    return float(
        np.degrees(np.arccos(np.clip(a @ b / np.linalg.norm(a) / np.linalg.norm(b), -1, 1)))
    )


def test_gravity_ground_and_platform_are_recovered():
    from key2mesh.inference.world import ground_world

    motion, r, c = _scene()
    up_cam = r @ [0.0, 1.0, 0.0]
    world = ground_world(motion, sole={0: ANKLE, 1: ANKLE, 2: ANKLE})
    assert _angle(world.fit.normal, up_cam) < 1.0
    cam = world.points(np.zeros(3))  # the camera centre in the fitted world
    assert abs(cam[1] - HEIGHT) < 0.02, cam
    assert world.fit.level[0] == world.fit.level[1] == 0.0
    assert abs(world.fit.level[2] - PLATFORM) < 0.02, world.fit.level
    # y up, origin on the ground under the first pelvis
    first = world.points(motion.transl[0])
    assert abs(first[0]) < 1e-9 and abs(first[2]) < 1e-9 and first[1] > 0.8
    # contacts: stance feet of every walker (the platform one included), no swing feet
    truth = _truth_stance(motion, r, c)
    agree = (world.contact == truth).mean()
    assert agree > 0.85, agree


def _truth_stance(motion, r, c):
    t = motion.time_s[:, None] + np.array([0.0, 0.5])
    return (t - np.floor(t)) < 0.6


def test_a_tilted_prior_does_not_decide_what_the_feet_show():
    """Points on a plane tilted 10° from the hint: the fit follows the points."""
    rng = np.random.default_rng(1)
    p = np.c_[rng.uniform(-3, 3, 200), rng.normal(0, 0.01, 200), rng.uniform(-3, 3, 200)]
    g = rng.integers(0, 3, 200)
    p[:, 1] += 0.5 * (g == 2)  # one group a level higher
    hint = np.array([np.sin(np.radians(10)), np.cos(np.radians(10)), 0.0])
    fit = fit_ground(p, g, hint)
    assert _angle(fit.normal, [0, 1, 0]) < 0.5
    assert abs(fit.ground) < 0.01 and abs(fit.level[2] - 0.5) < 0.01
    p[:10, 1] += 2.0  # outliers are weighted out
    assert _angle(fit_ground(p, g, hint).normal, [0, 1, 0]) < 0.5


def test_frame_is_right_handed_and_puts_the_origin_on_the_plane():
    n = np.array([0.1, -0.98, 0.2])
    n /= np.linalg.norm(n)
    r, o = ground_frame(n, -1.5, np.array([0.5, 0.2, 6.0]))
    assert np.allclose(r @ r.T, np.eye(3)) and np.isclose(np.linalg.det(r), 1.0)
    assert np.isclose(n @ o, -1.5) and np.allclose(r[1], n)


def test_foot_skate_and_the_contact_correction():
    """Planted feet with 1 cm jitter slide ~ 1.1 cm per sample; pinning the contacts lowers it."""
    from key2mesh.geometry.ground import contact_root_correction

    rng = np.random.default_rng(2)
    t = np.arange(40) / 10.0
    feet = np.zeros((40, 2, 3))
    feet[:, 1, 0] = 0.3
    feet += rng.normal(0, 0.01, (40, 1, 3))  # the whole body jitters (a camera-fit root error)
    contact = np.ones((40, 2), bool)
    track = np.zeros(40, int)
    before = foot_skate(feet, contact, track, t)
    assert 8 < before < 20
    shift = contact_root_correction(feet, contact, track, t, np.zeros(40))
    after = foot_skate(feet + shift[:, None], contact, track, t)
    assert after < 0.3 * before
    assert np.abs((feet + shift[:, None])[:, :, 1].min(1)).max() < 1e-9  # on the floor
    speeds = foot_speeds(feet, track, t)
    assert speeds.shape == (40, 2) and np.isfinite(speeds).all()


def test_a_track_without_a_slow_foot_stands_on_the_ground():
    """A person seen in one frame only (no foot speed, so no contact candidate) has no level of
    its own in the plane fit: it is put on the ground (level 0), not a KeyError."""
    from key2mesh.inference.world import ground_world

    motion, r, c = _scene()
    joints = np.concatenate([motion.joints3d, motion.joints3d[:1] + [0.5, 0.0, 0.0]])
    track = np.r_[motion.track_id, 3]
    one = SimpleNamespace(
        joints3d=joints,
        transl=joints[:, 0],
        track_id=track,
        time_s=np.r_[motion.time_s, 1.0],
        tracks=lambda: [0, 1, 2, 3],
        rows_of=lambda k: np.flatnonzero(track == k),
    )
    world = ground_world(one, sole={k: ANKLE for k in range(4)})
    assert world.fit.level[3] == 0.0 and not world.contact[-1].any()
    ref = ground_world(motion, sole={k: ANKLE for k in range(3)})
    np.testing.assert_allclose(world.rotation, ref.rotation, atol=1e-3)  # (the up hint moves)


def test_feet_that_disagree_with_the_trunks_are_not_a_ground():
    """A walker on flat ground and one climbing stairs (31°): one level per track cannot hold
    the climber, and the shared normal came out ~88° from gravity. The trunks say where up is:
    such a plane is a one-line error (--world auto then keeps the camera frame)."""
    from key2mesh.inference.world import ground_world

    r, c = _camera()
    t = np.arange(0, 4.0, 1 / FPS)
    flat = _walker(np.array([-2.0, 0, -5.0]), [1.0, 0, 0], t)
    feet, pelvis, neck = _walker(np.array([-1.0, 0, -7.0]), [1.0, 0, 0], t, speed=0.56)
    feet[..., 1] += np.floor(np.clip(feet[..., 0] + 1.0, 0, None) / 0.28) * 0.17
    joints = []
    for f, p, n in (flat, (feet, pelvis, neck)):
        j = np.zeros((len(t), 24, 3))
        j[:, 0], j[:, 12], j[:, 7:9] = p, n, f
        joints.append((j - c) @ r.T)
    joints = np.concatenate(joints)
    track = np.repeat([0, 1], len(t))
    motion = SimpleNamespace(
        joints3d=joints,
        transl=joints[:, 0],
        track_id=track,
        time_s=np.r_[t, t],
        tracks=lambda: [0, 1],
        rows_of=lambda k: np.flatnonzero(track == k),
    )
    with pytest.raises(Key2MeshError, match="from the people's trunks"):
        ground_world(motion, sole={0: ANKLE, 1: ANKLE})
    tipped = ground_world(motion, sole={0: ANKLE, 1: ANKLE}, max_tilt_deg=90.0)
    assert _angle(tipped.fit.normal, r @ [0.0, 1.0, 0.0]) > 45.0  # what it guards against


def test_no_contact_is_one_line():
    from key2mesh.inference.world import ground_world

    motion, _, _ = _scene()
    motion.joints3d = motion.joints3d[:2].copy()
    motion.track_id, motion.time_s = motion.track_id[:2], np.array([0.0, 5.0])
    with pytest.raises(Key2MeshError, match="world camera"):
        ground_world(motion)


def test_origin_choices():
    """--origin: under the first pelvis (default), under the median pelvis, under the camera;
    the axes (and so gravity) are the same in all three."""
    from key2mesh.inference.world import ground_world

    motion, r, c = _scene()
    sole = {0: ANKLE, 1: ANKLE, 2: ANKLE}
    first = ground_world(motion, sole=sole)
    people = ground_world(motion, sole=sole, origin="people")
    camera = ground_world(motion, sole=sole, origin="camera")
    assert np.allclose(first.rotation, camera.rotation) and np.allclose(
        first.rotation, people.rotation
    )
    cam = camera.points(np.zeros(3))
    assert abs(cam[0]) < 1e-9 and abs(cam[2]) < 1e-9 and abs(cam[1] - HEIGHT) < 0.02
    mid = people.points(np.median(motion.transl, axis=0))
    assert abs(mid[0]) < 1e-9 and abs(mid[2]) < 1e-9
    # the same scene, moved: a point's world position differs by the origins' offset only
    p = motion.transl[5]
    assert np.allclose(camera.points(p) - first.points(p), camera.points(first.origin))
    assert abs(camera.points(first.origin)[1]) < 1e-9  # both origins on the ground
    with pytest.raises(Key2MeshError, match="--origin"):
        ground_world(motion, sole=sole, origin="centre")


def test_ground_lift_keeps_the_lowest_foot_on_its_floor():
    from key2mesh.geometry.ground import ground_lift

    feet_y = np.array([[0.05, 0.30], [0.12, 0.09], [-0.02, 0.01], [np.nan, 0.2]])
    floor = np.array([0.08, 0.08, 0.08, 0.08])
    assert np.allclose(ground_lift(feet_y, floor), [0.03, 0.0, 0.10, 0.0])


def test_no_ankle_goes_below_its_sole_height():
    """Whole bodies sunk 15 cm into the ground in a few rows (a fitted depth too far: a person
    entering the view): the guard lifts those rows, their lowest ankle onto the level +
    ankle-to-sole height; the other rows move by the plane fit's mm-level error at most;
    guard=False leaves them sunk."""
    from key2mesh.inference.world import ground_world, world_summary

    motion, r, c = _scene(noise=0.0)
    sunk = np.flatnonzero(motion.track_id == 1)[[3, 4, 17]]
    down = r @ np.array([0.0, -0.15, 0.0])  # world down, in the camera frame
    motion.joints3d[sunk] += down
    motion.transl = motion.joints3d[:, 0]
    sole = {0: ANKLE, 1: ANKLE, 2: ANKLE}
    off = ground_world(motion, sole=sole, correct=False, guard=False)
    on = ground_world(motion, sole=sole, correct=False)
    assert np.allclose(on.rotation, off.rotation) and np.allclose(on.origin, off.origin)

    def ankles(w):  # (N, 2) ankle heights in the world frame, root shift included
        return (w.points(motion.joints3d[:, 7:9]) + w.root_shift[:, None])[..., 1]

    floor = np.array([on.fit.level[int(t)] + ANKLE for t in motion.track_id])
    low_off, low_on = ankles(off).min(1), ankles(on).min(1)
    assert (low_off[sunk] - floor[sunk] < -0.1).all()  # sunk ~ 15 cm
    assert np.allclose(low_on[sunk], floor[sunk], atol=1e-9)
    assert (low_on >= floor - 1e-9).all()
    # the sunk rows are lifted ~ 15 cm; the others by the plane fit's mm-level error at most
    assert (on.lift[sunk] > 0.1).all() and np.delete(on.lift, sunk).max() < 0.005
    assert np.allclose(np.delete(low_on - low_off, sunk), np.delete(on.lift, sunk))
    assert off.lift.max() == 0.0

    class Seen(SimpleNamespace):  # what world_summary reads of a motion
        def __len__(self) -> int:
            return 1

    seen = Seen(focal_length=np.array([1000.0]), image_size=(720, 1280))
    guard = world_summary(on, seen)["ground_guard"]
    assert guard["rows_lifted"] == int((on.lift > 1e-6).sum()) and guard[
        "max_lift_m"
    ] == pytest.approx(on.lift.max())


def test_a_group_whose_points_all_lose_their_weight_keeps_its_mean_level():
    """Two contacts of one track 0.6 m apart in height are both outliers to their own centroid
    (weight 0): its level was 0 / 1e-12 = 0 as a height, i.e. |ground| = 1.5 m above the ground."""
    rng = np.random.default_rng(1)
    # camera frame, y down: the ground is y = 1.5, i.e. up · X = -1.5 for up = (0, -1, 0)
    floor = np.c_[rng.uniform(-1, 1, 40), 1.5 + rng.normal(0, 0.005, 40), rng.uniform(4, 6, 40)]
    track1 = np.array([[0.5, 1.2, 5.0], [0.6, 1.8, 5.1]])  # mean height on the ground
    fit = fit_ground(np.r_[floor, track1], np.r_[np.zeros(40, int), 1, 1], np.array([0, -1.0, 0]))
    assert fit.weights[40:].tolist() == [0.0, 0.0]
    assert abs(fit.ground + 1.5) < 0.01
    assert abs(fit.level[1]) < 0.02  # (−1.2 − 1.8) / 2 − ground: on the ground; was 1.50


def test_first_pelvis_is_the_person_seen_first_not_the_lowest_id():
    """Track ids of a tracked keypoint file need not follow time: with track 2 seen 1 s before
    tracks 0 and 1, the origin is under track 2's first pelvis (before: track 0's, and the
    person seen first started at x, z = (1.01, -3.03) m)."""
    from key2mesh.inference.world import ground_world

    motion, _, _ = _scene()
    motion.time_s = motion.time_s + np.where(motion.track_id == 2, 0.0, 1.0)
    world = ground_world(motion, sole={0: ANKLE, 1: ANKLE, 2: ANKLE})
    first = np.flatnonzero(motion.track_id == 2)[0]
    assert np.abs(world.points(motion.transl[first])[[0, 2]]).max() < 1e-9
