"""Multi-view consistency during adaptation (L_mv): the loss, the view grouping, the batches."""

import csv

import numpy as np
import pytest
import torch

from key2mesh.data.multiview import instant_groups
from key2mesh.errors import Key2MeshError
from key2mesh.geometry.rotations import axis_angle_to_matrix
from key2mesh.train.adapt import TargetSet, group_table, split_holdout
from key2mesh.train.losses import body_frame, multiview_consistency


def test_multiview_consistency_hand_computed():
    kp = torch.zeros(5, 2, 3)
    kp[1, :, 0] = 0.2  # group 0: two views 0.2 m apart on x → each 0.1 m from their mean
    kp[2] = 5.0  # alone in group 4: not counted
    kp[3] = -3.0  # no group: not counted
    kp[4, 0, 1] = 0.3  # group 0, third view: one keypoint 0.3 m off on y
    groups = torch.tensor([0, 0, 4, -1, 0])
    # mean of group 0: keypoint 0 (0.2/3, 0.1, 0), keypoint 1 (0.2/3, 0, 0)
    m0 = torch.tensor([[0.2 / 3, 0.1, 0.0], [0.2 / 3, 0.0, 0.0]])
    members = kp[[0, 1, 4]]
    expected = (members - m0).norm(dim=-1).mean()
    metric = multiview_consistency(kp, groups, scale_free=False)
    assert float(metric) == pytest.approx(float(expected), abs=1e-6)
    assert float(multiview_consistency(kp[[2, 3]], groups[[2, 3]])) == 0.0  # no group of two


def test_multiview_consistency_is_scale_free_by_hand():
    """Two views of one pose, the second twice as large: in metres they disagree (each keypoint
    half the difference from the mean); scale-free they agree, and a view's size gets no gradient
    (L_mv cannot fall by shrinking the body)."""
    pose = torch.tensor([[[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, -2.0, 0.0]]])
    views = torch.cat([pose, 2 * pose])  # centred; sizes sqrt(2.5) and 2 sqrt(2.5)
    groups = torch.tensor([0, 0])
    # in metres: keypoint distances |p - 1.5 p| = 0.5 |p|: mean over views and keypoints
    expected = 0.5 * pose.norm(dim=-1).mean() * (1 + 1) / 2 + 0.0
    metric = multiview_consistency(views, groups, scale_free=False)
    assert float(metric) == pytest.approx(float(expected), abs=1e-6)
    assert float(multiview_consistency(views, groups)) < 1e-5
    # a different pose seen at another size: scale-free distance in metres of the mean size
    other = pose.clone()
    other[0, 2, 1] = 1.0  # one keypoint moved: the second view is no longer a scaled copy
    other = other - other.mean(1, keepdim=True)
    two = torch.cat([pose, 3 * other])
    size = lambda v: float(v.pow(2).sum(-1).mean().sqrt())  # noqa: E731
    a, b = pose[0] / size(pose[0]), other[0] / size(other[0])
    mean_size = (size(pose[0]) + 3 * size(other[0])) / 2
    want = (
        mean_size
        * ((a - (a + b) / 2).norm(dim=-1).mean() + (b - (a + b) / 2).norm(dim=-1).mean())
        / 2
    )
    assert float(multiview_consistency(two, groups)) == pytest.approx(float(want), rel=1e-5)
    scale = torch.ones(2, requires_grad=True)
    multiview_consistency(two * scale[:, None, None], groups).backward()
    assert scale.grad.abs().max() < 1e-6


def test_body_frame_undoes_the_camera():
    g = torch.Generator().manual_seed(0)
    pose = torch.randn(1, 17, 3, generator=g)
    cams = axis_angle_to_matrix(torch.randn(4, 3, generator=g))  # the global orientation per view
    seen = torch.einsum("bij,bkj->bki", cams, pose.expand(4, -1, -1))
    local = body_frame(seen, cams)
    assert torch.allclose(local, local[:1].expand(4, -1, -1), atol=1e-5)
    assert torch.allclose(local.mean(1), torch.zeros(4, 3), atol=1e-6)
    assert float(multiview_consistency(local, torch.zeros(4, dtype=torch.long))) < 1e-5
    wrong = body_frame(seen, cams.flip(0))  # views paired with the wrong cameras disagree
    assert float(multiview_consistency(wrong, torch.zeros(4, dtype=torch.long))) > 0.1


