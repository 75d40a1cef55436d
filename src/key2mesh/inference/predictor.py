"""The user-facing Python API: ``Key2Mesh.from_pretrained(...).predict(keypoints)``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from key2mesh.body import body_model_from_config
from key2mesh.body.base import BodyModel
from key2mesh.body.traits import body_traits
from key2mesh.devices import check_device
from key2mesh.errors import Key2MeshError
from key2mesh.keypoints.convert import convert_keypoints
from key2mesh.keypoints.io import MIN_KEYPOINTS, check_detections
from key2mesh.keypoints.sets import canonical_set_name, num_keypoints
from key2mesh.model.checkpoint import (
    Checkpoint,
    build_network,
    ensemble_members,
    load_checkpoint,
    resolve_checkpoint,
)

# A batch through a network or body model whose rows are not independent of their batch
# (``batch_invariant`` False: MKL's float32 products, where :mod:`key2mesh.dense` does not apply;
# the int8 network; the SMPL body) is padded to a multiple of this many rows: for 1-3 rows MKL
# takes another code path whose sums differ in the last bit, so a detection's numbers would
# depend on how many others it is batched (or chunked) with. From 4 rows on, every batch size
# gives the same numbers per row (checked up to 64 rows, and by the tests).
PAD_ROWS = 4


def _padded(fn, *batch: torch.Tensor, invariant: bool | None = None):
    """``fn(*batch)`` on the batch padded (last row repeated) to a multiple of PAD_ROWS rows, the
    padding cut off again from every tensor (or BodyOutput field) of the result. A body model
    that is ``batch_invariant`` (or ``invariant=True``: ``fn`` runs one) is called on the batch
    as it is (padding would only cost time)."""
    if invariant if invariant is not None else getattr(fn, "batch_invariant", False):
        return fn(*batch)
    n = batch[0].shape[0]
    pad = -n % PAD_ROWS
    if pad and n:
        batch = tuple(torch.cat([t, t[-1:].expand(pad, *t.shape[1:])]) for t in batch)
    out = fn(*batch)
    if not pad or not n:
        return out
    if isinstance(out, torch.Tensor):
        return out[:n]
    if isinstance(out, tuple):
        return tuple(o[:n] for o in out)
    return type(out)(**{k: v[:n] for k, v in out.__dict__.items()})


@dataclass
class Prediction:
    """Batched outputs (N = number of inputs), metres, SMPL-like world frame (root at origin).

    rotmats (N,24,3,3); shape (N,S); vertices (N,V,3) or None; joints (N,24,3) or None;
    keypoints3d (N,K,3) in the model's keypoint set; valid (N,) inputs with enough keypoints."""

    rotmats: torch.Tensor
    shape: torch.Tensor
    vertices: torch.Tensor | None
    joints: torch.Tensor | None
    keypoints3d: torch.Tensor
    valid: torch.Tensor
    faces: torch.Tensor

    def to_numpy(self) -> dict[str, np.ndarray]:
        return {
            k: v.detach().cpu().numpy()
            for k, v in self.__dict__.items()
            if isinstance(v, torch.Tensor)
        }


