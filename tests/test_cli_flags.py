"""Every flag of the command line changes what its command does.

``TABLE`` holds one entry per option and positional of every ``key2mesh`` command and
sub-command (``-h`` left out; deprecated spellings are in ``EXEMPT``, each with its reason, and
are checked to store what the new spelling stores). An entry is either a :class:`Case`, run here,
or :class:`Elsewhere`: the name of an existing test that already shows the flag's effect.
``test_every_flag_has_a_behaviour_test`` fails on a new flag without an entry.

A :class:`Case` runs the command's own code path twice through :func:`key2mesh.cli.main`, with and
without the flag, and compares a probe of what the command did: the config dataclass a training
command built (``run_pretrain`` / ``run_adapt`` / ``fit_files`` replaced by a recorder), the
arguments the heavy callee received (the demo's ``run_demo``, the viewer, the model loader...),
or the files and output of a real run where that is cheap (``predict`` with the shipped model
loaded once, ``export-model --slim``, ``data stats``, ``info``). The probe with the flag must be
the value given (or, with ``CHANGED``, differ), and without it must not be.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import inspect
import io
import json
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from key2mesh import __version__
from key2mesh.cli import build_parser, main
from key2mesh.commands._args import _Deprecated, add_deprecated_alias
from key2mesh.errors import Key2MeshError

TESTS = Path(__file__).resolve().parent
CHANGED = object()  # a Case's ``want``: anything but the value without the flag


@dataclass(frozen=True)
class Case:
    """Run the command with ``argv`` added (at index ``at`` of the command line; None: the end) or
    with tokens of its base command line swapped (``swap`` {old: new}); ``also``: added to both
    runs. ``probe(run)`` must give ``want`` with the flag and something else without it.
    ``setup``: another base command line than the entry's command (see ``SETUPS``); ``needs``: an
    optional module the case needs. ``{in}`` in any text is the folder of the test inputs."""

    argv: tuple[str, ...] = ()
    probe: Any = None
    want: Any = CHANGED
    swap: dict | None = None
    also: tuple[str, ...] = ()
    at: int | None = None
    setup: str | None = None
    needs: str | None = None


@dataclass(frozen=True)
class Elsewhere:
    """The flag's behaviour is shown by an existing test, ``tests/FILE.py::TEST``."""

    test: str


# --- what a run did ------------------------------------------------------------------------------


class Stop(BaseException):
    """Raised by a recorder that stands in for the heavy work: the run ends there."""


@dataclass
class Run:
    status: Any  # main's exit status, "stopped" (a recorder ended it) or "raised <Error>"
    out: str
    err: str
    cwd: Path
    calls: dict[str, list[dict]] = field(default_factory=dict)

    def last(self, name: str) -> dict | None:
        """The arguments (by name) of the last call of the recorder ``name``; None: not called."""
        return self.calls[name][-1] if self.calls.get(name) else None


class Recorder:
    """Replaces callables by recorders of their arguments (bound by name to the original's
    signature; ``"return"``: what the recorder returned)."""

    def __init__(self, mp: pytest.MonkeyPatch, calls: dict):
        self.mp, self.calls = mp, calls

    def stub(self, owner, name: str, result=None, stop: bool = False, through: bool = False):
        """``owner.name`` records its calls, then raises :class:`Stop` (``stop``), calls the
        original (``through``) or returns ``result`` (a callable gets the bound arguments)."""
        original = getattr(owner, name)
        signature = inspect.signature(original)
        calls = self.calls

        def recorder(*args, **kwargs):
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            seen = dict(bound.arguments)
            calls.setdefault(name, []).append(seen)
            if stop:
                raise Stop
            value = (
                original(*args, **kwargs)
                if through
                else (result(seen) if callable(result) else result)
            )
            seen["return"] = value
            return value

        self.mp.setattr(owner, name, recorder)


def called(name: str, argument: str | None = None, then=None):
    """Probe: the argument of the last call of recorder ``name`` (``then`` applied), None when it
    was not called; without ``argument``: how many times it was called."""

    def probe(run: Run):
        if argument is None:
            return len(run.calls.get(name, ()))
        seen = run.last(name)
        if seen is None:
            return None
        value = seen[argument]
        return then(value) if then else value

    return probe


def cfg(path: str):
    """Probe: a (dotted) field of the config a training command built."""

    def probe(run: Run):
        seen = run.last("run_pretrain") or run.last("run_adapt") or run.last("fit_files")
        value = seen["cfg"]
        for part in path.split("."):
            value = value[part] if isinstance(value, dict) else getattr(value, part)
        return value

    return probe


def status(run: Run):
    return run.status


def name_of(value):
    return None if value is None else Path(str(value)).name


def exists(path: str):
    """Probe: whether the run wrote ``path`` (relative to its working folder)."""
    return lambda run: (run.cwd / path).exists()


def files(folder: str):
    """Probe: the names in ``folder`` of the run's working folder (empty when it is absent)."""
    return lambda run: sorted(p.name for p in (run.cwd / folder).glob("*"))


# --- the commands' base command lines and their recorders -----------------------------------


def _stub_model(bench, rec, through=False):
    """``Key2Mesh.from_pretrained`` records (checkpoint, device, int8, ...) and returns the shipped
    anny-coco17 model loaded once (``through``: a real model) or a stand-in without weights."""
    from key2mesh.inference.predictor import Key2Mesh

    if through:
        model = bench.model()
        rec.stub(Key2Mesh, "from_pretrained", lambda seen: model)
    else:
        ck = SimpleNamespace(body={"name": "anny"})
        stand_in = SimpleNamespace(checkpoint=ck, member_checkpoints=[ck], device="cpu")
        rec.stub(Key2Mesh, "from_pretrained", stand_in)


def _pretrain(bench, rec):
    import key2mesh.train.pretrain as pretrain

    rec.stub(pretrain, "run_pretrain", {})


def _adapt(bench, rec):
    import key2mesh.train.adapt as adapt

    rec.stub(adapt, "run_adapt", {"verdict": "recorded"})
    rec.stub(adapt, "benchmark_target", lambda seen: ["benchmark", seen["path"]])


def _fit(bench, rec):
    import key2mesh.fitting.pipeline as pipeline

    def table(seen):
        n = 2
        return pipeline.FitTable(
            rotmats=np.zeros((n, 24, 3, 3), np.float32),
            shape=np.zeros((n, 6), np.float32),
            reprojection_error=np.ones(n, np.float32),
            names=["0_p0", "1_p0"],
            body="anny",
            keypoint_set="coco17",
            total=n,
            skipped={},
            seconds=0.0,
        )

    rec.stub(pipeline, "fit_files", table)


def _predict(bench, rec):
    import key2mesh.inference.pipeline as pipeline

    _stub_model(bench, rec, through=True)
    rec.stub(pipeline, "predict_file", through=True)


