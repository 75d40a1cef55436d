"""The one option validator (:mod:`key2mesh.options`): ``--config``, ``--set`` and named flags of
``pretrain``, ``adapt``, ``fit`` get the same typed, range- and choice-checked reading."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from key2mesh.cli import main
from key2mesh.commands._config import merged_config
from key2mesh.errors import Key2MeshError
from key2mesh.fitting.pipeline import FitConfig
from key2mesh.options import Rule, check_option, rule
from key2mesh.train.adapt import AdaptConfig
from key2mesh.train.pretrain import PretrainConfig

CONFIGS = (PretrainConfig, AdaptConfig, FitConfig)


@pytest.mark.parametrize(
    "cls, item, expect",
    [
        (PretrainConfig, "steps=many", "--set steps=many: steps must be an integer >= 0"),
        (PretrainConfig, "threads=-3", "--set threads=-3: threads must be an integer >= 0"),
        (PretrainConfig, "device=banana", "device must be auto, cpu, cuda, cuda:N or mps"),
        (PretrainConfig, "model.hidden=0", "model.hidden must be an integer >= 1"),
        (PretrainConfig, "model.bogus=1", "valid: hidden, extractor_blocks"),
        (PretrainConfig, "model.num_keypoints=3", "unknown model option"),
        (PretrainConfig, "bogus=1", "unknown option 'bogus'; valid: cache, out_dir"),
        (PretrainConfig, "weights=5", "weights must be a mapping of options (pose, shape"),
        (PretrainConfig, 'weights={"pose": -1}', "weights.pose must be a number >= 0"),
        (PretrainConfig, "lr=NaN", "--set lr=NaN: lr must be a number > 0"),
        (PretrainConfig, "lr=Infinity", "lr must be a number > 0"),
        (PretrainConfig, "camera.focal=-5", "camera.focal must be a number > 0"),
        (PretrainConfig, "val_fraction=2", "val_fraction must be a number in [0, 1)"),
        (PretrainConfig, "epochs=-1", "epochs must be a number > 0"),
        (PretrainConfig, "steps=1e400", "steps must be an integer >= 0"),
        (PretrainConfig, "steps=2.5", "steps must be an integer"),
        (PretrainConfig, "steps=true", "steps must be an integer"),
        (PretrainConfig, "steps=1e30", "steps must be an integer"),
        (PretrainConfig, f"steps={2**70}", "below 2**63"),
        (PretrainConfig, "amp=maybe", "amp must be true or false"),
        (PretrainConfig, "synth.noise_profile=loud", "must be one of none, detector, strong"),
        (PretrainConfig, "synth.distance_range=[8, 2]", "2 numbers > 0 in ascending order"),
        (PretrainConfig, "synth.distance_range=3", "synth.distance_range must be a list"),
        (PretrainConfig, "val_subjects=[1, 2]", "val_subjects must be a list of text"),
        (PretrainConfig, "ema=1", "ema must be a number in [0, 1)"),
        (PretrainConfig, "steps.x=1", "steps has no options inside it"),
        (AdaptConfig, "bn=bogus", "--set bn=bogus: bn must be one of frozen, batch"),
        (AdaptConfig, "steps=-5", "steps must be an integer >= 0"),
        (AdaptConfig, "critic_steps=-1", "critic_steps must be an integer >= 0"),
        (AdaptConfig, "weights.mv=-1", "weights.mv must be a number >= 0"),
        (AdaptConfig, "holdout_fraction=1.5", "holdout_fraction must be a number in [0, 1)"),
        (AdaptConfig, "device=cuda:x", "device must be auto, cpu"),
        (AdaptConfig, "selection=best", "selection must be one of guarded, target"),
        (AdaptConfig, "critic_dropout=1", "critic_dropout must be a number in [0, 1)"),
        (AdaptConfig, "source_samples=-1", "source_samples must be an integer >= 0"),
        (FitConfig, "iters=-5", "--set iters=-5: iters must be an integer >= 0"),
        (FitConfig, "optimizer=sgd", "optimizer must be one of adam, lbfgs"),
        (FitConfig, "lr=0", "lr must be a number > 0 or null"),
        (FitConfig, "weights.sigma=0", "weights.sigma must be a number > 0"),
    ],
)
def test_bad_set_items_are_one_line_errors(cls, item, expect):
    with pytest.raises(Key2MeshError) as err:
        merged_config(cls, None, {}, [item])
    message = str(err.value)
    assert "\n" not in message and expect in message, message


@pytest.mark.parametrize(
    "text, expect",
    [
        ("cmu_02", ["cmu_02"]),
        ("cmu_02,cmu_05", ["cmu_02", "cmu_05"]),
        (" cmu_02 , cmu_05 ,", ["cmu_02", "cmu_05"]),
        ('["cmu_02"]', ["cmu_02"]),
        ("", []),
    ],
)
def test_list_options_are_never_split_into_characters(tmp_path, text, expect):
    """A list option reads the same from --set, --config (text or list) and a named flag."""
    assert merged_config(PretrainConfig, None, {}, [f"val_subjects={text}"]).val_subjects == expect
    assert merged_config(PretrainConfig, None, {"val_subjects": text}).val_subjects == expect
    config = tmp_path / "c.json"
    value = json.loads(text) if text.startswith("[") else text
    config.write_text(json.dumps({"val_subjects": value}))
    assert merged_config(PretrainConfig, str(config), {}).val_subjects == expect


def test_pretrain_command_holds_out_the_named_subject(monkeypatch, tmp_path):
    """`--set val_subjects=cmu_02` and `--val-subjects cmu_02` reach run_pretrain as ["cmu_02"]."""
    import key2mesh.train.pretrain as pretrain

    seen = []
    monkeypatch.setattr(pretrain, "run_pretrain", lambda cfg, **_: seen.append(cfg) or {})
    base = ["pretrain", "--cache", str(tmp_path / "c.npz"), "--out", str(tmp_path / "pt")]
    assert main([*base, "--set", "val_subjects=cmu_02"]) == 0
    assert main([*base, "--val-subjects", "cmu_02"]) == 0
    assert main([*base, "--set", "val_subjects=cmu_02,cmu_05", "--hidden", "64"]) == 0
    assert [c.val_subjects for c in seen] == [["cmu_02"], ["cmu_02"], ["cmu_02", "cmu_05"]]
    assert seen[2].model == {"hidden": 64, "critic_hidden": 64}


def test_config_file_values_are_checked_and_named(tmp_path):
    config = tmp_path / "run.json"
    config.write_text(json.dumps({"threads": -3}))
    with pytest.raises(Key2MeshError, match=r"threads=-3 in --config .*run.json: threads must"):
        merged_config(PretrainConfig, str(config), {})
    config.write_text(json.dumps({"model": {"hidden": 0}, "steps": 4}))
    with pytest.raises(Key2MeshError, match="model.hidden must be an integer >= 1"):
        merged_config(PretrainConfig, str(config), {})
    config.write_text(json.dumps({"weights": {"pose": 1, "bogus": 2}}))
    with pytest.raises(Key2MeshError, match="'bogus' is not one"):
        merged_config(PretrainConfig, str(config), {})
    config.write_text(json.dumps({"steps": "4"}))  # a file's values are typed: no guessing
    with pytest.raises(Key2MeshError, match="steps must be an integer"):
        merged_config(PretrainConfig, str(config), {})


def test_named_flags_go_through_the_same_checks():
    with pytest.raises(Key2MeshError, match=r"^--threads -3: threads must be an integer >= 0$"):
        merged_config(PretrainConfig, None, {"threads": "-3"})
    with pytest.raises(Key2MeshError, match=r"^--hidden 0: model.hidden must be an integer >= 1$"):
        merged_config(
            PretrainConfig, None, {"model.hidden": "0"}, names={"model.hidden": "--hidden"}
        )
    with pytest.raises(Key2MeshError, match="--critic-steps -1: critic_steps"):
        merged_config(AdaptConfig, None, {"critic_steps": -1})  # a value argparse already typed


def test_good_values_are_converted_and_layered(tmp_path):
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"synth": {"distance_range": [2.5, 8]}, "lr": 0.5, "steps": 3}))
    sets = ["amp=False", "camera.focal=300", "model.dropout=0", "init=2024", "lr=0.25"]
    cfg = merged_config(PretrainConfig, str(config), {"steps": "7"}, sets)
    assert cfg.synth.distance_range == [2.5, 8.0] and cfg.lr == 0.25 and cfg.steps == 7
    assert cfg.amp is False and cfg.camera.focal == 300.0 and cfg.model == {"dropout": 0.0}
    assert cfg.init == "2024"  # a text option keeps its text
    fit = merged_config(FitConfig, None, {}, ["lr=null", "smpl_dir=/models/smpl", "weights.pose=0"])
    assert fit.lr is None and fit.smpl_dir == "/models/smpl" and fit.weights.pose == 0.0


@pytest.mark.parametrize("cls", CONFIGS)
def test_defaults_and_saved_configs_pass(cls):
    """Every default (and so a config written by to_dict, e.g. a checkpoint's) reads back."""
    for key, value in cls().to_dict().items():
        assert check_option(cls, key, value, "x") == value


def test_fields_without_a_rule_are_still_type_checked():
    """A field added later with no declared rule gets its type checked (and never a crash)."""

    @dataclasses.dataclass
    class Later:
        count: int = 1
        ratio: float = 0.5
        names: list[str] = dataclasses.field(default_factory=list)
        mode: str = dataclasses.field(default="a", metadata=rule(choices=("a", "b")))

    assert check_option(Later, "count", "12", "o", text=True) == 12
    assert check_option(Later, "names", "x,y", "o", text=True) == ["x", "y"]
    for key, text in (("count", "1.5"), ("count", "true"), ("ratio", "nan"), ("mode", "c")):
        with pytest.raises(Key2MeshError, match=f"^o: {key} must be"):
            check_option(Later, key, text, "o", text=True)


def test_adapt_rules_live_in_the_table():
    """AdaptConfig / AdaptWeights declare no metadata: their rules are in options.TABLES, and
    every rule names a real field."""
    from key2mesh.options import TABLES

    for name, table in TABLES.items():
        module, _, cls_name = name.rpartition(".")
        cls = getattr(__import__(module, fromlist=[cls_name]), cls_name)
        assert set(table) <= {f.name for f in dataclasses.fields(cls)}, name
        assert all(isinstance(r, Rule) for r in table.values())


def _keys(cls, prefix=""):
    """Every option of ``cls``, nested ones dotted."""
    from key2mesh.options import _fields, _Restricted

    out = []
    for name, (tp, r) in _fields(cls).items():
        out.append(prefix + name)
        inner = _Restricted(r.nested, r.keys) if r.nested else tp
        if r.nested or dataclasses.is_dataclass(tp):
            out += _keys(inner, f"{prefix}{name}.")
    return out


SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(-5, 5),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["cmu_02", "cmu_02,cmu_05", "cuda:1", "auto", "strong", "batch", "adam"]),
)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_any_set_value_gives_a_config_or_a_one_line_error(data):
    cls = data.draw(st.sampled_from(CONFIGS))
    key = data.draw(st.sampled_from([*_keys(cls), "bogus", "model.bogus", "weights.bogus"]))
    inner = st.sampled_from(["hidden", "pose", "mv", "sigma", "focal", "noise_profile", "bogus"])
    value = data.draw(
        st.one_of(
            SCALARS, st.lists(SCALARS, max_size=3), st.dictionaries(inner, SCALARS, max_size=2)
        )
    )
    raw = data.draw(st.booleans())  # the value's JSON, or a string as typed on the command line
    text = value if raw and isinstance(value, str) else json.dumps(value)
    try:
        cfg = merged_config(cls, None, {}, [f"{key}={text}"])
    except Key2MeshError as exc:
        # the option named first; an unavailable device (cuda:1 here) by check_device
        assert "\n" not in str(exc) and str(exc).startswith(("--set ", "device "))
        return
    assert isinstance(cfg, cls)
    for k, v in cfg.to_dict().items():  # whatever was accepted reads back as valid
        check_option(cls, k, v, "x")
        assert not (isinstance(v, float) and not math.isfinite(v))


