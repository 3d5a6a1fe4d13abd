"""The training loop: stage transitions, frozen weights stay put, checkpoint and resume."""

from __future__ import annotations

from pathlib import Path

import torch

from tunewise.data.prepare import prepare_data
from tunewise.models import build_model
from tunewise.recipes import parse_recipe
from tunewise.tracks.text import TextSplit, fit_classifier
from tunewise.training.checkpoint import latest_checkpoint, load_checkpoint


def _splits(path: Path):
    data = prepare_data(path, seed=0)
    return (
        data,
        TextSplit(data.texts("train"), data.label_ids("train")),
        TextSplit(data.texts("dev"), data.label_ids("dev")),
    )


def test_stages_change_what_trains(tmp_path: Path, tiny_bert_dir: Path, sms_csv: Path) -> None:
    data, train, dev = _splits(sms_csv)
    recipe = parse_recipe(
        {
            "name": "two-stage",
            "model": {"init": "pretrained", "max_length": 64},
            "freeze": {"modules": ["backbone"]},
            "optimizer": {"name": "adamw", "lr": 1e-3},
            "stages": [
                {"name": "head", "epochs": 1, "trainable": "head"},
                {"name": "top", "epochs": 1, "unfreeze": ["bert.encoder.layer.1", "bert.pooler"], "lr": 1e-4},
            ],
            "batch_size": 16,
        }
    )
    built = build_model(recipe.model, data.labels, pretrained=str(tiny_bert_dir))
    before = {k: v.clone() for k, v in built.model.state_dict().items()}
    result = fit_classifier(
        built.model,
        built.tokenizer,
        train,
        dev,
        recipe,
        tmp_path,
        labels=data.labels,
        show_progress=False,
        log_with=None,
    )
    head = sum(p.numel() for n, p in built.model.named_parameters() if n.startswith("classifier"))
    top = sum(
        p.numel()
        for n, p in built.model.named_parameters()
        if n.startswith(("bert.encoder.layer.1.", "bert.pooler"))
    )
    assert [s["stage"] for s in result.stages] == ["head", "top"]
    assert result.stages[0]["trainable_params"] == head
    assert result.stages[1]["trainable_params"] == head + top
    assert [h["stage"] for h in result.history] == ["head", "top"]
    after = {k: v.cpu() for k, v in built.model.state_dict().items()}  # fit leaves it on its device
    # what was never unfrozen is bit-for-bit the pretrained weights
    for name in (
        "bert.embeddings.word_embeddings.weight",
        "bert.encoder.layer.0.attention.self.query.weight",
    ):
        assert torch.equal(before[name], after[name]), name
    assert not torch.equal(before["classifier.weight"], after["classifier.weight"])
    state = load_checkpoint(latest_checkpoint(tmp_path / "checkpoints")).state
    assert state.epoch == 2 and state.stage == 2


def test_a_flat_metric_with_falling_loss_is_progress() -> None:
    from tunewise.recipes import load_recipe
    from tunewise.training.checkpoint import TrainState
    from tunewise.training.loop import _improved

    recipe = load_recipe("finetune")  # early stopping, min_delta 0
    state = TrainState(best_metric=0.1582, best_loss=1.17)  # majority class only, so far
    assert _improved(state, 0.1582, 0.93, recipe)  # same F1, lower loss: still learning
    assert not _improved(state, 0.1582, 1.20, recipe)
    assert not _improved(state, 0.1500, 0.50, recipe)  # a worse metric is never better
    assert _improved(state, 0.2000, 5.00, recipe)
    assert _improved(TrainState(), 0.0, 9.9, recipe)  # the first epoch always is


class _Linear(torch.nn.Module):
    """A dropout-free classifier on fixed features: what the loop does to it is exact."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = torch.nn.Linear(6, 16)
        self.classifier = torch.nn.Linear(16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.relu(self.body(x)))


def _fixed_loaders(batch_size: int) -> tuple:
    from torch.utils.data import DataLoader

    g = torch.Generator().manual_seed(1)
    x = torch.randn(48, 6, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long()
    examples = [(i, x[i], int(y[i])) for i in range(len(x))]

    def collate(batch):
        return {
            "x": torch.stack([f for _, f, _ in batch]),
            "labels": torch.tensor([lab for _, _, lab in batch]),
            "index": torch.tensor([i for i, _, _ in batch]),
        }

    train = DataLoader(examples[:40], batch_size=batch_size, shuffle=False, collate_fn=collate)
    dev = DataLoader(examples[40:], batch_size=8, collate_fn=collate)
    return train, dev


def _fit_linear(tmp_path: Path, batch_size: int, **recipe_fields) -> torch.nn.Module:
    from tunewise.recipes import load_recipe
    from tunewise.training.loop import fit
    from tunewise.training.tasks import ClassificationTask

    recipe = load_recipe("scratch").with_epochs(3)
    recipe = recipe.model_copy(update={"early_stopping": None, **recipe_fields})
    model = _Linear()
    train, dev = _fixed_loaders(batch_size)
    task = ClassificationTask(torch.nn.CrossEntropyLoss(), ["a", "b"])
    fit(model, train, dev, recipe, tmp_path, task=task, show_progress=False, log_with=None)
    return model


def test_gradient_accumulation_equals_the_larger_batch(tmp_path: Path) -> None:
    # 4 + 4 examples accumulated into one step == one step on the 8 together
    big = _fit_linear(tmp_path / "big", 8)
    accumulated = _fit_linear(tmp_path / "acc", 4, gradient_accumulation_steps=2)
    small = _fit_linear(tmp_path / "small", 4)
    for (name, a), b, c in zip(
        big.state_dict().items(), accumulated.state_dict().values(), small.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
        assert not torch.allclose(a, c), name  # not a test that cannot fail: batch 4 alone differs


def test_bf16_mixed_precision_runs_the_forward_pass_in_bf16(tmp_path: Path) -> None:
    from tunewise.recipes import load_recipe

    seen: list[torch.dtype] = []
    original = _Linear.forward

    def recording(self, x):
        out = original(self, x)
        seen.append(out.dtype)
        return out

    _Linear.forward = recording
    try:
        model = _fit_linear(tmp_path / "bf16", 8, mixed_precision="bf16")
        _fit_linear(tmp_path / "fp32", 8)
    finally:
        _Linear.forward = original
    assert torch.bfloat16 in seen and torch.float32 in seen
    assert all(p.dtype == torch.float32 for p in model.parameters())  # master weights stay fp32
    assert load_recipe("scratch").model_copy(update={"mixed_precision": "bf16"}).to_yaml().count("bf16") == 1


def test_fp16_on_a_cpu_is_a_clear_error(tmp_path: Path) -> None:
    import pytest

    from tunewise.errors import RecipeError

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(RecipeError, match="fp16 needs a GPU.*bf16"):
        _fit_linear(tmp_path, 8, mixed_precision="fp16")
