"""Optimizers and schedulers from a recipe: parameter groups with their own learning rates,
layer-wise LR decay, and the schedules the note uses (ReduceLROnPlateau, warmup, one-cycle).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import nn
from transformers import get_linear_schedule_with_warmup

from tunewise.errors import FreezeError
from tunewise.recipes.schema import Recipe, StageSpec
from tunewise.training.freeze import expand_patterns, layer_groups, matches_module

# Biases and normalisation weights are not decayed (standard for transformers).
_NO_DECAY = re.compile(r"(bias|LayerNorm\.weight|layer_norm\.weight|norm\.weight)$")


@dataclass(frozen=True)
class GroupInfo:
    name: str
    lr: float
    weight_decay: float
    params: int


def build_param_groups(model: nn.Module, recipe: Recipe, stage: StageSpec) -> list[dict]:
    """Optimizer parameter groups for the *trainable* parameters of ``model``.

    Learning rate per parameter, first rule that applies:
    1. a ``param_groups`` entry whose module patterns match (its ``lr``/``lr_scale``): the
       stage's own entries when it has them, else the recipe's;
    2. otherwise the base LR, times ``layerwise_lr_decay ** depth`` when set, where depth
       counts layer groups down from the head (head 0, top block 1, …, embeddings last).
    Everything is then scaled by the stage's ``lr_scale`` (the stage's ``lr`` replaces the base).

    Example:
        >>> from tunewise.recipes import load_recipe
        >>> from tunewise.models import TextCNNConfig, TextCNNForSequenceClassification
        >>> m = TextCNNForSequenceClassification(TextCNNConfig(vocab_size=50))
        >>> r = load_recipe("scratch")
        >>> sorted({g["lr"] for g in build_param_groups(m, r, r.resolved_stages()[0])})
        [0.001]
    """
    base_lr = stage.lr if stage.lr is not None else recipe.optimizer.lr
    scale = stage.lr_scale
    specs = stage.param_groups if stage.param_groups is not None else recipe.param_groups
    explicit = [(expand_patterns(model, g.modules), g) for g in specs]
    depth_of: dict[str, int] = {}
    if recipe.layerwise_lr_decay is not None:
        groups = layer_groups(model)
        for depth, group in enumerate(reversed(groups)):
            for module_name in group:
                depth_of[module_name] = depth

    buckets: dict[tuple[str, float, float], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        wd = 0.0 if _NO_DECAY.search(name) else recipe.optimizer.weight_decay
        label, lr = "base", base_lr
        for patterns, spec in explicit:
            if any(matches_module(name, p) for p in patterns):
                label = ",".join(spec.modules)
                lr = spec.lr if spec.lr is not None else base_lr * (spec.lr_scale or 1.0)
                if spec.weight_decay is not None and wd > 0:
                    wd = spec.weight_decay
                break
        else:
            if depth_of:
                owner = next((m for m in depth_of if matches_module(name, m)), None)
                depth = depth_of[owner] if owner is not None else 0
                label = owner or "other"
                lr = base_lr * recipe.layerwise_lr_decay**depth
        buckets.setdefault((label, lr * scale, wd), []).append(param)
    if not buckets:
        raise FreezeError(
            f"recipe {recipe.name!r}, stage {stage.name!r}: no parameter is left trainable — the freeze "
            "plan froze everything; unfreeze something in this stage (e.g. `unfreeze: [head]`) or drop "
            "a `freeze` entry"
        )
    return [
        {"params": params, "lr": lr, "weight_decay": wd, "name": label}
        for (label, lr, wd), params in buckets.items()
    ]


def describe_groups(groups: list[dict]) -> list[GroupInfo]:
    return [
        GroupInfo(g["name"], g["lr"], g["weight_decay"], sum(p.numel() for p in g["params"])) for g in groups
    ]


def build_optimizer(recipe: Recipe, groups: list[dict]) -> torch.optim.Optimizer:
    """The recipe's optimizer over ``groups`` (each group keeps its own lr/weight decay)."""
    if not groups:
        raise FreezeError("no trainable parameters: the freeze plan froze everything")
    spec = recipe.optimizer
    if spec.name == "adam":
        return torch.optim.Adam(groups, lr=spec.lr, betas=spec.betas, eps=spec.eps, amsgrad=spec.amsgrad)
    if spec.name == "adamw":
        return torch.optim.AdamW(groups, lr=spec.lr, betas=spec.betas, eps=spec.eps, amsgrad=spec.amsgrad)
    return torch.optim.SGD(groups, lr=spec.lr, momentum=spec.momentum)


@dataclass
class Schedule:
    """A scheduler and when to step it: after each batch, or after each epoch with the
    dev metric (ReduceLROnPlateau)."""

    scheduler: object | None
    per: str  # "batch", "epoch" or "never"

    def state_dict(self) -> dict:
        return self.scheduler.state_dict() if self.scheduler is not None else {}

    def load_state_dict(self, state: dict) -> None:
        if self.scheduler is not None and state:
            self.scheduler.load_state_dict(state)


def build_scheduler(
    recipe: Recipe, optimizer: torch.optim.Optimizer, steps_per_epoch: int, epochs: int
) -> Schedule:
    """The recipe's schedule for one stage of ``epochs`` epochs."""
    spec = recipe.scheduler
    total = max(1, steps_per_epoch * epochs)
    if spec.name == "plateau":
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode=spec.mode, factor=spec.factor, patience=spec.patience, min_lr=spec.min_lr
        )
        return Schedule(sched, "epoch")
    if spec.name == "linear_warmup":
        warmup = int(round(total * spec.warmup_ratio))
        return Schedule(get_linear_schedule_with_warmup(optimizer, warmup, total), "batch")
    if spec.name == "onecycle":
        max_lrs = [g["lr"] for g in optimizer.param_groups]
        sched = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=max_lrs, total_steps=total, pct_start=spec.pct_start
        )
        return Schedule(sched, "batch")
    return Schedule(None, "never")
