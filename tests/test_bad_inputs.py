"""A table of bad command lines: each exits with status 2 and one line on stderr (no traceback),
and changes no file outside the output folder."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from key2mesh.cli import main

NO_CUDA = not torch.cuda.is_available()


def _png_claiming(path: Path, width: int, height: int) -> Path:
    """A small PNG file whose header claims ``width`` x ``height`` (a decompression-bomb stand-in)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    return path


@pytest.fixture()
def files(tmp_path, monkeypatch):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    rng = np.random.default_rng(0)
    np.savez(
        inputs / "kp.npz",
        keypoints=rng.uniform(100, 300, (3, 25, 2)).astype(np.float32),
        keypoint_set="openpose_body25",
    )
    from PIL import Image

    Image.new("RGB", (64, 48), (90, 120, 150)).save(inputs / "small.png")
    _png_claiming(inputs / "huge.png", 20_000, 10_000)  # 200 MP: Pillow's own bomb limit
    _png_claiming(inputs / "big.png", 12_000, 10_000)  # 120 MP: over key2mesh's 100 MP limit only
    (tmp_path / "out").mkdir()
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")  # default output paths would land here
    return {
        "inp": str(inputs / "kp.npz"),
        "img": str(inputs / "small.png"),
        "huge": str(inputs / "huge.png"),
        "big": str(inputs / "big.png"),
        "out": str(tmp_path / "out"),
        "root": tmp_path,
    }


# (id, argv with {inp} {img} {huge} {big} {out}, text the error line must contain)
CASES = [
    ("predict-cuda-index", "predict {inp} --device cuda:99 --out {out}/p.npz", "cuda:99"),
    ("predict-bad-device", "predict {inp} --device tpu9 --out {out}/p.npz", "not a device name"),
    (
        "evaluate-cuda-index",
        "evaluate --dataset {inp} --checkpoint anny-body25 --device cuda:99",
        "cuda:99",
    ),
    ("demo-cuda-index", "demo {img} --device cuda:99 --out {out}/demo", "cuda:99"),
    ("pretrain-cuda-index", "pretrain --cache {inp} --out {out}/pt --device cuda:99", "cuda:99"),
    (
        "adapt-cuda-index",
        "adapt --source anny-body25 --target {inp} --cache {inp} --out {out}/ad --device cuda:99",
        "cuda:99",
    ),
    (
        "fit-batch-size-0",
        "fit {inp} --batch-size 0 --out {out}/f.npz",
        "--batch-size: expected a positive integer, got '0'",
    ),
    ("fit-batch-size-neg", "fit {inp} --batch-size -3 --out {out}/f.npz", "--batch-size"),
    (
        "fit-iters-neg",
        "fit {inp} --iters -1 --out {out}/f.npz",
        "--iters: expected an integer >= 0",
    ),
    ("fit-iters-text", "fit {inp} --iters many --out {out}/f.npz", "--iters"),
    (
        "fit-sigma-zero",
        "fit {inp} --sigma 0 --out {out}/f.npz",
        "--sigma: expected a positive number",
    ),
    (
        "predict-min-keypoints-0",
        "predict {inp} --min-keypoints 0 --out {out}/p.npz",
        "--min-keypoints",
    ),
    (
        "evaluate-num-0",
        "evaluate --dataset mocap-heldout --cache {inp} --checkpoint anny-body25 --num 0",
        "--num",
    ),
    (
        "pretrain-batch-size-0",
        "pretrain --cache {inp} --out {out}/pt --batch-size 0",
        "--batch-size",
    ),
    ("pretrain-steps-neg", "pretrain --cache {inp} --out {out}/pt --steps -1", "--steps"),
    ("pretrain-epochs-nan", "pretrain --cache {inp} --out {out}/pt --epochs nan", "--epochs"),
    ("pretrain-val-every-0", "pretrain --cache {inp} --out {out}/pt --val-every 0", "--val-every"),
    (
        "adapt-batch-size-0",
        "adapt --source anny-body25 --target {inp} --cache {inp} --out {out}/ad --batch-size 0",
        "--batch-size",
    ),
    (
        "adapt-select-every-neg",
        "adapt --source anny-body25 --target {inp} --cache {inp} --out {out}/ad --select-every -5",
        "--select-every",
    ),
    ("demo-frames-letters", "demo {img} --frames a:b --out {out}/demo", "--frames 'a:b'"),
    ("demo-frames-four-parts", "demo {img} --frames 1:2:3:4 --out {out}/demo", "START:STOP[:STEP]"),
    ("demo-frames-step-0", "demo {img} --frames 0:10:0 --out {out}/demo", "STEP >= 1"),
    ("demo-frames-backwards", "demo {img} --frames 9:3 --out {out}/demo", "START < STOP"),
    ("demo-huge-image", "demo {huge} --out {out}/demo", "huge.png"),
    ("demo-big-image", "demo {big} --out {out}/demo", "120 megapixels"),
    (
        "predict-unknown-option",
        "predict {inp} --bogus --out {out}/p.npz",
        "unrecognized arguments: --bogus",
    ),
    ("predict-missing-file", "predict {out}/nope.npz --out {out}/p.npz", "nope.npz"),
]


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(root)): (p.stat().st_mtime_ns, p.stat().st_size)
        for p in root.rglob("*")
        if p.is_file()
    }


@pytest.mark.parametrize("argv, expect", [pytest.param(a, e, id=i) for i, a, e in CASES])
def test_bad_input_is_one_line_exit_2(files, capsys, argv, expect):
    root = files["root"]
    before = _snapshot(root)
    args = [part.format(**files) for part in argv.split()]
    assert main(args) == 2
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert "Traceback" not in err and len(lines) == 1, err
    assert lines[0].startswith("key2mesh") and "error:" in lines[0]
    assert expect in lines[0], lines[0]
    after = _snapshot(root)
    changed = {p for p in set(before) | set(after) if before.get(p) != after.get(p)}
    assert all(p.startswith("out/") for p in changed), changed


@pytest.mark.skipif(not NO_CUDA, reason="CUDA is available here")
@pytest.mark.parametrize(
    "command",
    [
        "predict {inp} --out {out}/p.npz",
        "demo {img} --out {out}/demo",
        "evaluate --dataset {inp} --checkpoint anny-body25",
        "pretrain --cache {inp} --out {out}/pt",
        "adapt --source anny-body25 --target {inp} --cache {inp} --out {out}/ad",
    ],
)
def test_device_cuda_without_cuda(files, capsys, command):
    args = [part.format(**files) for part in command.split()] + ["--device", "cuda"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "CUDA is not available here" in err and "--device cpu" in err


def test_help_and_version_return_zero(capsys):
    assert main(["--help"]) == 0
    assert main(["--version"]) == 0
    assert main(["predict", "--help"]) == 0
    capsys.readouterr()


def test_frame_range_parser():
    from key2mesh.commands.demo import _range

    assert _range(None) == (0, None, 1)
    assert _range("0:60:10") == (0, 60, 10)
    assert _range("100:") == (100, None, 1)
    assert _range(":30") == (0, 30, 1)


@pytest.mark.skipif(
    not (Path(__file__).resolve().parents[1] / "src/key2mesh/pretrained/anny_body25.pt").exists(),
    reason="no shipped checkpoint",
)
def test_api_device_check():
    from key2mesh.errors import Key2MeshError
    from key2mesh.inference.predictor import Key2Mesh

    with pytest.raises(Key2MeshError, match="cuda:99"):
        Key2Mesh.from_pretrained("anny-body25", device="cuda:99")
