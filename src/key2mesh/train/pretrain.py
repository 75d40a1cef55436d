"""Pre-training on MoCap (paper §Pre-training): synthesised pairs, L_PT, Adam, validation on
held-out clips, atomic checkpoints, exact ``--resume``, optional torchrun DDP and CUDA AMP."""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from tqdm import tqdm

from key2mesh.body import body_model_from_config
from key2mesh.data.cache import DEFAULT_VAL_SUBJECTS, PoseBank, split_options
from key2mesh.data.synth import PairSynthesizer, SynthConfig
from key2mesh.errors import Key2MeshError
from key2mesh.geometry.camera import VirtualCamera
from key2mesh.keypoints.sets import canonical_set_name, num_keypoints
from key2mesh.keypoints.weights import joint_weights
from key2mesh.model.checkpoint import (
    Checkpoint,
    InputNormalization,
    load_checkpoint,
    resolve_checkpoint,
)
from key2mesh.model.network import Key2MeshNet, ModelConfig
from key2mesh.options import DEVICE, SEED, rule
from key2mesh.train.common import (
    DistInfo,
    MetricLogger,
    check_finite,
    check_finite_parameters,
    finish_distributed,
    init_distributed,
    pick_device,
    rank_device,
)
from key2mesh.train.losses import PretrainWeights, pretrain_loss
from key2mesh.train.random import choose
from key2mesh.train.state import TrainState, cache_fingerprint, source_batch, write_checkpoint
from key2mesh.train.validation import keypoint_metrics

log = logging.getLogger(__name__)

# the ModelConfig fields a pre-training config may set (``model.hidden``, ...); the others follow
# from the keypoint set and the body
MODEL_KEYS = (
    "hidden",
    "extractor_blocks",
    "head_blocks",
    "critic_hidden",
    "critic_layers",
    "dropout",
)


@dataclass
class PretrainConfig:
    """All options of ``key2mesh pretrain`` (a JSON/YAML ``--config`` file sets any of them)."""

    cache: str = ""
    out_dir: str = "runs/pretrain"
    keypoint_set: str = "openpose_body25"
    steps: int = field(default=0, metadata=rule(ge=0))  # 0: derive from epochs
    epochs: float = field(default=10.0, metadata=rule(gt=0))
    batch_size: int = field(default=256, metadata=rule(ge=1))
    lr: float = field(default=1e-3, metadata=rule(gt=0))
    # StepLR factor (official / LGD code: 0.8 per epoch); 1 = constant
    lr_gamma: float = field(default=0.8, metadata=rule(gt=0, le=1))
    # steps between LR decays; 0 = one epoch (training frames / batch size)
    lr_step: int = field(default=0, metadata=rule(ge=0))
    weights: PretrainWeights = field(default_factory=PretrainWeights)
    synth: SynthConfig = field(default_factory=SynthConfig)
    camera: VirtualCamera = field(default_factory=VirtualCamera)
    # overrides of ModelConfig (hidden, blocks, dropout)
    model: dict = field(default_factory=dict, metadata=rule(nested=ModelConfig, keys=MODEL_KEYS))
    pose_augment: bool = field(
        default_factory=lambda: _sampler_available()
    )  # PoseSampler on the fly
    val_fraction: float = field(default=0.1, metadata=rule(ge=0, lt=1))
    val_subjects: list[str] = field(
        default_factory=lambda: list(DEFAULT_VAL_SUBJECTS)
    )  # held out whole
    val_every: int = field(default=500, metadata=rule(ge=1))
    val_size: int = field(default=2048, metadata=rule(ge=1))
    seed: int = field(default=0, metadata=rule(SEED))
    device: str = field(default="auto", metadata=rule(DEVICE))
    threads: int = field(default=0, metadata=rule(ge=0))  # 0: torch default
    amp: bool = True  # bf16 autocast on CUDA
    # bf16 autocast on the CPU too: the network's GEMMs ~1.5x faster on CPUs with AVX512-BF16 /
    # AMX (slower on others); the accuracy cost is measured in docs/training.md (variant K)
    amp_cpu: bool = False
    # stop (as if killed) after this many steps of this run; for testing resume
    stop_after: int = field(default=0, metadata=rule(ge=0))
    # start from this checkpoint's network weights (fine-tuning): same keypoint set, body and
    # architecture; the optimizer, LR schedule and step count start fresh. "" = random init.
    init: str = ""
    # exponential moving average of the weights (decay per step, e.g. 0.999; 0 = off): validation,
    # best.pt / last.pt's network and the exported model use the averaged weights; the raw ones
    # are kept in the checkpoint for --resume
    ema: float = field(default=0.0, metadata=rule(ge=0, lt=1))

    @classmethod
    def from_dict(cls, d: dict) -> PretrainConfig:
        d = dict(d)
        sub = {"weights": PretrainWeights, "synth": SynthConfig, "camera": VirtualCamera}
        for key, typ in sub.items():
            if isinstance(d.get(key), dict):
                d[key] = typ(**d[key])
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise Key2MeshError(f"unknown pretrain options: {sorted(unknown)}")
        return cls(**d)

    def to_dict(self) -> dict:
        return asdict(self)


