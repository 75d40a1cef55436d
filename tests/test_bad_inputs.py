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
    (inputs / "kp_params.npz").write_bytes((inputs / "kp.npz").read_bytes())  # kp.npz's table name
    np.savez(
        inputs / "empty_bench.npz",
        keypoints=np.zeros((0, 17, 2), np.float32),
        confidence=np.zeros((0, 17), np.float32),
        keypoint_set="coco17",
        joints3d=np.zeros((0, 17, 3), np.float32),
        joints3d_set="coco17",
    )
    from PIL import Image

    Image.new("RGB", (64, 48), (90, 120, 150)).save(inputs / "small.png")
    _png_claiming(inputs / "huge.png", 20_000, 10_000)  # 200 MP: Pillow's own bomb limit
    _png_claiming(inputs / "big.png", 12_000, 10_000)  # 120 MP: over key2mesh's 100 MP limit only
    _png_claiming(inputs / "tall.png", 40, 40_000)  # 1.6 MP, but a side OpenCV aborts on
    (tmp_path / "out").mkdir()
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")  # default output paths would land here
    return {
        "inp": str(inputs / "kp.npz"),
        "inp_stem": str(inputs / "kp"),
        "inp_dir": str(inputs),
        "img": str(inputs / "small.png"),
        "huge": str(inputs / "huge.png"),
        "big": str(inputs / "big.png"),
        "tall": str(inputs / "tall.png"),
        "empty_bench": str(inputs / "empty_bench.npz"),
        "out": str(tmp_path / "out"),
        "root": tmp_path,
    }


