"""The training loop: stage transitions, frozen weights stay put, checkpoint and resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from tunewise.data.prepare import prepare_data
from tunewise.models import build_model
from tunewise.recipes import parse_recipe
from tunewise.tracks.text import TextSplit, fit_classifier
from tunewise.training.checkpoint import latest_checkpoint, load_checkpoint

from .conftest import make_messages, write_csv


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


def _train_cmd(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "tunewise",
        "train",
        "--data",
        str(data),
        "--recipe",
        "scratch",
        "--out",
        str(out),
        "--epochs",
        "6",
        "--no-progress",
        "--seed",
        "1",
        *extra,
    ]


def test_killed_run_resumes_to_the_same_weights(tmp_path: Path) -> None:
    data = write_csv(tmp_path / "sms.csv", make_messages(200, seed=5))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # identical arithmetic in all three runs
    reference = tmp_path / "reference"
    subprocess.run(_train_cmd(data, reference), check=True, env=env, capture_output=True)

    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        _train_cmd(data, killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 120
    epoch = 0
    while time.time() < deadline and proc.poll() is None:
        try:
            # only the epoch, from state.json: reading the whole checkpoint while the live run
            # prunes it races (its weights can vanish between two files of one read)
            latest = latest_checkpoint(killed / "checkpoints")
            state = json.loads((latest / "state.json").read_text()) if latest is not None else None
            epoch = state["train"]["epoch"] if state else 0
        except FileNotFoundError:  # the live run pruned that checkpoint while we read it
            continue
        if epoch >= 2:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert 2 <= epoch < 6
    assert not (killed / "model.safetensors").exists()  # the run really did not finish

    # without --resume the finished epochs are protected, not overwritten
    refused = subprocess.run(_train_cmd(data, killed), env=env, capture_output=True, text=True)
    assert refused.returncode == 2 and "--resume" in refused.stderr

    resumed = subprocess.run(_train_cmd(data, killed, "--resume"), env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from" in resumed.stderr
    want, got = load_file(str(reference / "model.safetensors")), load_file(str(killed / "model.safetensors"))
    assert want.keys() == got.keys()
    for key in want:
        assert torch.equal(want[key], got[key]), key

    def without_timing(run: Path) -> list[dict]:
        return [
            {k: v for k, v in h.items() if k not in ("seconds", "train_seconds")}
            for h in json.loads((run / "history.json").read_text())
        ]

    assert without_timing(killed) == without_timing(reference)
    # the training time counts the epochs before the kill too, not only those after the resume
    history = json.loads((killed / "history.json").read_text())
    elapsed = load_checkpoint(latest_checkpoint(killed / "checkpoints")).state.elapsed_s
    assert elapsed >= sum(h["seconds"] for h in history)


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