def _demo(bench, rec):
    import key2mesh.inference.demo as demo
    import key2mesh.media.video as video
    import key2mesh.viewer.app as app
    import key2mesh.viewer.demo_view as demo_view

    _stub_model(bench, rec)
    rec.stub(video, "source_info", video.SourceInfo("video", 40, 64, 48, 25.0))
    rec.stub(app, "import_viser")
    rec.stub(demo_view, "DemoView", lambda seen: SimpleNamespace(frames=lambda frames: frames))
    rec.stub(demo, "run_demo", stop=True)


def _batch(bench, rec):
    from key2mesh.commands import batch, demo

    _stub_model(bench, rec)
    rec.mp.setattr(batch, "_MODELS", {})
    rec.stub(demo, "run_input", SimpleNamespace(frames=2, tracks=[0]))


def _batch_runner(bench, rec):
    import key2mesh.inference.batch as inference_batch

    rec.stub(inference_batch, "run_batch", stop=True)


def _export(bench, rec):
    import key2mesh.inference.export as export

    def onnx(seen):
        Path(seen["path"]).write_bytes(b"onnx")
        return Path(seen["path"])

    rec.stub(export, "export_onnx", onnx)
    rec.stub(export, "max_onnx_difference", 0.0)


def _evaluate(bench, rec):
    import key2mesh.data.heldout as heldout
    import key2mesh.eval.benchmarks as benchmarks
    from key2mesh.eval.evaluate import EvalResult

    _stub_model(bench, rec)
    rec.stub(heldout, "mocap_samples", stop=True)
    result = lambda seen: EvalResult("bench", seen["protocol"], 3, 0, 10.0, 5.0, None)  # noqa: E731
    rec.stub(benchmarks, "evaluate_benchmark", result)


def _prepare(bench, rec):
    import key2mesh.body as body
    import key2mesh.data.prepare as prepare

    rec.stub(body, "load_body_model", "body")
    rec.stub(prepare, "prepare_cache", stop=True)


def _pose2sim(bench, rec):
    import key2mesh.data.benchmark as benchmark
    import key2mesh.data.multiview as multiview

    # split into dev/test parts before anything is saved (the stand-in has none)
    rec.stub(
        multiview, "pose2sim_benchmark", (SimpleNamespace(split_by_instant=lambda f: []), None)
    )
    rec.stub(benchmark, "save_benchmark", stop=True)


def _info(bench, rec):
    rec.mp.delenv("KEY2MESH_SMPL_DIR", raising=False)


class _Viewer:
    """Stands in for the viser viewer of ``key2mesh view``: remembers what it was asked."""

    def __init__(self, seen):
        self.url, self.time, self.shown, self.started = "http://viewer", 0.0, [], []
        self.frusta = {"cam0": SimpleNamespace(visible=True)}
        self.server = SimpleNamespace(initial_camera=SimpleNamespace(position=None, look_at=None))

    def show(self, t):
        self.shown.append(t)

    def start(self, playing=False):
        self.started.append(playing)

    def close(self):
        pass


def _view(bench, rec):
    import webbrowser

    import key2mesh.viewer as viewer
    import key2mesh.viewer.app as app
    import key2mesh.viewer.screenshot as screenshot

    camera = SimpleNamespace(name="cam0")
    scene = SimpleNamespace(clock=np.array([0.0, 1.0]), cameras=[camera], tracks=[])
    rec.stub(app, "import_viser")
    rec.stub(viewer, "load_scene", scene)
    rec.stub(viewer, "load_bodies", {})
    rec.stub(app, "Viewer", _Viewer)
    rec.stub(app, "camera_view", SimpleNamespace(position=(1.0, 2.0, 3.0), look_at=(0, 0, 0)))
    rec.stub(app, "wait_until_stopped")
    rec.stub(webbrowser, "open")
    rec.stub(screenshot, "screenshot")


def _live(bench, rec):
    import webbrowser

    import key2mesh.viewer.app as app
    import key2mesh.viewer.live as live

    rec.mp.setitem(sys.modules, "mediapipe", types.ModuleType("mediapipe"))
    _stub_model(bench, rec)
    rec.stub(app, "import_viser")
    rec.stub(app, "LiveViewer", lambda seen: SimpleNamespace(url="http://live", close=lambda: None))
    rec.stub(webbrowser, "open")
    rec.stub(live, "open_stream", "stream")
    rec.stub(live, "run_live", None)


@dataclass(frozen=True)
class Setup:
    argv: tuple[str, ...]
    stubs: Any = None


ADAPT = ("adapt", "--checkpoint", "anny-coco17", "--cache", "c.npz", "--target")
EVALUATE = ("evaluate", "--checkpoint", "anny-coco17", "--dataset")

SETUPS: dict[str, Setup] = {
    "key2mesh": Setup(()),
    "key2mesh[error]": Setup(("adapt", "--target", "synthetic:none", "--cache", "c.npz")),
    "info": Setup(("info",), _info),
    "data prepare": Setup(("data", "prepare"), _prepare),
    "data stats": Setup(("data", "stats", "{in}/bank.npz")),
    "data pose2sim": Setup(("data", "pose2sim"), _pose2sim),
    "pretrain": Setup(("pretrain",), _pretrain),
    "adapt": Setup((*ADAPT, "{in}/k.npz"), _adapt),
    "adapt[unnamed]": Setup((*ADAPT, "{in}/unnamed.npz"), _adapt),
    "adapt[views]": Setup((*ADAPT, "{in}/views.npz", "--multiview"), _adapt),
    "predict": Setup(("predict", "{in}/k.npz"), _predict),
    "predict[unnamed]": Setup(("predict", "{in}/unnamed.npz"), _predict),
    "demo": Setup(("demo", "{in}/clip.mp4"), _demo),
    "batch": Setup(("batch", "{in}/clip.mp4", "--out", "runs"), _batch),
    "batch[runner]": Setup(("batch", "{in}/clip.mp4", "--out", "runs"), _batch_runner),
    "export-model": Setup(
        ("export-model", "--checkpoint", "{in}/f32.pt", "--slim", "s.pt"), _export
    ),
    "export-model[old]": Setup(("export-model", "--slim", "s.pt"), _export),
    "evaluate": Setup((*EVALUATE, "{in}/bench.npz"), _evaluate),
    "evaluate[mocap]": Setup((*EVALUATE, "mocap-heldout", "--cache", "c.npz"), _evaluate),
    "fit": Setup(("fit", "{in}/k.npz"), _fit),
    "view": Setup(("view", "{in}/result"), _view),
    "live": Setup(("live",), _live),
}


# --- the table ------------------------------------------------------------------------------------


def loader(argument: str):
    """Probe: an argument of the model loader (``Key2Mesh.from_pretrained``)."""
    return called("from_pretrained", argument)


def prepared(argument: str):
    return called("prepare_cache", argument)


def benchmark(argument: str):
    return called("pose2sim_benchmark", "kw", lambda kw: kw[argument])


def adapted(argument: str, then=None):
    return called("run_adapt", argument, then)


