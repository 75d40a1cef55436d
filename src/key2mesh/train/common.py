"""Shared training plumbing: devices, distributed set-up, logging to CSV/TensorBoard, validation."""

from __future__ import annotations

import csv
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from key2mesh.errors import Key2MeshError

log = logging.getLogger(__name__)


def pick_device(requested: str | None = None) -> torch.device:
    """``cuda`` when available unless told otherwise; a clear error for an unavailable device."""
    if requested in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(requested)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise Key2MeshError(f"device {requested!r} requested but CUDA is not available here")
    return dev


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> DistInfo:
    """Join a ``torchrun`` job when WORLD_SIZE > 1 (NCCL on CUDA, Gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    info = DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    if device.type == "cuda":
        torch.cuda.set_device(info.local_rank)
    return info


class MetricLogger:
    """Writes ``metrics.csv`` (one row per call, columns = union of all keys seen, rewritten
    atomically each time so new metrics get their own column) and TensorBoard scalars when the
    ``tensorboard`` package is installed. Existing rows are kept on ``--resume``."""

    def __init__(self, out_dir: Path, enabled: bool = True):
        self.path = out_dir / "metrics.csv"
        self.enabled = enabled
        self.writer = None
        self.rows: list[dict] = []
        if enabled and self.path.exists():
            with open(self.path, newline="") as f:
                self.rows = list(csv.DictReader(f))
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(out_dir / "tensorboard"))
            except Exception:  # noqa: BLE001 - tensorboard is optional
                self.writer = None

    def log(self, step: int, row: dict[str, float]) -> None:
        if not self.enabled:
            return
        self.rows.append({"step": step, **row})
        fields: list[str] = []
        for r in self.rows:
            fields += [k for k in r if k not in fields]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".csv.tmp")
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            w.writeheader()
            w.writerows(self.rows)
        os.replace(tmp, self.path)
        if self.writer is not None:
            for k, v in row.items():
                if isinstance(v, float) and math.isfinite(v):
                    self.writer.add_scalar(k, v, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def check_finite(loss: torch.Tensor, step: int, out_dir: Path) -> None:
    if not torch.isfinite(loss):
        raise Key2MeshError(
            f"loss became {loss.item()} at step {step}; stopped. The last good checkpoint is in {out_dir}"
        )


def check_finite_parameters(module: torch.nn.Module, step: int, out_dir: Path) -> None:
    """Refuse to save non-finite weights (a bad update between loss checks): stop with the step."""
    bad = [n for n, p in module.named_parameters() if not torch.isfinite(p).all()]
    if bad:
        raise Key2MeshError(
            f"weights became non-finite at step {step} ({len(bad)} tensors, e.g. {bad[0]}); stopped without saving. "
            f"The checkpoints in {out_dir} hold the last finite weights (try a lower --lr)"
        )
