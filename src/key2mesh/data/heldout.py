"""The MoCap held-out split as a labelled dataset: the frames pre-training held out (read from the
checkpoint's config, :meth:`~key2mesh.model.checkpoint.Checkpoint.split_options`; for an ensemble,
the frames every member held out) with random shapes, projected through the virtual camera with a
detector-like noise profile. Inputs are pixel keypoints of the model's set (what
:meth:`Key2Mesh.predict` takes); the ground truth is the body parameters. ``key2mesh evaluate
--dataset mocap-heldout`` scores on it, and adaptation uses it as a labelled synthetic target
(:func:`key2mesh.train.adapt.synthetic_target`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from key2mesh.body import body_model_from_config
from key2mesh.data.cache import PoseBank
from key2mesh.data.synth import PairSynthesizer, SynthConfig
from key2mesh.errors import Key2MeshError
from key2mesh.train.random import choose

if TYPE_CHECKING:
    from key2mesh.model.checkpoint import Checkpoint

HELDOUT = ("all", "clips", "subjects")


@dataclass
class MocapSamples:
    """N synthesised samples: ``keypoints2d`` (N,K,2) virtual-camera pixels and ``confidence``
    (N,K) of ``keypoint_set`` in, body parameters ``rotmats`` (N,24,3,3) / ``shape`` (N,S) out."""

    name: str
    keypoints2d: torch.Tensor
    confidence: torch.Tensor
    keypoint_set: str
    rotmats: torch.Tensor
    shape: torch.Tensor
    frames: torch.Tensor | None = None  # (N,) the cache frame of each row
    pool_size: int = 0  # how many frames the rows were drawn from (with replacement)

    def __len__(self) -> int:
        return len(self.keypoints2d)


def mocap_samples(
    cache: str,
    checkpoint: Checkpoint | Sequence[Checkpoint],
    noise_profile: str = "strong",
    n: int = 4096,
    seed: int = 7,
    split: str = "val",
    synth_overrides: dict | None = None,
    heldout: str = "all",
    views: int = 1,
) -> MocapSamples:
    """``n`` samples of the frames pre-training held out (``split="val"``; ``heldout``: ``all``,
    only held-out ``clips`` of sources without subjects, or only held-out ``subjects``) or of its
    training frames (``split="train"``). ``checkpoint``: a :class:`~key2mesh.model.checkpoint.Checkpoint`
    (its body, keypoint set, camera and held-out split), or several (the members of an ensemble,
    ``Key2Mesh.member_checkpoints``, or every network a table compares): then only the frames
    that EVERY one of them held out (``split="train"``: trained on) are drawn, so no network is
    scored on its own training frames; the first one's body, keypoint set and camera synthesise
    the samples. ``views`` > 1: each drawn pose and shape is seen ``views`` times in a row, each
    from its own random viewpoint (the synthesizer's global rotation): synchronised views of one
    instant, rows ``i·views … (i+1)·views − 1``."""
    if split not in ("val", "train"):
        raise Key2MeshError(f"split must be 'val' (held-out frames) or 'train', got {split!r}")
    if heldout not in HELDOUT or (split == "train" and heldout != "all"):
        raise Key2MeshError(
            f"heldout must be one of {', '.join(HELDOUT)} (and 'all' for split='train'), "
            f"got {heldout!r} with split={split!r}"
        )
    checkpoints = list(checkpoint) if isinstance(checkpoint, (list, tuple)) else [checkpoint]
    if not checkpoints:
        raise Key2MeshError("mocap_samples needs at least one checkpoint")
    first = checkpoints[0]
    bank = PoseBank.load(cache)
    body = body_model_from_config(first.body)
    try:
        idx = bank.common_frames([ck.split_options() for ck in checkpoints], split, heldout)
    except Key2MeshError as exc:
        raise Key2MeshError(f"{cache}: {exc}") from None
    if not len(idx):
        what = "held out" if split == "val" else "trained on"
        part = "" if heldout == "all" else f" ({heldout} set)"
        splits = ", ".join(str(ck.split_options()) for ck in checkpoints)
        raise Key2MeshError(
            f"{cache}: no frame{part} is {what} by all {len(checkpoints)} networks (splits: "
            f"{splits}): each would be scored on frames another one trained on; score them one "
            "by one"
        )
    if views < 1 or n % views:
        raise Key2MeshError(f"views must be >= 1 and divide n ({n}), got {views}")
    g = torch.Generator().manual_seed(seed)
    sel = choose(idx, n // views, g).repeat_interleave(views)
    shapes = torch.from_numpy(bank.shapes)[choose(len(bank.shapes), n // views, g)]
    shapes = shapes.repeat_interleave(views, 0)
    cfg = SynthConfig(noise_profile=noise_profile, **(synth_overrides or {}))
    synth = PairSynthesizer(body, first.keypoint_set, first.camera, cfg)
    b = synth(torch.from_numpy(bank.rotmats)[sel], shapes, g)
    return MocapSamples(
        f"mocap-{split}+{noise_profile}",
        b.keypoints2d,
        b.confidence,
        first.keypoint_set,
        b.rotmats,
        b.shape,
        frames=sel,
        pool_size=len(idx),
    )
