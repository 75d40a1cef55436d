"""`key2mesh predict` works through its input in chunks (--chunk-size): no body-model call ever
sees more than one chunk, and the results are the same numbers as in one piece."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from key2mesh.body.base import BodyModel
from key2mesh.cli import main
from key2mesh.inference.predictor import PAD_ROWS
from key2mesh.model.checkpoint import PRETRAINED, PRETRAINED_DIR

pytestmark = pytest.mark.skipif(
    not (PRETRAINED_DIR / PRETRAINED["anny-coco17"]).exists(), reason="no shipped checkpoint"
)


def _rows(chunk: int) -> int:
    """A chunk's batch as the body model sees it: padded to a multiple of PAD_ROWS rows."""
    return -(-chunk // PAD_ROWS) * PAD_ROWS


KEYS = ("frame_index", "track_id", "rotmats", "phenotypes", "transl", "keypoints3d")


def _coco17_detections(path, frames: int, persons: int = 1, seed: int = 0):
    """Random-but-valid COCO-17 detections: a person-sized box of points per slot, a few missing
    points, and some slots with too few keypoints (skipped the same way whatever the chunks)."""
    rng = np.random.default_rng(seed)
    centre = rng.uniform(200, 800, (frames, persons, 1, 2))
    size = rng.uniform(80, 400, (frames, persons, 1, 1))
    kp = centre + size * rng.uniform(-0.5, 0.5, (frames, persons, 17, 2))
    conf = rng.uniform(0.2, 1.0, (frames, persons, 17))
    conf[rng.random((frames, persons, 17)) < 0.1] = 0.0
    conf[rng.random((frames, persons)) < 0.02] = 0.0  # whole detections that must be skipped
    np.savez(
        path,
        keypoints=kp.astype(np.float32),
        confidence=conf.astype(np.float32),
        keypoint_set="coco17",
        person_ids=np.broadcast_to(np.arange(persons), (frames, persons)).astype(np.int64),
        tracked=np.asarray(True),
    )
    return path


def _predict(tmp_path, inputs, name: str, *extra: str) -> dict[str, np.ndarray]:
    """The motion tables of one run, rows of every input in order (``<stem>_params.npz``)."""
    out = tmp_path / name
    inputs = [str(p) for p in (inputs if isinstance(inputs, list) else [inputs])]
    assert (
        main(
            [
                "predict",
                *inputs,
                "--checkpoint",
                "anny-coco17",
                "--device",
                "cpu",
                "--out",
                str(out),
                *extra,
            ]
        )
        == 0
    )
    tables = []
    for p in inputs:
        with np.load(out / f"{Path(p).stem}_params.npz") as z:
            tables.append({k: z[k] for k in KEYS})
    return {k: np.concatenate([t[k] for t in tables]) for k in KEYS}


@pytest.fixture()
def batch_sizes(monkeypatch):
    """Every batch a body model is evaluated on (forward, forward_keypoints: all check the pose first)."""
    sizes: list[int] = []
    check = BodyModel._check_pose

    def spy(self, rotmats, shape):
        sizes.append(int(rotmats.shape[0]))
        return check(self, rotmats, shape)

    monkeypatch.setattr(BodyModel, "_check_pose", spy)
    return sizes


def _assert_same(a: dict[str, np.ndarray], b: dict[str, np.ndarray], camera_tol: float = 0) -> None:
    """Same tables; ``camera_tol``: relative and absolute (metres) tolerance of the camera-frame keys (``transl``,
    ``keypoints3d``), whose batched camera fit differs in the last float32 bit for 1-5-row
    chunks (the predicted parameters and the meshes stay bit-identical)."""
    assert set(a) == set(b) and set(KEYS) <= set(a)
    for k in a:
        assert a[k].shape == b[k].shape and a[k].dtype == b[k].dtype, k
        if camera_tol and k in ("transl", "keypoints3d"):
            assert np.allclose(a[k], b[k], rtol=camera_tol, atol=camera_tol), k
            continue
        assert np.array_equal(a[k], b[k]), f"{k} differs between chunked and unchunked runs"


def test_chunked_predict_equals_one_piece(tmp_path, batch_sizes, capsys):
    inp = _coco17_detections(tmp_path / "kp.npz", 10_000)
    whole = _predict(tmp_path, inp, "whole", "--chunk-size", "1000000")
    assert max(batch_sizes) > 9000  # in one piece: every detection in one batch
    batch_sizes.clear()
    chunked = _predict(tmp_path, inp, "chunked", "--chunk-size", "999")
    assert batch_sizes and max(batch_sizes) <= _rows(999)  # never more than a chunk at once
    _assert_same(whole, chunked)
    n = len(chunked["rotmats"])
    assert 9000 < n < 10_000  # the skipped detections are skipped in both
    assert chunked["keypoints3d"].shape == (n, 17, 3) and np.isfinite(chunked["keypoints3d"]).all()
    assert chunked["rotmats"].shape == (n, 24, 3, 3) and np.isfinite(chunked["phenotypes"]).all()
    assert "predictions" in capsys.readouterr().out


def test_chunked_smoothing_and_two_inputs_equal_one_piece(tmp_path, batch_sizes):
    """Smoothing runs over whole tracks (across chunk borders); inputs are chunked one by one."""
    a = _coco17_detections(tmp_path / "a.npz", 1500, persons=2, seed=1)
    b = _coco17_detections(tmp_path / "b.npz", 700, persons=1, seed=2)
    whole = _predict(tmp_path, [a, b], "whole", "--smooth", "--chunk-size", "100000")
    batch_sizes.clear()
    chunked = _predict(tmp_path, [a, b], "chunked", "--smooth", "--chunk-size", "250")
    assert batch_sizes and max(batch_sizes) <= _rows(250)
    _assert_same(whole, chunked)
    rough = _predict(tmp_path, [a, b], "rough", "--chunk-size", "250")
    assert not np.array_equal(rough["rotmats"], chunked["rotmats"])  # smoothing did something


@pytest.mark.parametrize("chunk", [1, 5])
def test_chunked_meshes_equal_one_piece(tmp_path, batch_sizes, chunk):
    inp = _coco17_detections(tmp_path / "kp.npz", 12, seed=3)
    whole = _predict(tmp_path, inp, "whole", "--meshes", "ply", "--chunk-size", "1000")
    batch_sizes.clear()
    chunked = _predict(tmp_path, inp, "chunked", "--meshes", "ply", "--chunk-size", str(chunk))
    # the anny body is batch-invariant: it sees the chunks themselves, never padded
    assert batch_sizes and max(batch_sizes) == chunk
    _assert_same(whole, chunked, camera_tol=1e-6)
    meshes = sorted(p.name for p in (tmp_path / "chunked" / "kp_meshes").iterdir())
    assert len(meshes) == len(chunked["rotmats"]) and meshes == sorted(
        p.name for p in (tmp_path / "whole" / "kp_meshes").iterdir()
    )
    for name in meshes:
        assert (tmp_path / "chunked" / "kp_meshes" / name).read_bytes() == (
            tmp_path / "whole" / "kp_meshes" / name
        ).read_bytes()


def test_chunk_size_must_be_positive(tmp_path, capsys):
    inp = _coco17_detections(tmp_path / "kp.npz", 3)
    assert main(["predict", str(inp), "--chunk-size", "0", "--out", str(tmp_path / "p")]) == 2
    assert "--chunk-size" in capsys.readouterr().err
