"""Shared training plumbing: devices, distributed set-up, logging to CSV/TensorBoard, validation."""

from __future__ import annotations

import csv
import io
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from key2mesh.errors import Key2MeshError
from key2mesh.safe_paths import atomic_write_text, remove_stale_temps

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


def rank_device(device: torch.device, info: DistInfo) -> torch.device:
    """The device of this rank: under a multi-process job on CUDA, the rank's own GPU
    (``cuda:LOCAL_RANK``), whatever index was asked for (``--device cuda:1`` put every rank on
    GPU 1 while DDP expected each on its own); else ``device``."""
    if info.world_size <= 1 or device.type != "cuda":
        return device
    own = torch.device("cuda", info.local_rank)
    if device.index is not None and device.index != info.local_rank and info.is_main:
        log.warning(
            "--device %s under torchrun: each rank uses its own GPU (cuda:LOCAL_RANK) instead",
            device,
        )
    return own


def finish_distributed(info: DistInfo, completed: bool) -> None:
    """Leave the ``torchrun`` job: wait for every rank when the run ``completed`` (rank 0 may
    still be saving), then destroy the process group. Without it a rank that finished first
    tore Gloo's threads down at interpreter exit and aborted (``terminate called without an
    active exception``, SIGABRT), failing the whole job after a good run."""
    if info.world_size <= 1:
        return
    import torch.distributed as dist

    if not dist.is_initialized():
        return
    if completed:
        if dist.get_backend() == "gloo":
            # Gloo's barrier() leaves its work object to be freed by Gloo's own thread, which
            # needs the GIL to drop the barrier's Python tensor; the main thread, holding the
            # GIL, then freed the process group (destroy_process_group, or the DDP model's
            # reducer), whose destructor waits for that thread: a deadlock, seen once in a test
            # run. monitored_barrier synchronises by send/recv of C++ tensors in this thread.
            dist.monitored_barrier(wait_all_ranks=True)
        else:
            dist.barrier()
    dist.destroy_process_group()


class MetricLogger:
    """Writes ``metrics.csv`` (one row per call, columns = union of all keys seen, rewritten
    atomically each time so new metrics get their own column) and TensorBoard scalars when the
    ``tensorboard`` package is installed. Existing rows are kept, those after ``resume_step``
    dropped (a resumed run logs those steps again; -1: start a new file). Being made at the start
    of a run, it also removes the temp files killed runs left in ``out_dir``."""

    def __init__(self, out_dir: Path, enabled: bool = True, resume_step: int | None = None):
        self.path = out_dir / "metrics.csv"
        self.enabled = enabled
        self.writer = None
        self.rows: list[dict] = []
        if enabled:
            for p in remove_stale_temps(out_dir):
                log.info("removed %s (left by a killed run)", p)
        if enabled and self.path.exists():
            with open(self.path, newline="") as f:
                self.rows = list(csv.DictReader(f))
            if resume_step is not None:
                self.rows = [r for r in self.rows if _step(r) <= resume_step]
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
        text = io.StringIO(newline="")
        w = csv.DictWriter(text, fieldnames=fields)
        w.writeheader()
        w.writerows(self.rows)
        atomic_write_text(self.path, text.getvalue())
        if self.writer is not None:
            for k, v in row.items():
                if isinstance(v, float) and math.isfinite(v):
                    self.writer.add_scalar(k, v, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _step(row: dict) -> float:
    try:
        return float(row.get("step") or "nan")
    except ValueError:
        return float("nan")


def _kept(out_dir: Path) -> str:
    last = Path(out_dir) / "last.pt"
    if last.exists():
        return f"the previous checkpoint {last} is kept as it was"
    return f"no checkpoint was saved in {out_dir} yet"


def check_finite(loss: torch.Tensor, step: int, out_dir: Path) -> None:
    if not torch.isfinite(loss):
        raise Key2MeshError(
            f"loss became {loss.item()} at step {step}; stopped without saving, {_kept(out_dir)} "
            "(try a lower --lr)"
        )


def check_finite_parameters(module: torch.nn.Module, step: int, out_dir: Path) -> None:
    """Refuse to save broken weights (after the optimiser step before a save): non-finite or
    exploded ones (|w| over ``MAX_WEIGHT``, a too-high learning rate); stop, naming the step."""
    from key2mesh.model.checkpoint import MAX_WEIGHT, largest_weight

    top, name = largest_weight(dict(module.named_parameters()))
    if top <= MAX_WEIGHT:
        return
    what = "non-finite" if not math.isfinite(top) else f"exploded (|w| up to {top:.3g})"
    raise Key2MeshError(
        f"weights became {what} at step {step} (e.g. {name}); stopped without saving, "
        f"{_kept(out_dir)} (try a lower --lr)"
    )
