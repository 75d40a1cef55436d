"""The training cache: one ``.npz`` with every MoCap frame as body-model rotations, the clip
each frame comes from (for held-out splits by clip, never by frame), and a bank of shapes."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from key2mesh.errors import Key2MeshError

# CMU subjects held out whole for validation (walking, running, jumps, gestures, dance; ~9 % of CMU).
DEFAULT_VAL_SUBJECTS: tuple[str, ...] = ("cmu_02", "cmu_05")


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
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(
            tmp,
            rotmats=self.rotmats.astype(np.float32),
            clip_index=self.clip_index.astype(np.int32),
            clip_names=np.array(self.clip_names),
            clip_sources=np.array(self.clip_sources),
            clip_subjects=np.array(self.clip_subjects or [""] * len(self.clip_names)),
            shapes=self.shapes.astype(np.float32),
            body=np.array(json.dumps(self.body)),
            meta=np.array(json.dumps(self.meta)),
        )
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> PoseBank:
        path = Path(path)
        if not path.is_file():
            raise Key2MeshError(f"training cache {path} does not exist; build it with `key2mesh data prepare`")
        try:
            with np.load(path, allow_pickle=False) as z:
                missing = [k for k in ("rotmats", "clip_index", "clip_names", "shapes", "body") if k not in z.files]
                if missing:
                    raise Key2MeshError(f"{path} is not a key2mesh training cache (missing {missing})")
                return cls(
                    rotmats=z["rotmats"],
                    clip_index=z["clip_index"],
                    clip_names=[str(s) for s in z["clip_names"]],
                    clip_sources=[str(s) for s in z["clip_sources"]] if "clip_sources" in z.files else [],
                    shapes=z["shapes"],
                    body=json.loads(str(z["body"])),
                    meta=json.loads(str(z["meta"])) if "meta" in z.files else {},
                    clip_subjects=[str(s) for s in z["clip_subjects"]] if "clip_subjects" in z.files else [],
                )
        except (OSError, ValueError) as exc:
            raise Key2MeshError(f"cannot read training cache {path}: {exc}") from exc

    def split(
        self, val_fraction: float = 0.1, seed: int = 0, val_subjects: tuple[str, ...] | list[str] = DEFAULT_VAL_SUBJECTS
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
        self, val_fraction: float = 0.1, seed: int = 0, val_subjects: tuple[str, ...] | list[str] = DEFAULT_VAL_SUBJECTS
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
        out = {"clips": np.nonzero(np.isin(self.clip_index, val_clips))[0],
               "subjects": np.nonzero(np.isin(self.clip_index, np.nonzero(held_subject)[0]))[0]}
        out = {k: v for k, v in out.items() if len(v)}
        if not out or sum(len(v) for v in out.values()) >= self.num_frames:
            raise Key2MeshError("the held-out split leaves no validation or no training frames "
                                f"(val_fraction {val_fraction}, val_subjects {list(val_subjects)})")
        return out

    def split_for(self, config: dict) -> tuple[np.ndarray, np.ndarray]:
        """The split a pre-training ``config`` (checkpoint ``config`` dict) used."""
        return self.split(**split_options(config))


def split_options(config: dict | None) -> dict:
    """``val_fraction``, ``seed``, ``val_subjects`` of a pre-training config (defaults when absent),
    so adaptation and evaluation hold out exactly what pre-training held out."""
    config = config or {}
    return {"val_fraction": float(config.get("val_fraction", 0.1)), "seed": int(config.get("seed", 0)),
            "val_subjects": tuple(config.get("val_subjects", DEFAULT_VAL_SUBJECTS))}
