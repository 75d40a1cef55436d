"""Multi-view geometry (key2mesh.geometry.triangulate) on synthetic calibrated cameras.

Expected values are computed by hand or by an independent pinhole model written here (and
checked against OpenCV where it is installed), never by the functions under test.
"""

from __future__ import annotations

import numpy as np
import pytest

from key2mesh.geometry.triangulate import (
    Triangulation,
    distort,
    project_points,
    triangulate_dlt,
    triangulate_robust,
    undistort_points,
)

FOCAL = 1000.0
DIST = np.array([-0.2, 0.05, 1e-3, -1e-3])


def look_at(center, target=(0.0, 0.0, 0.0), up=(0.0, 0.0, 1.0)) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV world→camera (R, t) of a camera at ``center`` looking at ``target`` (world z up)."""
    center = np.asarray(center, dtype=np.float64)
    forward = np.asarray(target, dtype=np.float64) - center
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, up)
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    R = np.stack([right, down, forward])
    return R, -R @ center


def four_cameras(dist: np.ndarray | None = None):
    """4 cameras ~4 m from the origin, all round it, at slightly different heights: K, dist, R, t."""
    centers = [(4.0, 0.3, 1.0), (-0.2, 4.0, 1.4), (-4.0, -0.5, 0.8), (0.4, -4.0, 1.6)]
    Rs, ts = zip(*(look_at(c) for c in centers))
    K = np.array([[FOCAL, 0.0, 960.0], [0.0, FOCAL * 1.01, 540.0], [0.0, 0.0, 1.0]])
    Ks = np.stack([K] * 4)
    dists = np.zeros((4, 4)) if dist is None else np.stack([dist] * 4)
    return Ks, dists, np.stack(Rs), np.stack(ts)


def ref_distort(x: np.ndarray, y: np.ndarray, k1, k2, p1, p2) -> tuple[np.ndarray, np.ndarray]:
    """Brown–Conrady (OpenCV's formula), written out independently of the module."""
    r2 = x**2 + y**2
    radial = 1 + k1 * r2 + k2 * r2**2
    return (
        x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x**2),
        y * radial + p1 * (r2 + 2 * y**2) + 2 * p2 * x * y,
    )


def ref_project(points, K, dist, R, t):
    """Independent projection: pixels (C, N, 2), normalised ideal points (C, N, 2), depths (C, N)."""
    pix, norm, depth = [], [], []
    for c in range(len(R)):
        cam = points @ R[c].T + t[c]
        x, y = cam[:, 0] / cam[:, 2], cam[:, 1] / cam[:, 2]
        xd, yd = ref_distort(x, y, *dist[c])
        pix.append(
            np.stack(
                [K[c, 0, 0] * xd + K[c, 0, 1] * yd + K[c, 0, 2], K[c, 1, 1] * yd + K[c, 1, 2]], -1
            )
        )
        norm.append(np.stack([x, y], -1))
        depth.append(cam[:, 2])
    return np.stack(pix), np.stack(norm), np.stack(depth)


