"""Recipe validation: built-ins, YAML files, and errors that name the bad field."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunewise.recipes import RecipeError, builtin_recipes, load_recipe, parse_recipe


def test_builtins_encode_the_design_table() -> None:
    assert {"scratch", "finetune", "scratch-transformer"} <= set(builtin_recipes())
    scratch, finetune = load_recipe("scratch"), load_recipe("finetune")
    assert (scratch.model.init, finetune.model.init) == ("random", "pretrained")
    assert scratch.freeze.modules == [] and finetune.freeze.modules == ["backbone"]
    assert scratch.optimizer.name == "adam" and scratch.optimizer.lr == 1e-3
    assert scratch.scheduler.name == "plateau" and not scratch.param_groups
    assert finetune.optimizer.lr <= 1e-4 and finetune.param_groups and finetune.layerwise_lr_decay
    assert [s.trainable for s in finetune.stages] == ["head", "all"]
    assert scratch.total_epochs() >= 30 > 20 >= finetune.total_epochs() >= 5
    assert (scratch.augmentation, finetune.augmentation) == ("strong", "mild")


def test_yaml_recipe_file_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(load_recipe("finetune").to_yaml(), encoding="utf-8")
    assert load_recipe(path) == load_recipe("finetune")
    path.write_text(
        "model: {init: pretrained, head: {type: mlp, hidden_size: 64, dropout: 0.5}}\n"
        "optimizer: {name: sgd, lr: 0.01, momentum: 0.8}\n"
        "scheduler: {name: onecycle}\n"
        "stages:\n  - {name: head, epochs: 2, freeze_to: -1}\n  - {name: top, epochs: 1, unfreeze: ['bert.encoder.layer.1'], lr: 1.0e-5}\n"
        "loss: {type: focal, gamma: 1.5, class_weight: balanced}\n",
        encoding="utf-8",
    )
    r = load_recipe(path)
    assert r.name == "mine" and r.model.head.type == "mlp" and r.total_epochs() == 3
    assert r.stages[1].lr == 1e-5 and r.loss.type == "focal"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"optimizer": {"name": "adam", "learning_rate": 0.1}},
            "optimizer.learning_rate: Extra inputs are not permitted",
        ),
        ({"optimizer": {"name": "rmsprop"}}, "optimizer.name: Input should be 'adam', 'adamw' or 'sgd'"),
        ({"optimizer": {"lr": -1}}, "optimizer.lr: Input should be greater than 0"),
        (
            {"scheduler": {"name": "plateau", "factor": 2}},
            "scheduler.plateau.factor: Input should be less than 1",
        ),
        ({"scheduler": {"name": "cosine"}}, "scheduler: Input tag 'cosine' found"),
        ({"stages": [{"name": "a"}]}, "stages.0.epochs: Field required"),
        ({"epochs": 3, "stages": [{"name": "a", "epochs": 1}]}, "the stages add up to 1"),
        ({"model": {"init": "pretrained", "architecture": "textcnn"}}, "textcnn' has no pretrained weights"),
        ({"augmentation": "extreme"}, "augmentation: Input should be 'none', 'mild' or 'strong'"),
    ],
)
def test_invalid_recipes_say_which_field(raw: dict, message: str) -> None:
    with pytest.raises(RecipeError) as info:
        parse_recipe({"name": "bad", **raw}, source="bad.yaml")
    assert str(info.value).startswith("bad.yaml: invalid recipe")
    assert message in str(info.value)


def test_unknown_recipe_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="not a built-in"):
        load_recipe("nope")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed", encoding="utf-8")
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(bad)


def test_with_epochs_keeps_stage_shares() -> None:
    r = load_recipe("finetune")  # head 1 + full 4
    assert [s.epochs for s in r.with_epochs(10).stages] == [2, 8]
    assert [s.epochs for s in r.with_epochs(2).stages] == [1, 1]
    assert load_recipe("scratch").with_epochs(3).total_epochs() == 3
    with pytest.raises(RecipeError, match="2 stages"):
        r.with_epochs(1)
