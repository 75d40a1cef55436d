"""Checkpoints that carry everything needed to rebuild the model and its input convention:
network config and weights, keypoint set, normalisation, virtual camera, body backend and its
configuration, library versions, training state. Writes are atomic (temp file + rename).

In memory a checkpoint is a typed :class:`Checkpoint` (with :class:`InputNormalization`); on disk
it is the plain dict of :meth:`Checkpoint.to_dict` (the format is unchanged). The shipped models
(:data:`PRETRAINED`) are found by :func:`resolve_checkpoint`.

Checkpoints are read with ``torch.load(weights_only=True)``: a file that holds anything but
tensors and plain Python values (dicts, lists, tuples, str, numbers, bools, None) is refused, so
loading a checkpoint never runs code. Everything written here is first reduced to those types
(:func:`to_plain`). Nor does a checkpoint choose where body model files are read from: a stored
``body.model_dir`` is dropped at load time (``--smpl-dir``, ``smpl_dir=`` or
``$KEY2MESH_SMPL_DIR`` choose the folder)."""

from __future__ import annotations

import dataclasses
import enum
import logging
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
from key2mesh.geometry.normalize import bbox_normalize
from key2mesh.model.network import Key2MeshNet, ModelConfig
from key2mesh.safe_paths import atomic_path

log = logging.getLogger(__name__)

FORMAT = "key2mesh-checkpoint"
# no trained weight comes near this (the shipped models' largest is ~0.5); an update that
# exploded (too high a learning rate) does
MAX_WEIGHT = 1e6
FORMAT_VERSION = 1
REQUIRED = (
    "format",
    "format_version",
    "model_config",
    "model",
    "keypoint_set",
    "body",
    "camera",
    "normalization",
)


PRETRAINED_DIR = Path(__file__).resolve().parents[1] / "pretrained"
PRETRAINED = {
    "anny-body25": "anny_body25.pt",
    "anny-body25-seed1": "anny_body25_seed1.pt",  # the same recipe, training seed 1
    "anny-coco17": "anny_coco17.pt",
    "anny-coco17-seed1": "anny_coco17_seed1.pt",  # the same recipe, training seed 1
}
# Shipped ensembles: several shipped networks of one recipe, averaged (model/ensemble.py). Users
# name their own as "a.pt+b.pt".
ENSEMBLES = {
    "anny-body25-ensemble": ("anny-body25", "anny-body25-seed1"),
    "anny-coco17-ensemble": ("anny-coco17", "anny-coco17-seed1"),
}


def ensemble_members(path_or_name: str | os.PathLike) -> list[str] | None:
    """The member checkpoints of an ensemble (a name of :data:`ENSEMBLES`, or paths/names joined
    by "+"), or None for a single checkpoint."""
    name = str(path_or_name)
    if name in ENSEMBLES:
        return list(ENSEMBLES[name])
    if "+" in name and not Path(name).is_file():
        members = [m.strip() for m in name.split("+") if m.strip()]
        if len(members) < 2:
            raise Key2MeshError(f"ensemble {name!r}: give two or more checkpoints joined by '+'")
        return members
    return None


def resolve_checkpoint(path_or_name: str | os.PathLike) -> Path:
    """A file path (a key2mesh checkpoint, or the paper's official ``best-model.ckpt`` that
    :func:`load_checkpoint` converts), or the name of a shipped checkpoint (``anny-body25``,
    ``anny-coco17``)."""
    p = Path(path_or_name)
    if p.is_file():
        return p
    name = str(path_or_name)
    members = ensemble_members(name)
    if members is not None:
        raise Key2MeshError(
            f"{name!r} is an ensemble of several networks ({' + '.join(members)}): "
            "predict, demo and evaluate take it; adapt, export and fit take one checkpoint"
        )
    if name in PRETRAINED:
        shipped = PRETRAINED_DIR / PRETRAINED[name]
        if shipped.is_file():
            return shipped
        raise Key2MeshError(
            f"the shipped checkpoint {shipped} is missing from this install; "
            "rebuild it with `bash scripts/train_default.sh` (see docs/training.md)"
        )
    raise Key2MeshError(
        f"no checkpoint file {p} and no shipped model named {name!r} (shipped: {', '.join(PRETRAINED)})"
    )