def random_points(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform([-0.4, -0.4, -0.9], [0.4, 0.4, 0.9], size=(n, 3))


# --- distortion ---------------------------------------------------------------------------------


def test_distort_zero_coefficients_is_identity():
    pts = np.random.default_rng(1).uniform(-0.8, 0.8, size=(50, 2))
    np.testing.assert_array_equal(distort(pts, np.zeros(4)), pts)


def test_distort_hand_computed_radial():
    # r² = 0.1² + 0.2² = 0.05, factor 1 + 0.1·0.05 = 1.005
    out = distort(np.array([0.1, 0.2]), np.array([0.1, 0.0, 0.0, 0.0]))
    np.testing.assert_allclose(out, [0.1005, 0.201], rtol=0, atol=1e-15)


def test_distort_hand_computed_tangential():
    # x=0.1, y=0.2, p1=0.01 only: xd = x + 2·p1·x·y = 0.1004; yd = y + p1·(r²+2y²) = 0.2 + 0.01·0.13 = 0.2013
    out = distort(np.array([0.1, 0.2]), np.array([0.0, 0.0, 0.01, 0.0]))
    np.testing.assert_allclose(out, [0.1004, 0.2013], rtol=0, atol=1e-15)
    # p2=0.01 only: xd = x + p2·(r²+2x²) = 0.1 + 0.01·0.07 = 0.1007; yd = y + 2·p2·x·y = 0.2004
    out = distort(np.array([0.1, 0.2]), np.array([0.0, 0.0, 0.0, 0.01]))
    np.testing.assert_allclose(out, [0.1007, 0.2004], rtol=0, atol=1e-15)


def test_distort_broadcasts_per_camera_coefficients():
    pts = np.random.default_rng(2).uniform(-0.5, 0.5, size=(3, 7, 2))
    dists = np.array([[0.0, 0, 0, 0], [0.1, 0, 0, 0], DIST])
    out = distort(pts, dists[:, None, :])
    for c in range(3):
        np.testing.assert_allclose(
            out[c], np.stack(ref_distort(pts[c, :, 0], pts[c, :, 1], *dists[c]), -1), atol=1e-15
        )


def _distorted_pixels(n: int = 200, seed: int = 3):
    rng = np.random.default_rng(seed)
    ideal = rng.uniform(-0.45, 0.45, size=(n, 2))
    K = np.array([[1100.0, 0.0, 955.0], [0.0, 1090.0, 545.0], [0.0, 0.0, 1.0]])
    xd, yd = ref_distort(ideal[:, 0], ideal[:, 1], *DIST)
    pix = np.stack([K[0, 0] * xd + K[0, 2], K[1, 1] * yd + K[1, 2]], -1)
    return ideal, pix, K


def test_undistort_points_inverts_distortion():
    ideal, pix, K = _distorted_pixels()
    np.testing.assert_allclose(undistort_points(pix, K, DIST), ideal, rtol=0, atol=1e-9)
    # zero distortion: just K⁻¹
    np.testing.assert_allclose(
        undistort_points(pix, K, np.zeros(4)),
        np.stack([(pix[:, 0] - 955.0) / 1100.0, (pix[:, 1] - 545.0) / 1090.0], -1),
        atol=1e-15,
    )


def test_undistort_points_keeps_leading_shape():
    ideal, pix, K = _distorted_pixels(12)
    out = undistort_points(pix.reshape(3, 4, 2), K, DIST)
    assert out.shape == (3, 4, 2)
    np.testing.assert_allclose(out.reshape(12, 2), ideal, atol=1e-9)


def test_undistort_points_agrees_with_opencv():
    cv2 = pytest.importorskip("cv2")
    ideal, pix, K = _distorted_pixels()
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-15)
    ref = cv2.undistortPoints(pix.reshape(-1, 1, 2), K, DIST, None, None, None, criteria).reshape(
        -1, 2
    )
    np.testing.assert_allclose(undistort_points(pix, K, DIST), ref, rtol=0, atol=1e-8)


# --- projection ----------------------------------------------------------------------------------


def test_project_points_optical_axis_and_behind():
    K, dist, R, t = four_cameras(DIST)
    center = -R[0].T @ t[0]
    forward = R[0, 2]  # camera z axis in the world
    pts = np.stack([center + 3.0 * forward, center + 0.5 * forward, center - 2.0 * forward])
    pix, depth = project_points(pts, R, t, K, dist)
    assert pix.shape == (4, 3, 2) and depth.shape == (4, 3)
    np.testing.assert_allclose(pix[0, :2], [[960.0, 540.0]] * 2, atol=1e-9)
    np.testing.assert_allclose(depth[0], [3.0, 0.5, -2.0], atol=1e-12)


