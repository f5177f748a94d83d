"""Recipes: the schema's validation, the shipped presets, --set overrides and config files."""

from __future__ import annotations

from pathlib import Path

import pytest

from pruneguard.config import PurifyConfig
from pruneguard.errors import ConfigError, UnknownNameError
from pruneguard.recipes import RECIPES, Recipe, apply_overrides, get_recipe, load_recipe_file, parse_set
from pruneguard.recipes.overrides import FieldError, build


def test_the_presets_validate_and_round_trip() -> None:
    assert set(RECIPES.names()) >= {"paper", "default"}
    for name in RECIPES.names():
        recipe = get_recipe(name)
        assert recipe.name == name and Recipe(**recipe.to_dict()) == recipe
    paper = get_recipe("paper")
    assert (paper.anp.eps, paper.anp.alpha, paper.anp.iterations, paper.select.threshold) == (0.4, 0.2, 2000, 0.2)
    assert paper.max_acc_drop is None and paper.validation_fraction == 0 and paper.repair.method == "none"
    default = get_recipe("default")
    assert default.max_acc_drop == 0.02 and default.validation_fraction == 0.2 and default.suspect.require_evidence
    with pytest.raises(UnknownNameError, match="did you mean paper"):
        get_recipe("papper")


def test_a_run_config_takes_a_recipe_by_name_or_as_fields() -> None:
    cfg = PurifyConfig(model=Path("m"), out=Path("o"), recipe="paper")
    assert cfg.recipe == get_recipe("paper")
    again = PurifyConfig(**cfg.to_dict())
    assert again == cfg
    assert PurifyConfig(model=Path("m"), out=Path("o")).recipe == get_recipe("default")


@pytest.mark.parametrize(
    "data,needle",
    [
        ({"anp": {"eps": 3}}, "anp.eps=3"),
        ({"anp": {"iterations": 0}}, "anp.iterations=0"),
        ({"select": {"threshold": float("nan")}}, "select.threshold=nan"),
        ({"max_acc_drop": 0.02, "validation_fraction": 0.0}, "needs validation_fraction > 0"),
        ({"repair": {"suppress": 0.5}}, "need repair.distill > 0"),
        ({"suspect": {"method": "sensitivity"}}, "suspect.require_evidence=true needs suspect.method=vote"),
        ({"suspect": {"method": "none", "require_evidence": False}, "anp": {"targeted": True}}, "anp.targeted"),
        ({"anp": {"colour": 1}}, "accepted: enabled, eps"),
    ],
)
def test_bad_recipes_name_the_field(data: dict, needle: str) -> None:
    with pytest.raises(ConfigError) as exc:
        build(Recipe, data)
    assert needle in str(exc.value) and "\n" not in str(exc.value)


def test_field_errors_carry_the_path_and_the_value() -> None:
    with pytest.raises(FieldError) as exc:
        build(PurifyConfig, {"model": "m", "out": "o", "recipe": {"anp": {"lr": -1}}})
    assert exc.value.field == "recipe.anp.lr" and exc.value.value == -1


def test_set_items_parse_yaml_scalars_and_apply_in_order() -> None:
    assert parse_set("anp.eps=0.3") == (["anp", "eps"], 0.3)
    assert parse_set("max_acc_drop=null") == (["max_acc_drop"], None)
    assert parse_set("repair.distill_augment=true") == (["repair", "distill_augment"], True)
    assert parse_set("arch_kwargs={width: 0.5}") == (["arch_kwargs"], {"width": 0.5})
    assert parse_set("eval_attack=badnets") == (["eval_attack"], "badnets")
    for bad in ("anp.eps", "=3", "anp..eps=1", "a b=1"):
        with pytest.raises(ConfigError, match="FIELD=VALUE"):
            parse_set(bad)
    with pytest.raises(ConfigError, match="finite"):
        parse_set("anp.lr=.nan")
    base = {"recipe": {"anp": {"eps": 0.4}}}
    out = apply_overrides(base, ["recipe.anp.eps=0.1", "recipe.anp.eps=0.2", "seed=4"])
    assert out == {"recipe": {"anp": {"eps": 0.2}}, "seed": 4} and base["recipe"]["anp"]["eps"] == 0.4
    with pytest.raises(ConfigError, match="not a group of fields"):
        apply_overrides({"recipe": {"anp": 1}}, ["recipe.anp.eps=1"])


def test_config_files_are_plain_yaml_mappings(tmp_path: Path) -> None:
    good = tmp_path / "c.yaml"
    good.write_text("recipe: paper\nseed: 3\n")
    assert load_recipe_file(good) == {"recipe": "paper", "seed": 3}
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("a: &a [1, 1]\nb: [*a, *a]\n")
    with pytest.raises(ConfigError, match="aliases"):
        load_recipe_file(bomb)
    tagged = tmp_path / "tag.yaml"
    tagged.write_text("a: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_recipe_file(tagged)
    with pytest.raises(ConfigError, match="is not a file"):
        load_recipe_file(tmp_path / "none.yaml")
