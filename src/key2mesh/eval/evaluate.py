"""Evaluation of a checkpoint on a benchmark: MPJPE, PA-MPJPE, PVE with explicit protocols.

Joints are the 14 LSP-order joints taken from H36M-17 (the paper's / SPIN's choice), regressed
from the meshes of prediction and ground truth; the pelvis is mid-hip (Key2Mesh) or the H36M
root (SPIN). On 'mocap-heldout' the ground truth is the same body model as the prediction.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from key2mesh.body.base import BodyModel
from key2mesh.errors import Key2MeshError
from key2mesh.eval.intervals import Interval, bootstrap_mean
from key2mesh.eval.metrics import Protocol, get_protocol, per_sample_metrics

METRICS = ("mpjpe", "pa_mpjpe", "pve")


@dataclass
class EvalResult:
    """Mean errors (mm) over ``count`` scored samples, with 95 % bootstrap intervals over
    clusters (``intervals``: metric → Interval; ``clusters`` counts the clusters resampled:
    instants of a multi-view set or video sequences; JSON key ``instants``)."""

    name: str
    protocol: Protocol
    count: int
    dropped: int
    mpjpe: float
    pa_mpjpe: float
    pve: float | None
    intervals: dict[str, Interval] = field(default_factory=dict)
    clusters: int = 0

    def row(self) -> dict:
        return {
            "dataset": self.name,
            "n": self.count,
            "dropped": self.dropped,
            "mpjpe": self.mpjpe,
            "pa_mpjpe": self.pa_mpjpe,
            "pve": self.pve,
            **{f"{k}_ci95": v.row() for k, v in self.intervals.items()},
            "instants": self.clusters,
            **self.protocol.__dict__,
        }


def result_from_errors(
    name: str,
    errors: dict[str, torch.Tensor],
    protocol: Protocol,
    dropped: int = 0,
    clusters=None,
) -> EvalResult:
    """Per-sample errors (N,) mm (``mpjpe``, ``pa_mpjpe``, optional ``pve``) → EvalResult with
    bootstrap intervals over ``clusters`` (N,) instant ids (None: every sample an instant)."""
    if len(errors.get("mpjpe", ())) == 0:
        raise Key2MeshError(
            f"{name}: no sample left to score ({dropped} dropped); the mean errors would be NaN"
        )
    for k, v in errors.items():
        bad = int((~torch.as_tensor(v).isfinite()).sum())
        if bad:
            raise Key2MeshError(
                f"{name}: {bad} of {len(v)} samples have non-finite {k} (NaN or infinite "
                "predictions); the mean errors would be NaN"
            )
    intervals = {k: bootstrap_mean(v, clusters) for k, v in errors.items() if k in METRICS}
    n = int(len(errors["mpjpe"]))
    return EvalResult(
        name,
        protocol,
        n,
        dropped,
        intervals["mpjpe"].mean,
        intervals["pa_mpjpe"].mean,
        intervals["pve"].mean if "pve" in intervals else None,
        intervals,
        n if clusters is None else len(np.unique(np.asarray(clusters))),
    )


@torch.no_grad()
def score_bodies(
    pred_body: BodyModel,
    pred_rot: torch.Tensor,
    pred_shape: torch.Tensor,
    gt_body: BodyModel,
    gt_rot: torch.Tensor,
    gt_shape: torch.Tensor,
    protocol: Protocol | str = "key2mesh",
    chunk: int = 512,
) -> dict[str, torch.Tensor]:
    """Per-sample errors (mm) of predicted vs ground-truth parameters (each with its body model);
    PVE on the same mesh, root-aligned (if the protocol asks) on the protocol's pelvis."""
    protocol = get_protocol(protocol)
    same_mesh = (
        pred_body.num_vertices == gt_body.num_vertices and pred_body.config() == gt_body.config()
    )
    out: dict[str, list[torch.Tensor]] = {}
    for i in range(0, len(pred_rot), chunk):
        sl = slice(i, i + chunk)
        po = pred_body(pred_rot[sl], pred_shape[sl])
        go = gt_body(gt_rot[sl].to(gt_body.device), gt_shape[sl].to(gt_body.device))
        pj = pred_body.regress(po.vertices, "h36m17")
        gj = gt_body.regress(go.vertices, "h36m17").to(pj)
        pv, gv = (po.vertices, go.vertices.to(po.vertices)) if same_mesh else (None, None)
        # PVE roots (pve_align="root"): each side's pelvis of the protocol, as on the benchmarks
        for k, v in per_sample_metrics(pj, gj, pv, gv, protocol, "h36m17").items():
            out.setdefault(k, []).append(v)
    return {k: torch.cat(v) for k, v in out.items() if v}


def summarize(
    name: str, errors: dict[str, torch.Tensor], protocol: Protocol, dropped: int = 0
) -> EvalResult:
    """:func:`result_from_errors` with every sample an instant of its own."""
    return result_from_errors(name, errors, protocol, dropped)
