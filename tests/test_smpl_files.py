"""SMPL model files of the wrong kind (SMPL-X, other meshes) are refused with one clear line."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import scipy.sparse

from helpers.synthetic_smpl import synthetic_smpl_data
from key2mesh.errors import Key2MeshError


def _model(nv: int, nj: int) -> dict:
    """A self-consistent SMPL-format dict with ``nv`` vertices and ``nj`` joints."""
    rng = np.random.default_rng(0)
    parents = [-1] + [max(0, j - 1 - (j % 3)) for j in range(1, nj)]
    w = np.zeros((nv, nj))
    w[np.arange(nv), np.arange(nv) % nj] = 1.0
    return {
        "v_template": rng.normal(size=(nv, 3)), "shapedirs": np.zeros((nv, 3, 10)),
        "posedirs": np.zeros((nv, 3, 9 * (nj - 1))),
        "J_regressor": scipy.sparse.csc_matrix(w.T / np.maximum(w.sum(0), 1)[:, None]),
        "weights": w, "kintree_table": np.array([[4294967295 if p < 0 else p for p in parents], list(range(nj))]),
        "f": np.stack([np.arange(nv - 2), np.arange(1, nv - 1), np.arange(2, nv)], 1).astype(np.uint32),
    }  # fmt: skip


def _write(path, data):
    with open(path, "wb") as fh:
        pickle.dump(data, fh, protocol=2)
    return path


@pytest.mark.parametrize(
    "nv, nj, hint",
    [
        (10475, 55, "an SMPL-X model?"),
        (6890, 52, "an SMPL-H model?"),
        (6000, 24, None),
    ],
)
def test_wrong_model_files_are_refused(tmp_path, nv, nj, hint):
    pytest.importorskip("smplx")
    from key2mesh.body.smpl_backend import SMPLBody

    path = _write(tmp_path / "SMPL_NEUTRAL.pkl", _model(nv, nj))
    with pytest.raises(Key2MeshError) as err:
        SMPLBody(model_dir=tmp_path)
    msg = str(err.value)
    assert msg.startswith(f"{path} has {nv:,} vertices and {nj} joints")
    assert "key2mesh needs SMPL (6,890 vertices, 24 joints)" in msg and "\n" not in msg
    assert (hint in msg) if hint else "?" not in msg


def test_smpl_x_named_file_in_cli(tmp_path, capsys):
    pytest.importorskip("smplx")
    from key2mesh.cli import main

    _write(tmp_path / "SMPL_NEUTRAL.pkl", _model(10475, 55))
    kp = tmp_path / "kp.npz"
    np.savez(
        kp,
        keypoints=np.random.default_rng(0).uniform(0, 100, (1, 25, 2)),
        keypoint_set="openpose_body25",
    )
    assert (
        main(
            [
                "fit",
                str(kp),
                "--body",
                "smpl",
                "--smpl-dir",
                str(tmp_path),
                "--out",
                str(tmp_path / "o.npz"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "10,475 vertices and 55 joints: an SMPL-X model?" in err and "Traceback" not in err


def test_real_format_still_loads(tmp_path):
    pytest.importorskip("smplx")
    from key2mesh.body.smpl_backend import SMPLBody

    _write(tmp_path / "SMPL_NEUTRAL.pkl", synthetic_smpl_data())
    assert SMPLBody(model_dir=tmp_path).faces.shape[0] == 13776