class Key2Mesh:
    """Keypoints → body-model parameters and mesh in one forward pass (no autograd).

    ``device``: None or ``auto`` picks the GPU when there is one (the CPU with ``int8``).
    ``int8``: run the network with int8 weights on the CPU (:mod:`key2mesh.model.int8`; about
    2x faster at batch 1, accuracy in docs/evaluation.md); a row's numbers then depend slightly on the
    other rows of its batch."""

    def __init__(
        self,
        checkpoint: Checkpoint | dict,
        device: str | torch.device | None = None,
        full_mesh: bool = True,
        min_keypoints: int = MIN_KEYPOINTS,
        int8: bool = False,
    ):
        check_device(None if device is None else str(device))
        auto = device is None or str(device) in ("", "auto")
        # auto: the GPU when there is one, but int8 runs on the CPU only
        gpu = torch.cuda.is_available() and not int8
        self.device = torch.device("cuda" if gpu else "cpu") if auto else torch.device(device)
        if int8 and self.device.type != "cpu":
            raise Key2MeshError(f"int8 inference runs on the CPU only (device {self.device})")
        if not isinstance(checkpoint, Checkpoint):  # the on-disk dict (e.g. torch.load's)
            checkpoint = Checkpoint.from_dict(checkpoint)
        self.checkpoint = checkpoint
        self.int8 = int8
        self.net = self._network(checkpoint)
        self.members = 1  # networks averaged (see from_pretrained: ensembles)
        self.member_checkpoints: list[Checkpoint] = [checkpoint]  # one per averaged network
        self.keypoint_set: str = checkpoint.keypoint_set
        self.camera = checkpoint.camera
        self.normalization = checkpoint.normalization
        self.min_keypoints = min_keypoints
        self.body: BodyModel = body_model_from_config(checkpoint.body, device=str(self.device))
        body_cfg = dict(checkpoint.body)
        full = self.body.traits.full_mesh_options
        if full_mesh and any(body_cfg.get(k) != v for k, v in full.items()):
            body_cfg.update(full)  # same rig, so the parameters drive the full mesh too
            self.mesh_body: BodyModel = body_model_from_config(body_cfg, device=str(self.device))
        else:
            self.mesh_body = self.body

    @classmethod
    def from_pretrained(
        cls,
        path_or_name: str | os.PathLike = "anny-body25",
        device: str | None = None,
        full_mesh: bool = True,
        smpl_dir: str | os.PathLike | None = None,
        int8: bool = False,
    ) -> Key2Mesh:
        """A checkpoint file (ours, or the paper's official ``best-model.ckpt``) or shipped name,
        or an ensemble: a shipped ensemble name (``anny-coco17-ensemble``) or checkpoints joined
        by "+" (same keypoint set, body, camera and input normalisation; the first one's
        metadata is ``self.checkpoint``). ``smpl_dir``: the SMPL files' folder for an SMPL
        checkpoint (default ``$KEY2MESH_SMPL_DIR``; a folder stored in the checkpoint is never
        used); ignored for anny checkpoints."""
        members = ensemble_members(path_or_name)
        names = members or [path_or_name]
        ckpts = [load_checkpoint(resolve_checkpoint(n)) for n in names]
        for ckpt in ckpts:
            if smpl_dir is not None:
                folder = str(Path(smpl_dir).expanduser().resolve())
                ckpt.body.update(body_traits(ckpt.body.get("name", "")).model_dir_options(folder))
        model = cls(ckpts[0], device=device, full_mesh=full_mesh, int8=int8)
        if members:
            model._add_members(ckpts[1:], names)
        return model

    def _network(self, checkpoint: Checkpoint):
        """The checkpoint's network on this predictor's device, int8 when ``self.int8``."""
        net = build_network(checkpoint, self.device)
        if not self.int8:
            return net
        from key2mesh.model.int8 import quantize_int8

        return quantize_int8(net)

    def _add_members(self, others: list[Checkpoint], names: list) -> None:
        """Turn this predictor into an ensemble of its network and those of ``others``."""
        from key2mesh.model.ensemble import EnsembleNet

        first = self.checkpoint
        for name, ck in zip(names[1:], others):
            for what in ("keypoint_set", "body", "camera", "normalization"):
                if getattr(ck, what) != getattr(first, what):
                    raise Key2MeshError(
                        f"ensemble: {name} has another {what.replace('_', ' ')} than {names[0]} "
                        f"({getattr(ck, what)!r} vs {getattr(first, what)!r})"
                    )
        nets = [self.net, *(self._network(ck) for ck in others)]
        self.net = EnsembleNet(nets, self.body.clamp_shape)
        self.members = len(nets)
        self.member_checkpoints = [first, *others]

    @property
    def faces(self) -> torch.Tensor:
        return self.mesh_body.faces

    def normalize(
        self, keypoints, confidences=None, keypoint_set: str | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Pixel keypoints (N,K,2)/(K,2) of any known set → network inputs (N,K_model,2), valid (N,K_model)."""
        kp, conf = self._in_model_set(keypoints, confidences, keypoint_set)
        return self.normalization(kp, conf)

    def _in_model_set(
        self, keypoints, confidences=None, keypoint_set: str | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Pixel keypoints (N,K,2)/(K,2) of any known set → pixels (N,K_model,2) and confidences of the model's set."""
        kp = torch.as_tensor(
            np.asarray(keypoints, dtype=np.float32) if not torch.is_tensor(keypoints) else keypoints
        ).float()
        single = kp.ndim == 2
        if single:
            kp = kp[None]
        if kp.ndim != 3 or kp.shape[-1] != 2:
            raise Key2MeshError(
                f"keypoints must be (N, K, 2) or (K, 2) pixels, got shape {tuple(kp.shape)}"
            )
        if confidences is None:
            conf = torch.ones(kp.shape[:2])
        else:
            conf = torch.as_tensor(np.asarray(confidences, dtype=np.float32)).float()
            if single and conf.shape == kp.shape[1:2]:
                conf = conf[None]
            if conf.shape != kp.shape[:2]:  # e.g. (K, N) by mistake: never reshaped silently
                raise Key2MeshError(
                    f"confidences must be {tuple(kp.shape[:2])} to match keypoints of shape "
                    f"{tuple(kp.shape)}, got {tuple(conf.shape)}"
                )
            conf = torch.nan_to_num(conf, nan=0.0, posinf=0.0, neginf=0.0)  # not finite: missing
        src = canonical_set_name(keypoint_set or self.keypoint_set)
        if kp.shape[1] != num_keypoints(src):
            raise Key2MeshError(
                f"keypoint set {src!r} has {num_keypoints(src)} points, got {kp.shape[1]}"
            )
        bad = ~torch.isfinite(kp).all(-1)
        conf = torch.where(bad, torch.zeros_like(conf), conf)
        kp = torch.where(bad[..., None], torch.zeros_like(kp), kp)
        if src != self.keypoint_set:
            kp, conf = convert_keypoints(kp, conf, src, self.keypoint_set)
        return kp, conf

    @torch.no_grad()
    def predict(
        self,
        keypoints,
        confidences=None,
        keypoint_set: str | None = None,
        mesh: bool = True,
        batch_size: int = 4096,
    ) -> Prediction:
        """Predict bodies for (N,K,2) pixel keypoints (any scale/offset) of ``keypoint_set``
        (default: the model's own). Inputs with fewer than ``min_keypoints`` confident points, or
        with all of them on one spot (:func:`~key2mesh.keypoints.io.check_detections`), are still
        predicted but flagged in ``valid``."""
        if (
            isinstance(batch_size, bool)
            or not isinstance(batch_size, (int, np.integer))
            or batch_size < 1
        ):
            raise Key2MeshError(f"batch_size must be a positive integer, got {batch_size!r}")
        kp, conf = self._in_model_set(keypoints, confidences, keypoint_set)
        inputs, _ = self.normalization(kp, conf)
        usable = self.usable(kp, conf)
        rots, shapes, verts, joints, kps = [], [], [], [], []
        for i in range(0, len(inputs), batch_size):
            r, s = _padded(
                self.net.predict,
                inputs[i : i + batch_size].to(self.device),
                invariant=getattr(self.net, "batch_invariant", False),
            )
            rots.append(r)
            shapes.append(s)
            kps.append(_padded(self._body_keypoints, r, s, invariant=self.body.batch_invariant))
            if mesh:
                out = _padded(self.mesh_body, r, s)
                verts.append(out.vertices)
                joints.append(out.joints)
        # one chunk (the usual case) is returned as it is: a copy of a large batch's vertices
        # costs as much as skinning them
        cat = lambda xs: (xs[0] if len(xs) == 1 else torch.cat(xs)) if xs else None  # noqa: E731
        return Prediction(
            cat(rots),
            cat(shapes),
            cat(verts),
            cat(joints),
            cat(kps),
            torch.from_numpy(usable).to(self.device),
            self.mesh_body.faces,
        )

    def _body_keypoints(self, rotmats: torch.Tensor, shape: torch.Tensor) -> torch.Tensor:
        """Body keypoints (N,K,3) of the model's set (the training body's mesh)."""
        return self.body.forward_keypoints(rotmats, shape, self.keypoint_set)

    def usable(self, keypoints, confidences) -> np.ndarray:
        """(N,) bool: detections of the model's set (pixels) usable as inputs
        (:func:`~key2mesh.keypoints.io.check_detections` with this model's threshold)."""
        return self.check(keypoints, confidences).usable

    def check(self, keypoints, confidences):
        """:func:`~key2mesh.keypoints.io.check_detections` with ``min_keypoints`` and this model's
        confidence threshold (keypoints (..., K, 2), confidences (..., K), tensors or arrays)."""
        as_np = lambda x: x.detach().cpu().numpy() if torch.is_tensor(x) else np.asarray(x)  # noqa: E731
        return check_detections(
            as_np(keypoints),
            as_np(confidences),
            self.min_keypoints,
            self.normalization.conf_threshold,
        )

    def predict_chunks(
        self,
        keypoints,
        confidences=None,
        keypoint_set: str | None = None,
        mesh: bool = False,
        chunk_size: int = 4096,
    ) -> Iterator[tuple[slice, Prediction]]:
        """:meth:`predict` on ``chunk_size`` inputs (N,K,2) at a time: yields (the inputs' slice,
        its Prediction), so an input of any length never holds every output (vertices above all)
        at once. The numbers are those of one :meth:`predict` call on everything."""
        if chunk_size < 1:
            raise Key2MeshError(f"chunk_size must be a positive integer, got {chunk_size}")
        n = len(keypoints)
        for i in range(0, n, chunk_size):
            part = slice(i, min(i + chunk_size, n))
            conf = None if confidences is None else confidences[part]
            yield (
                part,
                self.predict(keypoints[part], conf, keypoint_set, mesh=mesh, batch_size=chunk_size),
            )

    @torch.no_grad()
    def keypoints3d(
        self, rotmats: torch.Tensor, shape: torch.Tensor, chunk_size: int = 4096
    ) -> torch.Tensor:
        """Body keypoints (N,K,3) of the model's set from parameters, ``chunk_size`` bodies at a
        time (the body model's vertices of one chunk only); returned on the CPU."""

        return torch.cat(
            [
                _padded(
                    self._body_keypoints,
                    rotmats[i : i + chunk_size].to(self.device),
                    shape[i : i + chunk_size].to(self.device),
                    invariant=self.body.batch_invariant,
                ).cpu()
                for i in range(0, len(rotmats), chunk_size)
            ]
            or [torch.zeros(0, num_keypoints(self.keypoint_set), 3)]
        )

    @torch.no_grad()
    def mesh_chunks(
        self, rotmats: torch.Tensor, shape: torch.Tensor, chunk_size: int = 256
    ) -> Iterator[tuple[slice, np.ndarray]]:
        """Mesh vertices (n,V,3) of ``chunk_size`` bodies at a time, as (slice, CPU array)."""
        for i in range(0, len(rotmats), chunk_size):
            part = slice(i, min(i + chunk_size, len(rotmats)))
            yield (
                part,
                _padded(self.mesh_body, rotmats[part].to(self.device), shape[part].to(self.device))
                .vertices.cpu()
                .numpy(),
            )
