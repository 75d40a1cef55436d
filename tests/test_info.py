"""`key2mesh info` names each missing optional extra with its install command, the shipped
checkpoints and the caches."""

from __future__ import annotations

import argparse
import importlib.util

import pytest

from key2mesh.commands import info


def _run(
    capsys, monkeypatch, absent: set[str], smpl_dir: str | None = None, others_present=False
) -> str:
    """``info``'s output with the modules ``absent`` made unfindable; ``others_present``: every
    other extra counts as installed (whatever this machine has)."""
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name in absent else real(name, *a)
    )
    if others_present:
        real_missing = info.missing_modules
        monkeypatch.setattr(
            info, "missing_modules", lambda extra: [m for m in real_missing(extra) if m in absent]
        )
    monkeypatch.delenv("KEY2MESH_SMPL_DIR", raising=False)
    assert info.run(argparse.Namespace(smpl_dir=smpl_dir)) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize(
    ("module", "extra"),
    [
        ("viser", "viewer"),
        ("onnxruntime", "export"),
        ("mediapipe", "detect"),
        ("imageio_ffmpeg", "detect"),  # H.264 videos: the demo falls back to mp4v without it
        ("ray", "cluster"),
    ],
)
def test_a_missing_extra_is_named_with_its_install_command(capsys, monkeypatch, module, extra):
    out = _run(capsys, monkeypatch, absent={module}, others_present=True)
    lines = out.splitlines()
    row = next(i for i, line in enumerate(lines) if line.split()[:1] == [extra])
    assert "MISSING" in lines[row] and module in lines[row]
    assert lines[row + 1].split() == ["install:", "pip", "install", "-e", f'".[{extra}]"']
    assert out.count("install: pip install") == 1  # only the missing one


def test_nothing_missing_prints_no_install_command(capsys, monkeypatch):
    out = _run(capsys, monkeypatch, absent=set(), others_present=True)
    assert "MISSING" not in out.split("optional extras:")[1].split("shipped checkpoints")[0]
    assert "install: pip install" not in out


def test_smpl_without_smplx_or_files_says_how_to_get_them(capsys, monkeypatch, tmp_path):
    have_smplx = not info.missing_modules(info.EXTRAS[-1])
    out = _run(capsys, monkeypatch, absent={"smplx"})
    smpl = next(line for line in out.splitlines() if line.strip().startswith("smpl "))
    assert 'pip install -e ".[smpl]"' in smpl
    if not have_smplx:
        pytest.skip("smplx is not installed here")
    monkeypatch.undo()
    out = _run(capsys, monkeypatch, absent=set(), smpl_dir=str(tmp_path))
    smpl = next(line for line in out.splitlines() if line.strip().startswith("smpl "))
    assert "KEY2MESH_SMPL_DIR" in smpl and "--smpl-dir" in smpl and str(tmp_path) in smpl


def test_checkpoints_and_anny_cache_are_reported(capsys, monkeypatch, tmp_path):
    from key2mesh.model.checkpoint import PRETRAINED

    monkeypatch.setenv("ANNY_CACHE_DIR", str(tmp_path / "nowhere"))
    out = _run(capsys, monkeypatch, absent=set())
    for name in PRETRAINED:
        assert any(line.split()[:1] == [name] for line in out.splitlines()), name
    caches = out.split("\ncaches:")[1].splitlines()
    anny = next(line for line in caches if line.strip().startswith("anny "))
    assert str(tmp_path / "nowhere") in anny and "not built yet" in anny


def test_a_damaged_shipped_checkpoint_is_reported_and_named_on_load(capsys, monkeypatch, tmp_path):
    """A truncated shipped file, or a Git LFS pointer in its place, is not 'present': `info`
    calls it DAMAGED, and loading it by name says it is the shipped model and how to restore it."""
    from key2mesh.errors import Key2MeshError
    from key2mesh.geometry.camera import VirtualCamera
    from key2mesh.model import checkpoint as C
    from key2mesh.model.network import Key2MeshNet, ModelConfig

    ck = C.make_checkpoint(
        Key2MeshNet(ModelConfig(num_keypoints=17, hidden=16)),
        keypoint_set="coco17",
        body_config={"name": "anny"},
        camera=VirtualCamera(),
        normalization={},
        stage="test",
    )
    for file in C.PRETRAINED.values():
        C.atomic_save(ck, tmp_path / file)
    data = (tmp_path / C.PRETRAINED["anny-coco17"]).read_bytes()
    (tmp_path / C.PRETRAINED["anny-coco17"]).write_bytes(data[: len(data) // 2])
    (tmp_path / C.PRETRAINED["anny-body25"]).write_text(
        "version https://git-lfs.github.com/spec/v1\noid sha256:0\nsize 13085237\n"
    )
    monkeypatch.setattr(C, "PRETRAINED_DIR", tmp_path)
    out = _run(capsys, monkeypatch, absent=set())
    rows = {line.split()[0]: line for line in out.split("shipped checkpoints")[1].splitlines()[1:5]}
    assert "DAMAGED" in rows["anny-coco17"] and "DAMAGED" in rows["anny-body25"]
    assert rows["anny-coco17-seed1"].split()[1:] == ["present"]
    assert "reinstall" in out
    for name in ("anny-coco17", "anny-body25"):
        with pytest.raises(Key2MeshError, match=f"shipped model {name}.*reinstall"):
            C.load_checkpoint(C.resolve_checkpoint(name))
