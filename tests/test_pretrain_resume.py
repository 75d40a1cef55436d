"""``key2mesh pretrain --resume`` continues the same run or refuses; a new run never silently
replaces one (``--overwrite``); torchrun (DDP) cut-and-resume equals an uninterrupted run."""

import dataclasses
import logging
import os
import shutil
import subprocess
import sys

import pytest
import torch

from helpers.tiny_training import tiny_pretrain_config as _cfg
from key2mesh.data.cache import PoseBank
from key2mesh.data.synth import SynthConfig
from key2mesh.errors import Key2MeshError
from key2mesh.geometry.camera import VirtualCamera
from key2mesh.model.checkpoint import load_checkpoint
from key2mesh.train.losses import PretrainWeights
from key2mesh.train.pretrain import run_pretrain


def _cut(bank_path, out, **kw):
    """A 6-step run "killed" after 3 steps (its last.pt holds step 3)."""
    run_pretrain(_cfg(bank_path, out, stop_after=3, **kw), progress=False)
    assert load_checkpoint(out / "last.pt").step == 3


@pytest.mark.parametrize(
    "change, named",
    [
        (
            dict(
                synth=SynthConfig(noise_profile="strong"),
                weights=PretrainWeights(kp2d=100.0),
                camera=VirtualCamera(focal=5000.0),
            ),
            [
                "synth.noise_profile 'none' → 'strong'",
                "weights.kp2d 50.0 → 100.0",
                "camera.focal 256.0 → 5000.0",
            ],
        ),
        (dict(amp_cpu=True, val_size=64), ["amp_cpu False → True", "val_size 32 → 64"]),
    ],
)
def test_resume_refuses_changed_options(bank_path, tmp_path, change, named):
    """Options that change the training stream, the loss or the validation set must match
    the checkpoint's: one error naming each differing option with its old and new value."""
    _cut(bank_path, tmp_path / "r")
    with pytest.raises(Key2MeshError) as err:
        cfg = dataclasses.replace(_cfg(bank_path, tmp_path / "r"), **change)
        run_pretrain(cfg, resume=True, progress=False)
    msg = str(err.value)
    assert "\n" not in msg and "--resume" in msg
    for text in named:
        assert text in msg, msg
    assert load_checkpoint(tmp_path / "r" / "last.pt").step == 3  # untouched


def test_resume_compares_the_cache_by_content(bank_path, tmp_path, caplog):
    """Another bank is refused; the same bank under another path resumes exactly; a checkpoint
    without a stored fingerprint (older versions) resumes with a warning."""
    _cut(bank_path, tmp_path / "r")
    bank = PoseBank.load(bank_path)
    other = PoseBank(
        bank.rotmats[::-1].copy(),
        bank.clip_index,
        bank.clip_names,
        bank.clip_sources,
        bank.shapes,
        bank.body,
    ).save(tmp_path / "other.npz")  # same size and clips, other poses
    with pytest.raises(Key2MeshError, match=r"cache: .*other.npz is another training cache"):
        run_pretrain(_cfg(other, tmp_path / "r"), resume=True, progress=False)
    moved = tmp_path / "moved" / "bank.npz"
    moved.parent.mkdir()
    shutil.copy(bank_path, moved)
    run_pretrain(_cfg(moved, tmp_path / "r"), resume=True, progress=False)
    run_pretrain(_cfg(bank_path, tmp_path / "full"), progress=False)
    a = load_checkpoint(tmp_path / "full" / "last.pt").model
    b = load_checkpoint(tmp_path / "r" / "last.pt").model
    assert all(torch.equal(a[k], b[k]) for k in a)
    # an old checkpoint: no fingerprint stored → warned, resumed
    _cut(bank_path, tmp_path / "old")
    raw = torch.load(tmp_path / "old" / "last.pt", weights_only=False)
    assert "cache_fingerprint" in raw
    del raw["cache_fingerprint"]
    torch.save(raw, tmp_path / "old" / "last.pt")
    with caplog.at_level(logging.WARNING):
        res = run_pretrain(_cfg(other, tmp_path / "old"), resume=True, progress=False)
    assert res["step"] == 6
    assert any("fingerprint" in r.getMessage() for r in caplog.records)