def _sampler_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("key2mesh.data.mocap.sampler") is not None


def _rng_state(gen: torch.Generator) -> dict:
    return {
        "gen": gen.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def _rng_states(run: PretrainState) -> dict:
    """The random streams a checkpoint stores (the run's generator, torch's CPU and CUDA ones,
    the pose sampler's). With several ranks (DDP) every rank's, gathered to all (a collective:
    every rank calls it at the same step): rank 0's at the top level, as older versions wrote,
    and each rank's under ``"ranks"`` (a list indexed by rank)."""
    own = {
        **_rng_state(run.gen),
        "sampler": None if run.sampler is None else run.sampler.generator.get_state(),
    }
    if run.dist.world_size == 1:
        return own
    import torch.distributed as dist

    ranks: list = [None] * run.dist.world_size
    dist.all_gather_object(ranks, own)
    return {**ranks[0], "ranks": ranks}


def _rank_rng_state(rng: dict, rank: int, world_size: int) -> dict | None:
    """The streams rank ``rank`` resumes with from a checkpoint's ``rng``: its own from
    ``rng["ranks"]``; a checkpoint with one state (a single process, or older versions) gives it to
    rank 0, and None to the other ranks (they draw a fresh stream, not a copy of rank 0's)."""
    ranks = rng.get("ranks")
    if ranks is not None:
        return ranks[rank] if rank < len(ranks) else None
    return rng if rank == 0 else None


def _restore_rng(run: PretrainState, rng: dict, path: Path) -> None:
    """Set this rank's random streams from checkpoint ``path``'s ``rng`` (exact --resume when the
    checkpoint holds them and the number of processes is the same; else a warning)."""
    rank, world = run.dist.rank, run.dist.world_size
    saved = len(rng["ranks"]) if rng.get("ranks") is not None else 1
    if saved != world and run.dist.is_main:
        log.warning(
            "--resume: %s holds the random streams of %d process(es), this run has %d: "
            "the batches from here on differ from an uninterrupted run's",
            path,
            saved,
            world,
        )
    state = _rank_rng_state(rng, rank, world)
    if state is None:  # a rank the checkpoint has no streams for: its own, new for this step
        seed = int(np.random.SeedSequence([run.cfg.seed, rank, run.step]).generate_state(1)[0])
        run.gen.manual_seed(seed)
        if run.sampler is not None:
            run.sampler.generator.manual_seed(seed + 17)
        return
    _set_rng_state(run.gen, state)
    if run.sampler is not None and state.get("sampler") is not None:
        run.sampler.generator.set_state(state["sampler"])


def _set_rng_state(gen: torch.Generator, state: dict) -> None:
    gen.set_state(state["gen"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def mean_pose_baseline(bank: PoseBank, train_idx: np.ndarray) -> torch.Tensor:
    """(24,3,3) per-joint chordal mean of the training rotations (the "mean-pose predictor")."""
    import roma

    mean = torch.from_numpy(bank.rotmats[train_idx]).double().mean(0)
    return roma.special_procrustes(mean).float()


@dataclass(kw_only=True)
class PretrainState(TrainState):
    """Everything one pre-training run holds between steps: what both loops hold
    (:class:`~key2mesh.train.state.TrainState`: data, random stream, step, logger), and the
    networks (``net`` the raw weights, ``averaged`` what is validated and saved, ``model`` what
    trains: DDP-wrapped or ``net``), optimiser and schedule, the fixed validation pairs and the
    best validation metrics so far."""

    stage: ClassVar[str] = "pretrain"

    cfg: PretrainConfig
    dist: DistInfo
    bank: PoseBank
    val_sets: dict
    net: Key2MeshNet
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.StepLR
    val: object = (
        None  # the fixed validation pairs (a synthesised batch), pooled over held-out sets
    )
    val_parts: dict = field(default_factory=dict)  # held-out set name → slice of ``val``
    baseline: dict = field(default_factory=dict)  # the mean-pose predictor's validation metrics
    baseline_go: dict = field(default_factory=dict)  # ... with the true global orientation
    best: dict = field(default_factory=lambda: {"pa_mpjpe": float("inf")})
    ema: torch.optim.swa_utils.AveragedModel | None = None
    averaged: torch.nn.Module | None = None
    model: torch.nn.Module | None = None
    amp: bool = False
    cache_fingerprint: dict = field(default_factory=dict)  # :func:`cache_fingerprint` of ``bank``


def run_pretrain(
    cfg: PretrainConfig, resume: bool = False, progress: bool = True, overwrite: bool = False
) -> dict:
    """Train; returns the best validation metrics. Writes ``last.pt``, ``best.pt``,
    ``metrics.csv`` (and TensorBoard logs when available) under ``cfg.out_dir``. A folder that
    already holds a run's checkpoints is continued (``resume``) or started over (``overwrite``:
    its checkpoints are removed once the new run is set up); with neither it is refused."""
    _check_out_dir(Path(cfg.out_dir), resume, overwrite)
    run = _setup(cfg)
    try:
        _validation_pairs(run)
        _restore(run, resume)
        if overwrite and run.dist.is_main:
            for name in _RUN_FILES:
                if (run.out / name).exists():
                    (run.out / name).unlink()
                    log.info("--overwrite: removed %s", run.out / name)
        _start_logging(run)
    except BaseException:  # e.g. a refused --resume: this rank leaves the job cleanly
        finish_distributed(run.dist, completed=False)
        raise
    bar = tqdm(
        total=run.total_steps,
        initial=run.step,
        desc="pretrain",
        disable=not (progress and run.dist.is_main),
        dynamic_ncols=True,
    )
    t0, seen, ran = time.perf_counter(), 0, 0
    metrics: dict = {}
    completed = False
    try:
        while run.step < run.total_steps:
            loss, terms = _train_step(run)
            ran += 1
            stopping = bool(cfg.stop_after) and ran >= cfg.stop_after
            due = run.step % cfg.val_every == 0 or run.step == run.total_steps
            rng: dict = {}
            if due or stopping:
                # before validating and saving: an update that exploded stops here, naming its step
                check_finite_parameters(run.net, run.step - 1, run.out)
                rng = _rng_states(run)  # every rank's random streams (collective under DDP)
            seen += cfg.batch_size
            bar.update(1)
            if run.step % 20 == 0:
                bar.set_postfix(
                    loss=f"{loss.item():.3f}", samples_s=f"{seen / (time.perf_counter() - t0):.0f}"
                )
            if run.dist.is_main and due:
                metrics = _validate_and_save(
                    run, loss, terms, seen / (time.perf_counter() - t0), rng
                )
                bar.write(
                    f"step {run.step}: val {_fmt(metrics)}  (mean-pose predictor: {_fmt(run.baseline)})"
                )
            if stopping:
                if run.dist.is_main:
                    _save(run, "last.pt", metrics, rng)
                break
        completed = True
    finally:  # an error is printed on a line of its own, not after the bar
        bar.close()
        run.logger.close()
        finish_distributed(run.dist, completed)
    return {
        "best": run.best,
        "baseline_mean_pose": run.baseline,
        "baseline_mean_pose_true_orient": run.baseline_go,
        "step": run.step,
        "samples_per_s": seen / max(time.perf_counter() - t0, 1e-9),
    }


_RUN_FILES = ("last.pt", "best.pt")  # a folder holding one of these holds a run


def _check_out_dir(out: Path, resume: bool, overwrite: bool) -> None:
    """A new run never silently replaces another's checkpoints: refused unless ``resume`` or
    ``overwrite`` (not both)."""
    if resume and overwrite:
        raise Key2MeshError(
            "--resume continues the run in --out, --overwrite starts it over: give one of them"
        )
    held = [name for name in _RUN_FILES if (out / name).exists()]
    if held and not (resume or overwrite):
        raise Key2MeshError(
            f"{out} already holds a run ({', '.join(held)}); continue it with --resume, start it "
            "over with --overwrite (replaces its checkpoints and metrics.csv), or choose another --out"
        )


def _check_options(cfg: PretrainConfig) -> None:
    if (
        cfg.batch_size < 1
        or cfg.val_every < 1
        or cfg.val_size < 1
        or cfg.steps < 0
        or not (cfg.lr > 0)
    ):
        raise Key2MeshError(
            "batch_size, val_every and val_size must be ≥ 1, steps ≥ 0 and lr > 0 "
            f"(got {cfg.batch_size}, {cfg.val_every}, {cfg.val_size}, {cfg.steps}, {cfg.lr})"
        )
    if not 0.0 <= cfg.ema < 1.0:
        raise Key2MeshError(f"ema is a decay per step in [0, 1) (0 = off), got {cfg.ema}")


def _setup(cfg: PretrainConfig) -> PretrainState:
    """Device, data, body model, network, optimiser, schedule and random streams (seeded)."""
    cfg.keypoint_set = canonical_set_name(cfg.keypoint_set)
    device = pick_device(cfg.device)
    dist = init_distributed(device)
    device = rank_device(device, dist)
    try:
        return _build(cfg, device, dist)
    except BaseException:  # a rank that fails here leaves the torchrun job too
        finish_distributed(dist, completed=False)
        raise


def _build(cfg: PretrainConfig, device: torch.device, dist: DistInfo) -> PretrainState:
    """:func:`_setup` once the device and the distributed job are known."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    bank = PoseBank.load(cfg.cache)
    body = body_model_from_config(bank.body, device=str(device))
    _check_options(cfg)
    split = split_options(
        cfg.to_dict()
    )  # the one reading of the split options (adapt/evaluate use it too)
    train_idx, _ = bank.split(**split)
    val_sets = bank.validation_sets(**split)
    epoch_steps = max(1, len(train_idx) // cfg.batch_size)
    mcfg = ModelConfig(
        num_keypoints=num_keypoints(cfg.keypoint_set),
        shape_dim=body.shape_dim,
        shape_init=body.default_shape(1)[0].tolist(),
        **cfg.model,
    )
    torch.manual_seed(cfg.seed)
    net = Key2MeshNet(mcfg).to(device)
    # fused Adam (one kernel per tensor instead of ~10 ops): 2.5x faster steps on CPU
    opt = torch.optim.Adam(
        net.parameters(), lr=cfg.lr, fused=torch.device(device).type in ("cpu", "cuda")
    )
    sched = torch.optim.lr_scheduler.StepLR(
        opt, step_size=cfg.lr_step or epoch_steps, gamma=cfg.lr_gamma
    )
    gen = torch.Generator(device="cpu").manual_seed(cfg.seed + 1000 * dist.rank)
    synth = PairSynthesizer(body, cfg.keypoint_set, cfg.camera, cfg.synth)
    sampler = None
    if cfg.pose_augment:
        if not _sampler_available():
            raise Key2MeshError(
                "pose_augment needs key2mesh.data.mocap.sampler, which this version lacks"
            )
        from key2mesh.data.mocap.sampler import PoseSampler

        sampler = PoseSampler(
            bank.rotmats[train_idx], device=device, seed=cfg.seed + 17 + dist.rank
        )
    return PretrainState(
        cfg=cfg,
        out=Path(cfg.out_dir),
        device=device,
        dist=dist,
        bank=bank,
        body=body,
        kset=cfg.keypoint_set,
        body_config=bank.body,
        camera=cfg.camera,
        train_idx=train_idx,
        val_sets=val_sets,
        total_steps=cfg.steps or int(math.ceil(cfg.epochs * epoch_steps)),
        net=net,
        opt=opt,
        sched=sched,
        gen=gen,
        synth=synth,
        sampler=sampler,
        jw=joint_weights(cfg.keypoint_set).to(device),
        rot_all=torch.from_numpy(bank.rotmats),
        shapes_all=torch.from_numpy(bank.shapes),
        normalization=InputNormalization(cfg.synth.conf_threshold, cfg.synth.missing_value, "bbox"),
        amp=(cfg.amp and device.type == "cuda") or (cfg.amp_cpu and device.type == "cpu"),
        cache_fingerprint=cache_fingerprint(bank),
    )


def _validation_pairs(run: PretrainState) -> None:
    """Fixed validation pairs from each held-out set (same augmentations, fixed seed), then
    pooled, and the mean-pose predictor's metrics on them (with and without the true global
    orientation)."""
    cfg, body = run.cfg, run.body
    vgen = torch.Generator().manual_seed(12345)
    vsel = torch.cat([choose(ix, cfg.val_size, vgen) for ix in run.val_sets.values()])
    vshape = run.shapes_all[choose(len(run.shapes_all), len(vsel), vgen)]
    val = run.val = run.synth(run.rot_all[vsel], vshape, vgen)
    run.val_parts = {
        name: slice(i * cfg.val_size, (i + 1) * cfg.val_size) for i, name in enumerate(run.val_sets)
    }
    n_val = len(vsel)
    mean_rot = mean_pose_baseline(run.bank, run.train_idx).to(run.device)
    run.baseline = keypoint_metrics(
        body,
        cfg.keypoint_set,
        mean_rot.expand(n_val, -1, -1, -1).clone(),
        body.default_shape(n_val),
        val.rotmats,
        val.shape,
    )
    # the mean-pose predictor at least gets the global orientation right (an upper bound on its quality)
    base_rot = mean_rot.expand(n_val, -1, -1, -1).clone()
    base_rot[:, 0] = val.rotmats[:, 0]
    run.baseline_go = keypoint_metrics(
        body, cfg.keypoint_set, base_rot, body.default_shape(n_val), val.rotmats, val.shape
    )


def _restore(run: PretrainState, resume: bool) -> None:
    """``--resume`` from ``last.pt`` (weights, optimiser, schedule, step, random streams) or
    ``init`` weights; then the weight average and the (DDP) model that trains."""
    cfg, out, net = run.cfg, run.out, run.net
    state: dict = {}
    if resume and (out / "last.pt").exists():
        ck = load_checkpoint(
            out / "last.pt", expect_body=run.bank.body, expect_keypoint_set=cfg.keypoint_set
        )
        _check_resumable(ck, out / "last.pt")
        _check_resume_config(ck, run, out / "last.pt")
        state = ck.extra
        net.load_state_dict(ck.model)
        run.opt.load_state_dict(state["optimizer"])
        if state.get("scheduler") is not None:
            run.sched.load_state_dict(state["scheduler"])
        run.step, run.best = state["step"], state.get("best", run.best)
        _restore_rng(run, state["rng"], out / "last.pt")
        log.info("resumed from %s at step %d", out / "last.pt", run.step)
    elif resume:
        log.warning("--resume: no %s yet, starting from scratch", out / "last.pt")
    if cfg.init and run.step == 0:
        _check_init_split(run, _init_from(net, cfg.init, run.bank.body, cfg.keypoint_set))
    run.ema = _make_ema(net, cfg.ema)
    if run.ema is not None and run.step > 0:  # resumed: the checkpoint's network is the average
        if "ema" not in state:
            raise Key2MeshError(
                f"--resume: {out / 'last.pt'} was trained without ema; use the same options or a new --out"
            )
        run.ema.load_state_dict(state["ema"])
        net.load_state_dict(state["raw_model"])
    run.averaged = net if run.ema is None else run.ema.module  # validated, saved and exported
    run.model = net
    if run.dist.world_size > 1:
        run.model = torch.nn.parallel.DistributedDataParallel(
            net, device_ids=[run.dist.local_rank] if run.device.type == "cuda" else None
        )


def _start_logging(run: PretrainState) -> None:
    """``metrics.csv``: a resumed run keeps the rows up to its checkpoint's step (the baseline
    row among them); a new one starts with the mean-pose predictor's row."""
    dist, step = run.dist, run.step
    run.logger = MetricLogger(run.out, enabled=dist.is_main, resume_step=step if step > 0 else -1)
    if dist.is_main:
        run.out.mkdir(parents=True, exist_ok=True)
    if dist.is_main and step == 0:
        both = {**run.baseline, **{f"go_{k}": v for k, v in run.baseline_go.items()}}
        run.logger.log(step, {f"baseline_mean_pose_{k}": v for k, v in both.items()})
        log.info(
            "mean-pose predictor on validation: %s (with true global orientation: %s)",
            _fmt(run.baseline),
            _fmt(run.baseline_go),
        )


def _train_step(run: PretrainState) -> tuple[torch.Tensor, dict]:
    """One optimiser step on a freshly synthesised batch; returns (loss, its terms)."""
    cfg, body, device = run.cfg, run.body, run.device
    run.net.train()
    batch = source_batch(run, cfg.batch_size)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=run.amp):
        pred_rot, pred_shape = run.model(batch.inputs)
    pred_rot, pred_shape = pred_rot.float(), pred_shape.float()
    pred_kp = body.forward_keypoints(pred_rot, pred_shape, cfg.keypoint_set)
    loss, terms = pretrain_loss(
        pred_rot,
        pred_shape,
        pred_kp,
        batch.rotmats,
        batch.shape,
        batch.keypoints3d,
        batch.target2d,
        cfg.camera,
        cfg.weights,
        run.jw,
        batch.distance,
    )
    check_finite(loss, run.step, run.out)
    run.opt.zero_grad(set_to_none=True)
    loss.backward()
    run.opt.step()
    run.sched.step()
    if run.ema is not None:
        run.ema.update_parameters(run.net)
    run.step += 1
    return loss, terms


