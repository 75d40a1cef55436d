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


def test_domain_gap_is_one_half_for_identical_sets_of_unequal_size():
    """benchmarks/tsne.py probes 600 source vs 392 target features: with plain accuracy a probe
    that always guesses 'source' scores 600/992 = 0.6, read as a domain gap; balanced accuracy
    gives 0.5 whatever the sizes."""
    x = np.random.default_rng(0).normal(size=(992, 16))
    assert abs(domain_gap(x[:600], x[600:]) - 0.5) < 0.06
    assert abs(domain_gap(x[:900], x[900:]) - 0.5) < 0.06
    assert domain_gap(x[:900], x[900:] + 5.0) > 0.95  # still sees a real gap
