"""Evaluation: scoring only. Metrics (MPJPE, PA-MPJPE, PVE under explicit protocols) and the
scoring of predictions against a benchmark's ground truth; the datasets themselves are built and
read in :mod:`key2mesh.data` (``data.benchmark``, ``data.datasets``)."""

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