def test_project_points_matches_reference_and_opencv():
    K, dist, R, t = four_cameras(DIST)
    pts = random_points(40)
    pix, depth = project_points(pts, R, t, K, dist)
    ref_pix, _, ref_depth = ref_project(pts, K, dist, R, t)
    np.testing.assert_allclose(pix, ref_pix, atol=1e-9)
    np.testing.assert_allclose(depth, ref_depth, atol=1e-12)
    assert (depth > 3.0).all()
    # no distortion: the plain pinhole K (R X + t) / z
    pix0, _ = project_points(pts, R, t, K)
    uvw = np.einsum("cij,cnj->cni", K, np.einsum("cij,nj->cni", R, pts) + t[:, None])
    np.testing.assert_allclose(pix0, uvw[..., :2] / uvw[..., 2:], atol=1e-9)
    cv2 = pytest.importorskip("cv2")
    for c in range(4):
        rvec, _ = cv2.Rodrigues(R[c])
        ref, _ = cv2.projectPoints(pts, rvec, t[c], K[c], dist[c])
        np.testing.assert_allclose(pix[c], ref.reshape(-1, 2), atol=1e-6)


# --- linear triangulation ----------------------------------------------------------------------------


def _extrinsics(R, t):
    return np.concatenate([R, t[..., None]], axis=-1)


def test_triangulate_dlt_exact_and_noisy():
    K, dist, R, t = four_cameras()
    pts = random_points(60, seed=4)
    _, norm, _ = ref_project(pts, K, dist, R, t)
    w = np.ones((4, len(pts)))
    np.testing.assert_allclose(triangulate_dlt(norm, _extrinsics(R, t), w), pts, rtol=0, atol=1e-6)
    # 1 px Gaussian noise ≈ 1e-3 in normalised coordinates at f = 1000
    noisy = norm + np.random.default_rng(5).normal(0.0, 1.0 / FOCAL, size=norm.shape)
    err = np.linalg.norm(triangulate_dlt(noisy, _extrinsics(R, t), w) - pts, axis=-1)
    assert err.max() < 0.02
    assert err.mean() > 1e-5  # the noise did reach the solution


def test_triangulate_dlt_zero_weight_ignores_view_and_needs_two():
    K, dist, R, t = four_cameras()
    pts = random_points(10, seed=6)
    _, norm, _ = ref_project(pts, K, dist, R, t)
    norm[3] += 0.3  # garbage in camera 4...
    w = np.ones((4, 10))
    w[3] = 0.0  # ...which has no weight
    np.testing.assert_allclose(triangulate_dlt(norm, _extrinsics(R, t), w), pts, atol=1e-6)
    # two views suffice, one does not
    w2 = np.zeros((4, 10))
    w2[0, :5] = 1.0
    w2[2, :5] = 1.0
    w2[1, 5:] = 1.0
    out = triangulate_dlt(norm, _extrinsics(R, t), w2)
    np.testing.assert_allclose(out[:5], pts[:5], atol=1e-6)
    assert np.isnan(out[5:]).all()


# --- robust triangulation ---------------------------------------------------------------------------


def test_triangulate_robust_exact_uses_all_views():
    K, dist, R, t = four_cameras(DIST)
    pts = random_points(30, seed=7)
    pix, _, _ = ref_project(pts, K, dist, R, t)
    tri = triangulate_robust(pix, np.ones((4, 30)), K, dist, R, t)
    assert isinstance(tri, Triangulation)
    assert tri.points.shape == (30, 3) and tri.views.shape == (4, 30) and tri.error.shape == (30,)
    np.testing.assert_allclose(tri.points, pts, atol=1e-6)
    assert tri.views.all() and tri.valid.all()
    assert tri.error.max() < 1e-4