@dataclasses.dataclass(frozen=True)
class InputNormalization:
    """How pixel keypoints become network inputs: the bounding-box rule over the points of
    confidence >= ``conf_threshold``; missing points get ``missing_value``."""

    conf_threshold: float = 0.1
    missing_value: float = -1.0
    method: str = "bbox"

    @classmethod
    def from_dict(cls, d: dict) -> InputNormalization:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def __call__(
        self, keypoints: torch.Tensor, confidence: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Pixel keypoints (N,K,2) and confidences (N,K) → network inputs (N,K,2), valid (N,K)."""
        return bbox_normalize(keypoints, confidence, self.conf_threshold, self.missing_value)


# The entries every checkpoint has; everything else (step, metrics, optimizer, ...) is ``extra``.
_TYPED = (
    "format",
    "format_version",
    "stage",
    "versions",
    "model_config",
    "model",
    "keypoint_set",
    "body",
    "camera",
    "normalization",
    "config",
)


@dataclasses.dataclass
class Checkpoint:
    """A loaded checkpoint. ``config``: the training configuration (pre-training's, with an
    ``"adapt"`` entry after adaptation; its held-out split: :meth:`split_options`); ``extra``: the
    other stored entries (``step``, ``metrics``, ``optimizer``, ``scheduler``, ``rng``, ...)."""

    model_config: ModelConfig
    model: dict[str, torch.Tensor]
    keypoint_set: str
    body: dict
    camera: VirtualCamera
    normalization: InputNormalization
    stage: str = ""
    versions: dict = dataclasses.field(default_factory=dict)
    config: dict = dataclasses.field(default_factory=dict)
    extra: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict) -> Checkpoint:
        """From the on-disk dict (validated by :func:`load_checkpoint`)."""
        return cls(
            model_config=ModelConfig(**d["model_config"]),
            model=d["model"],
            keypoint_set=d["keypoint_set"],
            body=dict(d["body"]),
            camera=VirtualCamera(**d["camera"]),
            normalization=InputNormalization.from_dict(d["normalization"]),
            stage=d.get("stage", ""),
            versions=dict(d.get("versions", {})),
            config=dict(d.get("config", {})),
            extra={k: v for k, v in d.items() if k not in _TYPED},
        )

    def to_dict(self) -> dict:
        """The on-disk dict (plain types only)."""
        d = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "stage": self.stage,
            "versions": dict(self.versions),
            "model_config": self.model_config.to_dict(),
            "model": dict(self.model),
            "keypoint_set": self.keypoint_set,
            "body": dict(self.body),
            "camera": self.camera.to_dict(),
            "normalization": self.normalization.to_dict(),
            **self.extra,
        }
        if self.config:
            d["config"] = dict(self.config)
        return to_plain(d)

    @property
    def step(self) -> int | None:
        return self.extra.get("step")

    def split_options(self) -> dict:
        """The held-out split pre-training used (:func:`~key2mesh.data.cache.split_options` of ``config``)."""
        from key2mesh.data.cache import split_options

        return split_options(self.config)


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
    raise TypeError(
        f"{where}: {type(obj).__name__} cannot be stored in a checkpoint (tensors and plain values only)"
    )


def atomic_save(obj: Any, path: str | Path) -> None:
    """torch.save to a temp file in the same folder, then rename (never a half-written file;
    :func:`~key2mesh.safe_paths.atomic_path`). A full disk is a one-line error that keeps the
    previous file.

    ``obj`` is reduced to plain types first (:func:`to_plain`), so the file loads with
    ``weights_only=True``."""
    obj = obj.to_dict() if isinstance(obj, Checkpoint) else to_plain(obj)
    with atomic_path(path) as tmp:
        # through a Python file object, so a full disk surfaces as OSError(ENOSPC) (torch's own
        # path writer reports it as an opaque RuntimeError); mode 0o666 & umask, as any new file
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "wb") as fh:
            try:
                torch.save(obj, fh)
            except RuntimeError as exc:
                err = _save_error(path, exc)
                if err is exc:
                    raise
                raise err from None


def _save_error(path: str | Path, exc: RuntimeError) -> Exception:
    """torch's zip writer turns the file object's OSError (a full disk) into ``RuntimeError:
    unexpected pos``, the OSError as its context: the one-line error of that OSError; a write
    failure without one is one line too; any other RuntimeError is returned as it is."""
    from key2mesh.safe_paths import write_error

    seen, cause = set(), exc.__cause__ or exc.__context__
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, OSError):
            return write_error(path, cause)
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    text = str(exc)
    if "unexpected pos" in text or "file write failed" in text:
        return Key2MeshError(
            f"cannot write {path}: the write failed (is the disk full?); the previous file is unchanged"
        )
    return exc


def largest_weight(state: dict[str, torch.Tensor]) -> tuple[float, str]:
    """(largest |w|, its tensor's name) over the floating-point tensors of a state dict,
    BatchNorm running statistics left out (the inputs' scale, not learned weights)."""
    top, name = 0.0, ""
    for k, v in state.items():
        if v.is_floating_point() and v.numel() and not k.endswith(("running_mean", "running_var")):
            m = float(v.detach().abs().max())
            if not np.isfinite(m):
                return m, k
            if m > top:
                top, name = m, k
    return top, name


def make_checkpoint(
    net: Key2MeshNet,
    *,
    keypoint_set: str,
    body_config: dict,
    camera: VirtualCamera,
    normalization: InputNormalization | dict,
    stage: str,
    **extra: Any,
) -> dict:
    """Assemble a checkpoint dict (``extra``: optimizer/critic states, step, metrics, RNG...)."""
    import anny
    import roma

    return to_plain(
        {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "stage": stage,
            "versions": {
                "key2mesh": str(__version__),
                "torch": str(torch.__version__),
                "anny": str(anny.__version__),
                "roma": str(roma.__version__),
            },
            "model_config": net.config.to_dict(),
            "model": {k: v.detach().cpu() for k, v in net.state_dict().items()},
            "keypoint_set": keypoint_set,
            "body": dict(body_config),
            "camera": camera.to_dict(),
            "normalization": to_plain(normalization),
            **extra,
        }
    )


def slim_checkpoint(ckpt: Checkpoint | dict, half: bool = True) -> dict:
    """A shippable copy: no optimizer/RNG state and no raw weights of a weight-averaged run
    (``ema``, ``raw_model``: only --resume needs them), weights in float16 (restored to float32
    on load)."""
    if isinstance(ckpt, Checkpoint):
        ckpt = ckpt.to_dict()
    keep = {k: v for k, v in ckpt.items() if k not in ("optimizer", "rng", "ema", "raw_model")}
    if half:
        keep["model"] = {
            k: v.half() if v.is_floating_point() else v for k, v in ckpt["model"].items()
        }
    return keep


# body options that name files the body model reads: never taken from a checkpoint
BODY_FILE_OPTIONS = ("model_dir", "joint_regressor_h36m")


def _without_model_dir(body, path: Path):
    """``body`` with its stored model folder (and any other file it names,
    :data:`BODY_FILE_OPTIONS`) dropped, said in a log line: the user's flags and environment
    choose where model files are read from, never a checkpoint."""
    if isinstance(body, dict) and body.get("model_dir") is not None:
        log.warning(
            "%s names the body model folder %s; ignored (pass --smpl-dir / smpl_dir= or set "
            "KEY2MESH_SMPL_DIR)",
            path,
            body["model_dir"],
        )
        body = {**body, "model_dir": None}
    if isinstance(body, dict) and body.get("joint_regressor_h36m") is not None:
        log.warning(
            "%s names the H36M joint regressor file %s; ignored (a checkpoint never chooses "
            "which files are read)",
            path,
            body["joint_regressor_h36m"],
        )
        body = {k: v for k, v in body.items() if k != "joint_regressor_h36m"}
    return body


def shipped_name(path: str | Path) -> str | None:
    """The name in :data:`PRETRAINED` of the shipped checkpoint at ``path``, or None."""
    try:
        resolved = Path(path).resolve()
    except OSError:
        return None
    for name, file in PRETRAINED.items():
        if resolved == (PRETRAINED_DIR / file).resolve():
            return name
    return None


def _unreadable(path: Path, detail: str) -> Key2MeshError:
    """The error for a file torch cannot read; for a shipped checkpoint, how to restore it."""
    msg = f"{path} is not a readable key2mesh checkpoint ({detail})"
    name = shipped_name(path)
    if name is not None:
        msg += (
            f"; it is the shipped model {name}, damaged in this install (truncated, or a Git LFS "
            "pointer): reinstall key2mesh, or rebuild it with `bash scripts/train_default.sh`"
        )
    return Key2MeshError(msg)


def load_checkpoint(
    path: str | Path,
    expect_body: dict | None = None,
    expect_keypoint_set: str | None = None,
) -> Checkpoint:
    """Read and validate a checkpoint; mismatches with what the caller expects are user errors.

    An official Key2Mesh checkpoint (the paper's Lightning ``best-model.ckpt`` or its
    ``state_dict``) is converted on the fly (:mod:`key2mesh.model.paper_import`): SMPL body
    (files from ``$KEY2MESH_SMPL_DIR`` unless a folder is given later), OpenPose COCO-18 input.
    A stored ``body.model_dir`` (or other file, :data:`BODY_FILE_OPTIONS`) is dropped;
    ``expect_body`` ignores them."""
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
            raise _unreadable(path, "corrupt, or not a torch file") from None
        what = f" ({unsafe.group(1)})" if unsafe.group(1) else ""
        raise Key2MeshError(
            f"{path} is refused: it holds Python objects{what} besides tensors and plain values "
            "(loading it could run code); key2mesh checkpoints never do. For an official Key2Mesh "
            "(Lightning) checkpoint from a source you trust, save its bare weights first (its "
            "'state_dict' entry, with torch.save) and pass that file"
        ) from None
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
        raise _unreadable(path, type(exc).__name__) from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        from key2mesh.model.paper_import import convert_paper_state_dict, paper_state_dict

        official = paper_state_dict(ckpt)
        if official is None:
            raise Key2MeshError(
                f"{path} is neither a key2mesh checkpoint nor an official Key2Mesh one "
                "(a Lightning best-model.ckpt, or its state_dict, with smpl_head.* weights)"
            )
        try:
            ckpt = convert_paper_state_dict(official).to_dict()
        except Key2MeshError as exc:
            raise Key2MeshError(f"{path}: {exc}") from None
    if ckpt.get("format_version") != FORMAT_VERSION:
        raise Key2MeshError(
            f"{path} has checkpoint format {ckpt.get('format_version')}, this key2mesh reads format {FORMAT_VERSION}"
        )
    missing = [k for k in REQUIRED if k not in ckpt]
    if missing:
        versions = ckpt.get("versions")
        by = versions.get("key2mesh", "?") if isinstance(versions, dict) else "?"
        raise Key2MeshError(f"{path} lacks {missing}; was it written by key2mesh {by}?")
    not_dict = [
        k
        for k in ("model_config", "body", "camera", "normalization")
        if not isinstance(ckpt[k], dict)
    ]
    if not_dict:
        k = not_dict[0]
        raise Key2MeshError(
            f"{path}: malformed checkpoint entries ({k!r} is a {type(ckpt[k]).__name__}, not a dict)"
        )
    if not isinstance(ckpt["model"], dict) or not all(
        torch.is_tensor(v) for v in ckpt["model"].values()
    ):
        raise Key2MeshError(f"{path}: its 'model' entry is not a dict of tensors")
    bad = [
        k
        for k, v in ckpt["model"].items()
        if v.is_floating_point() and not bool(torch.isfinite(v).all())
    ]
    if bad:
        raise Key2MeshError(
            f"checkpoint {path} has non-finite weights ({len(bad)} tensor{'s' if len(bad) > 1 else ''} "
            f"with NaN/inf, first {bad[0]!r}); it cannot be used (was training diverging?)"
        )
    top, name = largest_weight(ckpt["model"])
    if top > MAX_WEIGHT:
        raise Key2MeshError(
            f"checkpoint {path} has exploded weights (|w| up to {top:.3g} in {name!r}, over "
            f"{MAX_WEIGHT:g}); it cannot be used (was training diverging?)"
        )
    ckpt["body"] = _without_model_dir(ckpt["body"], path)
    want = {k: v for k, v in (expect_body or {}).items() if k not in BODY_FILE_OPTIONS}
    if expect_body is not None and {k: ckpt["body"].get(k) for k in want} != want:
        raise Key2MeshError(f"{path} was trained for body model {ckpt['body']}, not {expect_body}")
    if expect_keypoint_set is not None and ckpt["keypoint_set"] != expect_keypoint_set:
        raise Key2MeshError(
            f"{path} takes keypoint set {ckpt['keypoint_set']!r}, not {expect_keypoint_set!r}"
        )
    try:
        ck = Checkpoint.from_dict(ckpt)
    except (TypeError, ValueError, AttributeError) as exc:
        raise Key2MeshError(f"{path}: malformed checkpoint entries ({exc})") from None
    _check_weights_fit(ck, path)
    _check_keypoint_count(ck, path)
    return ck


def _check_keypoint_count(ck: Checkpoint, path: Path) -> None:
    """The network takes as many points as its keypoint set has: a one-line error naming the
    file, not a matrix-shape error inside the first Linear. (An unknown set is named by the
    predictor.)"""
    from key2mesh.keypoints.sets import KEYPOINT_SETS, canonical_set_name

    try:
        n = len(KEYPOINT_SETS[canonical_set_name(ck.keypoint_set)])
    except (Key2MeshError, AttributeError):
        return
    if n != ck.model_config.num_keypoints:
        raise Key2MeshError(
            f"{path}: its network takes {ck.model_config.num_keypoints} keypoints, its keypoint "
            f"set {ck.keypoint_set!r} has {n}; the file is damaged or was edited"
        )


def _check_weights_fit(ck: Checkpoint, path: Path) -> None:
    """The weights are those of the network the model config describes: a one-line error naming
    the file, not a failure inside weight loading (the network is built on the meta device: no
    memory, a few ms)."""
    try:
        with torch.device("meta"):
            net = Key2MeshNet(ck.model_config)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise Key2MeshError(f"{path}: its model config builds no network ({exc})") from None
    want = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in ck.model.items()}
    wrong = [
        f"{k} is {got[k]}, the config makes {want[k]}"
        for k in want
        if got.get(k, want[k]) != want[k]
    ]
    wrong += [f"{k} is missing" for k in want if k not in got]
    wrong += [f"{k} is not in the network" for k in got if k not in want]
    if wrong:
        raise Key2MeshError(
            f"{path}: its model config and weights disagree ({len(wrong)} tensor"
            f"{'s' if len(wrong) > 1 else ''}, e.g. {wrong[0]}); the file is damaged or was edited"
        )


def build_network(ckpt: Checkpoint, device: str | torch.device = "cpu") -> Key2MeshNet:
    """Rebuild the network of a checkpoint, weights loaded, in eval mode."""
    net = Key2MeshNet(ckpt.model_config)
    net.load_state_dict(
        {k: v.float() if v.is_floating_point() else v for k, v in ckpt.model.items()}
    )
    return net.to(device).eval()
