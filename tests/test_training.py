"""Pre-training and adaptation loops on a tiny synthetic pose bank (seconds, CPU)."""

import pytest
import torch

from helpers.pose_banks import random_pose_bank
from helpers.tiny_training import tiny_pretrain_config
from key2mesh.data.cache import PoseBank
from key2mesh.errors import Key2MeshError
from key2mesh.model.checkpoint import load_checkpoint, slim_checkpoint
from key2mesh.train.adapt import ABLATIONS, AdaptConfig, run_adapt, synthetic_target
from key2mesh.train.pretrain import run_pretrain

_cfg = tiny_pretrain_config


def test_pose_bank_split_by_clip(bank_path):
    bank = PoseBank.load(bank_path)
    train, val = bank.split(0.25, 0)
    assert len(train) + len(val) == bank.num_frames
    assert not set(bank.clip_index[train]) & set(bank.clip_index[val])  # never split inside a clip
    with pytest.raises(Key2MeshError, match="does not exist"):
        PoseBank.load(bank_path.parent / "missing.npz")


@pytest.mark.parametrize("augment", [False, True])
def test_resume_matches_uninterrupted_run(bank_path, tmp_path, augment):
    full = run_pretrain(_cfg(bank_path, tmp_path / "full", pose_augment=augment), progress=False)
    run_pretrain(
        _cfg(bank_path, tmp_path / "cut", stop_after=4, pose_augment=augment), progress=False
    )  # "killed" after 4 steps
    assert load_checkpoint(tmp_path / "cut" / "last.pt").step == 4
    best_cut = load_checkpoint(tmp_path / "cut" / "best.pt")  # written before the cut
    resumed = run_pretrain(
        _cfg(bank_path, tmp_path / "cut", pose_augment=augment), resume=True, progress=False
    )
    assert resumed["step"] == full["step"] == 6
    a = load_checkpoint(tmp_path / "full" / "last.pt").model
    b = load_checkpoint(tmp_path / "cut" / "last.pt").model
    assert all(torch.equal(a[k], b[k]) for k in a)
    # the checkpoints' configs are the run's, not the (simulated) kill's: a config read back from
    # best.pt reproduces the uninterrupted run (stop_after 4 was recorded in it)
    best_full = load_checkpoint(tmp_path / "full" / "best.pt")
    best_resumed = load_checkpoint(tmp_path / "cut" / "best.pt")
    assert best_cut.config["stop_after"] == 0
    assert {**best_resumed.config, "out_dir": ""} == {**best_full.config, "out_dir": ""}
    import csv

    rows = list(csv.DictReader(open(tmp_path / "full" / "metrics.csv")))
    assert [r["step"] for r in rows] == ["0", "3", "6"]  # baseline row, then every validation
    cut = list(csv.DictReader(open(tmp_path / "cut" / "metrics.csv")))
    assert [r["step"] for r in cut] == ["0", "3", "6"]  # the resumed run adds no duplicate row
    assert (
        rows[0]["baseline_mean_pose_pa_mpjpe"]
        and float(rows[2]["val_pa_mpjpe"]) > 0
        and float(rows[2]["loss"]) > 0
    )


def test_init_starts_from_checkpoint_weights(bank_path, tmp_path):
    """``init`` (fine-tuning) starts from the given weights with a fresh step count; a checkpoint
    of another width is refused with a clear error."""
    run_pretrain(_cfg(bank_path, tmp_path / "a"), progress=False)
    start = load_checkpoint(tmp_path / "a" / "last.pt").model
    # lr so small that 2 Adam steps move no weight by more than 2e-12: the result is the init
    res = run_pretrain(
        _cfg(bank_path, tmp_path / "b", steps=2, lr=1e-12, init=str(tmp_path / "a" / "last.pt")),
        progress=False,
    )
    assert res["step"] == 2
    tuned = load_checkpoint(tmp_path / "b" / "last.pt").model
    floats = [k for k in start if start[k].is_floating_point() and "running" not in k]
    assert all(torch.allclose(tuned[k], start[k], atol=1e-9) for k in floats)
    # (without init the same run would hold its seed's random weights, not run a's trained ones)
    with pytest.raises(Key2MeshError, match="another architecture"):
        run_pretrain(
            _cfg(
                bank_path,
                tmp_path / "d",
                model={"hidden": 32},
                init=str(tmp_path / "a" / "last.pt"),
            ),
            progress=False,
        )