def _validate(run: PretrainState) -> dict:
    """Validation metrics of the averaged network: per held-out set (``{set}_{metric}``) and their
    mean (the selection metric: clips of the free sources, whole subjects)."""
    val = run.val
    run.averaged.eval()
    with torch.no_grad():
        vr, vs = run.averaged(val.inputs)
    parts = {
        name: keypoint_metrics(
            run.body, run.cfg.keypoint_set, vr[sl], vs[sl], val.rotmats[sl], val.shape[sl]
        )
        for name, sl in run.val_parts.items()
    }
    metrics = {
        k: sum(p[k] for p in parts.values()) / len(parts) for k in next(iter(parts.values()))
    }
    metrics.update({f"{name}_{k}": v for name, p in parts.items() for k, v in p.items()})
    return metrics


def _validate_and_save(
    run: PretrainState, loss: torch.Tensor, terms: dict, samples_per_s: float, rng: dict
) -> dict:
    """Validate, keep ``best.pt`` when PA-MPJPE improved, log the row, write ``last.pt`` (``rng``:
    :func:`_rng_states`)."""
    metrics = _validate(run)
    if metrics["pa_mpjpe"] < run.best["pa_mpjpe"]:
        run.best = {**metrics, "step": run.step}
        _save(run, "best.pt", metrics, rng)
    run.logger.log(
        run.step,
        {
            "loss": loss.item(),
            **{f"train_{k}": v for k, v in terms.items()},
            **{f"val_{k}": v for k, v in metrics.items()},
            "lr": run.sched.get_last_lr()[0],
            "samples_per_s": samples_per_s,
        },
    )
    _save(run, "last.pt", metrics, rng)
    return metrics


