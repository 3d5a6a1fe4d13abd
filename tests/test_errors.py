"""One error base class: every tunewise error is a TunewiseError, and the CLI shows it as one line."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from pathlib import Path

import yaml
from typer.testing import CliRunner

import tunewise
from tunewise import errors
from tunewise.cli import app
from tunewise.recipes import load_recipe

from .conftest import make_messages, write_csv


def _tunewise_modules():
    for info in pkgutil.walk_packages(tunewise.__path__, "tunewise."):
        if not info.name.endswith("__main__"):  # importing it runs the command line
            yield importlib.import_module(info.name)


def test_every_tunewise_exception_derives_from_the_base_and_lives_in_errors() -> None:
    defined = {
        obj
        for module in _tunewise_modules()
        for _, obj in inspect.getmembers(module, inspect.isclass)
        if issubclass(obj, Exception) and obj.__module__.startswith("tunewise")
    }
    assert errors.DataError in defined and errors.FreezeError in defined
    strays = sorted(
        f"{c.__module__}.{c.__name__}" for c in defined if not issubclass(c, errors.TunewiseError)
    )
    assert not strays, f"exceptions outside the TunewiseError tree: {strays}"
    elsewhere = sorted(f"{c.__module__}.{c.__name__}" for c in defined if c.__module__ != "tunewise.errors")
    assert not elsewhere, f"define errors in tunewise.errors: {elsewhere}"


def test_old_import_paths_name_the_same_classes() -> None:
    from tunewise.data.loading import DataError
    from tunewise.models.build import ModelError
    from tunewise.recipes.schema import RecipeError
    from tunewise.training.freeze import FreezeError

    assert (DataError, ModelError, RecipeError, FreezeError) == (
        errors.DataError,
        errors.ModelError,
        errors.RecipeError,
        errors.FreezeError,
    )
    assert issubclass(errors.TunewiseError, ValueError)  # callers that caught ValueError still do


def test_a_freeze_plan_that_freezes_everything_is_one_clear_line(tmp_path: Path) -> None:
    data = write_csv(tmp_path / "sms.csv", make_messages(8))
    recipe = load_recipe("scratch").model_dump(mode="json", exclude_none=True)
    recipe |= {"name": "frozen-solid", "freeze": {"modules": ["all"]}, "epochs": 1}
    path = tmp_path / "frozen.yaml"
    path.write_text(yaml.safe_dump(recipe, allow_unicode=True), encoding="utf-8")
    out = tmp_path / "model"
    result = CliRunner().invoke(
        app, ["train", "--data", str(data), "--recipe", str(path), "--out", str(out), "--no-progress"]
    )
    assert result.exit_code == 2, result.output + repr(result.exception)
    assert "Traceback" not in result.output
    message = result.stderr
    assert "error" in message and "froze everything" in message
    assert "frozen-solid" in message and "stage" in message
    assert not (out / "model.safetensors").exists()