def test_new_run_refuses_a_folder_with_a_run(bank_path, tmp_path, capsys):
    """Without --resume a folder holding last.pt is refused (one line); --overwrite starts over."""
    from key2mesh.cli import main

    out = tmp_path / "o"
    _cut(bank_path, out)
    before = (out / "last.pt").read_bytes()
    with pytest.raises(Key2MeshError, match=r"already holds a run .*--resume.*--overwrite"):
        run_pretrain(_cfg(bank_path, out), progress=False)
    assert (out / "last.pt").read_bytes() == before
    sets = ["batch_size=16", "val_size=32", "model.hidden=64", "pose_augment=false"]
    argv = ["pretrain", "--cache", str(bank_path), "--out", str(out), "--steps", "6"]
    argv += ["--threads", "1", "--device", "cpu", "--val-every", "3"]
    argv += [x for s in sets for x in ("--set", s)]
    assert main(argv) == 2
    (line,) = [ln for ln in capsys.readouterr().err.splitlines() if "error:" in ln]
    assert "last.pt" in line and "--overwrite" in line
    assert (out / "last.pt").read_bytes() == before
    assert main([*argv, "--overwrite"]) == 0
    assert load_checkpoint(out / "last.pt").step == 6
    run_pretrain(_cfg(bank_path, tmp_path / "fresh"), progress=False)
    a = load_checkpoint(tmp_path / "fresh" / "last.pt").model
    b = load_checkpoint(out / "last.pt").model
    assert all(torch.equal(a[k], b[k]) for k in a)  # started over from scratch