def _save(run: PretrainState, name: str, metrics: dict, rng: dict) -> None:
    """Write checkpoint ``name`` atomically: the averaged network, and what ``--resume`` needs
    (``rng``: every rank's random streams, :func:`_rng_states`; never over a good one when the raw
    weights broke)."""
    net, cfg = run.net, run.cfg
    ema_state = {}
    if run.ema is not None:
        ema_state = {
            "ema": run.ema.state_dict(),
            "raw_model": {k: v.detach().cpu() for k, v in net.state_dict().items()},
        }
    write_checkpoint(
        run,
        name,
        run.averaged,
        raw=net,
        optimizer=run.opt.state_dict(),
        scheduler=run.sched.state_dict(),
        step=run.step,
        best=run.best,
        metrics=metrics,
        rng=rng,
        # stop_after simulates a kill: not part of the run (a resumed run's best.pt recorded it)
        config={**cfg.to_dict(), "stop_after": 0},
        cache_fingerprint=run.cache_fingerprint,
        baseline=run.baseline,
        **ema_state,
    )


# the options --resume refuses to change: they change the random stream, the model, the loss, the
# synthesised pairs or the validation set (steps/epochs, val_every, device, threads may change).
# The cache is compared by content (``cache_fingerprint``), not by path.
_RESUME_KEYS = (
    "seed",
    "batch_size",
    "keypoint_set",
    "lr",
    "lr_gamma",
    "lr_step",
    "val_fraction",
    "val_subjects",
    "val_size",
    "pose_augment",
    "model",
    "init",
    "ema",
    "amp",
    "amp_cpu",
    "weights",
    "synth",
    "camera",
)


