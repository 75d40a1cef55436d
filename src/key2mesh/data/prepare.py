"""Build the training cache (``key2mesh data prepare``) from MoCap sources.

Clips with rotations (AMASS, DeepMimic) are retargeted onto the body backend (SMPL: as is;
anny: SMPL→anny with rest-pose alignment); clips with joint positions only (holosoma climb) are
fitted by the batched IK. Every frame keeps the index of its clip, for held-out splits by clip.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from key2mesh.body.base import BodyModel
from key2mesh.data.cache import RETARGET_VERSION, PoseBank
from key2mesh.data.mocap.clip import MotionClip, load_report
from key2mesh.data.shapes import sample_shapes
from key2mesh.errors import Key2MeshError

log = logging.getLogger(__name__)


def _available_free_sources() -> tuple[str, ...]:
    """The free MoCap sources whose loaders are installed in this version."""
    import importlib.util

    return tuple(
        s
        for s in ("deepmimic", "holosoma")
        if importlib.util.find_spec(f"key2mesh.data.mocap.{s}") is not None
    )


FREE_SOURCES = _available_free_sources()


@dataclass
class PrepareReport:
    frames: int = 0
    clips: int = 0
    per_source: dict[str, int] = field(default_factory=dict)
    skipped_files: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)
    seconds: float = 0.0
    ik_error_mm: dict[str, float] = field(
        default_factory=dict
    )  # mean IK residual per joint-only source


def _clip_digest(clip: MotionClip) -> str:
    """A digest of a clip's motion (its rotations or joint positions and frame rate): equal for
    the same take read twice, whatever its file is called."""
    h = hashlib.blake2b(digest_size=16)
    h.update(repr(clip.fps).encode())
    for arr in (clip.rotmats, clip.joints):
        if arr is not None:
            h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


def clip_to_body_rotations(
    clip: MotionClip, body: BodyModel, ik_iters: int = 150, return_error: bool = False
):
    """(F, 24, 3, 3) float32 rotations of ``clip`` in ``body``'s own convention; with
    ``return_error`` also the mean IK residual in metres (None for clips with rotations)."""
    if clip.rotmats is not None:
        rot = torch.from_numpy(clip.rotmats).float()
        if body.traits.retargets_smpl_rotations:
            from key2mesh.data.mocap.retarget import retarget_smpl_to_anny

            rot = retarget_smpl_to_anny(rot, body)
        out = rot.cpu().numpy().astype(np.float32)
        return (out, None) if return_error else out
    if clip.joints is None or clip.joint_names is None:
        raise Key2MeshError(f"clip {clip.name!r} has neither rotations nor named joints")
    from key2mesh.data.mocap.ik import fit_joints

    target = torch.from_numpy(clip.joints).float().to(body.device)
    hints = {"prior": clip.ik_prior} if clip.ik_prior else {}  # else the IK's default prior
    fit = fit_joints(
        body, target, list(clip.joint_names), clip.ik_weights or None, iters=ik_iters, **hints
    )
    out = fit.rotmats.detach().cpu().numpy().astype(np.float32)
    return (out, float(fit.error.mean())) if return_error else out


def prepare_cache(
    body: BodyModel,
    out: str | Path,
    sources: tuple[str, ...] = FREE_SOURCES,
    amass: list[str] | None = None,
    fps: float = 30.0,
    num_shapes: int = 8192,
    seed: int = 0,
    ik_iters: int = 150,
    progress: bool = True,
    bvh: list[str] | None = None,
    asf_amc: list[str] | None = None,
    index: str | None = None,
    fps_override: list[str] | None = None,
) -> tuple[PoseBank, PrepareReport]:
    """Load every source, convert to body rotations, write one ``.npz`` cache at ``out``.

    ``bvh`` / ``asf_amc``: folders, files or archives of skeleton MoCap (e.g. CMU), read with
    :mod:`key2mesh.data.mocap.cmu` (``index``: per-trial fps / T-pose table; ``fps_override``:
    ``PATTERN=FPS`` items). Their sources are added to ``sources`` when given."""
    t0 = time.perf_counter()
    report = PrepareReport()
    clips: list[MotionClip] = []
    paths = {"amass": amass, "bvh": bvh, "asf_amc": asf_amc}
    sources = tuple(sources) + tuple(s for s in ("bvh", "asf_amc") if paths[s] and s not in sources)
    sources = tuple(dict.fromkeys(sources))  # a source named twice is read once
    seen: set[tuple[str, str]] = set()  # (source, content digest) of the clips kept
    for source in sources:
        if source in paths and not paths[source]:
            flag = source.replace("_", "-")
            raise Key2MeshError(
                f"source {source!r} needs --{flag} PATH (files, folders or archives)"
            )
        opts: dict = {"paths": paths[source]} if source in paths else {}
        if source in ("bvh", "asf_amc"):
            opts.update(index=index, fps_override=fps_override)
        if source in ("amass", "holosoma", "deepmimic"):  # their loaders' own default was 30 Hz
            opts["target_fps"] = fps
        rep = load_report(source, **opts)
        report.skipped_files += rep.num_skipped
        report.skipped.extend(rep.skipped)
        for clip in rep.clips:
            key = (source, _clip_digest(clip))
            if key in seen:  # the same take twice (a file listed twice, an archive and its
                # extracted folder): a copy could land in training and its twin in validation
                report.skipped_files += 1
                report.skipped.append((f"{source}:{clip.name}", "the same clip was read before"))
                continue
            seen.add(key)
            clips.append(clip.subsample(fps).validate())
    if not clips:
        raise Key2MeshError(f"no MoCap clips found in sources {list(sources)}")
    rots, clip_index, names, srcs, subjects = [], [], [], [], []
    ik_err: dict[str, list[float]] = {}  # source -> [sum of clip error × frames, frames]
    threads = torch.get_num_threads()
    # The IK's tensors are small (a clip × 24 joints): one thread is faster, and with other work on
    # the machine multi-threaded small ops spin-wait (measured 15× slower on a busy 2-core machine).
    torch.set_num_threads(1)
    try:
        converted = [
            clip_to_body_rotations(clip, body, ik_iters, return_error=True)
            for clip in tqdm(clips, desc="retarget/IK", disable=not progress, dynamic_ncols=True)
        ]
    finally:
        torch.set_num_threads(threads)
    for i, (clip, (r, err)) in enumerate(zip(clips, converted)):
        rots.append(r)
        clip_index.append(np.full(len(r), i, dtype=np.int32))
        names.append(clip.name)
        srcs.append(clip.source)
        subjects.append(clip.subject or "")
        report.per_source[clip.source] = report.per_source.get(clip.source, 0) + len(r)
        if err is not None:
            acc = ik_err.setdefault(clip.source, [0.0, 0])
            acc[0] += err * len(r)
            acc[1] += len(r)
    report.ik_error_mm = {k: 1000 * total / frames for k, (total, frames) in ik_err.items()}
    bank = PoseBank(
        rotmats=np.concatenate(rots),
        clip_index=np.concatenate(clip_index),
        clip_names=names,
        clip_sources=srcs,
        clip_subjects=subjects,
        shapes=sample_shapes(body, num_shapes, seed),
        body=body.config(),
        meta={
            "fps": fps,
            "sources": list(sources),
            "seed": seed,
            "retarget_version": RETARGET_VERSION,
        },
    )
    bank.save(out)
    report.frames, report.clips, report.seconds = (
        bank.num_frames,
        len(clips),
        time.perf_counter() - t0,
    )
    return bank, report
