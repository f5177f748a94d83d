"""Purification recipes: a validated description of the steps (schema), the shipped presets, overrides."""

from pruneguard.recipes.overrides import apply_overrides, load_recipe_file, parse_set
from pruneguard.recipes.presets import DEFAULT_RECIPE, RECIPES, get_recipe
from pruneguard.recipes.schema import ANPStep, Recipe, RepairStep, SelectStep, SuspectStep

__all__ = [
    "Recipe",
    "SuspectStep",
    "ANPStep",
    "SelectStep",
    "RepairStep",
    "RECIPES",
    "DEFAULT_RECIPE",
    "get_recipe",
    "apply_overrides",
    "parse_set",
    "load_recipe_file",
]