def _make_ema(net: Key2MeshNet, decay: float) -> torch.optim.swa_utils.AveragedModel | None:
    """The weight average (``ema`` decay per step; None when off). Its first update copies the
    weights; each later one is ``avg = decay·avg + (1 − decay)·w``, BatchNorm statistics included."""
    if not decay:
        return None
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def _init_from(net: Key2MeshNet, path: str, body: dict, keypoint_set: str) -> Checkpoint:
    """Load the network weights of checkpoint ``path`` (a file or a shipped model's name) into
    ``net`` (``init``: fine-tuning).

    A checkpoint of another keypoint set is accepted: its input layer's columns move to the
    keypoints of the same name, and this set's other keypoints start with zero weights (e.g.
    coco17 → coco23 adds the feet; at the first step the network computes what it did on the
    shared keypoints, up to their box normalisation)."""
    ck = load_checkpoint(resolve_checkpoint(path), expect_body=body)  # a file or a shipped name
    state = {k: v.float() for k, v in ck.model.items()}
    if ck.keypoint_set != keypoint_set:
        state[_INPUT_WEIGHT] = _remap_input_columns(
            state[_INPUT_WEIGHT], ck.keypoint_set, keypoint_set, path
        )
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[-1].strip()
        raise Key2MeshError(
            f"init: {path} has another architecture (hidden {ck.model_config.hidden}, "
            f"blocks {ck.model_config.extractor_blocks}/{ck.model_config.head_blocks}) than this "
            f"run (hidden {net.config.hidden}, blocks {net.config.extractor_blocks}/"
            f"{net.config.head_blocks}); set the same model options (e.g. --hidden): {first}"
        ) from None
    log.info("initialised the network from %s (stage %s)", path, ck.stage or "?")
    return ck


