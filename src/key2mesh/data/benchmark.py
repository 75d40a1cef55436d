"""The key2mesh benchmark: :class:`BenchmarkSet` (2D detections in, 3D ground truth out) and its
``.npz`` file format (:func:`save_benchmark` / :func:`load_benchmark_file`), plus the small
checks every benchmark reader shares (missing points, gender names, npz archives, required keys).

Builders: :mod:`key2mesh.data.multiview` (the pose2sim real-footage benchmark), the licensed
readers of :mod:`key2mesh.data.datasets` (3DPW, Human3.6M), and the MoCap held-out split
(:mod:`key2mesh.data.heldout`).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from key2mesh.errors import Key2MeshError
from key2mesh.keypoints.sets import canonical_set_name, num_keypoints

log = logging.getLogger(__name__)

# What each version of the multi-view benchmark builder (``key2mesh data pose2sim``,
# :mod:`key2mesh.data.multiview`) fixed. Its files record their version; reading an older one
# (or a multi-view file without one) says what changed since and to rebuild it.
MULTIVIEW_BUILD_FIXES = {
    1: "(files without a recorded version, built before 2026-12-07)",
    2: "the Qualisys lens distortion is applied as stored (it was divided by 64: the ground "
    "truth moved a median 1.7 mm); views without detections are not counted in the cameras' "
    "frame-offset search",
}
MULTIVIEW_BUILD_VERSION = max(MULTIVIEW_BUILD_FIXES)

# a frame number at the end of an image name, with its separator and file extension
_FRAME_NUMBER = re.compile(r"[_\-. ]*\d+(\.[A-Za-z]\w*)?$")

GENDER_NAMES = {
    "m": "male",
    "male": "male",
    "f": "female",
    "female": "female",
    "n": "neutral",
    "neutral": "neutral",
}


@dataclass
class BenchmarkSet:
    """N evaluation samples: 2D detections in, SMPL ground truth out.

    keypoints2d: (N,K,2) float32 pixels; confidence: (N,K) float32 (0 = missing), K points of
    ``keypoint_set``. pose: (N,24,3,3) SMPL rotations (each relative to its parent; the global
    orientation is in the camera frame) or None when the file has none; betas: (N,10) or None;
    genders: N of ``"male"``/``"female"``/``"neutral"``. joints3d: optional (N,J,3) metres in the
    camera frame, ``joints3d_set`` names their order (``"h36m17"``: H36M-17 joints from SPIN's
    ``S``, root-centred; ``"smpl24"``: SMPL joints). intrinsics: optional (N,3,3) pixels.
    instants: optional (N,) int64, the instant each sample shows (equal for the synchronised views
    of one instant, in time order; multi-view sets such as ``key2mesh data pose2sim``): grouping
    for ``adapt --multiview``, dev/test splits and bootstrap intervals over instants.
    dropped: detections removed for too few keypoints (``drop_reason`` says why); excluded:
    samples left out by the protocol (invalid camera pose, other subjects/cameras), by reason.
    """

    name: str
    keypoints2d: torch.Tensor
    confidence: torch.Tensor
    keypoint_set: str
    pose: torch.Tensor | None
    betas: torch.Tensor | None
    genders: list[str]
    image_names: list[str]
    joints3d: torch.Tensor | None = None
    joints3d_set: str | None = None
    intrinsics: torch.Tensor | None = None
    dropped: int = 0
    drop_reason: str = ""
    excluded: dict[str, int] = field(default_factory=dict)
    source: str = "<memory>"
    instants: torch.Tensor | None = None
    build_version: int | None = (
        None  # the multi-view builder's (MULTIVIEW_BUILD_FIXES); None: other
    )

    def __post_init__(self) -> None:
        self.keypoint_set = canonical_set_name(self.keypoint_set)
        n, k = len(self.keypoints2d), num_keypoints(self.keypoint_set)
        joints = self.joints3d
        expected = {
            "keypoints2d": (self.keypoints2d, (n, k, 2)),
            "confidence": (self.confidence, (n, k)),
            "pose": (self.pose, (n, 24, 3, 3)),
            "betas": (self.betas, (n, 10)),
            "joints3d": (
                joints,
                (n, joints.shape[1] if joints is not None and joints.ndim == 3 else -1, 3),
            ),
            "intrinsics": (self.intrinsics, (n, 3, 3)),
            "instants": (self.instants, (n,)),
        }
        for key, (value, shape) in expected.items():
            if value is not None and tuple(value.shape) != shape:
                raise Key2MeshError(
                    f"{self.source}: {key} must be {shape}, got {tuple(value.shape)}"
                )
        if self.pose is None and self.joints3d is None:
            raise Key2MeshError(f"{self.source}: a benchmark needs ground-truth poses or 3D joints")
        for key, values in (("genders", self.genders), ("image_names", self.image_names)):
            if len(values) != n:
                raise Key2MeshError(f"{self.source}: {len(values)} {key} for {n} samples")

    def __len__(self) -> int:
        return int(self.keypoints2d.shape[0])

    def subset(self, index: torch.Tensor | np.ndarray | list[int] | slice) -> BenchmarkSet:
        """The samples at ``index`` (indices, boolean mask or slice); counters are kept."""
        if isinstance(index, slice):
            idx = torch.arange(len(self))[index]
        else:
            idx = torch.as_tensor(np.asarray(index))
            idx = idx.nonzero().flatten() if idx.dtype == torch.bool else idx.long()
        pick = idx.tolist()

        def sel(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t[idx]

        return replace(
            self,
            keypoints2d=self.keypoints2d[idx],
            confidence=self.confidence[idx],
            pose=sel(self.pose),
            betas=sel(self.betas),
            joints3d=sel(self.joints3d),
            intrinsics=sel(self.intrinsics),
            instants=sel(self.instants),
            genders=[self.genders[i] for i in pick],
            image_names=[self.image_names[i] for i in pick],
            excluded=dict(self.excluded),
        )

    def instant_ids(self) -> np.ndarray:
        """(N,) int64: the instant of each sample (``instants`` when stored; else every sample is
        an instant of its own, in file order). The unit of dev/test splits and bootstrap intervals:
        the views of one instant are not independent samples."""
        if self.instants is not None:
            return self.instants.numpy().astype(np.int64)
        return np.arange(len(self), dtype=np.int64)

    def interval_clusters(self) -> np.ndarray:
        """(N,) int64: the unit that bootstrap intervals resample. Stored ``instants`` when present
        (the synchronised views of one instant); else the video sequence of each sample, its
        image name without the trailing frame number and extension (3DPW
        ``imageFiles/<seq>/image_00042.jpg``, H3.6M ``images/S9_Directions_1.60457274_000042.jpg``):
        the frames of one video are not independent samples. Names that are bare numbers leave
        every sample a cluster of its own."""
        if self.instants is not None:
            return self.instant_ids()
        sequences = [_FRAME_NUMBER.sub("", name) for name in self.image_names]
        if not all(sequences):
            return np.arange(len(self), dtype=np.int64)
        return np.unique(sequences, return_inverse=True)[1].reshape(-1).astype(np.int64)

    def split_by_instant(self, fraction: float = 0.5) -> tuple[BenchmarkSet, BenchmarkSet]:
        """(development, test) parts by whole instants in time order: the first ``fraction`` of
        the instants and the rest (contiguous blocks: neighbouring frames are near-duplicates)."""
        if not 0 < fraction < 1:
            raise Key2MeshError(f"split fraction must be in (0, 1), got {fraction}")
        ids = self.instant_ids()
        order = np.unique(ids)
        if len(order) < 2:
            raise Key2MeshError(f"{self.source}: one instant only; nothing to split")
        cut = order[min(len(order) - 1, max(1, int(round(fraction * len(order)))))]
        dev = ids < cut
        part = lambda mask, tag: replace(self.subset(mask), name=f"{self.name}-{tag}")  # noqa: E731
        return part(dev, "dev"), part(~dev, "test")

    def summary(self) -> str:
        """One line: name, kept samples, dropped detections and protocol exclusions."""
        parts = [f"{self.name}: {len(self)} samples", f"{self.dropped} dropped"]
        if self.dropped and self.drop_reason:
            parts[-1] += f" ({self.drop_reason})"
        parts += [f"{v} excluded ({k})" for k, v in self.excluded.items() if v]
        return ", ".join(parts)


def clean_keypoints(xy: np.ndarray, conf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Missing points (confidence <= 0 or non-finite, or non-finite position) → (0, 0) with confidence 0."""
    xy, conf = (
        np.array(xy, dtype=np.float64),
        np.nan_to_num(np.asarray(conf, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0),
    )
    missing = (conf <= 0) | ~np.isfinite(xy).all(-1)
    xy[missing], conf[missing] = 0.0, 0.0
    return xy, conf


def text_value(value: Any) -> str:
    """One text value as ``str``: Python-2 pickles and ``'S'``-dtype arrays hold bytes, and a
    value may come as a 0-d or one-element NumPy array (``str()`` of those is their repr)."""
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.reshape(-1)[0]
    return value.decode("latin1") if isinstance(value, bytes) else str(value)


def gender_name(path: Path, value: Any) -> str:
    text = text_value(value)
    key = text.strip().lower()
    if key not in GENDER_NAMES:
        raise Key2MeshError(
            f"{path}: unknown gender {text!r} (expected 'm'/'f' or male/female/neutral)"
        )
    return GENDER_NAMES[key]


def require_key(path: Path, data: Any, key: str) -> Any:
    if key not in data:
        found = ", ".join(sorted(map(str, data))) or "nothing"
        raise Key2MeshError(f"{path}: missing key {key!r} (found: {found})")
    return data[key]


def load_npz(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise Key2MeshError(f"{path}: no such file (expected a SPIN-style Human3.6M .npz)")
    try:
        with np.load(path, allow_pickle=False) as z:
            if not isinstance(z, np.lib.npyio.NpzFile):
                raise Key2MeshError(
                    f"{path}: expected an .npz archive of arrays, got a single array"
                )
            return {k: z[k] for k in z.files}
    except Key2MeshError:
        raise
    except Exception as e:  # noqa: BLE001 - zip/pickle/format errors all mean a bad file
        raise Key2MeshError(f"{path}: not a readable .npz ({e.__class__.__name__}: {e})") from None


# ------------------------------------------------------------------------- key2mesh benchmark file


def save_benchmark(bench: BenchmarkSet, path: str | Path) -> Path:
    """Write ``bench`` as a key2mesh benchmark ``.npz`` (read back by :func:`load_benchmark_file`).

    Keys: ``keypoints`` (N,K,2) pixels, ``confidence`` (N,K), ``keypoint_set``, ``frame_names``
    (N,) — so the file is also a detections file for ``key2mesh adapt --target`` — plus the
    ground truth ``joints3d`` (N,J,3) metres in the camera frame with ``joints3d_set`` (a keypoint
    set name, e.g. ``coco17``, or ``h36m17``), optional ``pose`` (N,24,3,3) / ``betas`` (N,10) /
    ``genders``, ``intrinsics`` (N,3,3), ``instants`` (N,) int64, and the ``name``, ``dropped`` and ``excluded`` counters.
    """
    import json

    path = Path(path)
    arrays: dict[str, Any] = {
        "keypoints": bench.keypoints2d.numpy(),
        "confidence": bench.confidence.numpy(),
        "keypoint_set": np.array(bench.keypoint_set),
        "frame_names": np.array(bench.image_names),
        "genders": np.array(bench.genders),
        "name": np.array(bench.name),
        "dropped": np.array(bench.dropped),
        "drop_reason": np.array(bench.drop_reason),
        "excluded": np.array(json.dumps(bench.excluded)),
    }
    for key in ("joints3d", "pose", "betas", "intrinsics", "instants"):
        value = getattr(bench, key)
        if value is not None:
            arrays[key] = value.numpy()
    if bench.joints3d_set:
        arrays["joints3d_set"] = np.array(bench.joints3d_set)
    if bench.build_version is not None:
        arrays["build_version"] = np.array(bench.build_version, dtype=np.int64)
    from key2mesh.safe_paths import atomic_path

    # a temp name of this process's own (two writers of one path never share a half-written
    # file); written through a file object, so no ".npz" is appended to a path without it
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)
    return path


def load_benchmark_file(path: str | Path) -> BenchmarkSet:
    """A key2mesh benchmark ``.npz`` (see :func:`save_benchmark`), e.g. from ``key2mesh data pose2sim``.

    Every entry is checked: numbers where numbers belong, finite ground truth, joint counts that
    match ``joints3d_set``; missing or non-finite 2D keypoints become confidence 0."""
    import json

    path = Path(path)
    if not path.is_file():
        raise Key2MeshError(
            f"{path}: no such benchmark file (expected a .npz from `key2mesh data pose2sim`)"
        )
    data = load_npz(path)
    for key in ("keypoints", "confidence", "keypoint_set"):
        require_key(path, data, key)
    if "joints3d" not in data and "pose" not in data:
        raise Key2MeshError(
            f"{path}: missing key 'joints3d' (or 'pose'): no ground truth to evaluate against"
        )
    if "joints3d" in data and "joints3d_set" not in data:
        raise Key2MeshError(f"{path}: 'joints3d' needs 'joints3d_set' naming its joint order")

    def text(key: str, default: str | None = None) -> str | None:
        if key not in data:
            return default
        value = data[key]
        if value.ndim != 0 or value.dtype.kind != "U":
            raise Key2MeshError(
                f"{path}: {key!r} must be one text value, got {value.shape} {value.dtype}"
            )
        return str(value)

    def numbers(key: str) -> np.ndarray | None:
        if key not in data:
            return None
        value = data[key]
        if value.dtype.kind not in "iuf":
            raise Key2MeshError(f"{path}: {key!r} must hold real numbers, got dtype {value.dtype}")
        with np.errstate(over="ignore"):
            return np.asarray(value, dtype=np.float32)

    def names(key: str, n: int) -> list[str] | None:
        if key not in data:
            return None
        value = data[key]
        if value.shape != (n,):
            raise Key2MeshError(f"{path}: {key!r} must list {n} entries, got shape {value.shape}")
        return [str(x) for x in value]

    joints_set = text("joints3d_set")
    if joints_set is not None:
        try:
            joints_set = canonical_set_name(joints_set)
        except Key2MeshError as e:
            raise Key2MeshError(f"{path}: joints3d_set: {e}") from None
    kp, conf = numbers("keypoints"), numbers("confidence")
    if kp.ndim != 3 or kp.shape[-1] != 2 or conf.shape != kp.shape[:2]:
        raise Key2MeshError(
            f"{path}: 'keypoints' must be (N, K, 2) with 'confidence' (N, K), got {kp.shape} and {conf.shape}"
        )
    n = len(kp)
    if n == 0:
        raise Key2MeshError(f"{path}: the benchmark holds no sample (0 rows of keypoints)")
    kp, conf = clean_keypoints(kp, conf)
    truth = {key: numbers(key) for key in ("pose", "betas", "joints3d", "intrinsics")}
    for key, value in truth.items():
        if value is not None and not np.isfinite(value).all():
            raise Key2MeshError(f"{path}: {key!r} holds NaN or infinite values")
    if truth["pose"] is not None and np.abs(truth["pose"]).max(initial=0.0) > 1.01:
        raise Key2MeshError(
            f"{path}: 'pose' holds values beyond ±1 (expected (N, 24, 3, 3) rotation matrices)"
        )
    joints = truth["joints3d"]
    if joints is not None and (joints.ndim != 3 or joints.shape[1] != num_keypoints(joints_set)):
        raise Key2MeshError(
            f"{path}: 'joints3d' must be (N, {num_keypoints(joints_set)}, 3) for {joints_set!r}, "
            f"got {joints.shape}"
        )
    dropped = data.get("dropped", np.asarray(0))
    if dropped.size != 1 or dropped.dtype.kind not in "iu" or int(dropped.reshape(-1)[0]) < 0:
        raise Key2MeshError(
            f"{path}: 'dropped' must be one count >= 0, got {dropped.reshape(-1)[:3].tolist()} ({dropped.dtype})"
        )
    try:
        excluded = json.loads(text("excluded", "{}"))
    except ValueError:
        excluded = None
    if not isinstance(excluded, dict) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in excluded.values()
    ):
        raise Key2MeshError(
            f"{path}: 'excluded' must be a JSON object of counts, got {text('excluded')!r}"
        )
    instants = data.get("instants")
    if instants is not None and (instants.shape != (n,) or instants.dtype.kind not in "iu"):
        raise Key2MeshError(
            f"{path}: 'instants' must be {n} integers (one instant id per sample), got "
            f"shape {instants.shape} {instants.dtype}"
        )
    genders = names("genders", n)
    genders = [gender_name(path, g) for g in genders] if genders is not None else ["neutral"] * n
    build_version = _build_version(path, data, multiview=instants is not None)

    def tensor(value: np.ndarray | None) -> torch.Tensor | None:
        return None if value is None else torch.from_numpy(np.asarray(value, dtype=np.float32))

    return BenchmarkSet(
        name=text("name", path.stem),
        keypoints2d=tensor(kp),
        confidence=tensor(np.clip(conf, 0.0, 1.0)),
        keypoint_set=text("keypoint_set"),
        pose=tensor(truth["pose"]),
        betas=tensor(truth["betas"]),
        genders=genders,
        image_names=names("frame_names", n) or [f"{i:06d}" for i in range(n)],
        joints3d=tensor(joints),
        joints3d_set=joints_set,
        intrinsics=tensor(truth["intrinsics"]),
        dropped=int(dropped.reshape(-1)[0]),
        drop_reason=text("drop_reason", ""),
        excluded=excluded,
        source=str(path),
        instants=None if instants is None else torch.from_numpy(instants.astype(np.int64)),
        build_version=build_version,
    )


def _build_version(path: Path, data: dict[str, np.ndarray], multiview: bool) -> int | None:
    """The multi-view builder's version a file records (1: a multi-view file, with instants,
    from before versions were recorded; None: not the builder's), with a warning naming what
    the later versions fixed when it is older than :data:`MULTIVIEW_BUILD_VERSION`."""
    value = data.get("build_version")
    if value is None:
        if not multiview:
            return None
        version = 1
    else:
        if value.size != 1 or value.dtype.kind not in "iu" or int(value.reshape(-1)[0]) < 1:
            raise Key2MeshError(
                f"{path}: 'build_version' must be one integer >= 1, got "
                f"{value.reshape(-1)[:3].tolist()} ({value.dtype})"
            )
        version = int(value.reshape(-1)[0])
    if version < MULTIVIEW_BUILD_VERSION:
        since = "; ".join(v for k, v in sorted(MULTIVIEW_BUILD_FIXES.items()) if k > version)
        log.warning(
            "%s was built by an older multi-view benchmark builder (version %d of %d); fixed "
            "since: %s. Rebuild it (`key2mesh data pose2sim`) for the current ground truth.",
            path,
            version,
            MULTIVIEW_BUILD_VERSION,
            since,
        )
    return version