def demo_option(name: str):
    """Probe: a field of the DemoOptions that run_demo gets."""
    return called("run_demo", "options", lambda o: getattr(o, name))


def job(dest: str):
    """Probe (batch): the option as the demo of one input (``demo.run_input``) receives it."""
    return called("run_input", "args", lambda a: getattr(a, dest))


def sidecar(*keys: str):
    """Probe (predict): a value of the motion table's JSON sidecar (default --out)."""

    def probe(run):
        value = json.loads((run.cwd / "outputs/predict/k_params.json").read_text())
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        return value

    return probe


def table(key: str, then=None):
    """Probe (predict): a column of the motion table (default --out), ``then`` applied."""

    def probe(run):
        with np.load(run.cwd / "outputs/predict/k_params.npz") as z:
            value = z[key]
        return then(value) if then else value.tolist()

    return probe


ROTATIONS = table("rotmats", lambda v: v.round(5).tobytes())


def params_files(folder: str):
    return lambda run: sorted(p.name for p in (run.cwd / folder).glob("*_params.npz"))


def slim(run: Run):
    """The checkpoint export-model --slim wrote."""
    from key2mesh.model.checkpoint import load_checkpoint

    return load_checkpoint(run.cwd / "s.pt")


def weight_dtype(run: Run) -> str:
    return str(next(v.dtype for v in slim(run).model.values() if v.is_floating_point()))


def viewer(attr: str):
    """Probe (view): what the viewer was asked (its recorded ``attr``)."""
    return called("Viewer", "return", lambda v: getattr(v, attr))


def scored(argument: str):
    return called("evaluate_benchmark", argument)


def protocol(attr: str):
    return called("evaluate_benchmark", "protocol", lambda p: getattr(p, attr))


def heldout(argument: str):
    return called("mocap_samples", argument)


def fitted_names(run: Run):
    path = run.cwd / "mine.npz"
    return np.load(path)["names"].tolist() if path.exists() else None


def calls_of(*names: str):
    return lambda run: sorted(set(run.calls) & set(names))


SUBJECT = "0:1.8:male"
SELECTION = Elsewhere("tests/test_cli_commands.py::test_adapt_cli_selection_flags_and_verdict")
NAMED_SUBJECT = Elsewhere(
    "tests/test_options.py::test_pretrain_command_holds_out_the_named_subject"
)
DEMO_RANGE = Elsewhere(
    "tests/test_demo_streaming.py::test_frame_range_and_max_frames_through_the_cli"
)