def test_control_characters_in_a_value_stay_on_one_line():
    """Found by the property test: a value holding a newline made a two-line error."""
    from key2mesh.commands._config import merged_config
    from key2mesh.train.pretrain import PretrainConfig

    with pytest.raises(Key2MeshError) as err:
        merged_config(PretrainConfig, None, {}, ["steps=\n\t"])
    assert "\n" not in str(err.value) and "steps=\\n\\t" in str(err.value)


@pytest.mark.parametrize(
    "text, lr", [("1e-3", 1e-3), ("1E-3", 1e-3), ("2.5e-4", 2.5e-4), ("5e+1", 50.0), ("0.5", 0.5)]
)
def test_yaml_config_numbers_in_exponent_form_are_numbers(tmp_path, text, lr):
    """PyYAML reads ``1e-3`` (no dot, or no exponent sign) as text (YAML 1.1); a config file
    means the number, as JSON and YAML 1.2 do."""
    config = tmp_path / "run.yaml"
    config.write_text(f"lr: {text}\nsynth: {{distance_range: [2e0, 8]}}\n")
    cfg = merged_config(PretrainConfig, str(config), {})
    assert cfg.lr == lr and cfg.synth.distance_range == [2.0, 8.0]
    config.write_text("init: '1e-3'\n")  # quoted: text
    assert merged_config(PretrainConfig, str(config), {}).init == "1e-3"


