"""The typed recipe interface: one lr rule, declared hooks, old run folders still load."""

from __future__ import annotations

import pytest
import yaml

from vidfm.config import apply_overrides, to_dict
from vidfm.errors import ConfigError
from vidfm.recipes import RECIPES, get_recipe, load_run_config
from vidfm.recipes.base import Recipe
from vidfm.runs import open_run, upgrade_config
from vidfm.train.config import TrainConfig, effective_lr, validate_train_config


def test_every_recipe_is_a_typed_recipe():
    for name in RECIPES:
        cfg = get_recipe(name)
        assert isinstance(cfg, Recipe) and cfg.recipe == name
        assert isinstance(cfg.train, TrainConfig)
        validate_train_config(cfg.train)  # exactly one of lr / blr
        assert cfg.has_text_tower == (
            name
            in {"clip_image", "umt_stage2", "videoprism_stage1", "videoprism_stage2", "internvideo2_stage2"}
        )


def test_set_lr_replaces_the_scaling_rule():
    cfg = get_recipe("videomae")  # the paper's rule: blr 1.5e-4
    assert cfg.train.lr is None and cfg.train.blr == 1.5e-4
    assert effective_lr(cfg.train, world_size=2) == pytest.approx(1.5e-4 * 32 * 2 / 256)
    fixed = apply_overrides(cfg, ["train.lr=1e-3"])
    assert fixed.train.lr == 1e-3 and fixed.train.blr is None
    assert effective_lr(fixed.train, world_size=8) == 1e-3  # no longer silently scaled
    back = apply_overrides(fixed, ["train.blr=3e-4"])
    assert back.train.lr is None and effective_lr(back.train, 1) == pytest.approx(3e-4 * 32 / 256)


def test_setting_both_lr_fields_is_an_error():
    with pytest.raises(ValueError, match="exclude each other"):
        apply_overrides(get_recipe("umt"), ["train.lr=1e-3", "train.blr=1e-4"])
    with pytest.raises(ValueError, match="exactly one"):
        validate_train_config(TrainConfig(lr=1e-3, blr=1e-4))
    with pytest.raises(ConfigError, match="exactly one"):  # a user's --set: one line, not a traceback
        validate_train_config(TrainConfig(lr=None))


def test_old_run_config_with_a_top_level_blr_still_loads(tmp_path):
    # config.yaml as runs wrote it before the rule moved into train: blr at the top level, train.lr derived.
    old = to_dict(get_recipe("umt:tiny"))
    old["blr"] = old["train"].pop("blr")
    old["train"]["lr"] = 0.0006
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(old))
    cfg = load_run_config(tmp_path)
    assert cfg.train.blr == 1.5e-4 * 8 and cfg.train.lr is None
    assert upgrade_config({"recipe": "x", "blr": None, "train": {"lr": 1e-3}}) == {
        "recipe": "x",
        "train": {"lr": 1e-3},
    }


def test_run_sections_are_typed_and_missing_ones_are_named(tmp_path):
    from vidfm.models.clip_vision import CLIPVisionConfig
    from vidfm.models.encoder import EncoderConfig

    (tmp_path / "config.yaml").write_text(yaml.safe_dump(to_dict(get_recipe("videomae:tiny"))))
    run = open_run(tmp_path)
    assert run.recipe == "videomae" and run.section("encoder", EncoderConfig).size == "T/8"
    assert run.get("data.num_frames") == 16
    with pytest.raises(ValueError, match="'videomae' run: its config has no 'vision' section"):
        run.section("vision", CLIPVisionConfig)
    with pytest.raises(FileNotFoundError, match="not a vidfm run folder"):
        open_run(tmp_path / "nowhere")


def test_hooks_have_defaults_instead_of_probing():
    cfg = get_recipe("videomae:tiny")
    assert cfg.prepare() is cfg
    with pytest.raises(ValueError, match="no text tower"):
        cfg.dual_encoder("somewhere")