def test_multiview_consistency_gradient_is_finite_for_agreeing_views():
    kp = torch.ones(3, 4, 3, requires_grad=True)
    multiview_consistency(kp, torch.tensor([1, 1, 1])).backward()
    assert torch.isfinite(kp.grad).all()


def test_group_table_and_holdout():
    groups = torch.tensor([3, 3, -1, 7, 3, 9, 7])
    table = group_table(groups)
    # whole groups; 9 alone and the sample without a group (-1) are rows of their own
    assert table.tolist() == [[0, 1, 4], [3, 6, -1], [5, -1, -1], [2, -1, -1]]
    assert group_table(torch.tensor([-1, 0, 1])).shape == (3, 1)
    n = 40
    target = TargetSet(
        torch.randn(n, 17, 2), torch.ones(n, 17), groups=torch.arange(n) // 4
    )  # 10 instants × 4 views
    hold, rest = split_holdout(target, 0.2, torch.Generator().manual_seed(0))
    assert len(hold) == 8 and len(rest) == 32  # 2 whole instants held out
    assert not set(hold.groups.tolist()) & set(rest.groups.tolist())
    plain = TargetSet(torch.randn(n, 17, 2), torch.ones(n, 17))
    hold, rest = split_holdout(plain, 0.1, torch.Generator().manual_seed(0))
    assert len(hold) == 4 and len(rest) == 36 and hold.groups is None


def test_instant_groups_from_frame_names():
    names = ["cam01/frame_00003", "cam01/frame_00004", "cam02/frame_00003", "cam02/frame_00005"]
    assert instant_groups(names).tolist() == [0, 1, 0, 2]
    with pytest.raises(Key2MeshError, match="CAMERA/FRAME"):
        instant_groups(["frame_00003"])


def _write_views(path, names, people=1, k=17):
    rng = np.random.default_rng(0)
    kp = rng.uniform(100, 400, (len(names), people, k, 2)).astype(np.float32)
    np.savez(
        path,
        keypoints=kp,
        confidence=np.ones((len(names), people, k), np.float32),
        keypoint_set=np.array("coco17"),
        frame_names=np.array(names),
    )
    return str(path)


def test_load_targets_groups_views(tmp_path, anny_coco17_checkpoint):
    from key2mesh.commands.adapt import load_targets

    ck = anny_coco17_checkpoint
    one = _write_views(tmp_path / "one.npz", ["c1/f1", "c1/f2", "c2/f1", "c2/f2"])
    t = load_targets([one], ck, "", multiview=True)
    assert t.groups.tolist() == [0, 1, 0, 1]
    assert load_targets([one], ck, "").groups is None
    a = _write_views(tmp_path / "a.npz", ["a0", "a1", "a2"])
    b = _write_views(tmp_path / "b.npz", ["b0", "b1", "b2"])
    assert load_targets([a, b], ck, "", multiview=True).groups.tolist() == [0, 1, 2, 0, 1, 2]
    # b's frame t + 1 shows a's frame t: b's frame 0 is an instant before a's first (ids from 0)
    shifted = load_targets([a, b], ck, "", multiview=True, frame_offsets=[0, 1])
    assert shifted.groups.tolist() == [1, 2, 3, 0, 1, 2]
    with pytest.raises(Key2MeshError, match="one offset per target file"):
        load_targets([a, b], ck, "", multiview=True, frame_offsets=[0])
    crowd = _write_views(tmp_path / "crowd.npz", ["a0", "a1"], people=2)
    with pytest.raises(Key2MeshError, match="one person per frame"):
        load_targets([crowd, a], ck, "", multiview=True)
    with pytest.raises(Key2MeshError, match="no instant seen by two views"):
        load_targets([_write_views(tmp_path / "u.npz", ["c1/f1", "c1/f2"])], ck, "", multiview=True)