def test_ema_checkpoint_holds_the_average_and_resumes(bank_path, tmp_path):
    """``ema``: the saved network is the weight average (first update copies, then
    avg = d·avg + (1 − d)·w), the raw weights travel for --resume; a bad decay is refused."""
    cfg = dict(steps=2, ema=0.5)
    run_pretrain(_cfg(bank_path, tmp_path / "e", stop_after=1, **cfg), progress=False)
    one = load_checkpoint(tmp_path / "e" / "last.pt")
    w1 = one.extra["raw_model"]
    assert all(torch.equal(one.model[k], w1[k]) for k in w1)  # one update: a copy
    run_pretrain(_cfg(bank_path, tmp_path / "e", **cfg), resume=True, progress=False)
    two = load_checkpoint(tmp_path / "e" / "last.pt")
    w2 = two.extra["raw_model"]
    floats = [k for k in w2 if w2[k].is_floating_point()]
    assert any(not torch.equal(w1[k], w2[k]) for k in floats)  # training moved the weights
    for k in floats:
        torch.testing.assert_close(two.model[k], 0.5 * w1[k] + 0.5 * w2[k])
    full = run_pretrain(_cfg(bank_path, tmp_path / "f", **cfg), progress=False)
    assert full["step"] == 2
    same = load_checkpoint(tmp_path / "f" / "last.pt").model
    assert all(torch.equal(same[k], two.model[k]) for k in same)  # resume = uninterrupted
    shipped = slim_checkpoint(two)
    assert "raw_model" not in shipped and "ema" not in shipped  # only --resume needs them
    with pytest.raises(Key2MeshError, match="ema"):
        run_pretrain(_cfg(bank_path, tmp_path / "g", ema=1.0), progress=False)


def test_init_across_keypoint_sets_moves_input_columns_by_name(bank_path, tmp_path):
    """``init`` from a coco17 checkpoint into a coco23 run: the 17 shared keypoints keep their
    input weights (coco23 lists them first), the 6 foot points start at zero; a direct check of
    the remapping on sets in another order (BODY_25 → COCO-17)."""
    from key2mesh.keypoints.sets import keypoint_names
    from key2mesh.train.pretrain import _remap_input_columns

    run_pretrain(_cfg(bank_path, tmp_path / "c17", keypoint_set="coco17"), progress=False)
    old = load_checkpoint(tmp_path / "c17" / "last.pt").model["extractor.inp.0.weight"]
    run_pretrain(
        _cfg(
            bank_path,
            tmp_path / "c23",
            keypoint_set="coco23",
            steps=2,
            lr=1e-12,
            init=str(tmp_path / "c17" / "last.pt"),
        ),
        progress=False,
    )
    new = load_checkpoint(tmp_path / "c23" / "last.pt").model["extractor.inp.0.weight"]
    assert new.shape == (old.shape[0], 46)
    torch.testing.assert_close(new[:, :34], old, atol=1e-9, rtol=0)
    assert new[:, 34:].abs().max() < 1e-9
    b25, c17 = keypoint_names("openpose_body25"), keypoint_names("coco17")
    w = torch.arange(2 * len(b25), dtype=torch.float32).expand(3, -1)  # column j holds j
    moved = _remap_input_columns(w, "openpose_body25", "coco17", "x.pt").reshape(3, 17, 2)
    for i, name in enumerate(c17):
        j = b25.index(name)
        assert moved[0, i].tolist() == [2.0 * j, 2.0 * j + 1]


