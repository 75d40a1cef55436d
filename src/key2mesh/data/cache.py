"""The training cache: one ``.npz`` with every MoCap frame as body-model rotations, the clip
each frame comes from (for held-out splits by clip, never by frame), and a bank of shapes."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from key2mesh.errors import Key2MeshError

log = logging.getLogger(__name__)

# CMU subjects held out whole for validation (walking, running, jumps, gestures, dance; ~9 % of CMU).
DEFAULT_VAL_SUBJECTS: tuple[str, ...] = ("cmu_02", "cmu_05")


# Version of the skeleton-file retargeting written into a cache's meta by `data prepare`; caches
# holding the sources in RETARGET_FIXED from an older version trigger a warning on load.
# What each version fixed in the poses of RETARGET_FIXED sources (named in the stale warning).
RETARGET_FIXES = {
    2: "the CMU BVH root was fitted as the pelvis: pelvis pitched ~100°, collars rolled ~50°",
    3: "the CMU BVH frames easing from the dropped T-pose into the motion were kept",
}
RETARGET_VERSION = max(RETARGET_FIXES)
RETARGET_FIXED = ("bvh",)


@dataclass
class PoseBank:
    """rotmats (N,24,3,3) float32 in the body backend's convention; clip_index (N,) int;
    shapes (M,S) float32 shape samples; body: the body model config they are valid for;
    clip_subjects: the captured person of each clip ("" when the source does not say)."""

    rotmats: np.ndarray
    clip_index: np.ndarray
    clip_names: list[str]
    clip_sources: list[str]
    shapes: np.ndarray
    body: dict
    meta: dict = field(default_factory=dict)
    clip_subjects: list[str] = field(default_factory=list)

    @property
    def num_frames(self) -> int:
        return int(self.rotmats.shape[0])

    def save(self, path: str | Path) -> Path:
        from key2mesh.safe_paths import atomic_path

        path = Path(path)
        # a temp name of this process's own: two writers of one cache (two `data prepare` runs)
        # never truncate or rename each other's half-written archive
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            self._write(f)
        return path

    def _write(self, f) -> None:
        np.savez(
            f,
            rotmats=self.rotmats.astype(np.float32),
            clip_index=self.clip_index.astype(np.int32),
            clip_names=np.array(self.clip_names),
            clip_sources=np.array(self.clip_sources),
            clip_subjects=np.array(self.clip_subjects or [""] * len(self.clip_names)),
            shapes=self.shapes.astype(np.float32),
            body=np.array(json.dumps(self.body)),
            meta=np.array(json.dumps(self.meta)),
        )

    @classmethod
    def load(cls, path: str | Path) -> PoseBank:
        path = Path(path)
        if not path.is_file():
            raise Key2MeshError(
                f"training cache {path} does not exist; build it with `key2mesh data prepare`"
            )
        try:
            loaded = np.load(path, allow_pickle=False)
            if not isinstance(loaded, np.lib.npyio.NpzFile):
                raise Key2MeshError(
                    f"{path} is not a key2mesh training cache (a single array, not an .npz archive)"
                )
            with loaded as z:
                missing = [
                    k
                    for k in ("rotmats", "clip_index", "clip_names", "shapes", "body")
                    if k not in z.files
                ]
                if missing:
                    raise Key2MeshError(
                        f"{path} is not a key2mesh training cache (missing {missing})"
                    )
                arrays = {k: z[k] for k in _CACHE_KEYS if k in z.files}
        except Key2MeshError:
            raise
        except Exception as exc:  # noqa: BLE001 - a cut or damaged archive raises zip, EOF, npy-header or zlib errors
            reason = " ".join(str(exc).split()) or "damaged file"
            raise Key2MeshError(
                f"cannot read training cache {path}: {type(exc).__name__}: {reason} "
                "(a truncated or damaged file; rebuild it with `key2mesh data prepare`)"
            ) from None
        return cls._from_arrays(path, arrays)

    @classmethod
    def _from_arrays(cls, path: Path, a: dict[str, np.ndarray]) -> PoseBank:
        """The cache from its arrays, each checked (shape, dtype, finite, in range); else one line naming ``path``."""

        def bad(what: str) -> Key2MeshError:
            return Key2MeshError(f"{path} is not a valid key2mesh training cache: {what}")

        def described(x: np.ndarray) -> str:
            return f"{x.shape} {x.dtype}"

        rot, clip, shapes = a["rotmats"], a["clip_index"], a["shapes"]
        if rot.dtype.kind != "f" or rot.ndim != 4 or rot.shape[1:] != (24, 3, 3) or len(rot) == 0:
            raise bad(f"rotmats must be (N>0, 24, 3, 3) floats, got {described(rot)}")
        for i in range(0, len(rot), 65536):  # in chunks: a cache can hold millions of frames
            part = rot[i : i + 65536]
            if not np.isfinite(part).all() or np.abs(part).max() > 1.01:
                raise bad(
                    "rotmats holds values that are not rotation matrices (non-finite or beyond ±1)"
                )
        names = _strings(a["clip_names"], "clip_names", bad)
        if clip.dtype.kind not in "iu" or clip.shape != (len(rot),):
            raise bad(f"clip_index must be ({len(rot)},) integers, got {described(clip)}")
        if len(names) == 0 or clip.min() < 0 or clip.max() >= len(names):
            raise bad(
                f"clip_index must lie in [0, {len(names)}) (one entry of clip_names per clip)"
            )
        if (
            shapes.dtype.kind != "f"
            or shapes.ndim != 2
            or 0 in shapes.shape
            or not np.isfinite(shapes).all()
        ):
            raise bad(f"shapes must be (M>0, S>0) finite floats, got {described(shapes)}")
        extra = {}
        for key in ("clip_sources", "clip_subjects"):
            extra[key] = _strings(a[key], key, bad) if key in a else []
            if len(extra[key]) not in (0, len(names)):
                raise bad(f"{len(extra[key])} {key} for {len(names)} clips")
        body = _json_dict(a["body"], "body", bad)
        meta = _json_dict(a["meta"], "meta", bad) if "meta" in a else {}
        bank = cls(
            rotmats=rot,
            clip_index=clip,
            clip_names=names,
            shapes=shapes,
            body=body,
            meta=meta,
            **extra,
        )
        stale = bank.stale_sources()
        if stale:
            built = meta.get("retarget_version", 1)
            fixes = "; ".join(v for k, v in sorted(RETARGET_FIXES.items()) if k > built)
            log.warning(
                "%s: its %s poses were built before retarget_version %d (it has %s: %s); "
                "rebuild it with `key2mesh data prepare`",
                path,
                "/".join(stale),
                RETARGET_VERSION,
                built,
                fixes,
            )
        return bank

    def stale_sources(self) -> list[str]:
        """Sources whose poses an older retargeting version produced (see RETARGET_VERSION)."""
        if self.meta.get("retarget_version", 1) >= RETARGET_VERSION:
            return []
        return sorted(set(self.clip_sources) & set(RETARGET_FIXED))

    def split(
        self,
        val_fraction: float = 0.1,
        seed: int = 0,
        val_subjects: tuple[str, ...] | list[str] = DEFAULT_VAL_SUBJECTS,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Frame indices (train, val), never splitting a clip or a subject.

        Clips of a subject in ``val_subjects`` go to validation, other clips with a subject to
        training; among clips without a subject, a seeded random set holding about
        ``val_fraction`` of their frames goes to validation (the split of caches without
        subjects is unchanged)."""
        sets = self.validation_sets(val_fraction, seed, val_subjects)
        is_val = np.zeros(self.num_frames, dtype=bool)
        for idx in sets.values():
            is_val[idx] = True
        return np.nonzero(~is_val)[0], np.nonzero(is_val)[0]

    def validation_sets(
        self,
        val_fraction: float = 0.1,
        seed: int = 0,
        val_subjects: tuple[str, ...] | list[str] = DEFAULT_VAL_SUBJECTS,
    ) -> dict[str, np.ndarray]:
        """The held-out frames of :meth:`split`, reported separately: ``"clips"`` (held-out clips
        without a subject) and ``"subjects"`` (every clip of ``val_subjects``); empty sets are left out."""
        n_clips = len(self.clip_names)
        if n_clips < 2:
            raise Key2MeshError("a held-out split needs at least 2 clips in the training cache")
        subjects = np.array(self.clip_subjects if self.clip_subjects else [""] * n_clips)
        held_subject = np.isin(subjects, list(val_subjects)) & (subjects != "")
        free = np.nonzero(subjects == "")[0]
        val_clips = np.zeros(0, dtype=int)
        if len(free) >= 2 and val_fraction > 0:
            counts = np.bincount(self.clip_index, minlength=n_clips)[free]
            perm = np.random.default_rng(seed).permutation(len(free))
            order, cum = free[perm], np.cumsum(counts[perm])
            n_val = max(1, int(np.searchsorted(cum, val_fraction * cum[-1])) + 1)
            n_val = min(n_val, len(free) - 1)
            val_clips = order[:n_val]
        out = {
            "clips": np.nonzero(np.isin(self.clip_index, val_clips))[0],
            "subjects": np.nonzero(np.isin(self.clip_index, np.nonzero(held_subject)[0]))[0],
        }
        out = {k: v for k, v in out.items() if len(v)}
        if not out or sum(len(v) for v in out.values()) >= self.num_frames:
            raise Key2MeshError(
                "the held-out split leaves no validation or no training frames "
                f"(val_fraction {val_fraction}, val_subjects {list(val_subjects)})"
            )
        return out

    def common_frames(
        self, splits: Sequence[dict], part: str = "val", heldout: str = "all"
    ) -> np.ndarray:
        """The frames that every split of ``splits`` (keyword dicts of :meth:`split`, e.g. the
        :func:`split_options` of each member of an ensemble) puts in ``part``: ``"val"`` (held out;
        ``heldout``: ``"all"``, or only the ``"clips"`` / ``"subjects"`` set of
        :meth:`validation_sets`) or ``"train"``. Sorted frame indices (M,), the intersection over
        the splits (one split: exactly its own frames); may be empty. A split without the
        ``heldout`` set raises :class:`Key2MeshError`."""
        if not splits:
            raise Key2MeshError("common_frames needs at least one split")
        per_split = []
        for opts in splits:
            if part == "val" and heldout != "all":
                sets = self.validation_sets(**opts)
                if heldout not in sets:
                    raise Key2MeshError(
                        f"no held-out {heldout} in the split {opts} (held out: {sorted(sets)})"
                    )
                per_split.append(sets[heldout])
            else:
                train, val = self.split(**opts)
                per_split.append(val if part == "val" else train)
        return functools.reduce(np.intersect1d, per_split)

    def split_for(self, config: dict) -> tuple[np.ndarray, np.ndarray]:
        """The split a pre-training ``config`` (checkpoint ``config`` dict) used."""
        return self.split(**split_options(config))


