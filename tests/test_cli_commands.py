"""`pretrain`, `adapt`, `fit` and `export` driven through the command line (tiny runs, seconds)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from key2mesh.cli import main
from key2mesh.model.checkpoint import load_checkpoint


@pytest.fixture(scope="module")
def pretrained(bank_path, tmp_path_factory):
    """`key2mesh pretrain` with a --config file and flags (flags win over the file)."""
    out = tmp_path_factory.mktemp("pt")
    config = out / "config.json"
    config.write_text(json.dumps({"steps": 99, "val_size": 32, "batch_size": 16, "val_every": 2}))
    argv = ["pretrain", "--config", str(config), "--cache", str(bank_path), "--out", str(out), "--steps", "4",
            "--hidden", "64", "--threads", "1", "--device", "cpu", "--no-pose-augment"]  # fmt: skip
    assert main(argv) == 0
    return out / "last.pt"


def test_pretrain_cli(pretrained):
    ck = load_checkpoint(pretrained)
    assert ck.stage == "pretrain" and ck.step == 4
    assert ck.model_config.hidden == 64 and ck.model_config.critic_hidden == 64
    assert (
        ck.config["val_size"] == 32
        and ck.config["steps"] == 4
        and ck.config["pose_augment"] is False
    )


def test_adapt_cli(pretrained, bank_path, tmp_path):
    out = tmp_path / "ad"
    argv = ["adapt", "--checkpoint", str(pretrained), "--target", "synthetic:strong", "--cache", str(bank_path),
            "--out", str(out), "--steps", "2", "--batch-size", "16", "--select-every", "1", "--losses", "2d+wd",
            "--threads", "1", "--device", "cpu"]  # fmt: skip
    assert main(argv) == 0
    ck = load_checkpoint(out / "last.pt")
    assert ck.stage == "adapt" and ck.config["adapt"]["steps"] == 2
    assert ck.config["adapt"]["weights"]["reg"] == 0.0  # --losses 2d+wd: no L_reg
    assert ck.config["val_size"] == 32  # pre-training's config is kept


def test_adapt_cli_selection_flags_and_verdict(pretrained, bank_path, tmp_path, capsys):
    """--selection / --source-tolerance / --min-gain reach the config, --min-keypoints is used,
    and the last line says which model best.pt is (summary.json too)."""
    import json

    out = tmp_path / "ad"
    argv = ["adapt", "--checkpoint", str(pretrained), "--target", "synthetic:strong", "--cache", str(bank_path),
            "--out", str(out), "--steps", "2", "--batch-size", "16", "--select-every", "1",
            "--selection", "guarded", "--source-tolerance", "0.5", "--min-gain", "0.9",
            "--min-keypoints", "7", "--threads", "1"]  # fmt: skip
    assert main(argv) == 0
    adapt = load_checkpoint(out / "last.pt").config["adapt"]
    assert adapt["selection"] == "guarded" and adapt["source_tolerance"] == 0.5
    assert adapt["min_gain"] == 0.9 and adapt["min_keypoints"] == 7
    printed = capsys.readouterr().out.strip().splitlines()
    assert "(< 7 keypoints)" in printed[0]
    # a 90 % fall of the re-projection in 2 steps does not happen: the source model is kept
    assert printed[-1].startswith("kept the pre-trained model (best.pt = step 0)")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["kept_source"] is True and summary["rule"] == "guarded"
    # a second run into the same folder (--overwrite) starts a new metrics.csv (no resume)
    assert main([*argv, "--overwrite"]) == 0
    steps = [r.split(",")[0] for r in (out / "metrics.csv").read_text().splitlines()[1:]]
    assert steps == ["0", "1", "2"]
    assert main([*argv[:-2], "--selection", "bogus"]) == 2


def test_export_cli(pretrained, tmp_path):
    ts, slim = tmp_path / "m.ts", tmp_path / "slim.pt"
    assert (
        main(
            [
                "export-model",
                "--checkpoint",
                str(pretrained),
                "--torchscript",
                str(ts),
                "--slim",
                str(slim),
            ]
        )
        == 0
    )
    module = torch.jit.load(str(ts))
    r, s = module(torch.rand(3, 25, 2) * 200, torch.ones(3, 25))
    assert r.shape[0] == 3 and torch.isfinite(r).all() and torch.isfinite(s).all()
    small = load_checkpoint(slim)
    assert "optimizer" not in small.extra and all(
        v.dtype == torch.float16 for v in small.model.values() if v.is_floating_point()
    )


def test_fit_cli(pretrained, tmp_path, capsys):
    kp = np.random.default_rng(2).uniform(100, 300, (2, 25, 2)).astype(np.float32)
    inp = tmp_path / "in.npz"
    np.savez(inp, keypoints=kp, keypoint_set="openpose_body25")
    out = tmp_path / "fit.npz"
    assert (
        main(["fit", str(inp), "--out", str(out), "--iters", "2", "--checkpoint", str(pretrained)])
        == 0
    )
    z = np.load(out)
    assert len(z["names"]) == 2 and np.isfinite(z["reprojection_error"]).all()


@pytest.mark.parametrize("command", ["pretrain", "adapt"])
def test_dataclass_defaults_are_the_only_defaults(command):
    """Flags not given are None (the dataclass default applies after --config); every flag of
    FLAGS names a field of the command's config."""
    import dataclasses
    import importlib

    from key2mesh.cli import build_parser
    from key2mesh.train.adapt import AdaptConfig
    from key2mesh.train.pretrain import PretrainConfig

    module = importlib.import_module(f"key2mesh.commands.{command}")
    cls = {"pretrain": PretrainConfig, "adapt": AdaptConfig}[command]
    argv = [command] + (["--target", "x.npz"] if command == "adapt" else [])
    args = build_parser().parse_args(argv)
    assert {k: getattr(args, k) for k in module.FLAGS} == dict.fromkeys(module.FLAGS)
    assert set(module.FLAGS) <= {f.name for f in dataclasses.fields(cls)}


