"""What pre-training and adaptation share: the run's state (:class:`TrainState`), the batch of
source-domain pairs (:func:`source_batch`), the checkpoint writer (:func:`write_checkpoint`) and
the training cache's fingerprint both record (:func:`cache_fingerprint`)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from key2mesh.body.base import BodyModel
from key2mesh.data.cache import PoseBank
from key2mesh.data.synth import PairSynthesizer, SynthBatch
from key2mesh.geometry.camera import VirtualCamera
from key2mesh.model.checkpoint import InputNormalization, atomic_save, make_checkpoint
from key2mesh.train.common import MetricLogger, check_finite_parameters
from key2mesh.train.random import choose


@dataclass(kw_only=True)
class TrainState:
    """What a training run holds between steps, in both loops: its options ``cfg``, output folder
    and device; the body model and what every checkpoint records with the weights (keypoint set
    ``kset``, ``body_config``, virtual ``camera``, input ``normalization``, the class's ``stage``);
    the one random stream ``gen``; the source domain (MoCap rotations ``rot_all`` (F,24,3,3) and
    shapes ``shapes_all`` (F,S) of the bank, the training frames ``train_idx``, an optional pose
    ``sampler`` drawing augmented training rotations, the pair synthesiser ``synth``) and the
    keypoint weights ``jw`` (K,) of the losses; the step count and the ``metrics.csv`` logger."""

    stage: ClassVar[str] = ""

    cfg: Any
    out: Path
    device: torch.device
    body: BodyModel
    kset: str
    body_config: dict
    camera: VirtualCamera
    normalization: InputNormalization
    gen: torch.Generator
    synth: PairSynthesizer
    jw: torch.Tensor
    train_idx: np.ndarray
    rot_all: torch.Tensor
    shapes_all: torch.Tensor
    sampler: Any = None  # key2mesh.data.mocap.sampler.PoseSampler, or None
    total_steps: int = 0
    step: int = 0
    logger: MetricLogger | None = None


def source_batch(state: TrainState, batch_size: int) -> SynthBatch:
    """``batch_size`` fresh source-domain pairs: training rotations (the pose sampler's when the
    run has one, else frames of ``train_idx`` drawn with replacement), shapes drawn from the whole
    bank, posed, turned and projected by ``state.synth``. Random numbers come from ``state.gen``
    in this order: frame indices (no sampler), shape indices, then the synthesis's own draws."""
    if state.sampler is not None:  # real poses, mirrored / perturbed / limb-mixed on the fly
        rot = state.sampler.sample(batch_size)
    else:
        rot = state.rot_all[choose(state.train_idx, batch_size, state.gen)]
    shape = state.shapes_all[choose(len(state.shapes_all), batch_size, state.gen)]
    return state.synth(rot, shape, state.gen)


def write_checkpoint(
    state: TrainState,
    name: str,
    net: torch.nn.Module,
    *,
    raw: torch.nn.Module | None = None,
    **fields: Any,
) -> Path:
    """Write the checkpoint ``state.out / name`` atomically (a crash never leaves half a file):
    ``net``'s weights with the run's keypoint set, body, camera, input normalisation and stage,
    and ``fields`` (``step``, the step the weights are from, is required; optimiser states,
    metrics, config, ...). First refuses broken weights (non-finite or exploded, naming ``step``;
    the file on disk is kept): those of ``raw`` when given (the raw weights behind a weight
    average ``net``), else ``net``'s. Returns the path written."""
    if "step" not in fields:
        raise TypeError("write_checkpoint needs step=")
    check_finite_parameters(net if raw is None else raw, fields["step"], state.out)
    path = state.out / name
    checkpoint = make_checkpoint(
        net,
        keypoint_set=state.kset,
        body_config=state.body_config,
        camera=state.camera,
        normalization=state.normalization,
        stage=state.stage,
        **fields,
    )
    atomic_save(checkpoint, path)
    return path


def cache_fingerprint(bank: PoseBank, max_frames: int = 65536) -> dict:
    """What identifies a training cache's content wherever it lies (``--resume`` compares it, not
    the path): frame and clip counts and a BLAKE2 digest of the clip names, sources and subjects,
    the body config, the clip index (N,), the shapes (M,S) and the rotations (N,24,3,3) of every
    ``max(1, N // max_frames)``-th frame (fewer than ``2·max_frames`` frames: ~0.11 GB read at
    most; the stride is part of stored fingerprints, so it stays)."""
    h = hashlib.blake2b(digest_size=16)
    names = [bank.clip_names, bank.clip_sources, bank.clip_subjects, bank.body]
    h.update(json.dumps(names, sort_keys=True, default=str).encode())
    stride = max(1, bank.num_frames // max_frames)
    for array, dtype in (
        (bank.clip_index, np.int32),
        (bank.shapes, np.float32),
        (bank.rotmats[::stride], np.float32),
    ):
        h.update(np.ascontiguousarray(array, dtype=dtype).tobytes())
    return {"frames": bank.num_frames, "clips": len(bank.clip_names), "digest": h.hexdigest()}