# (id, argv with {inp} {img} {huge} {big} {out}, text the error line must contain)
CASES = [
    ("predict-cuda-index", "predict {inp} --device cuda:99 --out {out}/p", "cuda:99"),
    ("predict-bad-device", "predict {inp} --device tpu9 --out {out}/p", "not a device name"),
    (
        "evaluate-cuda-index",
        "evaluate --dataset {inp} --checkpoint anny-body25 --device cuda:99",
        "cuda:99",
    ),
    ("demo-cuda-index", "demo {img} --device cuda:99 --out {out}/demo", "cuda:99"),
    ("pretrain-cuda-index", "pretrain --cache {inp} --out {out}/pt --device cuda:99", "cuda:99"),
    (
        "adapt-cuda-index",
        "adapt --checkpoint anny-body25 --target {inp} --cache {inp} --out {out}/ad --device cuda:99",
        "cuda:99",
    ),
    (
        "fit-batch-size-0",
        "fit {inp} --batch-size 0 --out {out}/f.npz",
        "--batch-size 0: batch_size must be an integer >= 1",
    ),
    ("fit-batch-size-neg", "fit {inp} --batch-size -3 --out {out}/f.npz", "--batch-size"),
    (
        "fit-iters-neg",
        "fit {inp} --iters -1 --out {out}/f.npz",
        "--iters -1: iters must be an integer >= 0",
    ),
    ("fit-iters-text", "fit {inp} --iters many --out {out}/f.npz", "--iters"),
    (
        "fit-sigma-zero",
        "fit {inp} --sigma 0 --out {out}/f.npz",
        "--sigma 0: weights.sigma must be a number > 0",
    ),
    (
        "predict-min-keypoints-0",
        "predict {inp} --min-keypoints 0 --out {out}/p",
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
        "adapt --checkpoint anny-body25 --target {inp} --cache {inp} --out {out}/ad --batch-size 0",
        "--batch-size",
    ),
    (
        "adapt-select-every-neg",
        "adapt --checkpoint anny-body25 --target {inp} --cache {inp} --out {out}/ad --select-every -5",
        "--select-every",
    ),
    ("demo-frames-letters", "demo {img} --frames a:b --out {out}/demo", "--frames 'a:b'"),
    ("demo-frames-four-parts", "demo {img} --frames 1:2:3:4 --out {out}/demo", "START:STOP[:STEP]"),
    ("demo-frames-step-0", "demo {img} --frames 0:10:0 --out {out}/demo", "STEP >= 1"),
    ("demo-frames-backwards", "demo {img} --frames 9:3 --out {out}/demo", "START < STOP"),
    ("demo-huge-image", "demo {huge} --out {out}/demo", "huge.png"),
    ("demo-big-image", "demo {big} --out {out}/demo", "120 megapixels"),
    ("demo-tall-image", "demo {tall} --out {out}/demo", "side over 32767 px"),
    (
        "evaluate-empty-benchmark",
        "evaluate --dataset {empty_bench} --checkpoint anny-coco17 --device cpu",
        "holds no sample",
    ),
    (
        "predict-unknown-option",
        "predict {inp} --bogus --out {out}/p",
        "unrecognized arguments: --bogus",
    ),
    ("predict-missing-file", "predict {out}/nope.npz --out {out}/p", "nope.npz"),
    # --out is a folder: a file name is refused
    ("predict-out-is-a-file", "predict {inp} --out {out}/kp_params.npz", "is the output folder"),
    ("predict-out-is-the-input", "predict {inp} --out {inp}", "is the output folder"),
    # no output of a run overwrites another one or an input
    (
        "predict-motion-table-is-an-input",
        "predict {inp} {inp_dir}/kp_params.npz --out {inp_dir}",
        "is the input",
    ),
    ("predict-fps-nan", "predict {inp} --fps nan --out {out}/p", "--fps: expected a positive"),
    ("predict-fps-inf", "predict {inp} --fps inf --out {out}/p", "--fps: expected a positive"),
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
        "predict {inp} --out {out}/p",
        "demo {img} --out {out}/demo",
        "evaluate --dataset {inp} --checkpoint anny-body25",
        "pretrain --cache {inp} --out {out}/pt",
        "adapt --checkpoint anny-body25 --target {inp} --cache {inp} --out {out}/ad",
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


PT = "pretrain --cache {inp} --out {out}/pt"
AD = "adapt --checkpoint anny-body25 --target {inp} --cache {inp} --out {out}/ad"
# --set / --config / named flags of pretrain, adapt, fit and data prepare: one validator, checked
# before any cache, checkpoint or body model is read ({inp} is no cache: reading it would fail
# with another message)
OPTION_CASES = [
    ("set-steps-text", PT + " --set steps=many", "--set steps=many: steps must be an integer >= 0"),
    (
        "set-threads-neg",
        PT + " --set threads=-3",
        "--set threads=-3: threads must be an integer >= 0",
    ),
    ("set-device", PT + " --set device=banana", "device must be auto, cpu, cuda, cuda:N or mps"),
    ("set-model-hidden-0", PT + " --set model.hidden=0", "model.hidden must be an integer >= 1"),
    ("set-model-bogus", PT + " --set model.bogus=1", "unknown model option 'model.bogus'; valid:"),
    ("set-weights-5", PT + " --set weights=5", "weights must be a mapping of options"),
    ("set-lr-nan", PT + " --set lr=NaN", "--set lr=NaN: lr must be a number > 0"),
    ("set-focal-neg", PT + " --set camera.focal=-5", "camera.focal must be a number > 0"),
    ("set-val-fraction-2", PT + " --set val_fraction=2", "val_fraction must be a number in [0, 1)"),
    ("set-epochs-neg", PT + " --set epochs=-1", "epochs must be a number > 0"),
    ("set-steps-1e400", PT + " --set steps=1e400", "steps must be an integer >= 0"),
    ("set-unknown", PT + " --set bogus=1", "unknown option 'bogus'; valid: cache"),
    ("flag-threads-neg", PT + " --threads -3", "--threads -3: threads must be an integer >= 0"),
    ("flag-hidden-0", PT + " --hidden 0", "--hidden 0: model.hidden must be an integer >= 1"),
    ("flag-lr-inf", PT + " --lr inf", "--lr inf: lr must be a number > 0"),
    ("flag-noise", PT + " --noise-profile loud", "synth.noise_profile must be one of none"),
    ("adapt-set-bn", AD + " --set bn=bogus", "--set bn=bogus: bn must be one of frozen, batch"),
    ("adapt-set-steps-neg", AD + " --set steps=-5", "steps must be an integer >= 0"),
    ("adapt-set-critic", AD + " --set critic_steps=-1", "critic_steps must be an integer >= 0"),
    ("adapt-set-weight", AD + " --set weights.mv=-1", "weights.mv must be a number >= 0"),
    ("adapt-set-device", AD + " --set device=banana", "device must be auto, cpu"),
    (
        "fit-set-iters-neg",
        "fit {inp} --set iters=-5 --out {out}/f.npz",
        "iters must be an integer >= 0",
    ),
    ("fit-iters-float", "fit {inp} --iters 2.5 --out {out}/f.npz", "--iters 2.5: iters must be"),
    ("fit-set-weights", "fit {inp} --set weights=5 --out {out}/f.npz", "weights must be a mapping"),
    (
        "prepare-ik-iters-neg",
        "data prepare --ik-iters -1 --cache {out}/c.npz",
        "--ik-iters -1: ik_iters",
    ),
    (
        "prepare-fps-nan",
        "data prepare --max-fps nan --cache {out}/c.npz",
        "--max-fps nan: fps must be",
    ),
    ("prepare-shapes-0", "data prepare --num-shapes 0 --cache {out}/c.npz", "--num-shapes 0"),
]


@pytest.mark.parametrize("argv, expect", [pytest.param(a, e, id=i) for i, a, e in OPTION_CASES])
def test_bad_option_is_one_line_exit_2(files, capsys, argv, expect):
    test_bad_input_is_one_line_exit_2(files, capsys, argv, expect)


def test_bad_config_file_option_is_one_line_exit_2(files, capsys):
    config = files["root"] / "out" / "c.json"
    config.write_text('{"threads": -3, "steps": 4}')
    argv = PT + f" --config {config}"
    test_bad_input_is_one_line_exit_2(files, capsys, argv, "threads=-3 in --config")
