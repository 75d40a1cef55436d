"""Tiny pre-training configs on the test pose bank (seconds on a CPU)."""

from __future__ import annotations

from key2mesh.train.pretrain import PretrainConfig


def tiny_pretrain_config(bank_path, out, **kw) -> PretrainConfig:
    """6 steps, hidden 64, batch 16, no pose augmentation; ``kw`` overrides any field."""
    kw.setdefault("pose_augment", False)
    kw = {"steps": 6, "model": {"hidden": 64}, **kw}
    return PretrainConfig(
        cache=str(bank_path),
        out_dir=str(out),
        batch_size=16,
        val_every=3,
        val_size=32,
        threads=1,
        **kw,
    )