def _check_init_split(run: PretrainState, init: Checkpoint) -> None:
    """Warn when this run validates on frames its ``init`` checkpoint trained on: a pre-training
    of this cache (same fingerprint, or none stored) with other split options (another ``seed``
    draws other held-out clips), whose training frames this run holds out. Validation and
    best.pt's selection would then score frames the network has seen."""
    stored = init.extra.get("cache_fingerprint")
    if not init.config.get("cache") or stored not in (None, run.cache_fingerprint):
        return  # trained on another cache (or imported): its frames are not this cache's
    theirs, ours = init.split_options(), split_options(run.cfg.to_dict())
    if theirs == ours or not run.dist.is_main:
        return
    try:
        seen, _ = run.bank.split(**theirs)
    except Key2MeshError:
        return
    _, held = run.bank.split(**ours)
    n = int(np.isin(held, seen).sum())
    if n:
        log.warning(
            "init: %s was trained with other held-out frames (%s) than this run (%s): %d of "
            "this run's %d validation frames were its training frames, so validation and best.pt "
            "score frames the network has seen; give the same --seed, --val-fraction and "
            "--val-subjects for a clean held-out set",
            run.cfg.init,
            theirs,
            ours,
            n,
            len(held),
        )


_INPUT_WEIGHT = "extractor.inp.0.weight"  # (hidden, 2K): columns 2k, 2k+1 read keypoint k's x, y