def test_amp_cpu_trains_in_bf16(bank_path, tmp_path):
    """``amp_cpu``: the network runs under bf16 autocast on the CPU (other numbers than float32,
    still finite, weights kept in float32)."""
    run_pretrain(_cfg(bank_path, tmp_path / "f32", steps=3), progress=False)
    res = run_pretrain(_cfg(bank_path, tmp_path / "bf16", steps=3, amp_cpu=True), progress=False)
    assert res["step"] == 3
    a = load_checkpoint(tmp_path / "f32" / "last.pt").model
    b = load_checkpoint(tmp_path / "bf16" / "last.pt").model
    assert all(
        b[k].dtype == torch.float32 and torch.isfinite(b[k]).all()
        for k in b
        if b[k].is_floating_point()
    )
    assert any(not torch.equal(a[k], b[k]) for k in a if a[k].is_floating_point())


def test_nan_loss_stops_with_step(bank_path, tmp_path, monkeypatch):
    import key2mesh.train.pretrain as pt

    real, calls = pt.pretrain_loss, {"n": 0}

    def poisoned(*a, **k):
        loss, terms = real(*a, **k)
        calls["n"] += 1
        return (loss * float("nan") if calls["n"] == 5 else loss), terms

    monkeypatch.setattr(pt, "pretrain_loss", poisoned)
    with pytest.raises(Key2MeshError, match="at step 4"):  # 0-based: the 5th step
        run_pretrain(_cfg(bank_path, tmp_path / "nan"), progress=False)
    good = load_checkpoint(tmp_path / "nan" / "last.pt")  # the last good checkpoint is kept
    assert good.step == 3 and all(
        torch.isfinite(v).all() for v in good.model.values() if v.is_floating_point()
    )


def test_exploding_update_is_never_saved(bank_path, tmp_path, monkeypatch):
    """The 6th update (before the step-6 save) sends the weights to ~1e30: stopped at that step,
    before validating or saving; the step-3 checkpoint is kept."""
    real, calls = torch.optim.Adam.step, {"n": 0}

    def exploding(self, *a, **k):
        out = real(self, *a, **k)
        calls["n"] += 1
        if calls["n"] == 6:
            with torch.no_grad():
                for group in self.param_groups:
                    for p in group["params"]:
                        p.mul_(1e30)
        return out

    monkeypatch.setattr(torch.optim.Adam, "step", exploding)
    with pytest.raises(Key2MeshError, match=r"exploded .* at step 5 .*last\.pt is kept"):
        run_pretrain(_cfg(bank_path, tmp_path / "x"), progress=False)
    good = load_checkpoint(tmp_path / "x" / "last.pt")
    assert good.step == 3


def test_lr_1e30_saves_nothing(bank_path, tmp_path):
    with pytest.raises(Key2MeshError, match=r"at step \d+.*no checkpoint was saved"):
        run_pretrain(_cfg(bank_path, tmp_path / "lr", lr=1e30), progress=False)
    assert not (tmp_path / "lr" / "last.pt").exists()
    assert not (tmp_path / "lr" / "best.pt").exists()


def test_stale_temp_files_are_removed_at_start(bank_path, tmp_path):
    import os

    dead = 4_000_000  # above Linux's pid_max: never a running process
    with pytest.raises(ProcessLookupError):
        os.kill(dead, 0)
    out = tmp_path / "t"
    out.mkdir()
    stale = out / f".last.pt.{dead}.0123abcd.tmp.pt"
    stale.write_bytes(b"half a checkpoint")
    live = out / f".last.pt.{os.getppid()}.0123abcd.tmp.pt"  # a running process's: kept
    live.write_bytes(b"being written")
    other = out / "notes.tmp.pt"  # not one of ours
    other.write_bytes(b"x")
    run_pretrain(_cfg(bank_path, out, steps=3), progress=False)
    assert not stale.exists() and live.exists() and other.exists()


