"""Checkpoints never run code (weights_only loading), and what key2mesh writes loads that way."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from key2mesh.cli import main
from key2mesh.errors import Key2MeshError
from key2mesh.geometry.camera import VirtualCamera
from key2mesh.model.checkpoint import (
    FORMAT,
    FORMAT_VERSION,
    atomic_save,
    load_checkpoint,
    make_checkpoint,
)
from key2mesh.model.network import Key2MeshNet, ModelConfig

SRC = Path(__file__).resolve().parents[1] / "src" / "key2mesh"


class _Payload:
    """Unpickling this creates ``path`` (stands in for any code an attacker would run)."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _evil(tmp_path: Path, name: str = "evil.pt", sentinel: str = "SENTINEL") -> tuple[Path, Path]:
    """A file that looks like a key2mesh checkpoint but carries a payload."""
    target = tmp_path / sentinel
    path = tmp_path / name
    torch.save(
        {"format": FORMAT, "format_version": FORMAT_VERSION, "payload": _Payload(target)}, path
    )
    assert not target.exists()
    return path, target


def _small_checkpoint(**extra) -> dict:
    torch.manual_seed(0)
    net = Key2MeshNet(ModelConfig(num_keypoints=25, hidden=32))
    return make_checkpoint(
        net,
        keypoint_set="openpose_body25",
        body_config={"name": "anny", "rig": "r", "topology": "t"},
        camera=VirtualCamera(),
        normalization={"conf_threshold": 0.1, "missing_value": -1.0},
        stage="test",
        **extra,
    )


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    return lines[0]


def test_load_checkpoint_refuses_code(tmp_path):
    path, sentinel = _evil(tmp_path)
    with pytest.raises(Key2MeshError, match="could run code"):
        load_checkpoint(path)
    assert not sentinel.exists()


def test_from_pretrained_refuses_code(tmp_path):
    from key2mesh.inference.predictor import Key2Mesh

    path, sentinel = _evil(tmp_path)
    with pytest.raises(Key2MeshError, match="refused"):
        Key2Mesh.from_pretrained(path)
    assert not sentinel.exists()


def _keypoint_file(tmp_path: Path) -> Path:
    f = tmp_path / "kp.npz"
    np.savez(
        f,
        keypoints=np.random.default_rng(0).uniform(0, 100, (2, 25, 3)).astype(np.float32),
        keypoint_set="openpose_body25",
    )
    return f


@pytest.mark.parametrize("command", ["predict", "export", "evaluate", "fit", "adapt"])
def test_cli_refuses_code(tmp_path, capsys, command):
    path, sentinel = _evil(tmp_path)
    kp = _keypoint_file(tmp_path)
    argv = {
        "predict": [
            "predict",
            str(kp),
            "--checkpoint",
            str(path),
            "--out",
            str(tmp_path / "o"),
        ],
        "export": ["export-model", "--checkpoint", str(path), "--onnx", str(tmp_path / "m.onnx")],
        "evaluate": [
            "evaluate",
            "--dataset",
            "mocap-heldout",
            "--cache",
            str(tmp_path / "c.npz"),
            "--checkpoint",
            str(path),
        ],
        "fit": ["fit", str(kp), "--checkpoint", str(path), "--out", str(tmp_path / "f.npz")],
        "adapt": [
            "adapt",
            "--checkpoint",
            str(path),
            "--target",
            str(kp),
            "--cache",
            str(tmp_path / "c.npz"),
            "--out",
            str(tmp_path / "ad"),
        ],
    }[command]
    assert main(argv) == 2
    line = _one_line_error(capsys)
    assert "evil.pt" in line and "refused" in line
    assert not sentinel.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.pt", "kp.npz"]  # nothing written


def test_pretrain_resume_refuses_planted_last_pt(tmp_path):
    """`pretrain --resume` reads OUT/last.pt through load_checkpoint (same refusal)."""
    out = tmp_path / "run"
    out.mkdir()
    path, sentinel = _evil(out, "last.pt")
    with pytest.raises(Key2MeshError, match="refused"):
        load_checkpoint(path, expect_body={"name": "anny"}, expect_keypoint_set="openpose_body25")
    assert not sentinel.exists()


