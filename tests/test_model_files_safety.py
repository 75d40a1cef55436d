"""SMPL model files are read as data: a crafted file never runs code, at any entry point, and a
checkpoint never chooses the folder model files are read from."""

from __future__ import annotations

import builtins
import logging
import os
import pickle

import numpy as np
import pytest
import torch

from helpers.synthetic_smpl import synthetic_smpl_data, write_synthetic_smpl
from key2mesh.body.smpl_backend import load_smpl_data
from key2mesh.errors import Key2MeshError
from key2mesh.model.checkpoint import atomic_save, load_checkpoint
from key2mesh.model.paper_import import convert_paper_state_dict
from test_paper_import import _lightning_file, official_state_dict

pytest.importorskip("smplx")


class _System:
    """Unpickling this runs ``os.system`` (``posix.system``): it creates the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


class _Exec:
    """Unpickling this runs ``builtins.exec``: it creates the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (builtins.exec, (f"open({self.marker!r}, 'w').close()",))


class _NumpyLoad:
    """A numpy global SMPL files never need: ``np.load(path, None, True)`` unpickles anything."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (np.load, (self.marker, None, True))


PAYLOADS = {  # payload class -> the global the error names
    _System: os.system.__module__ + ".system",
    _Exec: "builtins.exec",
    _NumpyLoad: "numpy.load",
}


def _payload_dir(tmp_path, kind=_System, name="SMPL_NEUTRAL.pkl", protocol=2):
    """A folder whose SMPL file carries a payload among real-looking arrays."""
    folder = tmp_path / "evil"
    folder.mkdir(exist_ok=True)
    marker = tmp_path / "MARKER"
    data = synthetic_smpl_data()
    data["bs_type"] = kind(marker)
    with open(folder / name, "wb") as fh:
        pickle.dump(data, fh, protocol=protocol)
    return folder, marker


def _good_dir(tmp_path):
    folder = tmp_path / "good"
    write_synthetic_smpl(folder / "SMPL_NEUTRAL.pkl")
    return folder


@pytest.mark.parametrize("protocol", [0, 2, 4])
@pytest.mark.parametrize("kind", list(PAYLOADS))
def test_a_pickle_payload_is_refused_naming_file_and_global(tmp_path, kind, protocol):
    folder, marker = _payload_dir(tmp_path, kind, protocol=protocol)
    with pytest.raises(Key2MeshError) as err:
        load_smpl_data(folder / "SMPL_NEUTRAL.pkl")
    msg = str(err.value)
    assert not marker.exists()
    assert str(folder / "SMPL_NEUTRAL.pkl") in msg and PAYLOADS[kind] in msg and "\n" not in msg


@pytest.mark.parametrize("protocol", [0, 1, 2, 4, 5])
def test_plain_smpl_pickles_of_every_protocol_still_load(tmp_path, protocol):
    """numpy arrays, a scipy CSC matrix, strings (protocols 0/1 go through copy_reg)."""
    data = synthetic_smpl_data()
    data["scale"] = np.float64(1.0)  # a numpy scalar
    with open(tmp_path / "SMPL_NEUTRAL.pkl", "wb") as fh:
        pickle.dump(data, fh, protocol=protocol)
    loaded = load_smpl_data(tmp_path / "SMPL_NEUTRAL.pkl")
    np.testing.assert_array_equal(loaded["v_template"], data["v_template"])
    assert (loaded["J_regressor"] != data["J_regressor"]).nnz == 0
    assert loaded["bs_type"] == data["bs_type"] and loaded["scale"] == 1.0


def test_dotted_names_and_codecs_other_than_latin1_are_refused(tmp_path):
    """Protocol 4 may name ``numpy.ndarray.__reduce__``-like attribute paths; only exact
    allowed names resolve. ``_codecs.encode`` (protocol 2 bytes) only as latin1."""
    path = tmp_path / "SMPL_NEUTRAL.pkl"
    # PROTO 4, SHORT_BINUNICODE "numpy", SHORT_BINUNICODE "ndarray.__new__", STACK_GLOBAL, STOP
    mod, name = b"numpy", b"ndarray.__new__"
    path.write_bytes(
        b"\x80\x04\x8c" + bytes([len(mod)]) + mod + b"\x8c" + bytes([len(name)]) + name + b"\x93."
    )
    with pytest.raises(Key2MeshError, match=r"numpy\.ndarray\.__new__"):
        load_smpl_data(path)
    path.write_bytes(b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00aX\x05\x00\x00\x00rot13\x86R.")
    with pytest.raises(Key2MeshError, match="latin1"):
        load_smpl_data(path)


def test_npz_with_an_object_array_is_refused(tmp_path):
    marker = tmp_path / "MARKER"
    data = synthetic_smpl_data()
    data["J_regressor"] = data["J_regressor"].toarray()
    data["bs_type"] = np.array([_Exec(marker)], dtype=object)
    np.savez(tmp_path / "SMPL_NEUTRAL.npz", **data)
    with pytest.raises(Key2MeshError) as err:
        load_smpl_data(tmp_path / "SMPL_NEUTRAL.npz")
    msg = str(err.value)
    assert not marker.exists()
    assert str(tmp_path / "SMPL_NEUTRAL.npz") in msg and "'bs_type'" in msg
    assert "object array" in msg and "\n" not in msg


# ------------------------------------------------------------------------------ entry points


def test_smpl_dir_argument_and_environment_variable(tmp_path, monkeypatch):
    from key2mesh.body import load_body_model

    folder, marker = _payload_dir(tmp_path)
    with pytest.raises(Key2MeshError, match="posix.system|os.system|nt.system"):
        load_body_model("smpl", model_dir=folder)
    monkeypatch.setenv("KEY2MESH_SMPL_DIR", str(folder))
    with pytest.raises(Key2MeshError, match="SMPL_NEUTRAL.pkl"):
        load_body_model("smpl")
    assert not marker.exists()


def _cli(args, capsys) -> str:
    from key2mesh.cli import main

    assert main(args) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def test_fit_smpl_dir(tmp_path, capsys):
    folder, marker = _payload_dir(tmp_path, _Exec)
    kp = tmp_path / "kp.npz"
    rng = np.random.default_rng(0)
    np.savez(kp, keypoints=rng.uniform(100, 300, (1, 25, 2)), keypoint_set="openpose_body25")
    out = tmp_path / "o.npz"
    err = _cli(
        ["fit", str(kp), "--body", "smpl", "--smpl-dir", str(folder), "--out", str(out)], capsys
    )
    assert "builtins.exec" in err and "SMPL_NEUTRAL.pkl" in err and not marker.exists()


def test_data_prepare_body_smpl(tmp_path, capsys, monkeypatch):
    folder, marker = _payload_dir(tmp_path, _Exec)
    monkeypatch.delenv("KEY2MESH_SMPL_DIR", raising=False)
    args = ["data", "prepare", "--body", "smpl", "--smpl-dir", str(folder)]
    err = _cli([*args, "--out", str(tmp_path / "cache.npz")], capsys)
    assert "builtins.exec" in err and not marker.exists()


def test_from_pretrained_smpl_dir_and_the_lightning_importer(tmp_path):
    from key2mesh.inference.predictor import Key2Mesh

    folder, marker = _payload_dir(tmp_path)
    lightning = _lightning_file(tmp_path / "best-model.ckpt", official_state_dict())
    ours = tmp_path / "ours.pt"
    atomic_save(convert_paper_state_dict(official_state_dict()), ours)
    for ckpt in (lightning, ours):
        with pytest.raises(Key2MeshError, match="system"):
            Key2Mesh.from_pretrained(ckpt, device="cpu", smpl_dir=folder)
    assert not marker.exists()


@pytest.mark.parametrize("relative", [False, True])
def test_a_checkpoint_never_chooses_the_model_folder(tmp_path, monkeypatch, caplog, relative):
    """A checkpoint whose ``body.model_dir`` names a payload folder: the folder is ignored (a log
    line says so); without --smpl-dir / $KEY2MESH_SMPL_DIR the error asks for one."""
    from key2mesh.inference.predictor import Key2Mesh

    folder, marker = _payload_dir(tmp_path)
    monkeypatch.chdir(tmp_path)
    ck = convert_paper_state_dict(official_state_dict())
    ck.body["model_dir"] = "evil" if relative else str(folder)
    path = tmp_path / "crafted.pt"
    atomic_save(ck, path)
    monkeypatch.delenv("KEY2MESH_SMPL_DIR", raising=False)
    with caplog.at_level(logging.WARNING, logger="key2mesh"):
        loaded = load_checkpoint(path)
    assert loaded.body["model_dir"] is None
    assert any(
        "ignored" in r.getMessage() and ck.body["model_dir"] in r.getMessage()
        for r in caplog.records
    )
    with pytest.raises(Key2MeshError, match="KEY2MESH_SMPL_DIR"):
        Key2Mesh.from_pretrained(path, device="cpu")
    assert not marker.exists()

    # the user's folder is used, never the stored one
    good = _good_dir(tmp_path)
    monkeypatch.setenv("KEY2MESH_SMPL_DIR", str(good))
    model = Key2Mesh.from_pretrained(path, device="cpu")
    assert model.body.model_path == good / "SMPL_NEUTRAL.pkl"
    monkeypatch.delenv("KEY2MESH_SMPL_DIR")
    model = Key2Mesh.from_pretrained(path, device="cpu", smpl_dir=good)
    assert model.body.model_path == good.resolve() / "SMPL_NEUTRAL.pkl"
    assert not marker.exists()


def test_fit_init_from_a_crafted_checkpoint_uses_smpl_dir(tmp_path, monkeypatch, capsys):
    """``fit --init-from CKPT --smpl-dir GOOD``: the stored payload folder is not read."""
    from key2mesh.cli import main

    folder, marker = _payload_dir(tmp_path)
    ck = convert_paper_state_dict(official_state_dict())
    ck.body["model_dir"] = str(folder)
    path = tmp_path / "crafted.pt"
    atomic_save(ck, path)
    monkeypatch.delenv("KEY2MESH_SMPL_DIR", raising=False)
    kp = tmp_path / "kp.npz"
    rng = np.random.default_rng(0)
    np.savez(kp, keypoints=rng.uniform(100, 300, (1, 18, 2)), keypoint_set="openpose_coco18")
    out = tmp_path / "o.npz"
    args = ["fit", str(kp), "--checkpoint", str(path), "--iters", "2", "--out", str(out)]
    err = _cli(args, capsys)
    assert "KEY2MESH_SMPL_DIR" in err and not marker.exists()
    good = _good_dir(tmp_path)
    assert main([*args, "--smpl-dir", str(good)]) == 0
    assert out.exists() and not marker.exists()


def test_checkpoints_of_the_same_body_in_another_folder_still_match(tmp_path):
    """``expect_body`` (resume, fine-tuning) compares the model, not the folder it was read from."""
    ck = convert_paper_state_dict(official_state_dict(), smpl_dir=tmp_path / "a")
    atomic_save(ck, tmp_path / "ours.pt")
    body = {"name": "smpl", "model_dir": str(tmp_path / "b"), "gender": "neutral"}
    assert load_checkpoint(tmp_path / "ours.pt", expect_body=body).body["gender"] == "neutral"
    with pytest.raises(Key2MeshError, match="trained for body model"):
        load_checkpoint(tmp_path / "ours.pt", expect_body=dict(body, gender="male"))
    assert torch.is_tensor(next(iter(ck.model.values())))


def test_a_checkpoint_never_chooses_the_h36m_regressor_file(tmp_path, monkeypatch, caplog):
    """``body.joint_regressor_h36m`` names a file the SMPL body reads: a crafted checkpoint chose
    it (the planted regressor was used for the h36m17 keypoints); now dropped with a log line."""
    from key2mesh.inference.predictor import Key2Mesh

    planted = tmp_path / "elsewhere" / "planted.npy"
    planted.parent.mkdir()
    np.save(planted, np.full((17, 6890), 1.0 / 6890))
    ck = convert_paper_state_dict(official_state_dict())
    ck.body["joint_regressor_h36m"] = str(planted)
    atomic_save(ck, tmp_path / "crafted.pt")
    monkeypatch.setenv("KEY2MESH_SMPL_DIR", str(_good_dir(tmp_path)))
    with caplog.at_level(logging.WARNING, logger="key2mesh"):
        loaded = load_checkpoint(tmp_path / "crafted.pt")
    assert "joint_regressor_h36m" not in loaded.body
    assert any(str(planted) in r.getMessage() for r in caplog.records)
    model = Key2Mesh.from_pretrained(tmp_path / "crafted.pt", device="cpu", full_mesh=False)
    assert model.body.joint_regressor_h36m is None