def test_triangulate_robust_rejects_outlier_view():
    K, dist, R, t = four_cameras(DIST)
    n = 20
    pts = random_points(n, seed=8)
    pix, _, _ = ref_project(pts, K, dist, R, t)
    bad_cam = np.arange(n) % 4  # point i has its camera (i mod 4) shifted ...
    corrupt = np.arange(n) < 12  # ... for the first 12 points only
    for i in np.flatnonzero(corrupt):
        pix[bad_cam[i], i, 0] += 200.0
    tri = triangulate_robust(pix, np.ones((4, n)), K, dist, R, t)
    expected_views = np.ones((4, n), dtype=bool)
    expected_views[bad_cam[corrupt], np.flatnonzero(corrupt)] = False
    np.testing.assert_array_equal(tri.views, expected_views)
    assert tri.valid.all()
    assert np.linalg.norm(tri.points - pts, axis=-1).max() < 0.01
    assert tri.error.max() < 0.5  # mean reprojection error over the kept (exact) views, px


def test_triangulate_robust_outlier_kept_when_threshold_is_loose():
    # with max_error above the outlier's residuals, the 4-view subset wins (largest subset first)
    K, dist, R, t = four_cameras()
    pts = random_points(5, seed=9)
    pix, _, _ = ref_project(pts, K, dist, R, t)
    pix[1, :, 1] += 200.0
    tri = triangulate_robust(pix, np.ones((4, 5)), K, dist, R, t, max_error=np.inf)
    assert tri.views.all()
    assert tri.error.min() > 1.0


def test_triangulate_robust_ignores_unconfident_views():
    K, dist, R, t = four_cameras(DIST)
    n = 8
    pts = random_points(n, seed=10)
    pix, _, _ = ref_project(pts, K, dist, R, t)
    conf = np.full((4, n), 0.9)
    conf[2] = 0.29  # exact pixels, but under conf_threshold=0.3: never used
    conf[0, :4] = 0.3  # at the threshold: usable
    tri = triangulate_robust(pix, conf, K, dist, R, t, conf_threshold=0.3)
    assert not tri.views[2].any()
    assert tri.views[[0, 1, 3]].all()
    np.testing.assert_allclose(tri.points, pts, atol=1e-6)
    # the unconfident view's pixels do not matter at all
    pix2 = pix.copy()
    pix2[2] += 500.0
    tri2 = triangulate_robust(pix2, conf, K, dist, R, t, conf_threshold=0.3)
    np.testing.assert_allclose(tri2.points, tri.points, atol=1e-9)
    # NaN confidence counts as 0
    conf3 = conf.copy()
    conf3[2] = np.nan
    tri3 = triangulate_robust(pix2, conf3, K, dist, R, t)
    assert not tri3.views[2].any() and tri3.valid.all()


def test_triangulate_robust_zero_confidence_view_is_never_used():
    """conf_threshold=0 (as estimate_frame_offsets calls it) must not make a view with no
    detection (zeros, confidence 0: no weight in the solve) count as used, nor add its error."""
    K, dist, R, t = four_cameras()
    n = 5
    pts = random_points(n, seed=12)
    pix, _, _ = ref_project(pts, K, dist, R, t)
    conf = np.full((4, n), 0.9)
    pix[1], conf[1] = 0.0, 0.0  # camera 1 detected nothing
    tri = triangulate_robust(pix, conf, K, dist, R, t, conf_threshold=0.0, max_error=np.inf)
    assert not tri.views[1].any() and tri.views[[0, 2, 3]].all()
    np.testing.assert_allclose(tri.points, pts, atol=1e-6)
    np.testing.assert_allclose(tri.error, 0.0, atol=1e-6)
    # all views required: a point a camera did not see cannot be triangulated
    tri4 = triangulate_robust(pix, conf, K, dist, R, t, 4, conf_threshold=0.0, max_error=np.inf)
    assert not tri4.valid.any()