_CACHE_KEYS = (
    "rotmats",
    "clip_index",
    "clip_names",
    "clip_sources",
    "clip_subjects",
    "shapes",
    "body",
    "meta",
)


def _strings(arr: np.ndarray, key: str, bad) -> list[str]:
    """A 1-D array of text as a list (an empty array of any dtype: an empty list)."""
    if arr.ndim != 1 or (arr.size and arr.dtype.kind != "U"):
        raise bad(f"{key} must be a list of text, got {arr.shape} {arr.dtype}")
    return [str(s) for s in arr]


def _json_dict(arr: np.ndarray, key: str, bad) -> dict:
    """A 0-D text array holding a JSON object."""
    if arr.ndim != 0 or arr.dtype.kind != "U":
        raise bad(f"{key} must be JSON text, got {arr.shape} {arr.dtype}")
    try:
        value = json.loads(str(arr))
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise bad(f"{key} is not a JSON object")
    return value


def split_options(config: dict | None) -> dict:
    """``val_fraction``, ``seed``, ``val_subjects`` of a pre-training config (defaults when absent),
    so adaptation and evaluation hold out exactly what pre-training held out."""
    config = config or {}
    return {
        "val_fraction": float(config.get("val_fraction", 0.1)),
        "seed": int(config.get("seed", 0)),
        "val_subjects": tuple(config.get("val_subjects", DEFAULT_VAL_SUBJECTS)),
    }