def test_unreadable_config_files_are_one_line_errors(tmp_path, capsys):
    """A config saved as UTF-16 or Latin-1 is a one-line error (a UnicodeDecodeError traceback
    before); a folder is named as a folder; ``.YAML`` is YAML."""
    latin1 = tmp_path / "run.yaml"
    latin1.write_bytes("lr: 0.001 # café\n".encode("latin-1"))
    with pytest.raises(Key2MeshError, match=r"cannot parse config .*run.yaml: not UTF-8 text"):
        merged_config(PretrainConfig, str(latin1), {})
    utf16 = tmp_path / "run.json"
    utf16.write_text('{"lr": 0.001}', encoding="utf-16")
    assert main(["pretrain", "--config", str(utf16)]) == 2
    assert "not UTF-8 text" in capsys.readouterr().err
    bom = tmp_path / "bom.json"
    bom.write_text('{"lr": 0.25}', encoding="utf-8-sig")  # Windows Notepad's UTF-8
    assert merged_config(PretrainConfig, str(bom), {}).lr == 0.25
    upper = tmp_path / "run.YAML"
    upper.write_text("lr: 0.5\n")
    assert merged_config(PretrainConfig, str(upper), {}).lr == 0.5
    with pytest.raises(Key2MeshError, match="is a folder, not a file"):
        merged_config(PretrainConfig, str(tmp_path), {})


@pytest.mark.parametrize(
    "name, text",
    [
        ("run.yaml", "lr: 0.1\nsteps: 3\nlr: 0.001\n"),
        ("run.yaml", "synth:\n  noise_profile: none\n  noise_profile: strong\n"),
        ("run.json", '{"lr": 0.1, "lr": 0.001}'),
    ],
)
def test_a_key_given_twice_in_a_config_file_is_refused(tmp_path, name, text):
    """The parsers keep the last of two equal keys silently: the first value the user reads in
    the file is not the one used."""
    config = tmp_path / name
    config.write_text(text)
    with pytest.raises(Key2MeshError, match=r"cannot parse config .*: duplicate key '"):
        merged_config(PretrainConfig, str(config), {})


def test_an_empty_or_comment_only_yaml_config_changes_nothing(tmp_path):
    config = tmp_path / "run.yaml"
    for text in ("", "# no overrides yet\n"):
        config.write_text(text)
        assert merged_config(PretrainConfig, str(config), {"lr": "0.5"}).lr == 0.5
    config.write_text("- lr\n")
    with pytest.raises(Key2MeshError, match="must hold a mapping of options"):
        merged_config(PretrainConfig, str(config), {})