def _torchrun(bank_path, out, *extra):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    cmd += ["-m", "key2mesh.cli", "pretrain", "--cache", str(bank_path), "--out", str(out)]
    cmd += ["--steps", "6", "--val-every", "3", "--device", "cpu", "--threads", "1"]
    cmd += ["--set", "batch_size=16", "--set", "val_size=32", "--set", "model.hidden=64"]
    cmd += ["--no-pose-augment", *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    # one result, rank 0's (the rank that validated): not one per rank, the others' best = inf
    assert res.stdout.count('"best"') == 1 and "Infinity" not in res.stdout, res.stdout


def test_ddp_resume_matches_uninterrupted_run(bank_path, tmp_path):
    """torchrun, 2 processes on gloo: each rank's random streams are saved and restored (rank 0's
    restored into every rank made both draw the same batches: weights off by up to ~5e-3)."""
    _torchrun(bank_path, tmp_path / "full")
    _torchrun(bank_path, tmp_path / "cut", "--stop-after", "3")
    cut = load_checkpoint(tmp_path / "cut" / "last.pt")
    assert cut.step == 3
    _torchrun(bank_path, tmp_path / "cut", "--resume")
    a = load_checkpoint(tmp_path / "full" / "last.pt").model
    b = load_checkpoint(tmp_path / "cut" / "last.pt").model
    assert load_checkpoint(tmp_path / "cut" / "last.pt").step == 6
    assert all(torch.equal(a[k], b[k]) for k in a), max(
        float((a[k].float() - b[k].float()).abs().max()) for k in a
    )
    states = cut.extra["rng"]["ranks"]  # one state per rank
    assert len(states) == 2 and not torch.equal(states[0]["gen"], states[1]["gen"])


def test_restore_takes_its_own_ranks_streams(monkeypatch):
    """Unit check of the restore rule: rank r takes state r; a single state (old checkpoint or
    single process) goes to rank 0, and another rank gets a stream of its own, not rank 0's."""
    from key2mesh.train.pretrain import _rank_rng_state

    states = [{"gen": torch.tensor([i], dtype=torch.uint8)} for i in range(2)]
    rng = {**states[0], "ranks": states}
    assert _rank_rng_state(rng, rank=1, world_size=2) is states[1]
    assert _rank_rng_state(rng, rank=0, world_size=2) is states[0]
    old = states[0]
    assert _rank_rng_state(old, rank=0, world_size=2) is states[0]
    assert _rank_rng_state(old, rank=1, world_size=2) is None
    assert _rank_rng_state(old, rank=0, world_size=1) is states[0]


@pytest.mark.parametrize("completed", [True, False])
def test_finish_distributed_leaves_no_process_group(tmp_path, completed):
    """A rank leaves the job by destroying its process group (a rank exiting with Gloo's group
    still up aborted at interpreter exit in ~1 of 3 DDP runs), after a barrier only when the run
    completed (a rank that failed must not wait for the others)."""
    import torch.distributed as dist

    from key2mesh.train.common import DistInfo, finish_distributed

    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        finish_distributed(DistInfo(0, 2, 0), completed)
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    finish_distributed(DistInfo(0, 2, 0), completed)  # nothing left to leave: no error


def test_resume_refuses_a_checkpoint_that_holds_weights_only(bank_path, tmp_path):
    """--resume in a folder whose last.pt is an exported (slim) copy or an adapted model: one
    Key2MeshError naming the file (before: KeyError 'optimizer', a traceback)."""
    from key2mesh.model.checkpoint import atomic_save, slim_checkpoint

    _cut(bank_path, tmp_path / "r")
    ck = load_checkpoint(tmp_path / "r" / "last.pt")
    for name in ("slim", "ad"):
        (tmp_path / name).mkdir()
    atomic_save(slim_checkpoint(ck, half=False), tmp_path / "slim" / "last.pt")
    with pytest.raises(Key2MeshError, match=r"slim.last\.pt is not a pre-training .*no optimizer"):
        run_pretrain(_cfg(bank_path, tmp_path / "slim"), resume=True, progress=False)
    adapted = {**ck.to_dict(), "stage": "adapt"}
    for key in ("optimizer", "rng", "scheduler"):
        adapted.pop(key, None)
    atomic_save(adapted, tmp_path / "ad" / "last.pt")
    with pytest.raises(Key2MeshError, match=r"ad.last\.pt is not a pre-training .*stage 'adapt'"):
        run_pretrain(_cfg(bank_path, tmp_path / "ad"), resume=True, progress=False)


@pytest.mark.parametrize("where", ["setup", "restore"])
def test_a_rank_that_fails_before_training_leaves_the_job(bank_path, tmp_path, monkeypatch, where):
    """A rank whose set-up fails (a missing cache) or whose --resume is refused also destroys
    its process group (it stayed up: the SIGABRT at exit of ae6f5f3, only around the loop)."""
    import torch.distributed as dist

    from key2mesh.train import pretrain
    from key2mesh.train.common import DistInfo

    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    monkeypatch.setattr(pretrain, "init_distributed", lambda device: DistInfo(0, 2, 0))
    try:
        if where == "setup":
            cfg = _cfg(tmp_path / "missing.npz", tmp_path / "r")
        else:
            monkeypatch.setattr(pretrain, "_restore", _refuse)
            cfg = _cfg(bank_path, tmp_path / "r")
        with pytest.raises(Key2MeshError):
            run_pretrain(cfg, progress=False)
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _refuse(run, resume):
    raise Key2MeshError("--resume refused")


def test_each_rank_takes_its_own_gpu(caplog):
    """Under torchrun on CUDA each rank trains on cuda:LOCAL_RANK; an explicit ``--device
    cuda:1`` put every rank on GPU 1 (DDP expects one GPU per rank). CPU and single-process
    runs keep what was asked."""
    import logging

    from key2mesh.train.common import DistInfo, rank_device

    cuda1 = torch.device("cuda", 1)
    assert rank_device(cuda1, DistInfo()) == cuda1
    assert rank_device(torch.device("cpu"), DistInfo(1, 2, 1)) == torch.device("cpu")
    assert rank_device(torch.device("cuda"), DistInfo(3, 4, 1)) == torch.device("cuda", 1)
    with caplog.at_level(logging.WARNING, logger="key2mesh.train.common"):
        assert rank_device(cuda1, DistInfo(0, 2, 0)) == torch.device("cuda", 0)
    assert "each rank uses its own GPU" in caplog.text