def test_every_torch_load_in_src_passes_weights_only_true():
    calls = []
    for f in SRC.rglob("*.py"):
        text = f.read_text()
        for m in re.finditer(r"torch\.load\(", text):
            depth, i = 1, m.end()
            while depth and i < len(text):
                depth += {"(": 1, ")": -1}.get(text[i], 0)
                i += 1
            calls.append((f.relative_to(SRC), text[m.start() : i]))
    assert calls, "expected at least the checkpoint loader"
    bad = [(f, c) for f, c in calls if not re.search(r"weights_only\s*=\s*True", c)]
    assert not bad, bad
    # training code (pretrain --resume, adapt --source) reads checkpoints only through load_checkpoint
    for f in (SRC / "train").glob("*.py"):
        assert "pickle.load" not in f.read_text() and "torch.load" not in f.read_text(), f


def test_shipped_models_load_weights_only():
    from key2mesh.model.checkpoint import PRETRAINED, PRETRAINED_DIR

    found = [PRETRAINED_DIR / f for f in PRETRAINED.values() if (PRETRAINED_DIR / f).exists()]
    if not found:
        pytest.skip("no shipped checkpoint")
    for path in found:
        ck = load_checkpoint(path)
        assert ck.to_dict()["format"] == FORMAT and ck.model


def test_typed_checkpoint_round_trips_the_on_disk_format():
    """load_checkpoint gives a typed Checkpoint; to_dict() is the same plain dict as on disk
    (shipped files included), so re-saving keeps the format."""
    from key2mesh.model.checkpoint import PRETRAINED, PRETRAINED_DIR, Checkpoint, InputNormalization

    paths = [PRETRAINED_DIR / f for f in PRETRAINED.values() if (PRETRAINED_DIR / f).exists()]
    for path in paths:
        raw = torch.load(path, map_location="cpu", weights_only=True)
        ck = load_checkpoint(path)
        assert isinstance(ck, Checkpoint) and isinstance(ck.normalization, InputNormalization)
        again = ck.to_dict()
        assert sorted(again) == sorted(raw)
        for key, value in raw.items():
            if key == "model":
                assert all(torch.equal(value[k], again["model"][k]) for k in value)
            elif key not in ("scheduler",):
                assert again[key] == value, key
    small = _small_checkpoint(step=3)
    ck = Checkpoint.from_dict(small)
    assert ck.step == 3 and ck.normalization.conf_threshold == 0.1 and ck.model_config.hidden == 32
    assert sorted(ck.to_dict()) == sorted(small)


def test_written_checkpoints_are_plain(tmp_path):
    """Whatever training stores (configs with paths, NumPy numbers, tuples, RNG states, optimizer
    state) is written in a form weights_only accepts, and reads back equal."""
    from dataclasses import dataclass

    @dataclass
    class Cfg:
        out: Path = Path("runs/x")
        lr: np.float32 = np.float32(1e-3)
        sizes: tuple = (1, 2)

    net = Key2MeshNet(ModelConfig(num_keypoints=25, hidden=32))
    opt = torch.optim.Adam(net.parameters())
    net(torch.randn(4, 25, 2))[0].sum().backward()
    opt.step()
    ck = _small_checkpoint(
        optimizer=opt.state_dict(),
        config=Cfg(),
        step=np.int64(7),
        best={"pa": np.float64(1.5)},
        rng={"gen": torch.Generator().get_state(), "torch": torch.get_rng_state(), "cuda": None},
        arr=np.arange(3),
        where=Path("a/b"),
    )
    path = tmp_path / "c.pt"
    atomic_save(ck, path)
    raw = torch.load(path, map_location="cpu", weights_only=True)  # no allow-list at all
    assert raw["config"] == {"out": "runs/x", "lr": pytest.approx(1e-3), "sizes": (1, 2)}
    assert raw["step"] == 7 and type(raw["step"]) is int and raw["where"] == "a/b"
    assert type(raw["versions"]["torch"]) is str
    assert torch.equal(raw["arr"], torch.arange(3))
    opt2 = torch.optim.Adam(Key2MeshNet(ModelConfig(num_keypoints=25, hidden=32)).parameters())
    opt2.load_state_dict(raw["optimizer"])
    assert load_checkpoint(path).stage == "test"