def test_load_targets_one_file_uses_stored_instants_and_offsets(tmp_path, anny_coco17_checkpoint):
    """One multi-camera file: camera c2 runs one frame late (its frame_00003 shows the instant of
    c1's frame_00002). The stored instant ids, or --frame-offsets per camera, group the views of
    one instant; the raw frame numbers would not. A per-camera file list refuses a file holding
    several cameras."""
    from key2mesh.commands.adapt import load_targets

    ck = anny_coco17_checkpoint
    names = ["c1/frame_00002", "c1/frame_00003", "c2/frame_00003", "c2/frame_00004"]
    plain = _write_views(tmp_path / "plain.npz", names)
    assert load_targets([plain], ck, "", multiview=True).groups.tolist() == [0, 1, 1, 2]  # raw
    offset = load_targets([plain], ck, "", multiview=True, frame_offsets=[0, 1])
    assert offset.groups.tolist() == [0, 1, 0, 1]
    with pytest.raises(Key2MeshError, match="2 cameras"):
        load_targets([plain], ck, "", multiview=True, frame_offsets=[0, 1, 0])
    stored = tmp_path / "stored.npz"
    np.savez(stored, **dict(np.load(plain)), instants=np.array([5, 6, 5, 6]))
    assert load_targets([str(stored)], ck, "", multiview=True).groups.tolist() == [5, 6, 5, 6]
    single = _write_views(tmp_path / "single.npz", ["f0", "f1"])
    with pytest.raises(Key2MeshError, match="2 cameras"):
        load_targets([plain, single], ck, "", multiview=True)
    with pytest.raises(Key2MeshError, match="needs --multiview"):
        load_targets([plain], ck, "", frame_offsets=[0, 1])


def test_load_targets_views_without_any_detection_is_one_line(tmp_path, anny_coco17_checkpoint):
    """--multiview with camera folders whose frames hold nobody: a ValueError traceback (the
    instant ids' minimum over no detection) instead of the one-line "0 of 0 detections"."""
    from key2mesh.commands.adapt import load_targets

    folders = []
    for cam in ("cam1", "cam2"):
        (tmp_path / cam).mkdir()
        for f in range(3):
            (tmp_path / cam / f"f_{f:012d}_keypoints.json").write_text('{"people": []}')
        folders.append(str(tmp_path / cam))
    with pytest.raises(Key2MeshError, match="only 0 of 0 detections"):
        load_targets(folders, anny_coco17_checkpoint, "", "openpose_body25", multiview=True)


@pytest.fixture(scope="module")
def anny_coco17_checkpoint():
    from key2mesh.model.checkpoint import load_checkpoint, resolve_checkpoint

    return load_checkpoint(resolve_checkpoint("anny-coco17"))


def _pretrained(bank_path, out):
    from helpers.tiny_training import tiny_pretrain_config
    from key2mesh.train.pretrain import run_pretrain

    run_pretrain(tiny_pretrain_config(bank_path, out), progress=False)
    return out / "last.pt"


def test_adaptation_with_multiview_term(bank_path, tmp_path):
    """L_mv alone pulls the views of each instant together: the held-out instants' disagreement
    (label-free ``val_mv_mm``) falls; batches hold whole instants."""
    from key2mesh.model.checkpoint import load_checkpoint
    from key2mesh.train.adapt import AdaptConfig, run_adapt, synthetic_target
    from key2mesh.train.losses import AdaptWeights

    src = _pretrained(bank_path, tmp_path / "pt")
    ck = load_checkpoint(src)
    target = synthetic_target(str(bank_path), ck, "strong", n=96, split="train")
    target.groups = torch.arange(len(target)) // 3  # 32 "instants" of 3 views
    cfg = AdaptConfig(
        source=str(src),
        cache=str(bank_path),
        out_dir=str(tmp_path / "ad"),
        steps=30,
        batch_size=24,
        lr=1e-3,
        select_every=30,
        weights=AdaptWeights(0.0, 0.0, 0.0, mv=10.0),
        holdout_fraction=0.25,
        threads=1,
    )
    result = run_adapt(cfg, target, progress=False)
    assert result["selection"] == "mv_mm"  # label-free: the held-out instants' disagreement
    rows = list(csv.DictReader(open(tmp_path / "ad" / "metrics.csv")))
    before, after = float(rows[0]["val_mv_mm"]), float(rows[-1]["val_mv_mm"])
    assert after < 0.7 * before
    assert float(rows[-1]["lmv"]) > 0
    target.groups = None
    with pytest.raises(Key2MeshError, match="synchronised views"):
        run_adapt(cfg, target, progress=False)


