"""Recipes: declarative training regimes (built-in ``scratch``, ``finetune``, or YAML)."""

from tunewise.recipes.schema import Recipe, RecipeError, builtin_recipes, load_recipe, parse_recipe

__all__ = ["Recipe", "RecipeError", "builtin_recipes", "load_recipe", "parse_recipe"]
