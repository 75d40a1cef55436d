"""Evaluation: metrics (MPJPE, PA-MPJPE, PVE under explicit protocols) and readers of the
user-supplied benchmark datasets (3DPW, Human3.6M Protocol 2)."""

from key2mesh.eval.datasets import BenchmarkSet, load_3dpw, load_h36m_p2
from key2mesh.eval.metrics import (
    EVAL14,
    PROTOCOLS,
    Protocol,
    center_on_pelvis,
    compute_metrics,
    eval14,
    mpjpe,
    pa_mpjpe,
    pelvis_of,
    per_sample_metrics,
    procrustes_align,
    pve,
)

__all__ = [
    "BenchmarkSet",
    "load_3dpw",
    "load_h36m_p2",
    "EVAL14",
    "PROTOCOLS",
    "Protocol",
    "center_on_pelvis",
    "compute_metrics",
    "eval14",
    "mpjpe",
    "pa_mpjpe",
    "pelvis_of",
    "per_sample_metrics",
    "procrustes_align",
    "pve",
]
