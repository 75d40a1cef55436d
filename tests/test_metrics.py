import dataclasses

import pytest
import torch

from key2mesh.eval.metrics import (
    EVAL14_NAMES,
    PROTOCOLS,
    Protocol,
    center_on_pelvis,
    compute_metrics,
    eval14,
    mpjpe,
    pa_mpjpe,
    pelvis_of,
    per_sample_metrics,
    procrustes_align,
    pve,
)
from key2mesh.geometry.rotations import axis_angle_to_matrix


def _umeyama(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Independent weighted Umeyama (float64, one sample at a time) for cross-checking."""
    w = w / w.sum()
    mx, my = (w[:, None] * x).sum(0), (w[:, None] * y).sum(0)
    xc, yc = x - mx, y - my
    cov = (w[:, None] * yc).T @ xc
    u, d, vt = torch.linalg.svd(cov)
    sign = torch.ones(3, dtype=x.dtype)
    sign[2] = torch.sign(torch.det(u @ vt))
    r = u @ torch.diag(sign) @ vt
    s = (d * sign).sum() / (w * xc.square().sum(-1)).sum()
    return s * xc @ r.T + my


def test_procrustes_recovers_known_similarity():
    torch.manual_seed(0)
    x = torch.randn(4, 14, 3, dtype=torch.float64)
    r = axis_angle_to_matrix(torch.randn(4, 3, dtype=torch.float64))
    s = torch.tensor([0.5, 1.0, 2.3, 0.01], dtype=torch.float64)
    t = torch.randn(4, 3, dtype=torch.float64)
    y = s[:, None, None] * x @ r.transpose(-1, -2) + t[:, None]
    aligned = procrustes_align(x, y)
    assert (aligned - y).abs().max() < 1e-5
    assert pa_mpjpe(x, y).max() < 1e-5
    # the implied linear map is exactly s·R
    xc, ac = x - x.mean(1, keepdim=True), aligned - aligned.mean(1, keepdim=True)
    m = torch.linalg.lstsq(xc, ac).solution.transpose(-1, -2)
    assert torch.allclose(m, s[:, None, None] * r, atol=1e-8)


def test_procrustes_matches_independent_weighted_umeyama():
    torch.manual_seed(3)
    x = torch.randn(3, 9, 3, dtype=torch.float64)
    y = torch.randn(3, 9, 3, dtype=torch.float64)  # no exact solution: a real least-squares fit
    w = torch.rand(3, 9, dtype=torch.float64) + 0.1
    for weights in (None, w):
        got = procrustes_align(x, y, weights)
        ww = torch.ones(3, 9, dtype=torch.float64) if weights is None else w
        ref = torch.stack([_umeyama(x[i], y[i], ww[i]) for i in range(3)])
        assert torch.allclose(got, ref, atol=1e-9)
    # weights change the answer; a zero weight ignores that point entirely
    assert not torch.allclose(procrustes_align(x, y, w), procrustes_align(x, y), atol=1e-3)
    w0 = torch.ones(9, dtype=torch.float64)
    w0[0] = 0
    y2 = y.clone()
    y2[:, 0] += 100.0
    assert torch.allclose(
        procrustes_align(x, y, w0)[:, 1:], procrustes_align(x, y2, w0)[:, 1:], atol=1e-9
    )


def test_procrustes_refuses_weights_that_define_no_fit():
    """A sample whose weights are all 0 had a NaN alignment (0 / 0); a negative weight turned
    the least-squares fit into a meaningless one. Both are refused."""
    x, y = torch.randn(2, 14, 3), torch.randn(2, 14, 3)
    w = torch.ones(2, 14)
    w[1] = 0
    with pytest.raises(ValueError, match="not all zero"):
        pa_mpjpe(x, y, w)
    with pytest.raises(ValueError, match="non-negative"):
        procrustes_align(x, y, torch.tensor([-1.0] + [1.0] * 13))
    w[1, 0] = 1.0  # one weighted point: a fit exists (the point itself)
    assert torch.isfinite(pa_mpjpe(x, y, w)).all()


def test_procrustes_is_reflection_safe():
    torch.manual_seed(1)
    x = torch.randn(2, 10, 3, dtype=torch.float64)
    mirrored = x * torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)
    aligned = procrustes_align(x, mirrored)
    xc, ac = x - x.mean(1, keepdim=True), aligned - aligned.mean(1, keepdim=True)
    m = torch.linalg.lstsq(xc, ac).solution  # aligned = x @ m: m = s·Rᵀ
    scale = torch.linalg.det(m).abs() ** (1 / 3)
    rot = m / scale[:, None, None]
    assert torch.allclose(
        rot @ rot.transpose(-1, -2), torch.eye(3, dtype=torch.float64).expand(2, 3, 3), atol=1e-9
    )
    assert (torch.linalg.det(rot) - 1).abs().max() < 1e-9  # a proper rotation, not the mirror
    err = pa_mpjpe(x, mirrored)
    assert (err > 1.0).all()  # a chiral point cloud cannot be matched by a rotation
    # and no other proper similarity has a smaller sum of squared residuals (what Procrustes minimises)
    sse = (aligned - mirrored).square().sum((1, 2))
    xcen = x - x.mean(1, keepdim=True)
    ycen = mirrored - mirrored.mean(1, keepdim=True)
    for rv in torch.randn(50, 3, dtype=torch.float64):
        y_hat = xcen @ axis_angle_to_matrix(rv).T
        s = ((y_hat * ycen).sum((1, 2)) / y_hat.square().sum((1, 2))).clamp(min=0)
        assert (sse <= (s[:, None, None] * y_hat - ycen).square().sum((1, 2)) + 1e-9).all()


def test_procrustes_collapsed_prediction_is_finite():
    gt = torch.randn(2, 5, 3)
    pred = torch.zeros(2, 5, 3)
    pred[1] = torch.randn(5, 3)
    aligned = procrustes_align(pred, gt)
    assert torch.isfinite(aligned).all()
    assert torch.allclose(aligned[0], gt[0].mean(0).expand(5, 3), atol=1e-6)


def test_identical_inputs_zero_and_constant_offset():
    torch.manual_seed(2)
    j = torch.randn(2, 17, 3)
    assert pa_mpjpe(j, j).max() < 1e-3
    off = j + torch.tensor([0.01, 0.0, 0.0])  # 10 mm everywhere
    assert torch.allclose(mpjpe(off, j), torch.full((2,), 10.0), atol=1e-3)
    for pelvis in ("midhip", "h36m_root"):
        assert mpjpe(off, j, pelvis=pelvis).max() < 1e-3
        a, b = center_on_pelvis(off, "h36m17", pelvis), center_on_pelvis(j, "h36m17", pelvis)
        assert mpjpe(a, b).max() < 1e-3


def test_midhip_vs_h36m_root_hand_computed():
    # H36M-17: 0 pelvis, 1 right hip, 4 left hip. GT pelvis at origin, hips at ±0.1 x.
    gt = torch.zeros(1, 17, 3)
    gt[0, 1, 0], gt[0, 4, 0] = -0.1, 0.1
    pred = gt.clone()
    pred[0, 0, 1] = 0.05  # prediction's root joint 5 cm higher, everything else identical
    assert torch.allclose(pelvis_of(pred, "h36m17", "h36m_root"), torch.tensor([[0.0, 0.05, 0.0]]))
    assert torch.allclose(pelvis_of(pred, "h36m17", "midhip"), torch.zeros(1, 3))
    root = mpjpe(pred, gt, pelvis="h36m_root")
    mid = mpjpe(pred, gt, pelvis="midhip")
    # root-centred: the 16 other joints all move 5 cm → 16·50/17 mm; mid-hip: only the root is off → 50/17
    assert abs(root.item() - 16 * 50 / 17) < 1e-3
    assert abs(mid.item() - 50 / 17) < 1e-3


def test_pelvis_in_other_sets_and_errors():
    j = torch.randn(1, 25, 3)
    names = ("left_hip", "right_hip")
    from key2mesh.keypoints.sets import keypoint_names

    idx = [keypoint_names("openpose_body25").index(n) for n in names]
    assert torch.allclose(pelvis_of(j, "openpose_body25", "midhip"), j[:, idx].mean(1))
    with pytest.raises(ValueError, match="no H36M root"):
        pelvis_of(j, "openpose_body25", "h36m_root")
    with pytest.raises(ValueError, match="unknown pelvis"):
        pelvis_of(j, "openpose_body25", "neck")
    with pytest.raises(ValueError, match=r"\(B, 25, 3\)"):
        pelvis_of(torch.zeros(1, 17, 3), "openpose_body25", "midhip")
    e = torch.randn(2, 14, 3)
    hips = [EVAL14_NAMES.index("left_hip"), EVAL14_NAMES.index("right_hip")]
    assert sorted(hips) == [2, 3]  # LSP order: right hip (2), left hip (3)
    assert torch.allclose(pelvis_of(e, "eval14", "midhip"), e[:, 2:4].mean(1))


def test_pve_alignment_hand_computed():
    v = torch.zeros(1, 4, 3)
    p = v + torch.tensor([0.0, 0.02, 0.0])
    p[0, 0, 0] += 0.04  # one vertex also 4 cm off in x
    assert abs(pve(p, v, "none").item() - (3 * 20 + (20**2 + 40**2) ** 0.5) / 4) < 1e-3
    root_p, root_g = torch.tensor([[0.0, 0.02, 0.0]]), torch.zeros(1, 3)
    assert abs(pve(p, v, "root", root_p, root_g).item() - 40 / 4) < 1e-3
    with pytest.raises(ValueError, match="pred_root and gt_root"):
        pve(p, v, "root")
    with pytest.raises(ValueError, match="unknown PVE alignment"):
        pve(p, v, "procrustes")
    with pytest.raises(ValueError, match=r"\(1, 4, 3\) and \(1, 5, 3\)"):
        pve(p, torch.zeros(1, 5, 3))


def test_eval14_and_protocols():
    j = torch.arange(17.0).reshape(1, 17, 1).expand(1, 17, 3)
    assert eval14(j)[0, :, 0].tolist() == [6, 5, 4, 1, 2, 3, 16, 15, 14, 11, 12, 13, 8, 10]
    assert PROTOCOLS["key2mesh"] == Protocol("neutral", "midhip", "none")
    assert PROTOCOLS["spin"] == Protocol("gendered", "h36m_root", "root")
    with pytest.raises(dataclasses.FrozenInstanceError):
        PROTOCOLS["spin"].pelvis = "midhip"  # type: ignore[misc]
    with pytest.raises(ValueError, match="pelvis"):
        Protocol(pelvis="hip")
    with pytest.raises(ValueError, match=r"\(1, 3, 3\) and \(1, 4, 3\)"):
        mpjpe(torch.zeros(1, 3, 3), torch.zeros(1, 4, 3))


def test_compute_metrics_protocols_hand_computed():
    gt = torch.zeros(1, 17, 3)
    gt[0, 1, 0], gt[0, 4, 0] = -0.1, 0.1
    pred = gt.clone()
    pred[0, 0, 1] = 0.05  # root 5 cm higher; joint 0 is not among the 14 evaluation joints
    verts_g = torch.zeros(1, 3, 3)
    verts_p = verts_g + torch.tensor([0.0, 0.0, 0.03])  # whole mesh 3 cm further away
    k = compute_metrics(pred, gt, verts_p, verts_g, protocol="key2mesh")
    s = compute_metrics(pred, gt, verts_p, verts_g, protocol="spin")
    assert k["count"] == 1
    assert abs(k["mpjpe"]) < 1e-4  # mid-hip centring: the 14 joints coincide
    assert abs(s["mpjpe"] - 50.0) < 1e-3  # root centring shifts all 14 joints by 5 cm
    assert abs(k["pa_mpjpe"]) < 1e-3 and abs(s["pa_mpjpe"]) < 1e-3
    assert abs(k["pve"] - 30.0) < 1e-3  # unaligned
    # SPIN: roots default to the H36M root joints: pred root (0, .05, 0), gt root 0
    assert abs(s["pve"] - (0.05**2 + 0.03**2) ** 0.5 * 1000) < 1e-3
    s_given = compute_metrics(
        pred,
        gt,
        verts_p,
        verts_g,
        "spin",
        pred_root=torch.tensor([[0.0, 0.0, 0.03]]),
        gt_root=torch.zeros(1, 3),
    )
    assert abs(s_given["pve"]) < 1e-4
    per = per_sample_metrics(pred.expand(3, -1, -1), gt.expand(3, -1, -1), protocol="spin")
    assert set(per) == {"mpjpe", "pa_mpjpe"} and per["mpjpe"].shape == (3,)
    # 14-joint input: mid-hip works, the H36M root does not exist
    e = compute_metrics(eval14(pred), eval14(gt), keypoint_set="eval14")
    assert abs(e["mpjpe"]) < 1e-4
    with pytest.raises(ValueError, match="no H36M root"):
        compute_metrics(eval14(pred), eval14(gt), protocol="spin", keypoint_set="eval14")


def test_compute_metrics_rejects_bad_input():
    gt = torch.randn(2, 17, 3)
    bad = gt.clone()
    bad[1, 3, 0] = float("nan")
    with pytest.raises(ValueError, match="pred_joints .* non-finite values in 1 sample"):
        compute_metrics(bad, gt)
    assert (
        torch.isnan(mpjpe(bad, gt))[1] and torch.isfinite(mpjpe(bad, gt))[0]
    )  # per-sample: NaN only there
    with pytest.raises(ValueError, match="both pred_verts and gt_verts"):
        compute_metrics(gt, gt, pred_verts=torch.zeros(2, 5, 3))
    with pytest.raises(ValueError, match="unknown protocol"):
        compute_metrics(gt, gt, protocol="hmr")
    with pytest.raises(ValueError, match="no samples to score"):  # was {'mpjpe': nan, ...}
        compute_metrics(gt[:0], gt[:0])
    with pytest.raises(ValueError, match="'h36m17', 'eval14' or 'eval12'"):
        compute_metrics(
            torch.zeros(2, 25, 3), torch.zeros(2, 25, 3), keypoint_set="openpose_body25"
        )
