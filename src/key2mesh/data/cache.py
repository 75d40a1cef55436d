"""The training cache: one ``.npz`` with every MoCap frame as body-model rotations, the clip
each frame comes from (for held-out splits by clip, never by frame), and a bank of shapes."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from key2mesh.errors import Key2MeshError


@dataclass
class PoseBank:
    """rotmats (N,24,3,3) float32 in the body backend's convention; clip_index (N,) int;
    shapes (M,S) float32 shape samples; body: the body model config they are valid for."""

    rotmats: np.ndarray
    clip_index: np.ndarray
    clip_names: list[str]
    clip_sources: list[str]
    shapes: np.ndarray
    body: dict
    meta: dict = field(default_factory=dict)

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
                )
        except (OSError, ValueError) as exc:
            raise Key2MeshError(f"cannot read training cache {path}: {exc}") from exc

    def split(self, val_fraction: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Frame indices (train, val), held out by whole clips: a seeded random set of clips
        holding about ``val_fraction`` of the frames goes to validation."""
        n_clips = len(self.clip_names)
        if n_clips < 2:
            raise Key2MeshError("a held-out split needs at least 2 clips in the training cache")
        counts = np.bincount(self.clip_index, minlength=n_clips)
        order = np.random.default_rng(seed).permutation(n_clips)
        cum = np.cumsum(counts[order])
        n_val = max(1, int(np.searchsorted(cum, val_fraction * cum[-1])) + 1)
        n_val = min(n_val, n_clips - 1)
        val_clips = order[:n_val]
        is_val = np.isin(self.clip_index, val_clips)
        return np.nonzero(~is_val)[0], np.nonzero(is_val)[0]