def test_holdout_is_contiguous_blocks():
    """Neighbouring frames are near-duplicates: the label-free holdout takes blocks of 5 % of the
    target in time order, not scattered frames."""
    n = 200
    target = TargetSet(torch.randn(n, 17, 2), torch.ones(n, 17))
    hold, rest = split_holdout(target, 0.1, torch.Generator().manual_seed(3))
    assert len(hold) == 20 and len(rest) == 180
    rows = [int(torch.nonzero((target.inputs == h).all(-1).all(-1))[0]) for h in hold.inputs]
    runs = np.split(np.array(rows), np.nonzero(np.diff(rows) != 1)[0] + 1)
    assert len(runs) <= 2 and all(len(r) % 10 == 0 for r in runs)  # two blocks of 10 (or one of 20)
    grouped = TargetSet(torch.randn(n, 17, 2), torch.ones(n, 17), groups=torch.arange(n) // 4)
    hold, rest = split_holdout(grouped, 0.1, torch.Generator().manual_seed(3))
    ids = sorted(set(hold.groups.tolist()))
    # 50 instants: blocks of round(2.5) = 2 instants, round(0.1 · 50 / 2) = 2 of them, whole
    assert len(ids) == 4 and len(hold) == 16
    assert ids[1] - ids[0] == 1 and ids[3] - ids[2] == 1
    assert not set(ids) & set(rest.groups.tolist())


def test_select_step_guarded_rule():
    from key2mesh.train.adapt import select_step

    start = {"reproj": 0.010, "src_pa_mpjpe": 70.0, "src_mpjpe": 100.0}
    better = {"reproj": 0.009, "src_pa_mpjpe": 70.5, "src_mpjpe": 100.5}
    # the source rise's interval reaches below 0: not significant
    fine = {**better, "src_pa_mpjpe_rise_low": -0.1, "src_mpjpe_rise_low": -0.2}
    assert select_step(start, fine, "reproj")  # -10 % target, no significant source rise
    strict = {"source_tolerance": 0.0}
    assert not select_step(start, {**fine, "src_pa_mpjpe_rise_low": 0.05}, "reproj", **strict)
    assert not select_step(start, {**fine, "src_mpjpe_rise_low": 0.05}, "reproj", **strict)
    # default tolerance 1 % of step 0's error: 0.05 mm of 100 passes, 1.5 mm does not
    assert select_step(start, {**fine, "src_mpjpe_rise_low": 0.05}, "reproj")
    assert not select_step(start, {**fine, "src_mpjpe_rise_low": 1.5}, "reproj")
    assert not select_step(start, {**fine, "reproj": 0.0097}, "reproj")  # gain 3 % < 5 %
    # without intervals (older logs): the point estimate must not rise beyond the tolerance
    assert not select_step(start, better, "reproj", **strict)
    assert select_step(start, better, "reproj")
    assert not select_step(start, {**better, "src_mpjpe": 101.5}, "reproj")
    # no interval (a check of one sample: NaN bounds): the point estimate decides, never "passes"
    nan = {**better, "src_pa_mpjpe_rise_low": float("nan"), "src_mpjpe_rise_low": float("nan")}
    assert select_step(start, nan, "reproj")
    assert not select_step(start, {**nan, "src_mpjpe": 101.5}, "reproj")
    assert not select_step(start, {**nan, "src_mpjpe": float("nan")}, "reproj")
    # the 3D shift from the pre-trained keypoints: mostly along the camera depth is refused
    in_plane = {**fine, "shift_mm": 20.0, "depth_shift_mm": 9.0}  # depth share 0.45
    assert select_step(start, in_plane, "reproj")
    assert not select_step(start, {**in_plane, "depth_shift_mm": 13.4}, "reproj")  # share 0.67
    assert select_step(start, {**in_plane, "depth_shift_mm": 13.4}, "reproj", max_depth_share=0.7)
    assert select_step(start, {**in_plane, "depth_shift_mm": 13.4}, "reproj", rule="target")
    assert select_step(start, {**better, "src_pa_mpjpe": 90.0}, "reproj", rule="target")
    # with views: the disagreement must fall, the re-projection and the body size stay
    mv0 = {"mv_mm": 40.0, "reproj": 0.010}
    agree = {"mv_mm": 30.0, "reproj": 0.0104, "size_change": 0.99, "src_pa_mpjpe_rise_low": 9.0}
    assert select_step(mv0, agree, "mv_mm")  # the source domain is not the guard here
    assert not select_step(mv0, {**agree, "reproj": 0.0106}, "mv_mm")
    assert not select_step(mv0, {**agree, "size_change": 0.97}, "mv_mm")  # shrank 3 %
    assert not select_step(mv0, {**agree, "mv_mm": 39.0}, "mv_mm")
    with pytest.raises(ValueError, match="selection rule"):
        select_step(start, better, "reproj", rule="bogus")


def test_guarded_selection_keeps_the_source_model_when_adaptation_harms(bank_path, tmp_path):
    """A harmful adaptation (re-projection only, a large learning rate, no domain shift): the
    paper's label-free rule picks a later step because the held-out re-projection fell, though
    the source domain's 3D error rose; the guarded rule keeps step 0 and says so."""
    import json

    from key2mesh.model.checkpoint import load_checkpoint
    from key2mesh.train.adapt import AdaptConfig, run_adapt, synthetic_target
    from key2mesh.train.losses import AdaptWeights

    src = _pretrained(bank_path, tmp_path / "pt")
    ck = load_checkpoint(src)
    target = synthetic_target(str(bank_path), ck, "none", n=128, split="train")
    runs = {}
    for rule in ("target", "guarded"):
        cfg = AdaptConfig(
            source=str(src),
            cache=str(bank_path),
            out_dir=str(tmp_path / rule),
            steps=40,
            batch_size=32,
            lr=3e-3,
            select_every=10,
            weights=AdaptWeights(10.0, 0.0, 0.0),
            source_samples=128,
            selection=rule,
            threads=1,
        )
        runs[rule] = run_adapt(cfg, target, progress=False)
    paper, guarded = runs["target"], runs["guarded"]
    assert paper["best"]["step"] > 0  # the re-projection fell...
    assert paper["best"]["src_pa_mpjpe_rise_low"] > 0  # ...the source's 3D error rose significantly
    assert guarded["best"]["step"] == 0 and guarded["kept_source"]
    assert "kept the pre-trained model" in guarded["verdict"]
    saved = json.loads((tmp_path / "guarded" / "summary.json").read_text())
    assert saved["kept_source"] is True and saved["rule"] == "guarded"
    assert load_checkpoint(tmp_path / "guarded" / "best.pt").step == 0


def test_scale_free_multiview_term_does_not_shrink_the_body(bank_path, tmp_path):
    """Synthetic synchronised views with known ground truth (4 random viewpoints of each held-out
    pose), L2D^t + L_mv: in metres with the shape's gradient, L_mv lowers itself by shrinking the
    body; scale-free (the default) the predicted body size (mean limb length) stays put. A large
    learning rate on the tiny test bank, to see the drift in 40 steps; the 2 % criterion on real
    data is measured by benchmarks/adaptation.py."""
    from key2mesh.model.checkpoint import load_checkpoint, resolve_checkpoint
    from key2mesh.train.adapt import AdaptConfig, run_adapt, synthetic_target
    from key2mesh.train.losses import AdaptWeights

    src = resolve_checkpoint("anny-coco17")  # a real model: a tiny one predicts a mean pose
    ck = load_checkpoint(src)
    target = synthetic_target(str(bank_path), ck, "detector", n=128, split="train", views=4)
    assert target.groups.tolist()[:8] == [0, 0, 0, 0, 1, 1, 1, 1]
    sizes = {}
    for scale_free in (False, True):
        cfg = AdaptConfig(
            source=str(src),
            cache=str(bank_path),
            out_dir=str(tmp_path / f"sf{scale_free}"),
            steps=40,
            batch_size=32,
            lr=1e-3,
            select_every=40,
            weights=AdaptWeights(10.0, 0.0, 0.0, mv=50.0),
            mv_scale_free=scale_free,
            mv_shape_anchor=1.0 if scale_free else 0.0,  # the default / the old L_mv
            source_samples=0,
            threads=1,
        )
        run_adapt(cfg, target, progress=False, monitor=target)
        rows = list(csv.DictReader(open(tmp_path / f"sf{scale_free}" / "metrics.csv")))
        sizes[scale_free] = float(rows[-1]["val_mon_size"]) / float(rows[0]["val_mon_size"])
    assert sizes[False] < 0.8  # the metric L_mv shrank the body (measured 0.70)
    assert abs(sizes[True] - 1) < 0.03  # measured 1.02, the truth's size (0.98 before)