def test_adapt_config_file_and_flags(pretrained, bank_path, tmp_path):
    config = tmp_path / "adapt.json"
    config.write_text(
        json.dumps(
            {
                "source": str(pretrained),
                "cache": str(bank_path),
                "steps": 9,
                "batch_size": 16,
                "select_every": 1,
                "weights": {"kp2d": 10.0, "wd": 0.1, "reg": 0.0},
                "threads": 1,
            }
        )
    )
    out = tmp_path / "ad"
    assert main(["adapt", "--config", str(config), "--target", "synthetic:none", "--out", str(out), "--steps", "1",
                 "--device", "cpu"]) == 0  # fmt: skip
    adapt = load_checkpoint(out / "last.pt").config["adapt"]
    assert adapt["steps"] == 1 and adapt["batch_size"] == 16 and adapt["weights"]["reg"] == 0.0
    assert adapt["critic_steps"] == 3  # the dataclass default


def test_adapt_multiview_cli(pretrained, bank_path, tmp_path, capsys):
    """--multiview groups CAMERA/FRAME views and turns L_mv on; +mv without grouped views is a
    one-line error."""
    from key2mesh.train.adapt import MV_WEIGHT

    rng = np.random.default_rng(0)
    names = [f"cam{c}/frame_{f:05d}" for c in range(4) for f in range(8)]
    target = tmp_path / "views.npz"
    np.savez(target, keypoints=rng.uniform(200, 600, (32, 17, 2)).astype(np.float32),
             confidence=np.ones((32, 17), np.float32), keypoint_set=np.array("coco17"),
             frame_names=np.array(names))  # fmt: skip
    out = tmp_path / "ad"
    common = ["--checkpoint", str(pretrained), "--cache", str(bank_path), "--steps", "2", "--batch-size", "16",
              "--select-every", "1", "--threads", "1", "--device", "cpu"]  # fmt: skip
    assert main(["adapt", "--target", str(target), "--multiview", "--out", str(out), *common]) == 0
    ck = load_checkpoint(out / "last.pt")
    assert (
        ck.config["adapt"]["weights"]["mv"] == MV_WEIGHT
        and ck.config["adapt"]["weights"]["reg"] == 0.0  # --multiview alone: 2d+mv
    )
    assert (
        main(
            [
                "adapt",
                "--target",
                str(target),
                "--losses",
                "2d+mv",
                "--out",
                str(tmp_path / "x"),
                *common,
            ]
        )
        == 2
    )
    assert "synchronised views" in capsys.readouterr().err


def test_adapt_without_source_is_a_one_line_error(tmp_path, capsys):
    assert main(["adapt", "--target", "synthetic:none", "--cache", str(tmp_path / "c.npz")]) == 2
    assert "needs --checkpoint" in capsys.readouterr().err