def test_to_plain_rejects_objects():
    from key2mesh.model.checkpoint import to_plain

    with pytest.raises(TypeError, match=r"checkpoint\['x'\]: object"):
        to_plain({"x": object()})


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused(tmp_path, value):
    ck = _small_checkpoint()
    names = [k for k, v in ck["model"].items() if v.is_floating_point()]
    ck["model"][names[0]] = ck["model"][names[0]].clone()
    ck["model"][names[0]].view(-1)[0] = value
    ck["model"][names[2]] = torch.full_like(ck["model"][names[2]], value)
    path = tmp_path / "nan.pt"
    atomic_save(ck, path)
    with pytest.raises(Key2MeshError, match=r"nan\.pt has non-finite weights \(2 tensors"):
        load_checkpoint(path)


def test_cli_refuses_non_finite_weights(tmp_path, capsys):
    ck = _small_checkpoint()
    ck["model"] = {
        k: v * float("nan") if v.is_floating_point() else v for k, v in ck["model"].items()
    }
    atomic_save(ck, tmp_path / "nan.pt")
    assert (
        main(
            [
                "export-model",
                "--checkpoint",
                str(tmp_path / "nan.pt"),
                "--torchscript",
                str(tmp_path / "m.ts"),
            ]
        )
        == 2
    )
    assert "non-finite weights" in _one_line_error(capsys)
    assert not (tmp_path / "m.ts").exists()


def test_full_disk_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    import errno

    path = tmp_path / "last.pt"
    atomic_save(_small_checkpoint(), path)
    before = path.read_bytes()

    def full_disk(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a checkpoint")  # some bytes land in the temp file first
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(Key2MeshError) as info:
        atomic_save(_small_checkpoint(step=2), path)
    message = str(info.value)
    assert (
        "no space left" in message
        and str(path) in message
        and "previous file is unchanged" in message
    )
    assert "\n" not in message and info.value.__cause__ is None
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no temp file left


def test_full_disk_reaches_atomic_save_as_enospc(tmp_path, monkeypatch):
    """torch.save into a path reports a full disk as an opaque RuntimeError; atomic_save writes
    through a file object, so the real ENOSPC from the OS gets through (/dev/full: always full)."""
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full here")
    import os

    real_fdopen = os.fdopen

    def fdopen_full(fd, mode="r", *args, **kwargs):  # the temp file's writes go to /dev/full
        os.close(fd)
        return real_fdopen(os.open("/dev/full", os.O_WRONLY), mode, *args, **kwargs)

    monkeypatch.setattr(os, "fdopen", fdopen_full)
    with pytest.raises(
        Key2MeshError, match=r"no space left on the device while writing .*full\.pt; the previous"
    ):
        atomic_save(_small_checkpoint(), tmp_path / "full.pt")
    assert list(tmp_path.iterdir()) == []


def test_atomic_save_gives_normal_permissions(tmp_path):
    import os
    import stat

    from key2mesh.model.checkpoint import atomic_save

    umask = os.umask(0o022)
    try:
        atomic_save({"a": 1}, tmp_path / "c.pt")
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "c.pt").stat().st_mode) == 0o644


