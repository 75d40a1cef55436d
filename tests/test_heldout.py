"""key2mesh.data.heldout: the options of the MoCap held-out samples."""

from __future__ import annotations

import pytest

from key2mesh.data.heldout import mocap_samples
from key2mesh.errors import Key2MeshError


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"split": "test"}, "split must be 'val'"),  # was: the training frames, silently
        ({"split": "validation"}, "split must be 'val'"),
        ({"split": "train", "heldout": "subjects"}, "heldout must be"),  # was: ignored
        ({"split": "val", "heldout": "subject"}, "heldout must be"),
    ],
)
def test_mocap_samples_refuses_unknown_split_and_heldout(kw, match):
    """Checked before the cache is read (the path does not exist)."""
    with pytest.raises(Key2MeshError, match=match):
        mocap_samples("/nonexistent/cache.npz", None, **kw)