def test_evaluate_mocap_heldout_goes_through_predict(pretrained, bank_path, tmp_path):
    """`evaluate --dataset mocap-heldout` (the data.heldout loader → Key2Mesh.predict) gives the
    numbers of the normalised synthetic target run straight through the network."""
    from key2mesh.eval.evaluate import score_bodies
    from key2mesh.inference.predictor import Key2Mesh
    from key2mesh.train.adapt import synthetic_target

    out = tmp_path / "ev.json"
    argv = ["evaluate", "--dataset", "mocap-heldout", "--cache", str(bank_path), "--checkpoint", str(pretrained),
            "--noise-profile", "strong", "--num", "300", "--device", "cpu", "--json", str(out)]  # fmt: skip
    assert main(argv) == 0
    got = json.loads(out.read_text())
    model = Key2Mesh.from_pretrained(str(pretrained), device="cpu", full_mesh=False)
    t = synthetic_target(str(bank_path), model.checkpoint, "strong", n=300, split="val")
    with torch.no_grad():
        r, s = model.net(t.inputs)
    errors = score_bodies(model.body, r, s, model.body, t.rotmats, t.shape, "key2mesh")
    assert (got["n"], got["dropped"]) == (len(t), t.dropped)
    assert got["mpjpe"] == pytest.approx(float(errors["mpjpe"].mean()), rel=1e-6)
    assert got["pa_mpjpe"] == pytest.approx(float(errors["pa_mpjpe"].mean()), rel=1e-6)


