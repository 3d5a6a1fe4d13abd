"""Recipes: declarative training regimes (built-in ``scratch``, ``finetune``, or YAML).

The names below load on first use: :mod:`tunewise.recipes.files` alone (finding and
reading recipe files) must not pull in the pydantic models of :mod:`tunewise.recipes.schema`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tunewise.errors import RecipeError
from tunewise.recipes.files import builtin_recipes

if TYPE_CHECKING:
    from tunewise.recipes.schema import Recipe, load_recipe, parse_recipe

__all__ = ["Recipe", "RecipeError", "builtin_recipes", "load_recipe", "parse_recipe"]


def __getattr__(name: str):
    if name in ("Recipe", "load_recipe", "parse_recipe"):
        from tunewise.recipes import schema

        return getattr(schema, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