TABLE: dict[str, Case | Elsewhere] = {
    # key2mesh
    "key2mesh --version": Case(
        ("--version",), lambda r: (r.status, r.out.strip()), (0, f"key2mesh {__version__}")
    ),
    "key2mesh --verbose": Case(
        ("-v",), status, "raised Key2MeshError", at=0, setup="key2mesh[error]"
    ),
    # info: smplx installed, no SMPL files in the folder given (without it: "no folder given")
    "info --smpl-dir": Case(
        ("--smpl-dir", "{in}/smpl"), lambda r: "(none in " in r.out, True, needs="smplx"
    ),
    # data prepare: what prepare_cache is asked to build
    "data prepare --cache": Case(("--cache", "mine.npz"), prepared("out"), "mine.npz"),
    "data prepare --sources": Case(("--sources", "holosoma"), prepared("sources"), ("holosoma",)),
    "data prepare --amass": Case(("--amass", "{in}/a.npz"), prepared("amass"), ["{in}/a.npz"]),
    "data prepare --bvh": Case(("--bvh", "{in}/b.bvh"), prepared("bvh"), ["{in}/b.bvh"]),
    "data prepare --asf-amc": Case(
        ("--asf-amc", "{in}/c.amc"), prepared("asf_amc"), ["{in}/c.amc"]
    ),
    "data prepare --index": Case(("--index", "{in}/I.tsv"), prepared("index"), "{in}/I.tsv"),
    "data prepare --fps-override": Case(
        ("--fps-override", "60_*=60"), prepared("fps_override"), ["60_*=60"]
    ),
    "data prepare --body": Case(("--body", "smpl"), called("load_body_model", "name"), "smpl"),
    "data prepare --smpl-dir": Case(
        ("--smpl-dir", "{in}/smpl"),
        called("load_body_model", "options"),
        {"model_dir": "{in}/smpl"},
        also=("--body", "smpl"),
    ),
    "data prepare --max-fps": Case(("--max-fps", "25"), prepared("fps"), 25.0),
    "data prepare --num-shapes": Case(("--num-shapes", "16"), prepared("num_shapes"), 16),
    "data prepare --ik-iters": Case(("--ik-iters", "7"), prepared("ik_iters"), 7),
    "data prepare --seed": Case(("--seed", "3"), prepared("seed"), 3),
    # data stats: a real run on two small caches (40 and 80 frames)
    "data stats cache": Case(
        swap={"{in}/bank.npz": "{in}/bank2.npz"},
        probe=lambda r: r.out.split(":", 1)[1].split()[0],
        want="80",
    ),
    # data pose2sim: the benchmark's build options and where it is saved
    "data pose2sim --benchmark": Case(
        ("--benchmark", "mine.npz"), called("save_benchmark", "path"), "mine.npz"
    ),
    "data pose2sim --max-offset": Case(("--max-offset", "3"), benchmark("max_offset"), 3),
    "data pose2sim --offsets": Case(("--offsets", "0,0,2,0"), benchmark("offsets"), [0, 0, 2, 0]),
    "data pose2sim --max-error": Case(("--max-error", "10"), benchmark("max_error"), 10.0),
    "data pose2sim --min-views": Case(("--min-views", "3"), benchmark("min_views"), 3),
    # pretrain: the PretrainConfig handed to run_pretrain
    "pretrain --config": Elsewhere("tests/test_cli_commands.py::test_pretrain_cli"),
    "pretrain --set": NAMED_SUBJECT,
    "pretrain --cache": Case(("--cache", "c.npz"), cfg("cache"), "c.npz"),
    "pretrain --out": Case(("--out", "mine"), cfg("out_dir"), "mine"),
    "pretrain --keypoint-set": Case(("--keypoint-set", "coco17"), cfg("keypoint_set"), "coco17"),
    "pretrain --steps": Case(("--steps", "7"), cfg("steps"), 7),
    "pretrain --epochs": Case(("--epochs", "2"), cfg("epochs"), 2.0),
    "pretrain --batch-size": Case(("--batch-size", "32"), cfg("batch_size"), 32),
    "pretrain --lr": Case(("--lr", "0.5"), cfg("lr"), 0.5),
    "pretrain --lr-gamma": Case(("--lr-gamma", "0.5"), cfg("lr_gamma"), 0.5),
    "pretrain --lr-step": Case(("--lr-step", "9"), cfg("lr_step"), 9),
    "pretrain --hidden": Case(
        ("--hidden", "64"), cfg("model"), {"hidden": 64, "critic_hidden": 64}
    ),
    "pretrain --val-subjects": NAMED_SUBJECT,
    "pretrain --val-fraction": Case(("--val-fraction", "0.2"), cfg("val_fraction"), 0.2),
    "pretrain --val-size": Case(("--val-size", "64"), cfg("val_size"), 64),
    "pretrain --val-every": Case(("--val-every", "9"), cfg("val_every"), 9),
    "pretrain --noise-profile": Case(
        ("--noise-profile", "strong"), cfg("synth.noise_profile"), "strong"
    ),
    # the default depends on an optional module: on in both runs, the flag turns it off
    "pretrain --no-pose-augment": Case(
        ("--no-pose-augment",), cfg("pose_augment"), False, also=("--set", "pose_augment=true")
    ),
    "pretrain --seed": Case(("--seed", "5"), cfg("seed"), 5),
    "pretrain --device": Case(("--device", "cpu"), cfg("device"), "cpu"),
    "pretrain --threads": Case(("--threads", "1"), cfg("threads"), 1),
    "pretrain --resume": Case(("--resume",), called("run_pretrain", "resume"), True),
    "pretrain --overwrite": Case(("--overwrite",), called("run_pretrain", "overwrite"), True),
    "pretrain --checkpoint": Case(("--checkpoint", "w.pt"), cfg("init"), "w.pt"),
    "pretrain --ema": Case(("--ema", "0.9"), cfg("ema"), 0.9),
    "pretrain --amp-cpu": Case(("--amp-cpu",), cfg("amp_cpu"), True),
    "pretrain --stop-after": Case(("--stop-after", "3"), cfg("stop_after"), 3),
    # adapt: the AdaptConfig and the target sets handed to run_adapt (real checkpoint and files)
    "adapt --config": Elsewhere("tests/test_cli_commands.py::test_adapt_config_file_and_flags"),
    "adapt --overwrite": Elsewhere(
        "tests/test_cli_commands.py::test_adapt_refuses_an_earlier_run_unless_overwrite"
    ),
    "adapt --set": Case(("--set", "critic_dropout=0.5"), cfg("critic_dropout"), 0.5),
    "adapt --checkpoint": Case(
        swap={"anny-coco17": "anny-coco17-seed1"},
        probe=lambda r: name_of(cfg("source")(r)),
        want="anny_coco17_seed1.pt",
    ),
    "adapt --target": Case(swap={"{in}/k.npz": "{in}/b.npz"}, probe=adapted("target", len), want=3),
    "adapt --target-set": Case(("--target-set", "coco17"), status, 0, setup="adapt[unnamed]"),
    "adapt --multiview": Elsewhere("tests/test_cli_commands.py::test_adapt_multiview_cli"),
    "adapt --frame-offsets": Case(
        ("--frame-offsets", "0,1"),
        adapted("target", lambda t: t.groups.tolist()),
        setup="adapt[views]",
    ),
    "adapt --cache": Case(("--cache", "d.npz"), cfg("cache"), "d.npz"),
    "adapt --val": Case(
        ("--val", "{in}/bench.npz"), adapted("validation"), ["benchmark", "{in}/bench.npz"]
    ),
    "adapt --selection": SELECTION,
    "adapt --source-tolerance": SELECTION,
    "adapt --min-gain": SELECTION,
    "adapt --monitor": Case(
        ("--monitor", "{in}/bench.npz"), adapted("monitor"), ["benchmark", "{in}/bench.npz"]
    ),
    "adapt --out": Case(("--out", "mine"), cfg("out_dir"), "mine"),
    "adapt --losses": Elsewhere("tests/test_cli_commands.py::test_adapt_cli"),
    "adapt --steps": Case(("--steps", "7"), cfg("steps"), 7),
    "adapt --epochs": Case(("--epochs", "2"), cfg("epochs"), 2.0),
    "adapt --batch-size": Case(("--batch-size", "32"), cfg("batch_size"), 32),
    "adapt --lr": Case(("--lr", "0.5"), cfg("lr"), 0.5),
    "adapt --critic-steps": Case(("--critic-steps", "5"), cfg("critic_steps"), 5),
    "adapt --gamma": Case(("--gamma", "10"), cfg("gamma"), 10.0),
    "adapt --critic-lr": Case(("--critic-lr", "0.5"), cfg("critic_lr"), 0.5),
    "adapt --select-every": Case(("--select-every", "9"), cfg("select_every"), 9),
    # the config field and the target it filters: 2 of the 6 detections have 8 keypoints
    "adapt --min-keypoints": Case(
        ("--min-keypoints", "10"),
        lambda r: (cfg("min_keypoints")(r), r.last("run_adapt")["target"].dropped),
        (10, 2),
    ),
    "adapt --holdout-fraction": Case(("--holdout-fraction", "0.2"), cfg("holdout_fraction"), 0.2),
    "adapt --bn": Case(("--bn", "batch"), cfg("bn"), "batch"),
    "adapt --dropout": Case(("--dropout",), cfg("dropout"), True),
    "adapt --seed": Case(("--seed", "5"), cfg("seed"), 5),
    "adapt --device": Case(("--device", "cpu"), cfg("device"), "cpu"),
    "adapt --threads": Case(("--threads", "1"), cfg("threads"), 1),
    # predict: real runs (the shipped anny-coco17 model, loaded once) on 6 tracked detections
    "predict inputs": Case(
        ("{in}/b.npz",), params_files("outputs/predict"), ["b_params.npz", "k_params.npz"]
    ),
    "predict --checkpoint": Case(
        ("--checkpoint", "anny-coco17"), loader("path_or_name"), "anny-coco17"
    ),
    "predict --keypoint-set": Case(
        ("--keypoint-set", "coco17"), status, 0, setup="predict[unnamed]"
    ),
    "predict --out": Case(("--out", "mine"), files("mine"), ["k_params.json", "k_params.npz"]),
    "predict --meshes": Case(
        ("--meshes", "ply"), lambda r: len(files("outputs/predict/k_meshes")(r)), 6
    ),
    "predict --smooth": Case(("--smooth",), ROTATIONS),
    "predict --smooth-min-cutoff": Case(
        ("--smooth-min-cutoff", "0.05"), ROTATIONS, also=("--smooth",)
    ),
    "predict --smooth-beta": Case(("--smooth-beta", "5"), ROTATIONS, also=("--smooth",)),
    "predict --min-keypoints": Case(("--min-keypoints", "10"), table("frame_index"), [2, 3, 4, 5]),
    "predict --export": Case(
        ("--export", "bvh"), lambda r: "k_track0.bvh" in files("outputs/predict")(r), True
    ),
    "predict --fps": Case(("--fps", "25"), sidecar("fps"), 25.0),
    "predict --image-size": Case(("--image-size", "640x480"), sidecar("image_size"), [480, 640]),
    "predict --focal": Case(
        ("--focal", "777"), table("focal_length", lambda v: np.unique(v).tolist()), [777.0]
    ),
    # random detections show no ground: the exports fall back to the camera frame either way
    "predict --world": Case(("--world", "camera"), called("predict_file", "world"), "camera"),
    "predict --origin": Case(
        ("--origin", "people"), called("predict_file", "options", lambda o: o["origin"]), "people"
    ),
    "predict --height": Case(
        ("--height", "1.5"), sidecar("tracks", "0", "height_m"), pytest.approx(1.5, abs=0.01)
    ),
    "predict --sex": Case(("--sex", "female"), sidecar("tracks", "0", "subject", "sex"), "female"),
    "predict --subject": Case(
        ("--subject", SUBJECT), sidecar("tracks", "0", "subject"), {"height_m": 1.8, "sex": "male"}
    ),
    "predict --device": Case(("--device", "cpu"), loader("device"), "cpu"),
    "predict --int8": Case(("--int8",), loader("int8"), True),
    "predict --chunk-size": Elsewhere(
        "tests/test_predict_chunks.py::test_chunked_predict_equals_one_piece"
    ),
    # demo: what run_demo is asked to do (the video's size and length stubbed)
    "demo input": Case(
        swap={"{in}/clip.mp4": "{in}/walk.mp4"}, probe=demo_option("source"), want="{in}/walk.mp4"
    ),
    "demo --out": Case(
        ("--out", "mine"), called("run_demo", "out"), Path("mine/clip_key2mesh.mp4")
    ),
    "demo --checkpoint": Case(
        ("--checkpoint", "anny-coco17"), loader("path_or_name"), "anny-coco17"
    ),
    "demo --frames": DEMO_RANGE,
    "demo --max-frames": DEMO_RANGE,
    "demo --max-people": Case(("--max-people", "2"), demo_option("max_people"), 2),
    "demo --smooth": Case(("--smooth",), demo_option("smoothing"), "one-euro"),
    "demo --smooth-min-cutoff": Case(
        ("--smooth-min-cutoff", "0.3"),
        demo_option("smoothing"),
        "min_cutoff=0.3",
        also=("--smooth",),
    ),
    "demo --smooth-beta": Case(
        ("--smooth-beta", "0.7"), demo_option("smoothing"), "beta=0.7", also=("--smooth",)
    ),
    "demo --focal": Case(("--focal", "900"), demo_option("focal"), 900.0),
    "demo --search-every": Elsewhere(
        "tests/test_demo_streaming.py::test_demo_cli_searches_whole_frames_on_schedule"
    ),
    "demo --max-height": Case(("--max-height", "0"), demo_option("max_height"), None),
    "demo --no-side-view": DEMO_RANGE,
    "demo --save-meshes": DEMO_RANGE,
    "demo --export": Case(("--export", "bvh,trc"), demo_option("exports"), ("bvh", "trc")),
    "demo --world": Case(("--world", "camera"), demo_option("world"), "camera"),
    "demo --origin": Case(("--origin", "people"), demo_option("origin"), "people"),
    "demo --height": Case(("--height", "1.6"), demo_option("subjects"), "None: 1.6 None"),
    "demo --sex": Case(("--sex", "female"), demo_option("subjects"), "None: None female"),
    "demo --subject": Case(("--subject", SUBJECT), demo_option("subjects"), "0: 1.8 male"),
    "demo --device": Case(("--device", "cpu"), loader("device"), "cpu"),
    "demo --int8": Case(("--int8",), loader("int8"), True),
    "demo --view": Case(("--view", "0"), called("DemoView", "port"), 0),
    # batch: its own options (the runner's arguments, the manifest), and every demo option as
    # the demo of each input receives it (the demo entries show what the demo does with it)
    "batch inputs": Case(
        ("{in}/walk.mp4",),
        lambda r: sorted(name_of(c["args"].input) for c in r.calls["run_input"]),
        ["clip.mp4", "walk.mp4"],
        at=2,
    ),
    "batch --out": Case(swap={"runs": "mine"}, probe=exists("mine/manifest.csv"), want=True),
    "batch --workers": Case(
        ("--workers", "2"), called("run_batch", "workers"), 2, setup="batch[runner]"
    ),
    "batch --retry-failed": Case(
        ("--retry-failed",), called("run_batch", "retry_failed"), True, setup="batch[runner]"
    ),
    "batch --ray": Case(("--ray",), called("run_batch", "ray"), "auto", setup="batch[runner]"),
    "batch --checkpoint": Case(
        ("--checkpoint", "anny-coco17"), loader("path_or_name"), "anny-coco17"
    ),
    "batch --frames": Case(("--frames", "0:20:2"), job("frames"), "0:20:2"),
    "batch --max-frames": Case(("--max-frames", "5"), job("max_frames"), 5),
    "batch --max-people": Case(("--max-people", "2"), job("max_people"), 2),
    "batch --smooth": Case(("--smooth", "zero-phase"), job("smooth"), "zero-phase"),
    "batch --smooth-min-cutoff": Case(
        ("--smooth-min-cutoff", "0.3"), job("smooth_min_cutoff"), 0.3, also=("--smooth",)
    ),
    "batch --smooth-beta": Case(
        ("--smooth-beta", "0.7"), job("smooth_beta"), 0.7, also=("--smooth",)
    ),
    "batch --focal": Case(("--focal", "900"), job("focal"), 900.0),
    "batch --search-every": Case(("--search-every", "0.5"), job("search_every"), 0.5),
    "batch --max-height": Case(("--max-height", "480"), job("max_height"), 480),
    "batch --no-side-view": Case(("--no-side-view",), job("no_side_view"), True),
    "batch --save-meshes": Case(("--save-meshes",), job("save_meshes"), "obj"),
    "batch --export": Case(("--export", "bvh"), job("export"), "bvh"),
    "batch --world": Case(("--world", "camera"), job("world"), "camera"),
    "batch --origin": Case(("--origin", "people"), job("origin"), "people"),
    "batch --height": Case(("--height", "1.6"), job("height"), 1.6),
    "batch --sex": Case(("--sex", "female"), job("sex"), "female"),
    "batch --subject": Case(("--subject", SUBJECT), job("subject"), [SUBJECT]),
    "batch --device": Case(("--device", "cpu"), loader("device"), "cpu"),
    "batch --int8": Case(("--int8",), loader("int8"), True),
    # export-model: real --slim runs (ONNX export and check recorded)
    "export-model --checkpoint": Case(
        swap={"{in}/f32.pt": "anny-body25"},
        probe=lambda r: slim(r).keypoint_set,
        want="openpose_body25",
    ),
    "export-model old_checkpoint": Case(
        ("anny-coco17",),
        lambda r: (r.status, exists("s.pt")(r)),
        (0, True),
        setup="export-model[old]",
    ),
    "export-model --onnx": Case(("--onnx", "m.onnx"), called("export_onnx", "path"), "m.onnx"),
    "export-model --torchscript": Elsewhere("tests/test_cli_commands.py::test_export_cli"),
    "export-model --slim": Elsewhere("tests/test_cli_commands.py::test_export_cli"),
    "export-model --float32": Case(("--float32",), weight_dtype, "torch.float32"),
    "export-model --check": Case(  # batch 1 and batch 7
        ("--check",), called("max_onnx_difference"), 2, also=("--onnx", "m.onnx")
    ),
    # evaluate: the model, the samples and the protocol it evaluates with
    "evaluate --dataset": Case(  # --cache is mocap-heldout's (refused with a file): --path
        swap={"mocap-heldout": "{in}/bench.npz", "--cache": "--path", "c.npz": "{in}/bench.npz"},
        probe=calls_of("mocap_samples", "evaluate_benchmark"),
        want=["evaluate_benchmark"],
        setup="evaluate[mocap]",
    ),
    "evaluate --path": Case(("--path", "{in}/3dpw"), scored("path"), "{in}/3dpw"),
    "evaluate --detections": Case(
        ("--detections", "{in}/d.npz"), scored("detections"), "{in}/d.npz"
    ),
    "evaluate --checkpoint": Case(
        swap={"anny-coco17": "anny-body25"}, probe=loader("path_or_name"), want="anny-body25"
    ),
    "evaluate --cache": Case(
        swap={"c.npz": "d.npz"}, probe=heldout("cache"), want="d.npz", setup="evaluate[mocap]"
    ),
    "evaluate --noise-profile": Case(
        ("--noise-profile", "strong"), heldout("noise_profile"), "strong", setup="evaluate[mocap]"
    ),
    "evaluate --num": Case(("--num", "100"), heldout("n"), 100, setup="evaluate[mocap]"),
    "evaluate --heldout": Case(
        ("--heldout", "subjects"), heldout("heldout"), "subjects", setup="evaluate[mocap]"
    ),
    "evaluate --split": Case(("--split", "validation"), scored("split"), "validation"),
    "evaluate --smpl-dir": Case(
        ("--smpl-dir", "{in}/smpl"),
        lambda r: (loader("smpl_dir")(r), scored("smpl_dir")(r)),
        ("{in}/smpl", "{in}/smpl"),
    ),
    "evaluate --h36m-regressor": Case(
        ("--h36m-regressor", "{in}/J.npy"), scored("h36m_regressor"), "{in}/J.npy"
    ),
    "evaluate --protocol": Case(
        ("--protocol", "spin"),
        protocol("__dict__"),
        {"gt_gender": "gendered", "pelvis": "h36m_root", "pve_align": "root"},
    ),
    "evaluate --gt-gender": Case(("--gt-gender", "gendered"), protocol("gt_gender"), "gendered"),
    "evaluate --pelvis": Case(("--pelvis", "h36m-root"), protocol("pelvis"), "h36m_root"),
    "evaluate --pve-align": Case(("--pve-align", "root"), protocol("pve_align"), "root"),
    "evaluate --json": Elsewhere(
        "tests/test_cli_commands.py::test_evaluate_mocap_heldout_goes_through_predict"
    ),
    "evaluate --device": Case(("--device", "cpu"), loader("device"), "cpu"),
    # fit: the FitConfig and the inputs handed to fit_files
    "fit inputs": Case(
        ("{in}/b.npz",),
        called("fit_files", "inputs", lambda paths: [name_of(p) for p in paths]),
        ["k.npz", "b.npz"],
    ),
    "fit --config": Elsewhere("tests/test_cli_commands.py::test_fit_config_file_and_flags"),
    "fit --set": Case(("--set", "weights.hinge=0"), cfg("weights.hinge"), 0.0),
    "fit --keypoint-set": Case(
        ("--keypoint-set", "coco17"), called("fit_files", "keypoint_set"), "coco17"
    ),
    "fit --fit-set": Case(("--fit-set", "coco17"), cfg("fit_set"), "coco17"),
    "fit --body": Case(("--body", "smpl"), cfg("body"), "smpl"),
    "fit --smpl-dir": Case(("--smpl-dir", "{in}/smpl"), cfg("smpl_dir"), "{in}/smpl"),
    "fit --checkpoint": Case(("--checkpoint", "anny-coco17"), cfg("init_from"), "anny-coco17"),
    "fit --iters": Case(("--iters", "3"), cfg("iters"), 3),
    "fit --optimizer": Case(("--optimizer", "lbfgs"), cfg("optimizer"), "lbfgs"),
    "fit --lr": Case(("--lr", "0.5"), cfg("lr"), 0.5),
    "fit --sigma": Case(("--sigma", "0.2"), cfg("weights.sigma"), 0.2),
    "fit --pose-weight": Case(("--pose-weight", "2"), cfg("weights.pose"), 2.0),
    "fit --hinge-weight": Case(("--hinge-weight", "3"), cfg("weights.hinge"), 3.0),
    "fit --shape-weight": Case(("--shape-weight", "4"), cfg("weights.shape"), 4.0),
    "fit --batch-size": Case(("--batch-size", "8"), cfg("batch_size"), 8),
    "fit --min-keypoints": Case(("--min-keypoints", "9"), cfg("min_keypoints"), 9),
    "fit --out": Case(("--out", "mine.npz"), fitted_names, ["0_p0", "1_p0"]),
    # view: what the viewer is asked to show
    "view path": Case(
        swap={"{in}/result": "{in}/result2"},
        probe=called("load_scene", "path"),
        want="{in}/result2",
    ),
    "view --port": Case(("--port", "0"), called("Viewer", "port"), 0),
    "view --host": Case(("--host", "0.0.0.0"), called("Viewer", "host"), "0.0.0.0"),
    "view --no-browser": Case(("--no-browser",), called("open"), 0),
    "view --screenshot": Case(
        ("--screenshot", "shot.png"), called("screenshot", "path"), "shot.png"
    ),
    "view --time": Case(("--time", "0.5"), viewer("shown"), [0.5]),
    "view --size": Case(
        ("--size", "320x200"),
        called("screenshot", "size"),
        (320, 200),
        also=("--screenshot", "s.png"),
    ),
    "view --camera-view": Case(("--camera-view",), viewer("server"), "camera at (1.0, 2.0, 3.0)"),
    "view --play": Case(("--play",), viewer("started"), [True]),
    "view --max-seconds": Case(
        ("--max-seconds", "3"), called("wait_until_stopped", "max_seconds"), 3
    ),
    # live: the stream, model, viewer and pipeline it starts
    "live --camera": Case(
        ("--camera", "{in}/clip.mp4"), called("open_stream", "spec"), "{in}/clip.mp4"
    ),
    "live --checkpoint": Case(
        ("--checkpoint", "anny-coco17"), loader("path_or_name"), "anny-coco17"
    ),
    "live --max-people": Case(("--max-people", "3"), called("run_live", "max_people"), 3),
    "live --port": Case(("--port", "0"), called("LiveViewer", "port"), 0),
    "live --host": Case(("--host", "0.0.0.0"), called("LiveViewer", "host"), "0.0.0.0"),
    "live --no-browser": Case(("--no-browser",), called("open"), 0),
    "live --no-viewer": Case(
        ("--no-viewer",),
        lambda r: (called("LiveViewer")(r), r.last("run_live")["viewer"]),
        (0, None),
    ),
    "live --as-fast-as-possible": Case(
        ("--as-fast-as-possible",),
        called("open_stream", "realtime"),
        False,
        also=("--camera", "{in}/clip.mp4"),  # a video file's option (refused with a camera)
    ),
    "live --max-frames": Case(
        ("--max-frames", "5"),
        called("open_stream", "max_frames"),
        5,
        also=("--camera", "{in}/clip.mp4"),
    ),
    "live --device": Case(("--device", "cpu"), loader("device"), "cpu"),
    "live --int8": Case(("--int8",), loader("int8"), True),
}

