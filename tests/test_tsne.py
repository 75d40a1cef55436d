import numpy as np
import torch
from PIL import Image

from key2mesh.eval.tsne import domain_gap, tsne_figure


def test_domain_gap_separable_vs_identical():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(90, 8))
    assert domain_gap(a, a + 5.0) > 0.95
    assert domain_gap(a[:45], a[45:]) < 0.75


def test_tsne_figure_writes_two_panels(tmp_path):
    torch.manual_seed(0)
    before = torch.nn.Linear(4, 6)
    after = torch.nn.Linear(4, 6)
    path = tsne_figure(
        torch.randn(40, 4), torch.randn(40, 4) + 2, before, after, tmp_path / "t.png"
    )
    img = Image.open(path)
    assert img.size == (960, 510)
    px = np.asarray(img)
    assert (np.abs(px.astype(int) - [255, 127, 14]).sum(-1) < 10).any()  # target points drawn
