"""Checkpoints that carry everything needed to rebuild the model and its input convention:
network config and weights, keypoint set, normalisation, virtual camera, body backend and its
configuration, library versions, training state. Writes are atomic (temp file + rename).

Checkpoints are read with ``torch.load(weights_only=True)``: a file that holds anything but
tensors and plain Python values (dicts, lists, tuples, str, numbers, bools, None) is refused, so
loading a checkpoint never runs code. Everything written here is first reduced to those types
(:func:`to_plain`)."""

from __future__ import annotations

import dataclasses
import enum
import os
import pickle
import re
from pathlib import Path, PurePath
from typing import Any

import numpy as np
import torch
from torch.torch_version import TorchVersion

from key2mesh import __version__
from key2mesh.errors import Key2MeshError
from key2mesh.geometry.camera import VirtualCamera
from key2mesh.model.network import Key2MeshNet, ModelConfig
from key2mesh.safe_paths import atomic_path

FORMAT = "key2mesh-checkpoint"
FORMAT_VERSION = 1
REQUIRED = ("format", "format_version", "model_config", "model", "keypoint_set", "body", "camera", "normalization")


# Classes older checkpoints hold besides plain types: ``torch.__version__`` (a str subclass that
# runs no code when rebuilt) was stored as is before version strings were made plain.
_SAFE_GLOBALS = [TorchVersion]


def to_plain(obj: Any, where: str = "checkpoint") -> Any:
    """``obj`` with every value turned into a type ``torch.load(weights_only=True)`` accepts.

    Dataclasses become dicts, paths and str subclasses plain str, enums their value, NumPy
    scalars Python numbers and NumPy arrays tensors; tensors, dicts, lists, tuples and plain
    scalars are kept. Anything else is a programming error (``TypeError`` naming its key)."""
    if obj is None or type(obj) in (bool, int, float, complex, str, bytes):
        return obj
    if isinstance(obj, (torch.Tensor, torch.Size, torch.dtype, torch.device)):
        return obj
    if isinstance(obj, dict):
        return {to_plain(k, where): to_plain(v, f"{where}[{k!r}]") for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        items = [to_plain(v, f"{where}[{i}]") for i, v in enumerate(obj)]
        return items if isinstance(obj, list) else tuple(items)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_plain(dataclasses.asdict(obj), where)
    if isinstance(obj, enum.Enum):
        return to_plain(obj.value, where)
    if isinstance(obj, str):
        return str.__str__(obj)
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return float(obj)
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind in "biufc":
            return torch.from_numpy(np.ascontiguousarray(obj))
        return to_plain(obj.tolist(), where)
    raise TypeError(f"{where}: {type(obj).__name__} cannot be stored in a checkpoint (tensors and plain values only)")


def atomic_save(obj: Any, path: str | Path) -> None:
    """torch.save to a temp file in the same folder, then rename (never a half-written file;
    :func:`~key2mesh.safe_paths.atomic_path`). A full disk is a one-line error that keeps the
    previous file.

    ``obj`` is reduced to plain types first (:func:`to_plain`), so the file loads with
    ``weights_only=True``."""
    obj = to_plain(obj)
    with atomic_path(path) as tmp:
        # through a Python file object, so a full disk surfaces as OSError(ENOSPC) (torch's own
        # path writer reports it as an opaque RuntimeError); mode 0o666 & umask, as any new file
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "wb") as fh:
            torch.save(obj, fh)


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

    return to_plain({
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "stage": stage,
        "versions": {"key2mesh": str(__version__), "torch": str(torch.__version__), "anny": str(anny.__version__),
                     "roma": str(roma.__version__)},
        "model_config": net.config.to_dict(),
        "model": {k: v.detach().cpu() for k, v in net.state_dict().items()},
        "keypoint_set": keypoint_set,
        "body": dict(body_config),
        "camera": camera.to_dict(),
        "normalization": dict(normalization),
        **extra,
    })


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
        # weights_only: tensors and plain values only, so a crafted file cannot run code
        with torch.serialization.safe_globals(_SAFE_GLOBALS):
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        unsafe = re.search(r"GLOBAL (\S+)|allowlist|add_safe_globals", str(exc))
        if not unsafe:
            raise Key2MeshError(f"{path} is not a readable key2mesh checkpoint (corrupt, or not a torch file)") from None
        what = f" ({unsafe.group(1)})" if unsafe.group(1) else ""
        raise Key2MeshError(f"{path} is refused: it holds Python objects{what} besides tensors and plain values "
                            "(loading it could run code); key2mesh checkpoints never do") from None
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
    if not isinstance(ckpt["model"], dict) or not all(torch.is_tensor(v) for v in ckpt["model"].values()):
        raise Key2MeshError(f"{path}: its 'model' entry is not a dict of tensors")
    bad = [k for k, v in ckpt["model"].items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise Key2MeshError(f"checkpoint {path} has non-finite weights ({len(bad)} tensor{'s' if len(bad) > 1 else ''} "
                            f"with NaN/inf, first {bad[0]!r}); it cannot be used (was training diverging?)")
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