def test_fit_config_file_and_flags(tmp_path):
    """`fit --config`: the file sets FitConfig fields (weights too), flags override them, and the
    dataclass defaults are the only defaults."""
    from key2mesh.cli import build_parser
    from key2mesh.commands import fit as fit_command

    args = build_parser().parse_args(["fit", "x.npz"])
    assert all(getattr(args, k) is None for k in (*fit_command.FLAGS, *fit_command.WEIGHT_FLAGS))
    kp = np.random.default_rng(2).uniform(100, 300, (2, 25, 2)).astype(np.float32)
    inp = tmp_path / "in.npz"
    np.savez(inp, keypoints=kp, keypoint_set="openpose_body25")
    config = tmp_path / "fit.json"
    config.write_text(json.dumps({"iters": 0, "weights": {"sigma": 0.2}, "fit_set": "coco17"}))
    out = tmp_path / "fit.npz"
    assert (
        main(
            [
                "fit",
                str(inp),
                "--config",
                str(config),
                "--fit-set",
                "openpose_body25",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    z = np.load(out)
    assert str(z["keypoint_set"]) == "openpose_body25" and len(z["names"]) == 2
    config.write_text(json.dumps({"iterations": 3}))
    assert (
        main(["fit", str(inp), "--config", str(config), "--out", str(out)]) == 2
    )  # unknown option: one-line error


def test_set_reaches_every_field(tmp_path):
    """--set KEY=VALUE sets any field, nested ones too (file < --set < named flags); a bad key is
    a one-line error."""
    from key2mesh.commands._config import merged_config
    from key2mesh.errors import Key2MeshError
    from key2mesh.train.pretrain import PretrainConfig

    config = tmp_path / "c.json"
    config.write_text(json.dumps({"amp": True, "synth": {"noise_profile": "detector"}, "lr": 0.5}))
    sets = [
        "amp=false",
        "synth.noise_profile=strong",
        "camera.distance=7.5",
        "model.dropout=0.1",
        "lr=0.25",
    ]
    cfg = merged_config(PretrainConfig, str(config), {"lr": 0.125, "steps": None}, sets)
    assert cfg.amp is False and cfg.synth.noise_profile == "strong" and cfg.camera.distance == 7.5
    assert cfg.model == {"dropout": 0.1} and cfg.lr == 0.125 and cfg.steps == PretrainConfig().steps
    for bad in (["synth.nope=1"], ["nope=1"], ["amp"]):
        with pytest.raises(Key2MeshError):
            merged_config(PretrainConfig, None, {}, bad)


def test_fit_set_option(tmp_path, capsys):
    kp = np.random.default_rng(2).uniform(100, 300, (2, 25, 2)).astype(np.float32)
    inp = tmp_path / "in.npz"
    np.savez(inp, keypoints=kp, keypoint_set="openpose_body25")
    out = tmp_path / "fit.npz"
    assert (
        main(["fit", str(inp), "--set", "weights.hinge=0", "--set", "iters=1", "--out", str(out)])
        == 0
    )
    assert main(["fit", str(inp), "--set", "weights.nope=0", "--out", str(out)]) == 2
    assert "nope" in capsys.readouterr().err


def test_adapt_threads_apply_before_the_targets_are_built(
    pretrained, bank_path, tmp_path, monkeypatch
):
    """--threads holds while the target and --val are built (4,096 posed bodies each for
    synthetic: sets), not only from the training loop on."""
    import torch

    from key2mesh.commands import adapt
    from key2mesh.errors import Key2MeshError

    seen = []

    def record(*args, **kwargs):
        seen.append(torch.get_num_threads())
        raise Key2MeshError("stop here")

    monkeypatch.setattr(adapt, "load_targets", record)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        argv = ["adapt", "--checkpoint", str(pretrained), "--target", "synthetic:strong",
                "--cache", str(bank_path), "--out", str(tmp_path / "a"), "--threads", "1"]  # fmt: skip
        assert main(argv) != 0
    finally:
        torch.set_num_threads(before)
    assert seen == [1]


def test_adapt_refuses_an_earlier_run_unless_overwrite(pretrained, bank_path, tmp_path, capsys):
    """An --out folder holding an earlier adapt run is refused (its best.pt would sit beside
    the new run's metrics); --overwrite replaces that run's files."""
    out = tmp_path / "ad"
    argv = ["adapt", "--checkpoint", str(pretrained), "--target", "synthetic:strong",
            "--cache", str(bank_path), "--out", str(out), "--steps", "2", "--batch-size", "16",
            "--select-every", "1", "--threads", "1", "--device", "cpu"]  # fmt: skip
    assert main(argv) == 0
    (out / "old-notes.txt").write_text("mine")
    first = (out / "summary.json").read_text()
    capsys.readouterr()
    assert main(argv) != 0
    assert "already holds an adapt run (best.pt, last.pt, summary.json)" in capsys.readouterr().err
    assert (out / "summary.json").read_text() == first
    assert main([*argv, "--steps", "3", "--overwrite"]) == 0
    assert json.loads((out / "summary.json").read_text())["steps"] == 3
    assert (out / "old-notes.txt").read_text() == "mine"  # only the run's own files go


def test_export_check_without_onnx_is_refused(tmp_path, capsys):
    """--check compares an ONNX file with PyTorch: without --onnx it would silently do nothing."""
    argv = ["export-model", "--checkpoint", "anny-coco17", "--slim", str(tmp_path / "s.pt")]
    assert main([*argv, "--check"]) != 0
    assert "--check compares an ONNX export with PyTorch" in capsys.readouterr().err
    assert not (tmp_path / "s.pt").exists()


def test_export_float32_without_slim_is_refused(tmp_path, capsys):
    """--float32 applies to --slim only: with --onnx / --torchscript alone it was ignored."""
    onnx = tmp_path / "m.onnx"
    assert (
        main(["export-model", "--checkpoint", "anny-coco17", "--onnx", str(onnx), "--float32"]) == 2
    )
    assert "--float32 keeps the float32 weights of a --slim checkpoint" in capsys.readouterr().err
    assert not onnx.exists()


@pytest.mark.parametrize("command", ["predict", "demo", "batch"])
@pytest.mark.parametrize("flag", [("--smooth-min-cutoff", "0.3"), ("--smooth-beta", "0.5")])
def test_one_euro_settings_without_smooth_are_refused(tmp_path, capsys, command, flag):
    """--smooth-min-cutoff / --smooth-beta tune a smoothing that is off by default: without
    --smooth they were accepted and ignored."""
    src = tmp_path / "kp.npz"
    np.savez(
        src, keypoints=np.ones((2, 25, 2), np.float32), confidence=np.ones((2, 25), np.float32)
    )
    argv = [command, str(src), "--out", str(tmp_path / "out"), *flag]
    assert main(argv) == 2
    assert f"{flag[0]} tune the smoothing, which is off" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("out", "folder"),
    [("res.npz", "res.npz"), ("res", "res.npz"), ("res", "res"), ("kp.npz/fit.npz", None)],
)
def test_fit_out_a_folder_is_refused_before_fitting(tmp_path, capsys, monkeypatch, out, folder):
    """fit writes ONE .npz at the end: an --out that is a folder (as given, or with the .npz
    np.savez appends) or lies under a file failed only after every fit, or (a folder res) wrote
    res.npz next to it."""
    import key2mesh.fitting.pipeline as pipeline

    monkeypatch.setattr(pipeline, "fit_files", lambda *a, **k: pytest.fail("fitted"))
    src = tmp_path / "kp.npz"
    np.savez(
        src, keypoints=np.ones((2, 25, 2), np.float32), confidence=np.ones((2, 25), np.float32)
    )
    if folder:
        (tmp_path / folder).mkdir()
    assert main(["fit", str(src), "--out", str(tmp_path / out)]) == 2
    expected = "is a folder; --out names" if folder else "kp.npz is a file, not a folder"
    assert expected in capsys.readouterr().err
    assert not (tmp_path / "res.npz").is_file()


def test_evaluate_json_a_folder_is_refused_before_evaluating(tmp_path, capsys, monkeypatch):
    """--json FILE is written after the whole evaluation: a folder failed only then."""
    from key2mesh.inference.predictor import Key2Mesh

    monkeypatch.setattr(Key2Mesh, "from_pretrained", lambda *a, **k: pytest.fail("loaded"))
    argv = ["evaluate", "--dataset", "mocap-heldout", "--checkpoint", "anny-coco17"]
    assert main([*argv, "--cache", "c.npz", "--json", str(tmp_path)]) == 2
    assert "is a folder; --json names the one file" in capsys.readouterr().err


def test_export_output_a_folder_is_refused_before_writing_anything(tmp_path, capsys):
    """--slim s.pt --onnx FOLDER wrote s.pt, then failed on the folder: half a run's outputs."""
    (tmp_path / "folder").mkdir()
    slim = tmp_path / "s.pt"
    argv = ["export-model", "--checkpoint", "anny-coco17", "--slim", str(slim)]
    assert main([*argv, "--onnx", str(tmp_path / "folder")]) == 2
    assert "is a folder; --onnx names the one file" in capsys.readouterr().err
    assert not slim.exists()


def test_evaluate_noise_profile_is_checked_before_loading(capsys):
    """A misspelt --noise-profile was refused only after the cache and the model were loaded."""
    from key2mesh.commands import evaluate
    from key2mesh.data.noise import PROFILES

    assert evaluate.NOISE_PROFILES == tuple(PROFILES)
    argv = ["evaluate", "--dataset", "mocap-heldout", "--checkpoint", "anny-coco17"]
    assert main([*argv, "--cache", "missing.npz", "--noise-profile", "strnog"]) == 2
    assert "--noise-profile: invalid choice: 'strnog'" in capsys.readouterr().err


def test_predict_out_under_a_file_is_refused_before_predicting(tmp_path, capsys, monkeypatch):
    """--out kp.npz/sub (under a file) failed only at the first write, after the predictions."""
    from key2mesh.inference.predictor import Key2Mesh

    monkeypatch.setattr(Key2Mesh, "from_pretrained", lambda *a, **k: pytest.fail("loaded"))
    src = tmp_path / "kp.npz"
    np.savez(
        src, keypoints=np.ones((2, 25, 2), np.float32), confidence=np.ones((2, 25), np.float32)
    )
    assert main(["predict", str(src), "--out", str(src / "sub")]) == 2
    assert f"{src} is a file, not a folder" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["predict", "demo", "batch"])
def test_int8_with_device_auto_runs_on_the_cpu_when_cuda_is_present(tmp_path, monkeypatch, command):
    """--int8 runs on the CPU only: with the default --device auto on a machine with a GPU it
    picked cuda and failed ('int8 inference runs on the CPU only (device cuda)')."""
    from key2mesh.inference.predictor import Key2Mesh

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    seen = []

    def load(name, device=None, int8=False, **kw):
        seen.append((device, int8))
        raise KeyboardInterrupt  # stop here: the device is what is checked

    monkeypatch.setattr(Key2Mesh, "from_pretrained", load)
    if command == "predict":
        src = tmp_path / "kp.npz"
        np.savez(src, keypoints=np.ones((2, 25, 2)), confidence=np.ones((2, 25)))
    else:  # demo, batch: an image
        from PIL import Image

        src = tmp_path / "frame.png"
        Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(src)
    main([command, str(src), "--int8", "--out", str(tmp_path / "out")])
    assert seen[:1] == [("cpu", True)]
