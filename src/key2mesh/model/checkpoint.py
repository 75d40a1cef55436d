"""Checkpoints that carry everything needed to rebuild the model and its input convention:
network config and weights, keypoint set, normalisation, virtual camera, body backend and its
configuration, library versions, training state. Writes are atomic (temp file + rename)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from key2mesh import __version__
from key2mesh.errors import Key2MeshError
from key2mesh.geometry.camera import VirtualCamera
from key2mesh.model.network import Key2MeshNet, ModelConfig

FORMAT = "key2mesh-checkpoint"
FORMAT_VERSION = 1
REQUIRED = ("format", "format_version", "model_config", "model", "keypoint_set", "body", "camera", "normalization")


def atomic_save(obj: Any, path: str | Path) -> None:
    """torch.save to a temp file in the same folder, then rename (never a half-written file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def make_checkpoint(
    net: Key2MeshNet,
    *,
    keypoint_set: str,
    body_config: dict,
    camera: VirtualCamera,
    normalization: dict,
    stage: str,
    **extra: Any,
) -> dict:
    """Assemble a checkpoint dict (``extra``: optimizer/critic states, step, metrics, RNG...)."""
    import anny
    import roma

    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "stage": stage,
        "versions": {"key2mesh": __version__, "torch": torch.__version__, "anny": anny.__version__, "roma": roma.__version__},
        "model_config": net.config.to_dict(),
        "model": {k: v.detach().cpu() for k, v in net.state_dict().items()},
        "keypoint_set": keypoint_set,
        "body": dict(body_config),
        "camera": camera.to_dict(),
        "normalization": dict(normalization),
        **extra,
    }


def slim_checkpoint(ckpt: dict, half: bool = True) -> dict:
    """A shippable copy: no optimizer/RNG state, weights in float16 (restored to float32 on load)."""
    keep = {k: v for k, v in ckpt.items() if k not in ("optimizer", "rng")}
    if half:
        keep["model"] = {k: v.half() if v.is_floating_point() else v for k, v in ckpt["model"].items()}
    return keep


def load_checkpoint(
    path: str | Path,
    expect_body: dict | None = None,
    expect_keypoint_set: str | None = None,
) -> dict:
    """Read and validate a checkpoint; mismatches with what the caller expects are user errors."""
    path = Path(path)
    if not path.is_file():
        raise Key2MeshError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
        raise Key2MeshError(f"{path} is not a readable key2mesh checkpoint ({type(exc).__name__})") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise Key2MeshError(f"{path} is not a key2mesh checkpoint")
    if ckpt.get("format_version") != FORMAT_VERSION:
        raise Key2MeshError(
            f"{path} has checkpoint format {ckpt.get('format_version')}, this key2mesh reads format {FORMAT_VERSION}"
        )
    missing = [k for k in REQUIRED if k not in ckpt]
    if missing:
        raise Key2MeshError(f"{path} lacks {missing}; was it written by key2mesh {ckpt.get('versions', {}).get('key2mesh', '?')}?")
    if expect_body is not None and {k: ckpt["body"].get(k) for k in expect_body} != dict(expect_body):
        raise Key2MeshError(f"{path} was trained for body model {ckpt['body']}, not {expect_body}")
    if expect_keypoint_set is not None and ckpt["keypoint_set"] != expect_keypoint_set:
        raise Key2MeshError(f"{path} takes keypoint set {ckpt['keypoint_set']!r}, not {expect_keypoint_set!r}")
    return ckpt


def build_network(ckpt: dict, device: str | torch.device = "cpu") -> Key2MeshNet:
    """Rebuild the network of a checkpoint, weights loaded, in eval mode."""
    net = Key2MeshNet(ModelConfig(**ckpt["model_config"]))
    net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in ckpt["model"].items()})
    return net.to(device).eval()
