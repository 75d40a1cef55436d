"""t-SNE of source/target features before and after adaptation (the paper's Fig. 7), as a PNG.

Features are the extractor outputs F(x) (B, d). Plotting uses Pillow only (no matplotlib)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

SOURCE_COLOR, TARGET_COLOR = (31, 119, 180), (255, 127, 14)


def tsne_embed(features: np.ndarray, seed: int = 0, perplexity: float = 30.0) -> np.ndarray:
    """(N, d) → (N, 2) with scikit-learn's t-SNE (PCA initialisation, seeded)."""
    from sklearn.manifold import TSNE

    return TSNE(
        2, perplexity=min(perplexity, (len(features) - 1) / 3), init="pca", random_state=seed
    ).fit_transform(features)


def _panel(xy: np.ndarray, is_target: np.ndarray, title: str, size: int = 480) -> Image.Image:
    img = Image.new("RGB", (size, size + 30), "white")
    d = ImageDraw.Draw(img)
    d.text((10, 8), title, fill="black")
    lo, hi = xy.min(0), xy.max(0)
    p = 20 + (xy - lo) / np.maximum(hi - lo, 1e-9) * (size - 40)
    for (x, y), t in zip(p, is_target):
        c = TARGET_COLOR if t else SOURCE_COLOR
        d.ellipse([x - 2, y + 28, x + 2, y + 32], fill=c)
    return img


@torch.no_grad()
def tsne_figure(
    src_inputs: torch.Tensor,
    tgt_inputs: torch.Tensor,
    extractor_before: torch.nn.Module,
    extractor_after: torch.nn.Module,
    out: str | Path,
    seed: int = 0,
) -> Path:
    """Two panels (before | after adaptation): source features from the pre-trained extractor,
    target features from the extractor named in the panel. Source blue, target orange."""
    extractor_before.eval()
    extractor_after.eval()
    src = extractor_before(src_inputs).cpu().numpy()
    panels = []
    for name, ext in (
        ("before adaptation", extractor_before),
        ("after adaptation", extractor_after),
    ):
        tgt = ext(tgt_inputs).cpu().numpy()
        xy = tsne_embed(np.concatenate([src, tgt]), seed)
        panels.append(
            _panel(
                xy,
                np.r_[np.zeros(len(src), bool), np.ones(len(tgt), bool)],
                f"{name} (blue: MoCap source, orange: target)",
            )
        )
    fig = Image.new("RGB", (sum(p.width for p in panels), panels[0].height), "white")
    x = 0
    for p in panels:
        fig.paste(p, (x, 0))
        x += p.width
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.save(out)
    return out


def domain_gap(src: np.ndarray, tgt: np.ndarray) -> float:
    """Linear-probe balanced accuracy (mean of the per-class recalls, 3-fold) of telling source
    (N, d) from target (M, d) features: 0.5 = indistinguishable whatever N and M (plain accuracy
    would reward always guessing the larger set: 0.6 for 600 vs 392 identical features)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    x = np.concatenate([src, tgt])
    y = np.r_[np.zeros(len(src)), np.ones(len(tgt))]
    return float(
        cross_val_score(
            LogisticRegression(max_iter=500), x, y, cv=3, scoring="balanced_accuracy"
        ).mean()
    )