def _remap_input_columns(
    weight: torch.Tensor, old_set: str, new_set: str, path: str
) -> torch.Tensor:
    """The input layer's weight (hidden, 2·K_old) rearranged for ``new_set`` (hidden, 2·K_new):
    columns of keypoints present in both sets (by name) move, the others are zero."""
    from key2mesh.keypoints.sets import keypoint_names

    old, new = keypoint_names(old_set), keypoint_names(new_set)
    if weight.shape[1] != 2 * len(old):
        raise Key2MeshError(f"init: {path}'s input layer does not match its keypoint set {old_set}")
    shared = [(i, old.index(n)) for i, n in enumerate(new) if n in old]
    if not shared:
        raise Key2MeshError(
            f"init: {path} was trained on {old_set}, which has no keypoint in common with {new_set}"
        )
    out = weight.new_zeros(weight.shape[0], len(new), 2)
    dst, src = map(list, zip(*shared))
    out[:, dst] = weight.reshape(weight.shape[0], len(old), 2)[:, src]
    log.info(
        "init: %s → %s, %d of %d input keypoints carried over (the others start at zero weight)",
        old_set,
        new_set,
        len(shared),
        len(new),
    )
    return out.reshape(weight.shape[0], 2 * len(new))


def _check_resumable(ck, path: Path) -> None:
    """``--resume`` continues a pre-training run: checkpoint ``ck`` must be one of its ``last.pt``
    files (stage ``pretrain``, with the optimiser and random states), not an adapted model or an
    exported (slim) copy, which hold the weights only."""
    missing = [k for k in ("optimizer", "rng") if k not in ck.extra]
    if ck.stage not in ("", "pretrain") or missing:
        what = (
            f"stage {ck.stage!r}"
            if ck.stage not in ("", "pretrain")
            else "no " + " or ".join(missing)
        )
        raise Key2MeshError(
            f"--resume: {path} is not a pre-training run's checkpoint ({what}: an adapted model "
            "or an exported copy holds the weights only); start from its weights with "
            "--checkpoint and a new --out"
        )


