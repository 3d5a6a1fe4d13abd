"""The same tuning budget for every regime: early stopping that cannot end a run before it
learns, the learning-rate range test, the search scored on a slice of the run's own labels,
domain-adaptive pretraining as a recipe stage, and bootstrap intervals for gaps."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
from rich.console import Console
from sklearn.metrics import f1_score

from tunewise.compare.stats import macro_f1_weighted, paired_gap
from tunewise.compare.summary import verdict
from tunewise.data.loading import DataError, Example
from tunewise.data.prepare import split_off
from tunewise.recipes.schema import RecipeError, load_recipe, parse_recipe
from tunewise.training.checkpoint import TrainState
from tunewise.training.loop import should_stop, stage_patience, warmup_epochs
from tunewise.training.run import TrainOptions, carve_validation, train_model
from tunewise.tuning import (
    TuneSpec,
    lr_find,
    range_test,
    scale_lr,
    stretch,
    summarise_trials,
    tune_and_train,
)

from .conftest import make_messages, write_csv


def _quiet(**kw) -> dict:
    return {"show_progress": False, "log_with": None, **kw}


# --- early stopping ---------------------------------------------------------------------


def _state(best: float | None, waited: int, stage_epoch: int) -> TrainState:
    return TrainState(best_metric=best, epochs_without_improvement=waited, stage_epoch=stage_epoch)


def test_early_stopping_waits_until_the_majority_baseline_is_beaten():
    recipe = load_recipe("scratch")  # patience 5
    stage = recipe.resolved_stages()[0]
    # 10 epochs without progress, but the best score is the majority class's: keep going
    assert not should_stop(_state(0.158, 10, 12), stage, recipe, floor=0.158)
    assert should_stop(_state(0.40, 10, 12), stage, recipe, floor=0.158)
    assert not should_stop(_state(0.40, 4, 12), stage, recipe, floor=0.158)  # patience not used up


def test_patience_grows_with_the_stage_and_warm_up_epochs_do_not_count():
    recipe = load_recipe("finetune-small")
    head, full = recipe.resolved_stages()
    assert (stage_patience(recipe, head), stage_patience(recipe, full)) == (5, 5)
    long = stretch(recipe, 300)
    assert stage_patience(long, long.resolved_stages()[1]) == 48  # 0.2 x 240 epochs
    assert warmup_epochs(recipe, full) == 3  # 10% warm-up of 24 epochs
    assert warmup_epochs(load_recipe("scratch"), load_recipe("scratch").resolved_stages()[0]) == 0


def test_a_run_that_has_not_learned_is_not_stopped(tmp_path):
    """The collapse the old rule produced: with patience 1 a run whose dev score sits at the
    majority baseline was ended after two epochs. Now it runs every epoch it was given."""
    data = write_csv(tmp_path / "sms.csv", make_messages(30))
    recipe = load_recipe("scratch").with_epochs(6)
    recipe = recipe.model_copy(
        update={
            "optimizer": recipe.optimizer.model_copy(update={"lr": 1e-9}),  # cannot learn
            "scheduler": parse_recipe({"name": "x", "scheduler": {"name": "none"}}).scheduler,
            "early_stopping": recipe.early_stopping.model_copy(update={"patience": 1, "patience_ratio": 0}),
        }
    )
    outcome = train_model(TrainOptions(data=data, recipe=recipe, out=tmp_path / "m", **_quiet()))
    history = outcome.fit.history
    assert outcome.fit.epochs_run == 6, [h["dev_macro_f1"] for h in history]
    # and it never beat the majority baseline: that is why it was not stopped
    assert max(h["dev_macro_f1"] for h in history) <= 0.34


def test_split_off_never_takes_a_class_s_only_example():
    exs = [Example(str(i), "a", "x", i) for i in range(9)] + [Example("z", "b", "x", 99)]
    rest, held = split_off(exs, 0.5, seed=0)
    assert [e.label for e in rest].count("b") == 1 and not [e for e in held if e.label == "b"]
    assert len(held) == 4 and len(rest) == 6


# --- learning-rate range test -----------------------------------------------------------


def test_lr_find_puts_the_model_back_as_it_was():
    import torch

    from tunewise.models.build import build_model
    from tunewise.tracks.text import TextSplit, text_loaders
    from tunewise.training.loop import classification_task

    rows = make_messages(20)
    labels = sorted({lab for _, lab in rows})
    texts, ids = [t for t, _ in rows], [labels.index(lab) for _, lab in rows]
    recipe = load_recipe("finetune-small")  # two stages: the test trains what the last one trains
    built = build_model(recipe.model, labels, pretrained=None, train_texts=texts)
    before = {k: v.clone() for k, v in built.model.state_dict().items()}
    frozen_before = {n: p.requires_grad for n, p in built.model.named_parameters()}
    split = TextSplit(texts, ids)
    loader, _ = text_loaders(built.tokenizer, split, split, recipe)
    result = lr_find(built.model, loader, recipe, classification_task(ids, ids, recipe, labels), num_steps=15)
    after = built.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert {n: p.requires_grad for n, p in built.model.named_parameters()} == frozen_before
    assert result.lrs[0] == pytest.approx(1e-7) and len(result.lrs) <= 15
    assert result.notes and "batch" in result.notes[0]  # 60 texts are 4 batches, not 15


def test_range_test_on_real_data_leaves_nothing_trained(tmp_path):
    data = write_csv(tmp_path / "sms.csv", make_messages(30))
    opts = TrainOptions(data=data, recipe=load_recipe("scratch"), out=tmp_path / "unused", **_quiet())
    result = range_test(opts, num_steps=40)
    assert 1e-7 <= result.suggested_lr <= 1.0
    assert len(result.lrs) == len(result.losses) <= 40
    assert result.lrs == sorted(result.lrs)
    assert result.recipe_lr == pytest.approx(1e-3)
    assert not (tmp_path / "unused").exists()  # a range test writes no model
    png = result.plot(tmp_path / "lr.png")
    assert png.stat().st_size > 10_000


def test_cli_lr_find_writes_the_plot_and_the_figures(tmp_path):
    data = write_csv(tmp_path / "sms.csv", make_messages(20))
    out = tmp_path / "lrf"
    done = subprocess.run(
        [sys.executable, "-m", "tunewise", "lr-find", "--data", str(data), "--recipe", "scratch"]
        + ["--out", str(out), "--steps", "30"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout.strip().splitlines()[-1])
    assert printed["recipe_lr"] == pytest.approx(1e-3) and printed["suggested_lr"] > 0
    assert (out / "lr_find.png").is_file()
    assert json.loads((out / "lr_find.json").read_text())["suggested_lr"] == printed["suggested_lr"]


# --- the search -----------------------------------------------------------------------------


def test_scale_lr_keeps_the_ratios_between_parameter_groups():
    r = load_recipe("finetune-small")
    scaled = scale_lr(r, 3.0)
    assert scaled.optimizer.lr == pytest.approx(3e-3)
    assert scaled.param_groups[0].lr == pytest.approx(3e-3)
    assert scaled.layerwise_lr_decay == r.layerwise_lr_decay
    assert [s.lr_scale for s in scaled.stages] == [s.lr_scale for s in r.stages]


def test_tune_and_train_picks_the_best_candidate_on_the_validation_slice(tmp_path):
    data = write_csv(tmp_path / "sms.csv", make_messages(30))
    recipe = load_recipe("scratch").with_epochs(3)
    spec = TuneSpec(grid=(0.1, 3.0), min_steps=8, max_epochs_factor=2)
    out = tmp_path / "run"
    seen = []
    tuned = tune_and_train(
        TrainOptions(data=data, recipe=recipe, out=out, label_fraction=0.5, **_quiet()),
        spec,
        n_labelled=36,
        on_trial=seen.append,
    )
    assert [t.multiplier for t in tuned.trials] == [0.1, 3.0] == [t.multiplier for t in seen]
    best = max(tuned.trials, key=lambda t: t.key())
    assert tuned.chosen == best
    assert tuned.chosen.lr == pytest.approx(1e-3 * best.multiplier)
    # the budget: 30 texts train (2 per class of 36 validate) -> 1 batch per epoch -> 8 steps, capped at 2x3
    assert {t.epochs_budget for t in tuned.trials} == {6}
    # the chosen candidate is the run's model; the search's working directory is gone
    assert (out / "model.safetensors").is_file() and not out.with_name("run.tune").exists()
    split = json.loads((out / "split.json").read_text())
    assert len(split["validation"]) == 6 and not set(split["validation"]) & set(split["train"])
    assert json.loads((out / "tunewise.json").read_text())["dev"]["split"] == "validation"


# --- domain-adaptive pretraining as a recipe stage -----------------------------------------


def test_domain_adaptation_needs_a_pretrained_encoder():
    with pytest.raises(RecipeError, match="domain_adaptation continues a pretrained encoder"):
        parse_recipe({"name": "x", "model": {"init": "random"}, "domain_adaptation": {"epochs": 1}})


def test_a_dapt_recipe_adapts_the_encoder_once_and_reuses_it(tmp_path, tiny_bert_dir):
    data = write_csv(tmp_path / "sms.csv", make_messages(20))
    recipe = load_recipe("finetune-small-dapt").with_epochs(2)
    recipe = recipe.model_copy(update={"model": recipe.model.model_copy(update={"max_length": 64})})
    cache = tmp_path / "encoders"
    log = Console(file=io.StringIO(), width=200)

    def train(out: str, fraction: float):
        return train_model(
            TrainOptions(
                data=data,
                recipe=recipe,
                out=tmp_path / out,
                pretrained=str(tiny_bert_dir),
                label_fraction=fraction,
                encoder_cache=cache,
                **_quiet(),
            ),
            console=log,
        )

    first = train("a", 0.5)
    adapted = list(cache.glob("adapted-*"))
    assert len(adapted) == 1 and (adapted[0] / "model.safetensors").is_file()
    card = json.loads((adapted[0] / "pretraining.json").read_text())
    # every training text (48 of 60 after the split), whatever the labelled fraction
    assert card["train_documents"] + card["heldout_documents"] == 48
    assert json.loads((tmp_path / "a" / "tunewise.json").read_text())["weights_source"]
    second = train("b", 1.0)  # another fraction, same training split and seed: same encoder
    assert "domain-adapted encoder: reusing" in log.file.getvalue()
    assert len(list(cache.glob("adapted-*"))) == 1
    assert first.dev_metrics["macro_f1"] is not None and second.dev_metrics["macro_f1"] is not None


# --- bootstrap intervals and the verdict ------------------------------------------------------


def test_weighted_macro_f1_is_scikit_learn_s_with_unit_weights():
    rng = np.random.default_rng(0)
    gold = rng.integers(0, 4, 300)
    pred = np.where(rng.random(300) < 0.7, gold, rng.integers(0, 4, 300))
    ours = macro_f1_weighted(gold, pred, np.ones((1, 300)), 4)[0]
    assert ours == pytest.approx(f1_score(gold, pred, average="macro", labels=range(4), zero_division=0))


def test_paired_gap_calls_a_tie_only_when_the_interval_includes_zero():
    rng = np.random.default_rng(1)
    gold = rng.integers(0, 3, 400)

    def noisy(p: float, seed: int) -> np.ndarray:
        r = np.random.default_rng(seed)
        return np.where(r.random(400) < p, gold, r.integers(0, 3, 400))

    same = paired_gap(
        gold, [noisy(0.8, s) for s in range(3)], [noisy(0.8, s + 10) for s in range(3)], n_labels=3
    )
    assert same.tie and same.low < 0 < same.high
    apart = paired_gap(
        gold, [noisy(0.95, s) for s in range(3)], [noisy(0.6, s) for s in range(3)], n_labels=3
    )
    assert not apart.tie and apart.low > 10
    identical = paired_gap(gold, [gold], [gold], n_labels=3)
    assert (identical.points, identical.low, identical.high) == (0, 0, 0)


def test_the_verdict_calls_a_tie_when_the_interval_includes_zero():
    """Two recipes 2 points apart on average, well beyond the 1-point rule of thumb and the
    seed spread, but on 60 test messages the interval includes zero: a tie."""
    gold = [i % 2 for i in range(60)]
    rng = np.random.default_rng(3)
    runs = []
    for recipe, p in (("scratch", 0.80), ("finetune", 0.82)):
        for seed in range(3):
            pred = [g if rng.random() < p else 1 - g for g in gold]
            f1 = float(f1_score(gold, pred, average="macro"))
            runs.append(
                {
                    "recipe": recipe,
                    "fraction": 1.0,
                    "seed": seed,
                    "test_macro_f1": f1,
                    "train_size": 100,
                    "train_seconds": 1.0,
                    "test_predictions": pred,
                }
            )
    results = {
        "runs": runs,
        "recipes": {
            "scratch": load_recipe("scratch").model_dump(mode="json"),
            "finetune": load_recipe("finetune").model_dump(mode="json"),
        },
        "labels": ["normal", "fraud"],
        "test_labels": gold,
    }
    lines = verdict(results)
    assert any("within noise" in line and "[" in line for line in lines), lines
    assert any("a tie with" in line for line in lines), lines


def _interrupted_search(tmp_path) -> tuple[TrainOptions, TuneSpec, dict]:
    """A two-candidate search stopped after its first candidate: (options, spec, its trial)."""
    data = write_csv(tmp_path / "sms.csv", make_messages(20))
    recipe = load_recipe("scratch").with_epochs(2)
    spec = TuneSpec(grid=(0.5, 2.0), min_steps=2, max_epochs_factor=1)
    opts = TrainOptions(data=data, recipe=recipe, out=tmp_path / "run", **_quiet())

    def stop_after_first(trial):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        tune_and_train(opts, spec, n_labelled=48, on_trial=stop_after_first)
    finished = tmp_path / "run.tune" / "lr-x1_2" / "trial.json"  # x1/2
    return opts, spec, json.loads(finished.read_text())["trial"]


def test_an_interrupted_search_keeps_its_finished_candidates(tmp_path):
    opts, spec, first = _interrupted_search(tmp_path)
    assert not (tmp_path / "run").exists()  # nothing chosen yet
    tuned = tune_and_train(opts, spec, n_labelled=48)
    # the first candidate was not trained again: its figures are the ones saved before the stop
    assert tuned.trials[0].train_seconds == first["train_seconds"]
    assert [t.multiplier for t in tuned.trials] == [0.5, 2.0]
    assert (tmp_path / "run" / "model.safetensors").is_file()
    # killed after the search (while scoring test, say): the finished search is not run again
    log = io.StringIO()
    again = tune_and_train(opts, spec, n_labelled=48, console=Console(file=log, width=200))
    assert "the search finished before" in log.getvalue()
    assert again.chosen == tuned.chosen and again.trials == tuned.trials
    assert (again.fit.best_epoch, again.fit.best_metric) == (tuned.fit.best_epoch, tuned.fit.best_metric)


def test_a_diverging_candidate_is_ruled_out_and_the_search_goes_on(tmp_path):
    data = write_csv(tmp_path / "sms.csv", make_messages(20))
    recipe = load_recipe("scratch").with_epochs(2)
    # x1e35 of Adam's 1e-3: every weight is ~1e32 after one step and the next loss overflows
    spec = TuneSpec(grid=(1.0, 1e35), min_steps=2, max_epochs_factor=1)
    opts = TrainOptions(data=data, recipe=recipe, out=tmp_path / "run", **_quiet())
    tuned = tune_and_train(opts, spec, n_labelled=48)
    sane, wild = tuned.trials
    assert wild.diverged and "training loss became" in wild.diverged and wild.validation_score is None
    assert tuned.chosen == sane and (tmp_path / "run" / "model.safetensors").is_file()
    assert summarise_trials(tuned.trials).endswith("x1e+35 diverged")

    with pytest.raises(FloatingPointError, match="every candidate learning rate diverged"):
        tune_and_train(
            TrainOptions(data=data, recipe=recipe, out=tmp_path / "wild", **_quiet()),
            TuneSpec(grid=(1e35,), min_steps=2, max_epochs_factor=1),
            n_labelled=48,
        )


def test_a_search_resumed_with_other_settings_does_not_reuse_its_candidates(tmp_path):
    opts, spec, first = _interrupted_search(tmp_path)
    log = io.StringIO()
    tuned = tune_and_train(replace(opts, seed=1), spec, n_labelled=48, console=Console(file=log, width=200))
    assert "lr-x1_2: trained under other settings; training it again" in log.getvalue()
    assert tuned.trials[0].train_seconds != first["train_seconds"]


def test_a_validation_slice_that_cannot_rank_is_a_clear_error(tmp_path):
    one_each = [Example(f"t{i}", label, "x.csv", i + 2) for i, label in enumerate("abcde")]
    with pytest.raises(DataError, match="holds no class: a class needs at least 2 labelled examples"):
        carve_validation(one_each, 0.2, seed=0)
    two_of_a = one_each + [Example("t9", "a", "x.csv", 9)]
    with pytest.raises(DataError, match="holds only 'a'"):
        carve_validation(two_of_a, 0.2, seed=0)
    # through a training run: 1% of 60 training texts is one per class
    data = write_csv(tmp_path / "sms.csv", make_messages(20))
    opts = TrainOptions(
        data=data,
        recipe=load_recipe("scratch"),
        out=tmp_path / "run",
        label_fraction=0.01,
        validation=0.2,
        **_quiet(),
    )
    with pytest.raises(DataError, match="the validation slice"):
        train_model(opts, console=Console(file=io.StringIO()))
    assert not (tmp_path / "run").exists()
