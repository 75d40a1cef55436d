import pytest
import torch

from key2mesh.eval.metrics import (
    PROTOCOLS,
    center_on_pelvis,
    eval14,
    mpjpe,
    pa_mpjpe,
    procrustes_align,
    pve,
)
from key2mesh.geometry.rotations import axis_angle_to_matrix


def test_procrustes_recovers_known_similarity():
    torch.manual_seed(0)
    x = torch.randn(3, 14, 3, dtype=torch.float64)
    r = axis_angle_to_matrix(torch.randn(3, 3, dtype=torch.float64))
    s = torch.tensor([0.5, 1.0, 2.3], dtype=torch.float64)
    t = torch.randn(3, 3, dtype=torch.float64)
    y = s[:, None, None] * x @ r.transpose(-1, -2) + t[:, None]
    assert torch.allclose(procrustes_align(x, y), y, atol=1e-5)
    assert pa_mpjpe(x, y).max() < 1e-5


def test_procrustes_is_reflection_safe():
    torch.manual_seed(1)
    x = torch.randn(1, 10, 3, dtype=torch.float64)
    mirrored = x * torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)
    aligned = procrustes_align(x, mirrored)
    # the implied transform is a proper rotation, so a chiral point cloud cannot be matched exactly
    r = torch.linalg.lstsq(x[0] - x[0].mean(0), aligned[0] - aligned[0].mean(0)).solution
    assert torch.det(r) > 0
    assert pa_mpjpe(x, mirrored).item() > 1.0


def test_identical_inputs_zero_and_constant_offset():
    j = torch.randn(2, 17, 3)
    assert pa_mpjpe(j, j).max() < 1e-3
    off = j + torch.tensor([0.01, 0.0, 0.0])
    assert torch.allclose(mpjpe(off, j), torch.full((2,), 10.0), atol=1e-3)  # 10 mm without alignment
    a, b = center_on_pelvis(off, "h36m17", "midhip"), center_on_pelvis(j, "h36m17", "midhip")
    assert mpjpe(a, b).max() < 1e-3  # 0 after pelvis alignment


def test_midhip_vs_h36m_root_hand_computed():
    # H36M-17: 0 pelvis, 1 right hip, 4 left hip. GT pelvis at origin, hips at ±0.1 x.
    gt = torch.zeros(1, 17, 3)
    gt[0, 1, 0], gt[0, 4, 0] = -0.1, 0.1
    pred = gt.clone()
    pred[0, 0, 1] = 0.05  # prediction's root joint 5 cm higher, everything else identical
    root = mpjpe(center_on_pelvis(pred, "h36m17", "h36m_root"), center_on_pelvis(gt, "h36m17", "h36m_root"))
    mid = mpjpe(center_on_pelvis(pred, "h36m17", "midhip"), center_on_pelvis(gt, "h36m17", "midhip"))
    # root-centred: the 16 other joints all move 5 cm → 16·50/17 mm; mid-hip: only the root is off → 50/17
    assert abs(root.item() - 16 * 50 / 17) < 1e-3
    assert abs(mid.item() - 50 / 17) < 1e-3


def test_pve_alignment_hand_computed():
    v = torch.zeros(1, 4, 3)
    p = v + torch.tensor([0.0, 0.02, 0.0])
    p[0, 0, 0] += 0.04  # one vertex also 4 cm off in x
    assert abs(pve(p, v, "none").item() - (3 * 20 + (20**2 + 40**2) ** 0.5) / 4) < 1e-3
    root_p, root_g = torch.tensor([[0.0, 0.02, 0.0]]), torch.zeros(1, 3)
    assert abs(pve(p, v, "root", root_p, root_g).item() - 40 / 4) < 1e-3
    with pytest.raises(ValueError):
        pve(p, v, "root")


def test_eval14_and_protocols():
    j = torch.arange(17.0).reshape(1, 17, 1).expand(1, 17, 3)
    assert eval14(j)[0, :, 0].tolist() == [6, 5, 4, 1, 2, 3, 16, 15, 14, 11, 12, 13, 8, 10]
    assert PROTOCOLS["key2mesh"].pelvis == "midhip" and PROTOCOLS["spin"].pelvis == "h36m_root"
    assert PROTOCOLS["key2mesh"].pve_align == "none" and PROTOCOLS["spin"].gt_gender == "gendered"
    with pytest.raises(ValueError):
        mpjpe(torch.zeros(1, 3, 3), torch.zeros(1, 4, 3))
