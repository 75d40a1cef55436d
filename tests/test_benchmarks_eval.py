"""`key2mesh evaluate` on synthetic benchmark files in the real formats."""

import pytest

from key2mesh.errors import Key2MeshError
from key2mesh.eval.metrics import PROTOCOLS
from key2mesh.inference.predictor import PRETRAINED, PRETRAINED_DIR

pytestmark = pytest.mark.skipif(not (PRETRAINED_DIR / PRETRAINED["anny-body25"]).exists(), reason="no shipped checkpoint")


def test_h36m_p2_without_smpl_uses_dataset_joints(tmp_path):
    from key2mesh.eval.benchmarks import evaluate_benchmark
    from key2mesh.inference.predictor import Key2Mesh
    from test_eval_datasets import write_synthetic_h36m_npz

    rows = [("S9", "60457274")] * 6 + [("S11", "60457274")] * 3 + [("S1", "60457274"), ("S9", "55011271")]
    write_synthetic_h36m_npz(tmp_path / "h36m.npz", rows, sparse={0: 4})  # row 0 has only 4 keypoints
    model = Key2Mesh.from_pretrained("anny-body25", device="cpu", full_mesh=False)
    res = evaluate_benchmark(model, "h36m-p2", str(tmp_path / "h36m.npz"), PROTOCOLS["key2mesh"])
    assert res.dropped == 1 and res.count == 8  # 9 P2 rows, one dropped for < 6 keypoints
    assert res.pa_mpjpe > 0 and res.mpjpe >= res.pa_mpjpe and res.pve is None
    with pytest.raises(Key2MeshError, match="no H36M root"):
        evaluate_benchmark(model, "h36m-p2", str(tmp_path / "h36m.npz"), PROTOCOLS["spin"])
    with pytest.raises(Key2MeshError, match="needs --path"):
        evaluate_benchmark(model, "3dpw", None, PROTOCOLS["key2mesh"])
