"""The command line's own rules: every ``--help`` works without torch (and fast), every flag
has a help string, defaults shown come from the code, old flag spellings still work."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from key2mesh.cli import COMMANDS, build_parser


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


def _subparsers(parser: argparse.ArgumentParser, prefix=()):
    """(argv prefix, parser) of every command and sub-command."""
    yield prefix, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _subparsers(sub, (*prefix, name))


def test_every_help_works_with_torch_unimportable():
    """``torch`` made unimportable (``sys.modules['torch'] = None``): ``key2mesh --help`` and every
    ``key2mesh COMMAND [ACTION] --help`` still print their help and exit 0."""
    argvs = [list(prefix) for prefix, _ in _subparsers(build_parser())]
    code = f"""
import contextlib, io, sys
sys.modules["torch"] = None
from key2mesh.cli import main
for argv in {argvs!r}:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        status = main([*argv, "--help"])
    assert status == 0, (argv, status)
    assert "usage: key2mesh" in buf.getvalue(), argv
print("ok", len({argvs!r}))
"""
    r = _python(code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"ok {len(argvs)}"


def test_no_command_module_imports_torch():
    modules = ["key2mesh.cli", *(f"key2mesh.commands.{m}" for m in set(COMMANDS.values()))]
    code = f"""
import importlib, sys
for m in {modules!r}:
    importlib.import_module(m)
from key2mesh.cli import build_parser
build_parser()
heavy = sorted(m for m in ("torch", "numpy", "trimesh", "cv2", "mediapipe") if m in sys.modules)
print(",".join(heavy) or "none")
"""
    r = _python(code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "none"


def test_every_flag_has_help():
    missing = [
        f"{' '.join(prefix) or 'key2mesh'} {'/'.join(a.option_strings) or a.dest}"
        for prefix, parser in _subparsers(build_parser())
        for a in parser._actions
        if not isinstance(a, argparse._SubParsersAction) and not a.help
    ]
    assert not missing, missing


def test_no_retyped_defaults_in_help():
    """Defaults are shown from the code: ``%(default)s`` or :class:`ConfigDefaults`, never typed
    into a help string (``(default 0.05)``, ``default: 8080``)."""
    import re

    typed = [
        f"{' '.join(prefix)} {a.option_strings}: {a.help}"
        for prefix, parser in _subparsers(build_parser())
        for a in parser._actions
        if a.help
        and a.help != argparse.SUPPRESS
        and re.search(r"\(default:? [0-9]", a.help.replace("%(default)s", ""))
        and "%(default)s" not in a.help
    ]
    assert not typed, typed


def test_constants_copied_to_stay_torch_free_match_the_code():
    from key2mesh.commands import _args, predict
    from key2mesh.inference.motion import MotionSmoothing
    from key2mesh.inference.pipeline import CHUNK
    from key2mesh.keypoints.io import MIN_KEYPOINTS

    assert _args.MIN_KEYPOINTS == MIN_KEYPOINTS and predict.CHUNK == CHUNK
    smoothing = MotionSmoothing()
    parsed = build_parser().parse_args(["predict", "x.npz"])
    assert (parsed.smooth_min_cutoff, parsed.smooth_beta) == (smoothing.min_cutoff, smoothing.beta)


@pytest.mark.parametrize(
    "path, cls, keys",
    [
        ("train/adapt.py", "AdaptConfig", ["min_gain", "min_keypoints", "critic_lr", "weights.reg"]),
        ("train/pretrain.py", "PretrainConfig", ["val_subjects", "model.hidden", "synth.noise_profile", "ema"]),
        ("fitting/pipeline.py", "FitConfig", ["iters", "weights.sigma", "min_keypoints", "lr"]),
    ],
)  # fmt: skip
def test_config_defaults_read_from_source_match_the_dataclasses(path, cls, keys):
    """The defaults ``--help`` shows (read from the source with ast) are the dataclasses' own."""
    import importlib

    from key2mesh.commands._config import ConfigDefaults

    module = importlib.import_module("key2mesh." + path.removesuffix(".py").replace("/", "."))
    config = getattr(module, cls)()
    nested = {"model": "key2mesh.model.network.ModelConfig"}
    for key in keys:
        head, _, leaf = key.partition(".")
        if head in nested:  # a dict of overrides: the defaults are the nested class's
            mod, _, name = nested[head].rpartition(".")
            want = getattr(getattr(importlib.import_module(mod), name)(), leaf)
        else:
            want = getattr(getattr(config, head), leaf) if leaf else getattr(config, head)
        assert ConfigDefaults(path, cls).value(key) == want, key


def test_deprecated_spellings_still_work_and_warn(capsys):
    parser = build_parser()
    cases = [
        (["adapt", "--target", "t", "--source", "ck.pt"], "source", "--source"),
        (["fit", "x.npz", "--init-from", "ck.pt"], "init_from", "--init-from"),
        (["pretrain", "--init", "ck.pt"], "init", "--init"),
    ]
    for argv, dest, old in cases:
        args = parser.parse_args(argv)
        assert getattr(args, dest) == "ck.pt"
        err = capsys.readouterr().err
        assert f"{old} is deprecated; use --checkpoint" in err
    new = parser.parse_args(["adapt", "--target", "t", "--checkpoint", "ck.pt"])
    assert new.source == "ck.pt" and "deprecated" not in capsys.readouterr().err


def test_device_auto_means_the_default():
    parser = build_parser()
    for command in (
        ["predict", "x.npz"],
        ["demo", "x.png"],
        ["evaluate", "--dataset", "d", "--checkpoint", "c"],
    ):
        assert parser.parse_args([*command, "--device", "auto"]).device is None
        assert parser.parse_args(command).device is None
        assert parser.parse_args([*command, "--device", "cpu"]).device == "cpu"