# deprecated spellings, hidden from --help and kept so old command lines still run (with a
# one-line warning): {key: (the new spelling, why it has no entry of its own)}
KEPT = "an old spelling, kept with a deprecation line; stores what the new spelling stores"
EXEMPT: dict[str, tuple[str, str]] = {
    "data prepare --out": ("--cache", KEPT),
    "data prepare --fps": ("--max-fps", KEPT),
    "data pose2sim --out": ("--benchmark", KEPT),
    "pretrain --init": ("--checkpoint", KEPT),
    "adapt --source": ("--checkpoint", KEPT),
    "fit --init-from": ("--checkpoint", KEPT),
}
REQUIRED = {"adapt": ["--target", "t.npz"], "fit": ["x.npz"]}  # to parse a command line at all


# --- the completeness check -------------------------------------------------------------------


def parser_flags(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> dict:
    """{"COMMAND [ACTION] FLAG": action} of every option (its first ``--`` spelling) and
    positional (its dest) of ``parser`` and its sub-commands; ``-h`` left out, an aliased
    command once (under its first name); options of the top parser under its ``prog``."""
    found = {}
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        if isinstance(action, argparse._SubParsersAction):
            seen = set()
            for name, sub in action.choices.items():
                if id(sub) not in seen:  # an alias maps to the same parser
                    seen.add(id(sub))
                    found.update(parser_flags(sub, (*prefix, name)))
            continue
        spellings = [s for s in action.option_strings if s.startswith("--")]
        flag = (spellings or action.option_strings or [action.dest])[0]
        found[f"{' '.join(prefix) or parser.prog} {flag}"] = action
    return found


def untested(parser, table, exempt) -> tuple[list[str], list[str]]:
    """(flags of ``parser`` with neither a ``table`` entry nor an ``exempt`` one, entries of
    either that name no flag of ``parser``)."""
    flags = set(parser_flags(parser))
    listed = set(table) | set(exempt)
    return sorted(flags - listed), sorted(listed - flags)


def elsewhere_problem(entry: Elsewhere) -> str | None:
    """Why ``entry`` does not name a test of the fast suite (None: it does)."""
    path, _, name = entry.test.partition("::")
    file = TESTS.parent / path
    if not file.is_file():
        return f"{entry.test}: no file {path}"
    tree = ast.parse(file.read_text())
    slow = lambda decorators: any("slow" in ast.unparse(d) for d in decorators)  # noqa: E731
    module_slow = any(
        isinstance(n, ast.Assign)
        and any(getattr(t, "id", "") == "pytestmark" for t in n.targets)
        and "slow" in ast.unparse(n.value)
        for n in tree.body
    )
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            if module_slow or slow(node.decorator_list):
                return f"{entry.test}: marked slow (not in the default test run)"
            return None
    return f"{entry.test}: no test {name} in {path}"


def test_every_flag_has_a_behaviour_test():
    """Every option and positional of every command has an entry in TABLE (a Case here, or an
    existing test by name) or is a deprecated spelling in EXEMPT; no entry names a flag that is
    gone; every named test exists in the default test run."""
    parser = build_parser()
    missing, stale = untested(parser, TABLE, EXEMPT)
    assert not missing, (
        f"flags without a behaviour test (add them to TABLE in {__file__}): {missing}"
    )
    assert not stale, f"TABLE / EXEMPT entries for flags that no longer exist: {stale}"
    flags = parser_flags(parser)
    not_deprecated = [k for k in EXEMPT if not isinstance(flags[k], _Deprecated)]
    assert not not_deprecated, f"EXEMPT holds only deprecated spellings: {not_deprecated}"
    problems = [
        p for e in TABLE.values() if isinstance(e, Elsewhere) if (p := elsewhere_problem(e))
    ]
    assert not problems, problems


def test_the_checker_finds_an_untested_flag():
    """On a made-up parser: an option without an entry is reported (a positional, an aliased
    sub-command and a deprecated spelling are handled), and so is an entry for a flag that is
    gone."""
    parser = argparse.ArgumentParser(prog="tool")
    parser.add_argument("-q", "--quiet", action="store_true")
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("run", aliases=["go"])
    run.add_argument("file")
    run.add_argument("--fast", action="store_true")
    run.add_argument("--new-flag")
    add_deprecated_alias(run, "--quick", "--fast", "fast")
    table = {"tool --quiet": Case(), "run file": Case(), "run --fast": Case()}
    exempt = {"run --quick": ("--fast", "old spelling")}
    assert untested(parser, table, exempt) == (["run --new-flag"], [])
    table["run --new-flag"] = Elsewhere(
        "tests/test_cli_flags.py::test_the_checker_finds_an_untested_flag"
    )
    table["run --gone"] = Case()
    assert untested(parser, table, exempt) == ([], ["run --gone"])
    assert elsewhere_problem(table["run --new-flag"]) is None
    assert "no test" in elsewhere_problem(Elsewhere("tests/test_cli_flags.py::test_nothing"))
    assert "no file" in elsewhere_problem(Elsewhere("tests/test_nothing.py::test_x"))
    assert "slow" in elsewhere_problem(
        Elsewhere("tests/test_viewer.py::test_viewer_draws_both_people_in_headless_chromium")
    )


@pytest.mark.parametrize("key", sorted(EXEMPT))
def test_deprecated_spellings_store_what_the_new_one_stores(key, capsys):
    command, old = key.rsplit(" ", 1)
    new, _ = EXEMPT[key]
    argv = [*command.split(), *REQUIRED.get(command, [])]
    parser = build_parser()
    assert vars(parser.parse_args([*argv, old, "7"])) == vars(parser.parse_args([*argv, new, "7"]))
    assert f"{old} is deprecated; use {new}" in capsys.readouterr().err


# --- the behaviour of each flag ------------------------------------------------------------------


def _coco17(path, frames: int, weak=(), names=None, named: bool = True, seed: int = 0):
    """``frames`` detections of one tracked person (COCO-17, person-sized); the frames in
    ``weak`` have only 8 confident keypoints."""
    rng = np.random.default_rng(seed)
    centre = rng.uniform(300, 600, (frames, 1, 1, 2))
    kp = centre + rng.uniform(-120, 120, (frames, 1, 17, 2))
    conf = np.ones((frames, 1, 17), np.float32)
    conf[list(weak), :, 8:] = 0.0
    extra = {"keypoint_set": "coco17"} if named else {}
    if names is not None:
        extra["frame_names"] = np.array(names)
    else:
        extra.update(person_ids=np.zeros((frames, 1), np.int64), tracked=np.asarray(True))
    np.savez(path, keypoints=kp.astype(np.float32), confidence=conf, **extra)


class Bench:
    """The test inputs (under ``{in}``), one working folder per run, the baselines (runs without
    the flag) once per base command line, and the shipped model loaded once."""

    def __init__(self, root: Path):
        from key2mesh.data.cache import PoseBank
        from key2mesh.model.checkpoint import atomic_save, load_checkpoint, resolve_checkpoint

        self.root, self.inputs = root, root / "in"
        self.inputs.mkdir()
        _coco17(self.inputs / "k.npz", 6, weak=(0, 1))
        _coco17(self.inputs / "b.npz", 3, seed=1)
        _coco17(self.inputs / "unnamed.npz", 3, named=False)  # 17 points: coco17 or h36m17?
        views = [f"cam{c}/frame_{f:05d}" for c in range(2) for f in range(4)]
        _coco17(self.inputs / "views.npz", 8, names=views)
        for name in ("clip.mp4", "walk.mp4"):
            (self.inputs / name).write_bytes(b"")  # the video's size and length are stubbed
        for name in ("result", "result2", "smpl"):
            (self.inputs / name).mkdir()
        clips = [f"c{i}" for i in range(4)]
        for name, frames in (("bank.npz", 40), ("bank2.npz", 80)):
            rot = np.broadcast_to(np.eye(3, dtype=np.float32), (frames, 24, 3, 3)).copy()
            index = np.repeat(np.arange(4), frames // 4)
            shapes = np.zeros((4, 6), np.float32)
            bank = PoseBank(rot, index, clips, ["test"] * 4, shapes, {"name": "anny"})
            bank.save(self.inputs / name)
        # a float32 checkpoint (the shipped ones are float16): what export-model --float32 keeps
        ck = load_checkpoint(resolve_checkpoint("anny-coco17")).to_dict()
        ck["model"] = {k: v.float() if v.is_floating_point() else v for k, v in ck["model"].items()}
        atomic_save(ck, self.inputs / "f32.pt")
        self.runs, self.baselines, self._model = 0, {}, None

    def model(self):
        if self._model is None:
            from key2mesh.inference.predictor import Key2Mesh

            self._model = Key2Mesh.from_pretrained("anny-coco17", device="cpu")
        return self._model

    def fill(self, value):
        """``{in}`` replaced by the inputs folder in ``value`` (texts, lists, tuples, dicts)."""
        if isinstance(value, str):
            return value.replace("{in}", str(self.inputs))
        if isinstance(value, list | tuple):
            return type(value)(self.fill(v) for v in value)
        if isinstance(value, dict):
            return {k: self.fill(v) for k, v in value.items()}
        return value

    def run(self, setup: str, case: Case | None = None) -> Run:
        """The command of ``setup`` with ``case``'s flag (None: the baseline, with ``also``)."""
        base = SETUPS[setup]
        argv = [*base.argv]
        if case is not None and case.swap:
            argv = [case.swap.get(a, a) for a in argv]
        if case is not None:
            at = len(argv) if case.at is None else case.at
            argv[at:at] = case.argv
        self.runs += 1
        cwd = self.root / f"run{self.runs}"
        cwd.mkdir()
        calls: dict = {}
        out, err = io.StringIO(), io.StringIO()
        with pytest.MonkeyPatch.context() as mp:
            mp.chdir(cwd)
            if base.stubs:
                base.stubs(self, Recorder(mp, calls))
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    code = main(self.fill(argv))
                except Stop:
                    code = "stopped"
                except Key2MeshError:
                    code = "raised Key2MeshError"
        return Run(code, out.getvalue(), err.getvalue(), cwd, calls)

    def baseline(self, setup: str, also: tuple[str, ...]) -> Run:
        key = (setup, also)
        if key not in self.baselines:
            self.baselines[key] = self.run(setup, Case(argv=also))
        return self.baselines[key]


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    return Bench(tmp_path_factory.mktemp("flags"))


def _shown(value):
    """Values compared as text where the command builds objects: smoothing, subjects, views."""
    from key2mesh.inference.motion import MotionSmoothing

    if isinstance(value, MotionSmoothing):
        return value
    if isinstance(value, dict) and all(hasattr(v, "height_m") for v in value.values()):
        return ", ".join(f"{k}: {v.height_m} {v.sex}" for k, v in value.items())
    if isinstance(value, SimpleNamespace) and hasattr(value, "initial_camera"):
        return f"camera at {value.initial_camera.position}"
    return value


def _matches(got, want) -> bool:
    from key2mesh.inference.motion import MotionSmoothing

    if isinstance(got, MotionSmoothing) and isinstance(want, str):
        # "one-euro" (the mode) or "field=value"
        name, sep, value = want.partition("=")
        return getattr(got, name) == float(value) if sep else got.mode == want
    return got == want


CASES = sorted(k for k, v in TABLE.items() if isinstance(v, Case))


@pytest.mark.parametrize("key", CASES)
def test_flag_changes_what_the_command_does(key, bench):
    case = TABLE[key]
    if case.needs:
        pytest.importorskip(case.needs)
    setup = case.setup or key.rsplit(" ", 1)[0]
    flagged = Case(argv=(*case.also, *case.argv), swap=case.swap, at=case.at)
    with_flag = bench.run(setup, flagged)
    without = bench.baseline(setup, case.also)
    got, before = _shown(case.probe(with_flag)), _shown(case.probe(without))
    detail = f"{key}: with the flag {got!r}, without {before!r}\n{with_flag.err[-2000:]}"
    if case.want is CHANGED:
        assert got is not None and got != before, detail
    else:
        want = bench.fill(case.want)
        assert _matches(got, want), detail
        assert not _matches(before, want), detail


def test_a_reader_that_closes_stdout_early_ends_the_command_quietly():
    """``key2mesh info | head -1``: the reader going away is no error of the command (it printed
    'key2mesh info: error: Broken pipe', status 2); status 141 as for SIGPIPE, nothing printed."""
    import subprocess

    proc = subprocess.Popen(
        [sys.executable, "-m", "key2mesh.cli", "info"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.close()  # before the command writes anything
    err = proc.stderr.read().decode()
    assert proc.wait() == 141 and err == ""


def test_a_broken_pipe_other_than_stdout_is_still_an_error(monkeypatch, capsys):
    """A pipe to a helper process (e.g. an encoder that died) is a real error."""
    from key2mesh import cli
    from key2mesh.commands import info

    def run(args):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(info, "run", run)
    assert cli.main(["info"]) == 2
    assert "key2mesh info: error: Broken pipe" in capsys.readouterr().err