def test_training_error_is_printed_on_its_own_line(bank_path, tmp_path, monkeypatch, capsys):
    import key2mesh.train.pretrain as pt
    from key2mesh.cli import main

    real, calls = pt.pretrain_loss, {"n": 0}

    def poisoned(*a, **k):
        loss, terms = real(*a, **k)
        calls["n"] += 1
        return (loss * float("nan") if calls["n"] == 2 else loss), terms

    monkeypatch.setattr(pt, "pretrain_loss", poisoned)
    sets = ["batch_size=16", "val_size=32", "model.hidden=64", "pose_augment=false"]
    argv = ["pretrain", "--cache", str(bank_path), "--out", str(tmp_path / "e"), "--steps", "6"]
    argv += ["--threads", "1", "--device", "cpu"] + [x for s in sets for x in ("--set", s)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "pretrain:" in err  # the progress bar was drawn
    (line,) = [ln for ln in err.splitlines() if "error:" in ln]
    assert line.startswith("key2mesh pretrain: error: loss became nan at step 1"), err


def test_adaptation_freezes_pretrained_parts(bank_path, tmp_path):
    run_pretrain(_cfg(bank_path, tmp_path / "pt"), progress=False)
    src = tmp_path / "pt" / "last.pt"
    ck = load_checkpoint(src)
    target = synthetic_target(str(bank_path), ck, "strong", n=64, split="train")
    val = synthetic_target(str(bank_path), ck, "strong", n=32, split="val")
    cfg = AdaptConfig(
        source=str(src),
        cache=str(bank_path),
        out_dir=str(tmp_path / "ad"),
        steps=4,
        batch_size=16,
        select_every=2,
        weights=ABLATIONS["2d+wd+reg"],
        threads=1,
    )
    result = run_adapt(cfg, target, val, progress=False)
    assert result["selection"] == "pa_mpjpe"
    ad = load_checkpoint(tmp_path / "ad" / "last.pt")
    assert ad.stage == "adapt"
    # the MoCap cache it drew source pairs from is recorded by content, as pre-training does
    from key2mesh.train.state import cache_fingerprint

    assert ad.extra["cache_fingerprint"] == cache_fingerprint(PoseBank.load(bank_path))
    assert ad.extra["cache_fingerprint"] == ck.extra["cache_fingerprint"]
    # the head H_pt is frozen: identical weights; the extractor F was trained: different
    for k, v in ck.model.items():
        if k.startswith("head."):
            assert torch.equal(v, ad.model[k]), k
    assert any(
        not torch.equal(v, ad.model[k])
        for k, v in ck.model.items()
        if k.startswith("extractor.") and v.is_floating_point()
    )
    # the source checkpoint file itself (F_pt) is untouched
    again = load_checkpoint(src).model
    assert all(torch.equal(again[k], ck.model[k]) for k in again)


def test_adaptation_rejects_too_few_detections():
    from key2mesh.train.adapt import prepare_target

    kp = torch.rand(5, 25, 2) * 100
    conf = torch.zeros(5, 25)
    conf[:, :5] = 1.0  # only 5 keypoints each
    with pytest.raises(Key2MeshError, match="only 0 of 5 detections"):
        prepare_target(kp, conf, {"conf_threshold": 0.1})


def test_train_mode_freezes_batchnorm_and_dropout():
    from key2mesh.train.adapt import train_mode

    net = torch.nn.Sequential(
        torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.Dropout(0.5)
    ).eval()
    train_mode(net, "frozen", dropout=True)
    assert net.training and net[2].training and not net[1].training
    train_mode(net, "frozen")  # default: dropout off, so F(x) == F_pt(x) at step 0
    assert net.training and not net[2].training and not net[1].training
    x = torch.randn(32, 4) * 3 + 5  # far from the running statistics (0, 1)
    net(x)
    assert torch.equal(net[1].running_mean, torch.zeros(8)) and torch.equal(
        net[1].running_var, torch.ones(8)
    )
    train_mode(net, "batch")
    assert net[1].training
    net(x)
    assert not torch.equal(net[1].running_mean, torch.zeros(8))
    with pytest.raises(ValueError, match="bn must be"):
        train_mode(net, "sync")


@pytest.mark.parametrize("bn", ["frozen", "batch"])
def test_adaptation_batchnorm_statistics(bank_path, tmp_path, bn):
    run_pretrain(_cfg(bank_path, tmp_path / "pt"), progress=False)
    ck = load_checkpoint(tmp_path / "pt" / "last.pt")
    target = synthetic_target(str(bank_path), ck, "strong", n=64, split="train")
    cfg = AdaptConfig(
        source=str(tmp_path / "pt" / "last.pt"),
        cache=str(bank_path),
        out_dir=str(tmp_path / "ad"),
        steps=3,
        batch_size=16,
        select_every=3,
        weights=ABLATIONS["2d"],
        threads=1,
        bn=bn,
    )
    run_adapt(cfg, target, progress=False)
    ad = load_checkpoint(tmp_path / "ad" / "last.pt").model
    stats = [k for k in ck.model if k.startswith("extractor.") and k.endswith("running_mean")]
    assert stats
    same = [torch.equal(ck.model[k], ad[k]) for k in stats]
    # frozen: F keeps F_pt's normalisation statistics; batch: they drift to the target batches
    assert all(same) if bn == "frozen" else not any(same)


def test_adaptation_without_domain_shift_is_a_no_op(bank_path, tmp_path):
    """L_reg alone (no 2D term, no critic) must not move F: F(x) = F_pt(x) exactly, so its gradient
    is zero. With dropout on in F (the old behaviour) dropout noise alone moved the weights."""
    run_pretrain(_cfg(bank_path, tmp_path / "pt"), progress=False)
    ck = load_checkpoint(tmp_path / "pt" / "last.pt")
    target = synthetic_target(str(bank_path), ck, "none", n=64, split="train")
    from key2mesh.train.losses import AdaptWeights

    for dropout, moved in ((False, False), (True, True)):
        out = tmp_path / f"ad{dropout}"
        cfg = AdaptConfig(
            source=str(tmp_path / "pt" / "last.pt"),
            cache=str(bank_path),
            out_dir=str(out),
            steps=4,
            batch_size=16,
            select_every=4,
            weights=AdaptWeights(0.0, 0.0, 20.0),
            threads=1,
            dropout=dropout,
        )
        run_adapt(cfg, target, progress=False)
        ad = load_checkpoint(out / "last.pt").model
        changed = any(
            not torch.equal(ck.model[k].float(), ad[k].float())
            for k in ck.model
            if k.startswith("extractor.")
        )
        assert changed == moved


def test_adaptation_refuses_the_wasserstein_term_without_critic_steps(tmp_path, capsys):
    """critic_steps 0 with w_wd > 0 trained the extractor against an untrained random critic,
    silently: one error line, before anything is read (the checkpoint here does not exist);
    without the Wasserstein term 0 critic steps are fine."""
    from key2mesh.cli import main
    from key2mesh.train.adapt import check_adapt_options

    argv = ["adapt", "--checkpoint", str(tmp_path / "missing.pt"), "--cache", "x.npz"]
    argv += ["--target", "synthetic:strong", "--out", str(tmp_path / "ad"), "--critic-steps", "0"]
    assert main(argv) == 2
    (line,) = [ln for ln in capsys.readouterr().err.splitlines() if "error:" in ln]
    assert "critic_steps 0 with the Wasserstein term" in line, line
    with pytest.raises(Key2MeshError, match="critic_steps 0"):
        run_adapt(AdaptConfig(critic_steps=0), target=None, progress=False)
    check_adapt_options(AdaptConfig(critic_steps=0, weights=ABLATIONS["2d"]))  # no error


def test_adaptation_refuses_to_run_under_torchrun(tmp_path, capsys, monkeypatch):
    """Under torchrun (WORLD_SIZE > 1) every process ran the whole adaptation into the same --out
    (two results, files raced over); now one error line before anything is read."""
    from key2mesh.cli import main

    monkeypatch.setenv("WORLD_SIZE", "2")
    argv = ["adapt", "--checkpoint", str(tmp_path / "missing.pt"), "--cache", "x.npz"]
    argv += ["--target", "synthetic:strong", "--out", str(tmp_path / "ad")]
    assert main(argv) == 2
    (line,) = [ln for ln in capsys.readouterr().err.splitlines() if "error:" in ln]
    assert "adapt runs in one process (WORLD_SIZE=2" in line, line


def test_adapt_overwrite_never_deletes_the_checkpoint_it_adapts(bank_path, tmp_path, capsys):
    """adapt --checkpoint DIR/last.pt --out DIR --overwrite deleted DIR/last.pt (the model being
    adapted) once the targets were read, then failed on the missing file; now one error line
    before, the file kept byte for byte."""
    from key2mesh.cli import main

    run_pretrain(_cfg(bank_path, tmp_path / "pt", steps=1), progress=False)
    src = tmp_path / "pt" / "last.pt"
    before = src.read_bytes()
    argv = ["adapt", "--checkpoint", str(src), "--cache", str(bank_path), "--steps", "1"]
    argv += ["--target", "synthetic:strong", "--out", str(tmp_path / "pt"), "--overwrite"]
    argv += ["--device", "cpu", "--threads", "1", "--set", "source_samples=16"]
    assert main(argv) == 2
    (line,) = [ln for ln in capsys.readouterr().err.splitlines() if "error:" in ln]
    assert "is the last.pt that --overwrite replaces" in line, line
    assert src.read_bytes() == before and (tmp_path / "pt" / "best.pt").exists()


def test_adapt_accepts_an_smpl_cache_that_names_its_model_folder(tmp_path, monkeypatch):
    """An SMPL cache built with --smpl-dir stores the folder in its body config; the checkpoint
    pre-trained on it loads without it (a checkpoint never chooses the folder), so adapt refused
    the pair as "for body {...model_dir: DIR}, checkpoint for {...model_dir: None}"."""
    import dataclasses

    from helpers.synthetic_smpl import write_synthetic_smpl
    from key2mesh.body import load_body_model

    write_synthetic_smpl(tmp_path / "smpl" / "SMPL_NEUTRAL.pkl")
    body = load_body_model("smpl", model_dir=str(tmp_path / "smpl"))
    monkeypatch.setenv("KEY2MESH_SMPL_DIR", str(tmp_path / "smpl"))
    bank = random_pose_bank(body, clips=4, per_clip=20, shapes=4)
    bank_path = bank.save(tmp_path / "bank.npz")
    assert bank.body["model_dir"] == str(tmp_path / "smpl")
    run_pretrain(
        _cfg(bank_path, tmp_path / "pt", keypoint_set="coco17", steps=1),
        progress=False,
    )
    ck = load_checkpoint(tmp_path / "pt" / "last.pt")
    target = synthetic_target(str(bank_path), ck, "detector", n=32, split="train")
    cfg = AdaptConfig(
        source=str(tmp_path / "pt" / "last.pt"),
        cache=str(bank_path),
        out_dir=str(tmp_path / "ad"),
        steps=1,
        batch_size=16,
        source_samples=8,
        threads=1,
    )
    assert run_adapt(cfg, target, progress=False)["steps"] == 1
    # another body is still refused
    other = dataclasses.replace(bank, body={**bank.body, "gender": "male"})
    cfg.cache = str(other.save(tmp_path / "male.npz"))
    with pytest.raises(Key2MeshError, match="is for body"):
        run_adapt(cfg, target, progress=False)


def test_the_source_guard_synthesises_as_pre_training_did(bank_path, tmp_path):
    """The guard's held-out MoCap samples used the default synthesis but for the noise profile:
    a model trained never seeing its nose (``drop_keypoints``) was checked on inputs with the
    nose visible in 79 % of them (and at the fixed camera distance, not its distance range)."""
    from key2mesh.data.synth import SynthConfig
    from key2mesh.keypoints.sets import keypoint_names
    from key2mesh.train import adapt
    from key2mesh.train.state import source_batch

    synth = SynthConfig(drop_keypoints=["nose"], distance_range=[2.5, 3.0])
    cfg = _cfg(bank_path, tmp_path / "pt", keypoint_set="coco17", steps=1, synth=synth)
    run_pretrain(cfg, progress=False)
    ck = load_checkpoint(tmp_path / "pt" / "last.pt")
    target = synthetic_target(str(bank_path), ck, "none", n=32, split="train")
    acfg = AdaptConfig(
        source=str(tmp_path / "pt" / "last.pt"),
        cache=str(bank_path),
        out_dir=str(tmp_path / "ad"),
        source_samples=256,
        threads=1,
    )
    run = adapt._setup_adapt(acfg, target, None, None)
    adapt._split_target(run)
    adapt._prepare_selection(run)
    nose = keypoint_names("coco17").index("nose")
    assert not source_batch(run, 64).valid[:, nose].any()  # pre-training's pairs
    assert not run.source_check.valid[:, nose].any()  # the guard's samples, the same way
    assert run.source_check.valid[:, nose + 1].any()


def test_init_takes_a_shipped_models_name(bank_path, tmp_path):
    """``pretrain --checkpoint anny-coco17`` (fine-tuning a shipped model, as every other
    command names it) failed with "checkpoint anny-coco17 does not exist"."""
    from key2mesh.model.checkpoint import resolve_checkpoint

    shipped = load_checkpoint(resolve_checkpoint("anny-coco17"))
    cfg = _cfg(bank_path, tmp_path / "ft", keypoint_set="coco17", steps=1, lr=1e-12)
    cfg.model, cfg.init = {"hidden": shipped.model_config.hidden, "dropout": 0.0}, "anny-coco17"
    run_pretrain(cfg, progress=False)
    tuned = load_checkpoint(tmp_path / "ft" / "last.pt").model
    w = "extractor.inp.0.weight"
    torch.testing.assert_close(tuned[w], shipped.model[w].float(), atol=1e-9, rtol=0)


def test_init_with_another_held_out_split_is_warned(anny_body, tmp_path, caplog):
    """Fine-tuning with another --seed draws other held-out clips: all 30 validation frames of
    the new run were training frames of its init, and nothing said so."""
    import numpy as np

    bank = random_pose_bank(anny_body, clips=8, per_clip=30, shapes=16)
    path = bank.save(tmp_path / "bank.npz")
    run_pretrain(_cfg(path, tmp_path / "a", steps=1, seed=0), progress=False)
    init = str(tmp_path / "a" / "last.pt")
    with caplog.at_level("WARNING", logger="key2mesh.train.pretrain"):
        run_pretrain(_cfg(path, tmp_path / "same", steps=1, seed=0, init=init), progress=False)
    assert "other held-out frames" not in caplog.text  # the same split: nothing to say
    with caplog.at_level("WARNING", logger="key2mesh.train.pretrain"):
        run_pretrain(_cfg(path, tmp_path / "b", steps=1, seed=1, init=init), progress=False)
    train_a, _ = bank.split(0.1, 0, ())
    _, val_b = bank.split(0.1, 1, ())
    seen = int(np.isin(val_b, train_a).sum())
    assert seen > 0
    assert f"{seen} of this run's {len(val_b)} validation frames were its training" in caplog.text
