"""Label-free domain adaptation (paper §Domain adaptation, WDGRL).

Frozen pre-trained extractor F_pt and head H_pt; a new extractor F initialised from F_pt; a
Wasserstein critic D with gradient penalty. Per step: ``k`` critic steps maximising
L_wd − γ·L_grad, then one extractor step on L_DA = w_2d·L2D^t + w_wd·L_wd + w_reg·L_reg.
Model selection every ``select_every`` steps: PA-MPJPE on a labelled validation set when one
is given, else the re-projection error on held-out target detections (label-free), or with L_mv
the views' disagreement on held-out instants (``mv_mm``, label-free), each under the guarded rule
(:func:`select_step`): step 0, the source model, is always a candidate and is kept unless a step
passes the guard; ``summary.json`` says which (docs/adaptation.md).

Beyond the paper: when the target holds synchronised views of one person (``TargetSet.groups``,
e.g. ``key2mesh data pose2sim`` or one detections file per camera), ``w_mv·L_mv`` asks the views
of each instant to agree on the body-frame pose (:func:`~key2mesh.train.losses.multiview_consistency`);
batches are then drawn as whole instants (all their views).
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar

import torch
from tqdm import tqdm

from key2mesh.body import body_model_from_config
from key2mesh.data.cache import PoseBank
from key2mesh.data.synth import PairSynthesizer, SynthConfig
from key2mesh.errors import Key2MeshError
from key2mesh.eval.intervals import paired_difference
from key2mesh.keypoints.io import MIN_KEYPOINTS, check_detections
from key2mesh.keypoints.weights import joint_weights
from key2mesh.model.checkpoint import (
    BODY_FILE_OPTIONS,
    Checkpoint,
    InputNormalization,
    build_network,
    load_checkpoint,
)
from key2mesh.model.network import DomainCritic
from key2mesh.safe_paths import atomic_write_text
from key2mesh.train.common import MetricLogger, check_finite, pick_device
from key2mesh.train.losses import (
    AdaptWeights,
    body_frame,
    feature_regularizer,
    gradient_penalty,
    multiview_consistency,
    reprojection_loss,
    wasserstein_distance,
)
from key2mesh.train.random import choose
from key2mesh.train.state import TrainState, cache_fingerprint, source_batch, write_checkpoint
from key2mesh.train.validation import body_errors

log = logging.getLogger(__name__)

# w_mv of the "+mv" loss sets and of `adapt --multiview` (10 and 50 measured: 50 better on unseen instants)
MV_WEIGHT = 50.0
# the loss set of `adapt --multiview` without --losses: on the pose2sim development part (adapted
# to its own detections, 300 steps) L2D^t + L_mv reached 34.8 / 80.4 mm, the full L_DA + L_mv
# 40.2 / 93.4 (runs of benchmarks/ablation.sh); the views, not L_reg, keep it from drifting
MULTIVIEW_LOSSES = "2d+mv"
ABLATIONS = {
    "2d": AdaptWeights(10.0, 0.0, 0.0),
    "2d+wd": AdaptWeights(10.0, 0.1, 0.0),
    "2d+wd+reg": AdaptWeights(),
    "2d+wd+reg+mv": AdaptWeights(mv=MV_WEIGHT),
    "2d+mv": AdaptWeights(10.0, 0.0, 0.0, MV_WEIGHT),
}


@dataclass
class TargetSet:
    """Target-domain inputs: normalised keypoints (N,K,2) and valid mask (N,K); optional labels
    used only for validation / model selection: body parameters (rotmats (N,24,3,3), shape (N,S))
    or camera-frame 3D keypoints (joints3d (N,J,3) metres of set ``joints3d_set``, e.g. a
    benchmark file's triangulated COCO-17). groups: optional (N,) int64, equal for synchronised
    views of one person at one instant (-1: none), read by the multi-view term L_mv."""

    inputs: torch.Tensor
    valid: torch.Tensor
    rotmats: torch.Tensor | None = None
    shape: torch.Tensor | None = None
    dropped: int = 0
    name: str = "target"
    joints3d: torch.Tensor | None = None
    joints3d_set: str | None = None
    groups: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.inputs.shape[0])

    @property
    def labelled(self) -> bool:
        return self.rotmats is not None or self.joints3d is not None

    def subset(self, idx: torch.Tensor) -> TargetSet:
        pick = lambda x: None if x is None else x[idx]  # noqa: E731
        return TargetSet(
            self.inputs[idx],
            self.valid[idx],
            pick(self.rotmats),
            pick(self.shape),
            0,
            self.name,
            pick(self.joints3d),
            self.joints3d_set,
            pick(self.groups),
        )


@dataclass
class AdaptConfig:
    source: str = ""  # pre-trained checkpoint
    cache: str = ""  # MoCap training cache for source-domain samples
    out_dir: str = "runs/adapt"
    steps: int = 0
    epochs: float = 5.0
    batch_size: int = 256
    lr: float = 1e-4
    critic_lr: float = 1e-4
    critic_steps: int = 3  # k (paper 3, official code 10)
    gamma: float = 50.0  # gradient-penalty weight (official code)
    weights: AdaptWeights = field(default_factory=AdaptWeights)
    select_every: int = 500
    min_keypoints: int = MIN_KEYPOINTS
    holdout_fraction: float = 0.1  # target detections held out for the label-free criterion
    # "frozen": the adapted extractor normalises with F_pt's BatchNorm statistics (not updated);
    # "batch": train-mode BatchNorm (batch statistics, running averages drift to the target).
    bn: str = "frozen"
    dropout: bool = False  # dropout in the adapted extractor (off: no-shift adaptation is a no-op)
    critic_dropout: float = 0.2  # the critic's own dropout (official code)
    # L_mv compares poses only (scale-free, shape out of its gradient); False: in metres with the
    # shape's gradient, as before (it shrank the body: kept for the ablation)
    mv_scale_free: bool = True
    # with L_mv: weight (relative to w_mv) of |shape − the pre-trained model's shape| (phenotypes)
    mv_shape_anchor: float = 1.0
    # label-free model selection (see select_step): "guarded" keeps a step only when the target
    # criterion fell by at least min_gain (relative) and, one view at a time, the 3D keypoints
    # moved mostly in the image plane (depth share of the shift <= max_depth_share) and the
    # source domain's held-out error did not rise significantly beyond source_tolerance
    # (relative); with views, neither the re-projection rose nor the body shrank; else step 0
    # (the source model). "target": the criterion alone (the paper's rule). --val: its labels.
    selection: str = "guarded"
    source_tolerance: float = 0.01
    min_gain: float = 0.05
    max_size_change: float = 0.02
    max_depth_share: float = 0.5
    source_samples: int = 1024  # held-out MoCap samples of the source-domain check
    seed: int = 0
    device: str = "auto"
    threads: int = 0

    @classmethod
    def from_dict(cls, d: dict) -> AdaptConfig:
        d = dict(d)
        if isinstance(d.get("weights"), dict):
            d["weights"] = AdaptWeights(**d["weights"])
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise Key2MeshError(f"unknown adapt options: {sorted(unknown)}")
        return cls(**d)

    def to_dict(self) -> dict:
        return asdict(self)


def train_mode(
    module: torch.nn.Module, bn: str = "frozen", dropout: bool = False
) -> torch.nn.Module:
    """``module.train()``, with its BatchNorm layers back in eval mode when ``bn == "frozen"`` and
    its Dropout layers off unless ``dropout``.

    A target set is often far narrower than a training batch of MoCap (one person, one camera): its
    batch statistics then differ from F_pt's running statistics, so train-mode BatchNorm changes
    every feature at step 1 and drags the running averages to the target. Frozen statistics keep
    F = F_pt at step 0 and let the losses move the weights. Dropout is off by default because
    L_reg compares F(x) with F_pt(x) (dropout off): with dropout on, its noise alone gave
    L_reg ≈ 0.095 at step 0 and moved the weights with no domain shift at all."""
    if bn not in ("frozen", "batch"):
        raise ValueError(f"bn must be 'frozen' or 'batch', got {bn!r}")
    module.train()
    for m in module.modules():
        if bn == "frozen" and isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()
        if not dropout and isinstance(m, torch.nn.Dropout):
            m.eval()
    return module


def prepare_target(
    keypoints: torch.Tensor,
    confidence: torch.Tensor,
    normalization: InputNormalization | dict,
    min_keypoints: int = MIN_KEYPOINTS,
    name: str = "target",
    rotmats=None,
    shape=None,
    joints3d=None,
    joints3d_set=None,
    groups=None,
) -> TargetSet:
    """Pixel keypoints (N,K,2) + confidence (N,K) in the model's set → normalised TargetSet,
    dropping detections that fail :func:`~key2mesh.keypoints.io.check_detections` (fewer than
    ``min_keypoints`` confident points, the paper's rule, or all points on one spot)."""
    if not isinstance(normalization, InputNormalization):
        normalization = InputNormalization.from_dict(normalization)
    kp = torch.as_tensor(keypoints, dtype=torch.float32)
    conf = torch.as_tensor(confidence, dtype=torch.float32)
    thr = normalization.conf_threshold

    usable = check_detections(
        kp.numpy(), conf.numpy(), min_keypoints, thr
    ).usable  # the one detection rule
    enough = torch.from_numpy(usable) & torch.isfinite(kp).all(-1).all(-1)
    n, kept = len(kp), int(enough.sum())
    if kept < 2:
        raise Key2MeshError(
            f"{name}: only {kept} of {n} detections have at least {min_keypoints} keypoints "
            f"with confidence ≥ {thr}; adaptation needs more"
        )
    inputs, valid = normalization(kp[enough], conf[enough])
    sel = lambda x: None if x is None else torch.as_tensor(x)[enough]  # noqa: E731
    return TargetSet(
        inputs,
        valid,
        sel(rotmats),
        sel(shape),
        dropped=n - kept,
        name=name,
        joints3d=sel(joints3d),
        joints3d_set=joints3d_set,
        groups=None if groups is None else sel(groups).long(),
    )


def group_table(groups: torch.Tensor) -> torch.Tensor:
    """(N,) group ids → (G, V) sample indices of every group, padded with -1; a sample with id -1
    is a group of its own. Batches drawn by row hold whole instants, and every sample can be drawn
    (only groups of ≥ 2 add to L_mv)."""
    groups = torch.as_tensor(groups, dtype=torch.long).clone()
    alone = groups < 0
    groups[alone] = int(groups.max()) + 1 + torch.arange(int(alone.sum()))
    ids, inverse, counts = torch.unique(groups, return_inverse=True, return_counts=True)
    order = torch.argsort(inverse, stable=True)  # samples sorted by group
    slot = torch.arange(len(groups)) - torch.repeat_interleave(
        torch.cumsum(counts, 0) - counts, counts
    )
    table = torch.full((len(ids), int(counts.max())), -1, dtype=torch.long)
    table[inverse[order], slot] = order
    return table


def split_holdout(
    target: TargetSet, fraction: float, generator: torch.Generator, block: float = 0.05
) -> tuple[TargetSet, TargetSet]:
    """(held out, rest) for the label-free criterion: about ``fraction`` of the target in
    contiguous blocks of ``block`` of it (at least one sample), drawn at random. Blocks, because
    neighbouring video frames are near-duplicates: a random frame held out has its twin in
    training. Units are whole instants when the views are grouped (no instant on both sides),
    else detections in file order."""
    units = (
        torch.arange(len(target)) if target.groups is None else torch.unique(target.groups)
    )  # sorted: time order
    n = len(units)
    size = max(1, int(round(block * n)))
    starts = torch.arange(0, n, size)
    n_blocks = max(1, int(round(fraction * n / size)))
    chosen = starts[torch.randperm(len(starts), generator=generator)[:n_blocks]]
    held = torch.zeros(n, dtype=torch.bool)
    for start in chosen.tolist():
        held[start : start + size] = True
    if held.all():  # keep something to adapt on
        held[1:] = False
    hold = held if target.groups is None else torch.isin(target.groups, units[held])
    return target.subset(torch.nonzero(hold)[:, 0]), target.subset(torch.nonzero(~hold)[:, 0])


def select_step(
    start: dict[str, float],
    metrics: dict[str, float],
    key: str,
    rule: str = "guarded",
    source_tolerance: float = 0.01,
    min_gain: float = 0.05,
    max_size_change: float = 0.02,
    max_depth_share: float = 0.5,
) -> bool:
    """Whether the evaluated step with ``metrics`` may replace the source model (step 0, metrics
    ``start``) as the adapted model: lower is better for ``key``.

    ``rule="labels"`` / ``"target"``: ``key`` alone (a labelled score, or the paper's label-free
    rule on the target). ``"guarded"`` (label-free default), chosen on the development data
    (benchmarks/adaptation.py): ``key`` must fall by at least ``min_gain`` (relative), and

    * one view at a time (``key`` = ``reproj``): the held-out target's 3D keypoints moved from
      the pre-trained model's mostly where the 2D evidence sees: the camera-depth share of the
      shift (``depth_shift_mm / shift_mm``; 0.5 for a shift without a preferred direction) at
      most ``max_depth_share``. On real footage the shipped model's re-projection fell 20–30 %
      while its 3D error rose, with 67–72 % of the shift along the depth axis: the detections'
      noise was fitted by bending the depth that one view leaves open. And the source domain's
      held-out error (what L_reg protects) must not rise significantly beyond
      ``source_tolerance`` × its step-0 value (the lower end of the paired 95 % interval of its
      rise, ``src_*_rise_low``, mm): a check against gross damage;
    * with synchronised views (``key`` = ``mv_mm``, real 3D evidence): the held-out
      re-projection may rise by at most ``min_gain`` (agreement is not bought by leaving the 2D
      evidence) and the body size (``size_change``, mean limb length over step 0's) stays within
      ``max_size_change`` (agreement is not bought by shrinking).

    Among admissible steps the caller keeps the lowest ``key``; none admissible: step 0."""
    if rule not in ("guarded", "target", "labels"):
        raise ValueError(f"selection rule must be guarded, target or labels, got {rule!r}")
    if rule != "guarded":
        return True
    if key == "mv_mm":
        if metrics["reproj"] > start["reproj"] * (1 + min_gain):
            return False
        if abs(metrics.get("size_change", 1.0) - 1) > max_size_change:
            return False
    else:
        shift = metrics.get("shift_mm")
        if shift and metrics.get("depth_shift_mm", 0.0) > max_depth_share * shift:
            return False
        for src in ("src_pa_mpjpe", "src_mpjpe"):
            if src not in start:
                continue
            low = metrics.get(f"{src}_rise_low")
            # no interval (None, or NaN from a check of one sample): the point estimate
            rise = low if low is not None and math.isfinite(low) else metrics[src] - start[src]
            if not rise <= source_tolerance * start[src]:  # a NaN rise is not admissible
                return False
    return metrics[key] <= start[key] * (1 - min_gain)


def critic_steps(
    critic: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    f_src: torch.Tensor,
    f_tgt: torch.Tensor,
    steps: int,
    gamma: float,
    generator: torch.Generator,
) -> float:
    """``steps`` updates of the critic D maximising L_wd − γ·L_grad on source / target features
    (B, d). The target features are detached: the critic's loss never reaches the extractor
    (it only learns to tell the domains apart; the extractor then minimises L_wd). Returns the
    last L_wd."""
    wd = torch.zeros(())
    for _ in range(steps):
        wd = wasserstein_distance(critic(f_src), critic(f_tgt.detach()))
        gp = gradient_penalty(critic, f_src.detach(), f_tgt.detach(), generator)
        loss_d = -(wd - gamma * gp)
        optimizer.zero_grad(set_to_none=True)
        loss_d.backward()
        optimizer.step()
    return float(wd.detach())


@dataclass(kw_only=True)
class AdaptState(TrainState):
    """Everything one adaptation run holds between steps: what both loops hold
    (:class:`~key2mesh.train.state.TrainState`: source-domain data, random stream, step,
    logger), and the source checkpoint ``ck``, the frozen pre-trained network ``net_pt`` (F_pt,
    H_pt), the adapted extractor F and the critic D with their optimisers, the target's training
    part ``train_t`` and held-out part ``hold``, the labelled sets, and the selection (``key``
    under ``rule``, step 0's metrics ``start``)."""

    stage: ClassVar[str] = "adapt"

    cfg: AdaptConfig
    ck: Checkpoint
    net_pt: torch.nn.Module
    extractor: torch.nn.Module
    critic: torch.nn.Module
    opt_f: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    target: TargetSet
    validation: TargetSet | None = None
    monitor: TargetSet | None = None
    hold: TargetSet | None = None
    train_t: TargetSet | None = None
    views: torch.Tensor | None = None  # (G, V) sample indices per instant (L_mv), or None
    source_check: TargetSet | None = None  # held-out MoCap: the source-domain guard
    source_errors: dict = field(default_factory=dict)  # step 0's, per sample
    kp_pt: torch.Tensor | None = None  # the pre-trained model's 3D keypoints on the held-out set
    key: str = "reproj"
    rule: str = "guarded"
    start: dict = field(default_factory=dict)
    cache_fingerprint: dict = field(default_factory=dict)  # of ``cfg.cache`` (source pairs, guard)


def run_adapt(
    cfg: AdaptConfig,
    target: TargetSet,
    validation: TargetSet | None = None,
    progress: bool = True,
    monitor: TargetSet | None = None,
) -> dict:
    """Adapt ``cfg.source`` to ``target``; writes best.pt / last.pt / metrics.csv / summary.json
    in ``cfg.out_dir``. ``validation``: labelled, selects by PA-MPJPE. ``monitor``: labelled,
    only logged (``val_mon_*`` in metrics.csv), never used for selection: for studies of the
    label-free rules."""
    check_adapt_options(cfg)
    run = _setup_adapt(cfg, target, validation, monitor)
    _split_target(run)
    _prepare_selection(run)
    logger = run.logger = MetricLogger(run.out, resume_step=-1)  # a new run: a new metrics.csv
    start = run.start = _evaluate(run)
    best, best_state = {**start, "step": 0}, copy.deepcopy(run.extractor.state_dict())
    logger.log(0, {f"val_{k}": v for k, v in start.items()})
    log.info("before adaptation: %s (selection by %s)", start, run.key)
    bar = tqdm(total=run.total_steps, desc="adapt", disable=not progress, dynamic_ncols=True)
    t0 = time.perf_counter()
    step = 0
    for step in range(1, run.total_steps + 1):
        run.step = step
        terms = _adapt_step(run)
        bar.update(1)
        if step % 20 == 0:
            bar.set_postfix(
                l2d=f"{terms['l2d'].item():.4f}",
                wd=f"{terms['lwd'].item():.3f}",
                reg=f"{terms['lreg'].item():.4f}",
                mv=f"{terms['lmv'].item():.4f}",
            )
        if step % cfg.select_every == 0 or step == run.total_steps:
            m = _evaluate(run)
            logger.log(
                step,
                {
                    **{k: v.item() for k, v in terms.items()},
                    **{f"val_{k}": v for k, v in m.items()},
                    "samples_per_s": step * cfg.batch_size / (time.perf_counter() - t0),
                },
            )
            if m[run.key] < best[run.key] and _admissible(run, m):
                best, best_state = {**m, "step": step}, copy.deepcopy(run.extractor.state_dict())
                _save_adapted(run, "best.pt", best_state, best, step)
            _save_adapted(run, "last.pt", run.extractor.state_dict(), m, step)
            bar.write(f"step {step}: {m}")
    bar.close()
    logger.close()
    if best["step"] == 0:
        _save_adapted(run, "best.pt", best_state, best, 0)
    summary = {
        "before": start,
        "best": best,
        "selection": run.key,
        "rule": run.rule,
        "kept_source": best["step"] == 0,
        "verdict": verdict(best, run.key, run.rule, cfg),
        "steps": step,
        "dropped": target.dropped,
        "samples_per_s": step * cfg.batch_size / max(time.perf_counter() - t0, 1e-9),
    }
    atomic_write_text(run.out / "summary.json", json.dumps(summary, indent=2, default=float) + "\n")
    return summary


def check_adapt_options(cfg: AdaptConfig) -> None:
    """Options that pass one by one but not together: the Wasserstein term (w_wd > 0) needs a
    critic that learns (``critic_steps`` ≥ 1); with none, the extractor chased an untrained
    random critic. And adaptation runs in one process: under ``torchrun`` every process ran the
    whole adaptation into the same folder (on one GPU), racing on its files."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        raise Key2MeshError(
            f"adapt runs in one process (WORLD_SIZE={world}: under torchrun each process would "
            "run the whole adaptation into the same --out); start it without torchrun"
        )
    if cfg.weights.wd > 0 and cfg.critic_steps < 1:
        raise Key2MeshError(
            f"critic_steps {cfg.critic_steps} with the Wasserstein term (w_wd = {cfg.weights.wd}): "
            "the critic would never train; give --critic-steps 1 or more, or --losses without wd"
        )


def _setup_adapt(
    cfg: AdaptConfig, target: TargetSet, validation: TargetSet | None, monitor: TargetSet | None
) -> AdaptState:
    """Load the source checkpoint and the MoCap cache; build F_pt / H_pt (frozen), F (a copy of
    F_pt in train mode), the critic D, their optimisers and the source-pair synthesiser."""
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = pick_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    ck = load_checkpoint(cfg.source)
    bank = PoseBank.load(cfg.cache)
    # the files a body reads are not part of it (load_checkpoint drops stored ones; a cache
    # built with --smpl-dir names its folder): compare the rest
    folder_free = lambda body: {  # noqa: E731
        k: v for k, v in body.items() if k not in BODY_FILE_OPTIONS
    }
    if folder_free(bank.body) != folder_free(ck.body):
        raise Key2MeshError(
            f"cache {cfg.cache} is for body {bank.body}, checkpoint {cfg.source} for {ck.body}"
        )
    body = body_model_from_config(ck.body, device=str(device))
    kset = ck.keypoint_set
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    net_pt = build_network(ck, device)  # F_pt, H_pt: frozen, eval mode
    for p in net_pt.parameters():
        p.requires_grad_(False)
    extractor = train_mode(copy.deepcopy(net_pt.extractor), cfg.bn, cfg.dropout)
    for p in extractor.parameters():
        p.requires_grad_(True)
    critic = DomainCritic(ck.model_config, cfg.critic_dropout).to(device)
    return AdaptState(
        cfg=cfg,
        out=out,
        device=device,
        ck=ck,
        body=body,
        kset=kset,
        body_config=ck.body,
        camera=ck.camera,
        normalization=ck.normalization,
        gen=gen,
        net_pt=net_pt,
        extractor=extractor,
        critic=critic,
        opt_f=torch.optim.Adam(extractor.parameters(), lr=cfg.lr),
        opt_d=torch.optim.Adam(critic.parameters(), lr=cfg.critic_lr),
        # source-domain pairs are synthesised exactly as in pre-training, normalised as the
        # network expects (an imported paper checkpoint has no synth config: missing joints 0.5)
        synth=PairSynthesizer(body, kset, ck.camera, _source_synth(ck)),
        jw=joint_weights(kset).to(device),
        train_idx=bank.split(**ck.split_options())[0],  # exactly what pre-training held out
        rot_all=torch.from_numpy(bank.rotmats),
        shapes_all=torch.from_numpy(bank.shapes),
        target=target,
        validation=validation,
        monitor=monitor,
        cache_fingerprint=cache_fingerprint(bank),
    )


def _source_synth(ck: Checkpoint) -> SynthConfig:
    """Pre-training's synthesis (``config["synth"]``), its inputs normalised with the
    checkpoint's own rule (confidence threshold, value of missing joints)."""
    norm = ck.normalization
    return SynthConfig(
        **{
            **ck.config.get("synth", {}),
            "conf_threshold": norm.conf_threshold,
            "missing_value": norm.missing_value,
        }
    )


def _split_target(run: AdaptState) -> None:
    """The target's held-out part (label-free selection; all of it with a labelled validation
    set) and training part, the step count, and the instants' view table when L_mv trains."""
    cfg, target = run.cfg, run.target
    run.hold, run.train_t = (
        split_holdout(target, cfg.holdout_fraction, run.gen)
        if run.validation is None
        else (target, target)
    )
    train_t = run.train_t
    run.total_steps = cfg.steps or int(
        math.ceil(cfg.epochs * max(1, len(train_t) // cfg.batch_size))
    )
    w = cfg.weights
    views = group_table(train_t.groups) if w.mv > 0 and train_t.groups is not None else None
    if w.mv > 0 and (views is None or views.shape[1] < 2):
        raise Key2MeshError(
            f"{target.name}: the multi-view term (w_mv = {w.mv}) needs synchronised views of one "
            "person (adapt --multiview with a `key2mesh data pose2sim` file or one file per camera)"
        )
    run.views = views


def _prepare_selection(run: AdaptState) -> None:
    """What model selection compares against: the source domain's held-out frames (synthesised
    as in pre-training: the guard of "guarded"), the pre-trained model's 3D keypoints on the
    held-out target, and the key and rule. Selection is by labels when given; else by the views'
    disagreement when L_mv trains, else by the re-projection error on held-out detections, both
    under the rule ``cfg.selection``."""
    cfg, ck = run.cfg, run.ck
    synth = dict(ck.config.get("synth", {}))  # pre-training's synthesis, all of it
    run.source_check = (
        synthetic_target(
            cfg.cache,
            ck,
            synth.pop("noise_profile", "none"),
            n=cfg.source_samples,
            seed=cfg.seed + 101,
            split="val",
            synth_overrides=synth,
        )
        if cfg.source_samples > 0
        else None
    )
    with torch.no_grad():  # the pre-trained model's 3D keypoints on the held-out target
        ev0 = run.validation if run.validation is not None else run.hold
        run.kp_pt = run.body.forward_keypoints(
            *_predict(run, run.net_pt.extractor, ev0.inputs), run.kset
        )
    labelled = run.validation is not None and run.validation.labelled
    run.key = "pa_mpjpe" if labelled else "mv_mm" if run.views is not None else "reproj"
    run.rule = "labels" if labelled else cfg.selection


def _predict(run: AdaptState, extractor: torch.nn.Module, inputs: torch.Tensor):
    """(rotmats, shape) of the pre-trained head on ``extractor``'s features of ``inputs``."""
    return run.net_pt.head(extractor(inputs.to(run.device)))


def _target_batch(run: AdaptState) -> torch.Tensor:
    """Indices into train_t: ``batch_size`` detections, or whole instants (all their views)."""
    cfg, views = run.cfg, run.views
    if views is None:
        return choose(len(run.train_t), cfg.batch_size, run.gen)
    rows = views[choose(len(views), max(1, cfg.batch_size // views.shape[1]), run.gen)]
    return rows[rows >= 0]


def _adapt_step(run: AdaptState) -> dict[str, torch.Tensor]:
    """Step ``run.step``: ``k`` critic steps (when w_wd > 0), then one extractor step on L_DA
    (+ w_mv·L_mv); returns the loss and its terms (``loss``, ``l2d``, ``lwd``, ``lreg``, ``lmv``)."""
    cfg, body, kset, device, w = run.cfg, run.body, run.kset, run.device, run.cfg.weights
    net_pt, extractor, critic, train_t = run.net_pt, run.extractor, run.critic, run.train_t
    src = source_batch(run, cfg.batch_size)
    tsel = _target_batch(run)
    xt, vt = train_t.inputs[tsel].to(device), train_t.valid[tsel].to(device)
    with torch.no_grad():
        f_src = net_pt.extractor(src.inputs)
        f_tgt_pt = net_pt.extractor(xt)
    f_tgt = extractor(xt)
    if w.wd > 0:
        critic_steps(critic, run.opt_d, f_src, f_tgt, cfg.critic_steps, cfg.gamma, run.gen)
    rot, shp = net_pt.head(f_tgt)
    kp = body.forward_keypoints(rot, shp, kset)
    zero = torch.zeros((), device=device)
    l2d = reprojection_loss(kp, xt, vt, run.camera, run.jw)
    lwd = wasserstein_distance(critic(f_src), critic(f_tgt)) if w.wd > 0 else zero
    lreg = feature_regularizer(f_tgt, f_tgt_pt) if w.reg > 0 else torch.zeros((), device=device)
    lmv = (  # scale-free: the pose only, the shape (body size) out of L_mv's gradient
        multiview_consistency(
            body_frame(
                body.forward_keypoints(rot, shp.detach(), kset) if cfg.mv_scale_free else kp,
                rot[:, 0],
            ),
            train_t.groups[tsel],
            scale_free=cfg.mv_scale_free,
        )
        if run.views is not None
        else torch.zeros((), device=device)
    )
    if run.views is not None and cfg.mv_shape_anchor > 0:
        # views constrain the pose, not the body's size: the shape stays the pre-trained
        # model's estimate (without it, feature drift grew the body 5 % in 150 steps)
        with torch.no_grad():
            shp_pt = net_pt.head(f_tgt_pt)[1]
        lmv = lmv + cfg.mv_shape_anchor * (shp - shp_pt).abs().mean()
    loss = w.kp2d * l2d + w.wd * lwd + w.reg * lreg + w.mv * lmv
    check_finite(loss, run.step, run.out)
    run.opt_f.zero_grad(set_to_none=True)
    loss.backward()
    run.opt_f.step()
    return {"loss": loss, "l2d": l2d, "lwd": lwd, "lreg": lreg, "lmv": lmv}


@torch.no_grad()
def _evaluate(run: AdaptState) -> dict[str, float]:
    """The adapted extractor's selection metrics: labelled scores (``validation``, ``mon_*`` of
    ``monitor``), the source-domain guard, and the label-free ones on the held-out target."""
    run.extractor.eval()
    res: dict[str, float] = {}
    for prefix, labelled_set in (("", run.validation), ("mon_", run.monitor)):
        if labelled_set is not None and labelled_set.labelled:
            scores = score_labels(
                run.body, run.kset, _predict(run, run.extractor, labelled_set.inputs), labelled_set
            )
            res.update({f"{prefix}{k}": v for k, v in scores.items()})
    if run.source_check is not None:  # means, and the paired rise over step 0 (95 % interval)
        prediction = _predict(run, run.extractor, run.source_check.inputs)
        errs = {
            k: v.cpu()
            for k, v in per_sample_errors(run.body, run.kset, prediction, run.source_check).items()
        }
        run.source_errors.setdefault("start", errs)
        for k, v in errs.items():
            rise = paired_difference(v, run.source_errors["start"][k])
            res[f"src_{k}"] = float(v.mean())
            res[f"src_{k}_rise_low"] = rise.low
    res.update(_label_free_metrics(run))
    train_mode(run.extractor, run.cfg.bn, run.cfg.dropout)
    return res


def _label_free_metrics(run: AdaptState) -> dict[str, float]:
    """On the held-out target (or the validation set): re-projection error, how far the 3D
    keypoints moved from the pre-trained model's (mm; along the virtual camera's depth axis z,
    which the 2D evidence does not constrain), the body size's change, and with views their
    disagreement on the body-frame pose (``mv_mm``)."""
    kset, body, kp_pt = run.kset, run.body, run.kp_pt
    res: dict[str, float] = {}
    ev = run.validation if run.validation is not None else run.hold
    r, s = _predict(run, run.extractor, ev.inputs)
    kp = body.forward_keypoints(r, s, kset)
    res["reproj"] = float(
        reprojection_loss(kp, ev.inputs.to(run.device), ev.valid.to(run.device), run.camera)
    )
    moved = (kp - kp.mean(1, keepdim=True)) - (kp_pt - kp_pt.mean(1, keepdim=True))
    res["shift_mm"] = 1000 * float(moved.norm(dim=-1).mean())
    res["depth_shift_mm"] = 1000 * float(moved[..., 2].abs().mean())
    res["size_change"] = limb_length(kp, kset) / limb_length(kp_pt, kset)  # label-free
    seen = ev if ev.groups is not None else run.train_t
    if seen.groups is not None:
        if seen is not ev:
            r, s = _predict(run, run.extractor, seen.inputs)
            kp = body.forward_keypoints(r, s, kset)
        res["mv_mm"] = 1000 * float(
            multiview_consistency(body_frame(kp, r[:, 0]), seen.groups.to(run.device))
        )
    return res


def _admissible(run: AdaptState, metrics: dict) -> bool:
    """:func:`select_step` with the run's key, rule and guard thresholds."""
    cfg = run.cfg
    return select_step(
        run.start,
        metrics,
        run.key,
        run.rule,
        cfg.source_tolerance,
        cfg.min_gain,
        cfg.max_size_change,
        cfg.max_depth_share,
    )


def _save_adapted(run: AdaptState, name: str, state: dict, metrics: dict, at_step: int) -> None:
    """Write checkpoint ``name`` atomically: F_pt's network with the extractor weights ``state``."""
    net = copy.deepcopy(run.net_pt)
    net.extractor.load_state_dict(state)
    write_checkpoint(
        run,
        name,
        net,
        step=at_step,
        metrics=metrics,
        before=run.start,
        selection=run.key,
        config={**run.ck.config, "adapt": run.cfg.to_dict()},
        target=run.target.name,
        cache_fingerprint=run.cache_fingerprint,
    )


def verdict(best: dict, key: str, rule: str, cfg: AdaptConfig) -> str:
    """One line for the user: which model best.pt is, and why."""
    if best["step"] == 0:
        why = (
            f"no step improved {key}"
            if rule != "guarded"
            else f"no step lowered the views' disagreement by {100 * cfg.min_gain:.0f} % without "
            "raising the re-projection or changing the body size"
            if key == "mv_mm"
            else f"no step lowered the re-projection by {100 * cfg.min_gain:.0f} % while moving "
            "the 3D pose mostly in the image plane, without a significant rise of the source "
            "domain's held-out 3D error (adapting one view at a time then fits the detections' "
            "noise by bending the depth the view leaves open)"
        )
        return f"kept the pre-trained model (best.pt = step 0): {why}"
    return f"best.pt = step {best['step']} ({key} {best[key]:.4g}, selection: {rule})"


def per_sample_errors(body, kset: str, prediction, labelled: TargetSet) -> dict[str, torch.Tensor]:
    """Per-sample MPJPE / PA-MPJPE (N,) mm, mid-hip centred, of predicted (rotmats, shape)
    against a TargetSet labelled with body parameters (the model set's keypoints), on the
    prediction's device: the one scorer, :func:`~key2mesh.train.validation.body_errors`."""
    r, s = prediction
    return body_errors(body, kset, r, s, labelled.rotmats.to(r.device), labelled.shape.to(r.device))


def limb_length(keypoints: torch.Tensor, keypoint_set: str) -> float:
    """Mean length (m) of the 8 limb bones (upper/lower arms and legs) of (N,K,3) keypoints: the
    body's size, independent of its pose."""
    from key2mesh.data.multiview import LIMB_BONES
    from key2mesh.keypoints.sets import keypoint_names

    names = keypoint_names(keypoint_set)
    a = keypoints[:, [names.index(p) for p, _ in LIMB_BONES]]
    b = keypoints[:, [names.index(q) for _, q in LIMB_BONES]]
    return float((a - b).norm(dim=-1).mean())


@torch.no_grad()
def score_labels(body, kset: str, prediction, labelled: TargetSet) -> dict[str, float]:
    """Mean MPJPE / PA-MPJPE (mm) of predicted (rotmats, shape) against a labelled TargetSet
    (body parameters: the model set's keypoints; camera-frame 3D keypoints: 12 limb joints,
    mid-hip), and ``size``: the predicted mean limb length over the ground truth's (1 = the right
    body size; what a loss in metres could shrink)."""
    from key2mesh.eval.benchmarks import score_parameters
    from key2mesh.eval.metrics import Protocol

    r, s = prediction
    device = r.device
    kp = body.forward_keypoints(r, s, kset)
    if labelled.rotmats is not None:
        res = {
            k: float(v.mean())
            for k, v in per_sample_errors(body, kset, prediction, labelled).items()
        }
        gt = body.forward_keypoints(labelled.rotmats.to(device), labelled.shape.to(device), kset)
    else:
        err = score_parameters(
            body, r, s, labelled.joints3d, labelled.joints3d_set, None, Protocol(pelvis="midhip")
        )
        res = {"mpjpe": float(err["mpjpe"].mean()), "pa_mpjpe": float(err["pa_mpjpe"].mean())}
        gt = labelled.joints3d.to(device)
    res["size"] = limb_length(kp, kset) / limb_length(gt, labelled.joints3d_set or kset)
    return res


def benchmark_target(
    path: str, checkpoint: Checkpoint, min_keypoints: int = MIN_KEYPOINTS
) -> TargetSet:
    """A key2mesh benchmark file (e.g. ``key2mesh data pose2sim``) as a labelled validation set:
    its detections (converted to the model's keypoint set) in, its 3D keypoints as labels."""
    from key2mesh.data.benchmark import load_benchmark_file

    bench = load_benchmark_file(path)
    if bench.joints3d is None or bench.joints3d_set in (None, "smpl24"):
        raise Key2MeshError(
            f"{path}: a validation benchmark needs 3D keypoints of a detector set (joints3d)"
        )
    from key2mesh.keypoints.convert import convert_keypoints

    kp, conf = convert_keypoints(
        bench.keypoints2d, bench.confidence, bench.keypoint_set, checkpoint.keypoint_set
    )
    return prepare_target(
        kp,
        conf,
        checkpoint.normalization,
        min_keypoints,
        name=str(path),
        joints3d=bench.joints3d.float(),
        joints3d_set=bench.joints3d_set,
    )


def synthetic_target(
    cache: str,
    checkpoint: Checkpoint,
    noise_profile: str = "strong",
    n: int = 4096,
    seed: int = 7,
    split: str = "val",
    synth_overrides: dict | None = None,
    heldout: str = "all",
    views: int = 1,
) -> TargetSet:
    """A labelled, domain-shifted target built from MoCap: frames pre-training held out
    (``split="val"``; ``heldout``: ``all``, only held-out ``clips`` of sources without subjects, or
    only held-out ``subjects``) synthesised with a detector-like noise profile
    (:func:`key2mesh.data.heldout.mocap_samples`), normalised. Labels are kept for validation only.
    ``views`` > 1: synchronised views (``groups``) of each pose from random viewpoints."""
    from key2mesh.data.heldout import mocap_samples

    s = mocap_samples(
        cache, checkpoint, noise_profile, n, seed, split, synth_overrides, heldout, views
    )
    return prepare_target(
        s.keypoints2d,
        s.confidence,
        checkpoint.normalization,
        name=s.name if views == 1 else f"{s.name}x{views}views",
        rotmats=s.rotmats,
        shape=s.shape,
        groups=None if views == 1 else torch.arange(n) // views,
    )