class _FullAfter:
    """A file object whose disk fills up after ``room`` bytes (mid-way through torch's zip)."""

    def __init__(self, fh, room: int = 1000):
        self.fh, self.room = fh, room

    def write(self, data) -> int:
        import errno

        self.room -= len(data)
        if self.room < 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        return self.fh.write(data)

    def __getattr__(self, name):
        return getattr(self.fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.fh.close()


def test_full_disk_inside_torchs_zip_writer_is_one_line(tmp_path, monkeypatch):
    """torch's zip writer turns the file object's ENOSPC into ``RuntimeError: unexpected pos``
    (the OSError only as its context): still one line, the previous checkpoint kept."""
    import os

    path = tmp_path / "last.pt"
    atomic_save(_small_checkpoint(), path)
    before = path.read_bytes()
    real_fdopen = os.fdopen
    monkeypatch.setattr(os, "fdopen", lambda *a, **k: _FullAfter(real_fdopen(*a, **k)))
    with pytest.raises(Key2MeshError) as info:
        atomic_save(_small_checkpoint(step=2), path)
    assert "no space left" in str(info.value) and "previous file is unchanged" in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_zip_writer_failure_without_os_error_is_one_line(tmp_path, monkeypatch):
    def failing(obj, f, *args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")

    monkeypatch.setattr(torch, "save", failing)
    with pytest.raises(Key2MeshError, match=r"cannot write .*c\.pt: the write failed"):
        atomic_save({"a": 1}, tmp_path / "c.pt")
    assert list(tmp_path.iterdir()) == []


def test_exploded_weights_are_refused(tmp_path, capsys):
    ck = _small_checkpoint()
    name = next(k for k, v in ck["model"].items() if k.endswith("weight"))
    ck["model"][name] = ck["model"][name] * 1e30
    atomic_save(ck, tmp_path / "big.pt")
    with pytest.raises(Key2MeshError, match=r"big\.pt has exploded weights \(\|w\| up to"):
        load_checkpoint(tmp_path / "big.pt")
    assert (
        main(
            [
                "export-model",
                "--checkpoint",
                str(tmp_path / "big.pt"),
                "--torchscript",
                str(tmp_path / "m.ts"),
            ]
        )
        == 2
    )
    assert "exploded weights" in _one_line_error(capsys)


@pytest.mark.parametrize("edit", ["hidden", "drop", "extra"])
def test_config_and_weights_that_disagree_are_one_line(tmp_path, capsys, edit):
    ck = _small_checkpoint()
    if edit == "hidden":
        ck["model_config"]["hidden"] = 48  # the weights are hidden=32
    elif edit == "drop":
        ck["model"].pop(next(iter(ck["model"])))
    else:
        ck["model"]["bogus.weight"] = torch.zeros(3)
    atomic_save(ck, tmp_path / "odd.pt")
    with pytest.raises(Key2MeshError, match=r"odd\.pt: its model config and weights disagree"):
        load_checkpoint(tmp_path / "odd.pt")
    assert (
        main(
            [
                "export-model",
                "--checkpoint",
                str(tmp_path / "odd.pt"),
                "--torchscript",
                str(tmp_path / "m.ts"),
            ]
        )
        == 2
    )
    assert "model config and weights disagree" in _one_line_error(capsys)


def test_keypoint_set_that_disagrees_with_the_input_size_is_one_line(tmp_path, capsys):
    """A network of 25 inputs labelled with the 17-point coco17 set is refused when loaded,
    naming the file (it used to load, then fail inside the first Linear: 'mat1 and mat2
    shapes cannot be multiplied')."""
    ck = dict(_small_checkpoint(), keypoint_set="coco17")
    atomic_save(ck, tmp_path / "odd.pt")
    with pytest.raises(
        Key2MeshError,
        match=r"odd\.pt: its network takes 25 keypoints, its keypoint set 'coco17' has 17",
    ):
        load_checkpoint(tmp_path / "odd.pt")
    atomic_save(dict(ck, keypoint_set="openpose_body25"), tmp_path / "ok.pt")
    assert load_checkpoint(tmp_path / "ok.pt").keypoint_set == "openpose_body25"


@pytest.mark.parametrize("edit", ["body", "versions"])
def test_entries_of_the_wrong_type_are_one_line(tmp_path, edit):
    """A hand-edited file whose body (or versions) is a string, not a dict: a one-line
    Key2MeshError naming the file, not an AttributeError ('str' object has no attribute 'get')."""
    ck = _small_checkpoint()
    if edit == "body":
        ck["body"] = "anny"
        pattern = r"odd\.pt: malformed checkpoint entries \('body' is a str, not a dict\)"
    else:
        ck["versions"] = "0.1"
        del ck["camera"]
        pattern = r"odd\.pt lacks \['camera'\]; was it written by key2mesh \?"
    atomic_save(ck, tmp_path / "odd.pt")
    with pytest.raises(Key2MeshError, match=pattern):
        load_checkpoint(tmp_path / "odd.pt", expect_body={"name": "anny"})