def _check_resume_config(ck, run: PretrainState, path: Path) -> None:
    """``--resume`` continues the same run: the options of ``_RESUME_KEYS`` and the cache's content
    must match checkpoint ``ck``'s; one error names each difference (old → new value). A
    checkpoint without a cache fingerprint (older versions) is resumed with a warning."""
    saved, now = _plain(ck.config), _plain(run.cfg.to_dict())
    diff = []
    for key in _RESUME_KEYS:
        if key not in saved or saved[key] == now[key]:
            continue
        old, new = saved[key], now[key]
        if isinstance(old, dict) and isinstance(new, dict):  # name the sub-options: synth.yaw_deg
            diff += [
                f"{key}.{k} {old.get(k, 'unset')!r} → {new.get(k, 'unset')!r}"
                for k in sorted(set(old) | set(new), key=str)
                if old.get(k, "unset") != new.get(k, "unset")
            ]
        else:
            diff.append(f"{key} {old!r} → {new!r}")
    stored = ck.extra.get("cache_fingerprint")
    if stored is None:
        log.warning(
            "--resume: %s stores no fingerprint of its training cache (an older version): "
            "not checking that --cache %s is the one it was trained on",
            path,
            run.cfg.cache,
        )
    elif stored != run.cache_fingerprint:
        fp = run.cache_fingerprint
        diff.append(
            f"cache: {run.cfg.cache} is another training cache than {saved.get('cache', '?')} "
            f"({stored['frames']} frames, {stored['clips']} clips, digest {stored['digest'][:12]} → "
            f"{fp['frames']} frames, {fp['clips']} clips, digest {fp['digest'][:12]})"
        )
    if diff:
        raise Key2MeshError(
            f"--resume: {path} was trained with other options ({'; '.join(diff)}); "
            "use the same options or a new --out"
        )


def _plain(config: dict) -> dict:
    """``config`` with tuples as lists (a saved default tuple equals the same list from a file)."""
    return json.loads(json.dumps(config, default=str))


def _fmt(m: dict) -> str:
    return ", ".join(f"{k} {v:.1f}" for k, v in m.items() if k != "step")
