"""Recipes live in configs/*.yaml (issue #23): each is a valid ``pretrain --config`` file, the
shipped stage 2 is the benchmark's variant D, the variants are the recipes their results were
measured with, and no script retypes a recipe as inline JSON or hides Python in a heredoc."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from key2mesh.commands._config import merged_config
from key2mesh.errors import Key2MeshError
from key2mesh.train.pretrain import PretrainConfig

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").rglob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_config_is_a_valid_pretrain_config(path):
    cfg = merged_config(PretrainConfig, str(path), {})
    data = yaml.safe_load(path.read_text())
    assert cfg.synth.noise_profile == data["synth"]["noise_profile"]
    assert cfg.pose_augment is data["pose_augment"]


def test_the_stages_of_the_shipped_models():
    stage1 = merged_config(PretrainConfig, str(ROOT / "configs/stage1.yaml"), {})
    stage2 = merged_config(PretrainConfig, str(ROOT / "configs/stage2.yaml"), {})
    assert stage1.synth.noise_profile == "detector" and stage2.synth.noise_profile == "none"
    assert stage2.model["dropout"] == 0.0 and "dropout" not in stage1.model
    variant_d = yaml.safe_load((ROOT / "configs/finetune/D.yaml").read_text())
    assert yaml.safe_load((ROOT / "configs/stage2.yaml").read_text()) == variant_d
    script = (ROOT / "scripts/train_default.sh").read_text()
    assert "configs/stage1.yaml" in script and "configs/stage2.yaml" in script


def test_variants_are_the_measured_recipes():
    """Each row of results/finetune_recipe.md names its recipe; the config file is that recipe."""
    rows = re.findall(
        r"^\| ([A-Z]) \| `([^`]+)` \|",
        (ROOT / "benchmarks/results/finetune_recipe.md").read_text(),
        flags=re.M,
    )
    assert len(rows) >= 13
    for variant, recipe in rows:
        config = yaml.safe_load((ROOT / f"configs/finetune/{variant}.yaml").read_text())
        assert config == json.loads(recipe), variant


def test_a_bad_config_value_is_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("synth: {noise_profile: loud}\n")
    with pytest.raises(Key2MeshError, match="noise_profile"):
        merged_config(PretrainConfig, str(bad), {})


def test_no_inline_recipes_or_python_heredocs_in_scripts():
    shell = [*ROOT.glob("scripts/*.sh"), *ROOT.glob("benchmarks/*.sh")]
    assert shell
    for path in shell:
        text = path.read_text()
        assert '"noise_profile"' not in text, f"{path.name}: a recipe belongs in configs/*.yaml"
        assert not re.search(r"python3?\s+-\s.*<<", text), f"{path.name}: Python in a heredoc"
