"""Freeze plans, layer groups, parameter groups (LR per group, layer-wise decay), schedulers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from tunewise.models import TextCNNConfig, TextCNNForSequenceClassification, build_model
from tunewise.recipes import load_recipe, parse_recipe
from tunewise.training.freeze import (
    FreezeError,
    freeze,
    freeze_to,
    layer_groups,
    set_frozen_batchnorm_eval,
    trainable_summary,
    unfreeze,
)
from tunewise.training.loop import apply_initial_freeze, apply_stage
from tunewise.training.optim import build_optimizer, build_param_groups, build_scheduler


def trainable(model: nn.Module) -> set[str]:
    return {n.rsplit(".", 1)[0] for n, p in model.named_parameters() if p.requires_grad}


@pytest.fixture
def bert(tiny_bert_dir: Path):
    return build_model(load_recipe("finetune").model, ["a", "b", "c"], pretrained=str(tiny_bert_dir)).model


def test_layer_groups_of_a_bert(bert) -> None:
    assert layer_groups(bert) == [
        ["bert.embeddings"],
        ["bert.encoder.layer.0"],
        ["bert.encoder.layer.1", "bert.pooler"],
        ["classifier"],
    ]


def test_finetune_plan_trains_head_then_everything(bert) -> None:
    recipe = load_recipe("finetune")
    apply_initial_freeze(bert, recipe)
    assert trainable(bert) == {"classifier"}  # the backbone is frozen before stage 1
    head, full = recipe.resolved_stages()
    apply_stage(bert, head)
    assert trainable(bert) == {"classifier"}
    groups = build_param_groups(bert, recipe, head)
    assert {g["name"] for g in groups} == {"head"} and {g["lr"] for g in groups} == {1e-3}
    optimizer = build_optimizer(recipe, groups)
    assert sum(len(g["params"]) for g in optimizer.param_groups) == 2  # only the head's weight and bias

    apply_stage(bert, full)
    n_train, n_total = trainable_summary(bert)
    assert n_train == n_total
    lrs = {g["name"]: g["lr"] for g in build_param_groups(bert, recipe, full)}
    base = recipe.optimizer.lr * full.lr_scale
    decay = recipe.layerwise_lr_decay
    assert lrs["head"] == pytest.approx(1e-3 * full.lr_scale)  # explicit group, scaled by the stage
    assert lrs["bert.encoder.layer.1"] == pytest.approx(base * decay)
    assert lrs["bert.encoder.layer.0"] == pytest.approx(base * decay**2)
    assert lrs["bert.embeddings"] == pytest.approx(base * decay**3)


def test_no_weight_decay_on_bias_and_layernorm(bert) -> None:
    recipe = load_recipe("finetune")
    unfreeze(bert)
    for group in build_param_groups(bert, recipe, recipe.resolved_stages()[1]):
        names = {n for n, p in bert.named_parameters() if any(p is q for q in group["params"])}
        if group["weight_decay"] == 0:
            assert all(n.endswith(("bias", "LayerNorm.weight")) for n in names)
        else:
            assert not any(n.endswith("bias") for n in names)


def test_patterns_first_n_groups_and_freeze_to(bert) -> None:
    freeze(bert, ["bert.encoder.layer.[0]", "bert.embeddings"])
    assert "bert.encoder.layer.0.attention.self.query" not in trainable(bert)
    assert "bert.encoder.layer.1.attention.self.query" in trainable(bert)
    recipe = parse_recipe({"name": "n", "freeze": {"first_n_groups": 2}})
    apply_initial_freeze(bert, recipe)
    frozen = {n for n, p in bert.named_parameters() if not p.requires_grad}
    assert all(n.startswith(("bert.embeddings", "bert.encoder.layer.0.")) for n in frozen) and frozen
    freeze_to(bert, -1)
    assert trainable(bert) == {"classifier"}
    freeze_to(bert, 0)
    assert trainable_summary(bert)[0] == trainable_summary(bert)[1]
    with pytest.raises(FreezeError, match="matches no parameters.*top-level modules are"):
        freeze(bert, ["bert.decoder"])
    with pytest.raises(FreezeError, match="4 layer groups"):
        freeze_to(bert, 9)


def test_frozen_batchnorm_stays_in_eval_mode() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    model.classifier = nn.Linear(4, 2)
    freeze(model, ["1"])
    before = model[1].running_mean.clone()
    model.train()
    set_frozen_batchnorm_eval(model)
    assert not model[1].training and model[0].training
    model[1](torch.randn(8, 4) + 5)
    assert torch.equal(model[1].running_mean, before)


def test_schedulers_step_as_configured() -> None:
    model = TextCNNForSequenceClassification(TextCNNConfig(vocab_size=30, num_labels=2))
    for spec, per in (
        ({"name": "plateau", "patience": 0, "factor": 0.5}, "epoch"),
        ({"name": "linear_warmup", "warmup_ratio": 0.5}, "batch"),
        ({"name": "onecycle"}, "batch"),
        ({"name": "none"}, "never"),
    ):
        recipe = parse_recipe({"name": "s", "scheduler": spec, "optimizer": {"name": "adam", "lr": 0.1}})
        opt = build_optimizer(recipe, build_param_groups(model, recipe, recipe.resolved_stages()[0]))
        schedule = build_scheduler(recipe, opt, steps_per_epoch=4, epochs=2)
        assert schedule.per == per
        if per == "epoch":
            schedule.scheduler.step(0.5)
            schedule.scheduler.step(0.5)
            assert opt.param_groups[0]["lr"] == pytest.approx(0.05)
        if spec["name"] == "linear_warmup":
            assert opt.param_groups[0]["lr"] == 0  # warmup starts from zero
            for _ in range(4):
                opt.step()
                schedule.scheduler.step()
            assert opt.param_groups[0]["lr"] == pytest.approx(0.1)