def test_triangulate_robust_single_view_is_invalid():
    K, dist, R, t = four_cameras()
    n = 6
    pts = random_points(n, seed=11)
    pix, _, _ = ref_project(pts, K, dist, R, t)
    conf = np.ones((4, n))
    conf[1:, :3] = 0.0  # points 0-2: only camera 1 is confident
    tri = triangulate_robust(pix, conf, K, dist, R, t)
    assert np.isnan(tri.points[:3]).all()
    assert np.isnan(tri.error[:3]).all()
    np.testing.assert_array_equal(tri.valid, [False, False, False, True, True, True])
    assert not tri.views[:, :3].any()
    np.testing.assert_allclose(tri.points[3:], pts[3:], atol=1e-6)


def test_triangulate_robust_min_views():
    K, dist, R, t = four_cameras()
    n = 4
    pts = random_points(n, seed=12)
    pix, _, _ = ref_project(pts, K, dist, R, t)
    conf = np.ones((4, n))
    conf[:2, 0] = 0.0  # point 0: two confident views
    conf[0, 1] = 0.0  # point 1: three
    tri = triangulate_robust(pix, conf, K, dist, R, t, min_views=3)
    np.testing.assert_array_equal(tri.valid, [False, True, True, True])
    np.testing.assert_array_equal(tri.views.sum(0), [0, 3, 4, 4])
    tri = triangulate_robust(pix, conf, K, dist, R, t, min_views=4)
    np.testing.assert_array_equal(tri.valid, [False, False, True, True])


def test_triangulate_robust_rejects_views_with_the_point_behind():
    # a point behind camera 2 (beyond it, seen from the origin) but in front of the others: its
    # "pixels" in camera 2 satisfy the linear equations exactly (x = X/Z holds for Z < 0 too), so
    # only the in-front check can drop that view
    K, dist, R, t = four_cameras()
    c1 = -R[1].T @ t[1]
    pts = np.stack([1.25 * c1, np.zeros(3)])
    _, norm, depth = ref_project(pts, K, dist, R, t)
    assert depth[1, 0] < 0 and (np.delete(depth[:, 0], 1) > 0).all()
    pix = np.einsum("cij,cnj->cni", K[:, :2, :2], norm) + K[:, None, :2, 2]
    tri = triangulate_robust(pix, np.ones((4, 2)), K, dist, R, t)
    np.testing.assert_array_equal(tri.views[:, 0], [True, False, True, True])
    assert tri.views[:, 1].all()
    np.testing.assert_allclose(tri.points, pts, atol=1e-6)


def test_triangulate_robust_bad_arguments():
    K, dist, R, t = four_cameras()
    pix = np.zeros((4, 5, 2))
    conf = np.ones((4, 5))
    with pytest.raises(ValueError, match="pixels"):
        triangulate_robust(np.zeros((4, 6, 2)), conf, K, dist, R, t)
    with pytest.raises(ValueError, match="pixels"):
        triangulate_robust(np.zeros((4, 5, 3)), conf, K, dist, R, t)
    with pytest.raises(ValueError, match="min_views"):
        triangulate_robust(pix, conf, K, dist, R, t, min_views=1)
    with pytest.raises(ValueError, match="min_views"):
        triangulate_robust(pix, conf, K, dist, R, t, min_views=5)


def test_robust_treats_non_finite_pixels_as_missing_views():
    from key2mesh.geometry.triangulate import triangulate_robust

    K = np.array([[[500.0, 0, 320], [0, 500.0, 240], [0, 0, 1]]] * 3)
    R = np.stack([np.eye(3)] * 3)
    t = np.array(
        [[0.0, 0, 4], [-1.0, 0, 4], [1.0, 0, 4]]
    )  # three cameras side by side, looking along +z
    X = np.array([[0.1, -0.2, 0.3]])
    cam = X[None] + t[:, None]
    pix = 500.0 * cam[..., :2] / cam[..., 2:3] + np.array([320.0, 240.0])
    pix[2, 0] = np.nan
    conf = np.ones((3, 1))
    tri = triangulate_robust(pix, conf, K, np.zeros((3, 4)), R, t)
    assert np.allclose(tri.points, X, atol=1e-6) and tri.views[:, 0].tolist() == [True, True, False]
