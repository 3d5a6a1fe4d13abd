"""Background negatives: general text added to the training split only, as the normal class."""

from __future__ import annotations

import json

import pytest

from tunewise.data.background import SOURCE, background_texts
from tunewise.errors import DataError
from tunewise.recipes import load_recipe
from tunewise.training.run import TrainOptions, train_model

from .conftest import make_messages, write_csv


def test_background_texts_are_reproducible_distinct_sentences():
    a, b = background_texts(50, seed=1), background_texts(50, seed=1)
    assert a == b and len(set(a)) == 50 and a != background_texts(50, seed=2)
    assert all(8 <= len(t) <= 120 for t in a)
    with pytest.raises(DataError, match="the corpus has"):
        background_texts(10**9)


def test_training_with_background_adds_it_to_train_only(tmp_path):
    data = write_csv(tmp_path / "sms.csv", make_messages(20, seed=6))
    recipe = load_recipe("scratch").with_epochs(1)
    out = tmp_path / "m"
    outcome = train_model(
        TrainOptions(data=data, recipe=recipe, out=out, background=0.5, show_progress=False, log_with=None)
    )
    train = outcome.data.splits["train"]
    added = [e for e in train if e.source == SOURCE]
    labelled = len(train) - len(added)
    assert len(added) == round(0.5 * labelled) and {e.label for e in added} == {"normal"}
    assert not any(e.source == SOURCE for s in ("dev", "test") for e in outcome.data.splits[s])
    split = json.loads((out / "split.json").read_text(encoding="utf-8"))
    assert len(split["train"]) == len(train) and len(split["dev"]) == len(outcome.data.splits["dev"])


def test_background_needs_a_normal_class(tmp_path):
    from tunewise.data.loading import DataError

    rows = [(t, "a" if lab == "normal" else lab) for t, lab in make_messages(10, seed=7)]
    data = write_csv(tmp_path / "sms.csv", rows)
    recipe = load_recipe("scratch").with_epochs(1)
    with pytest.raises(DataError, match="--normal-label"):
        train_model(TrainOptions(data=data, recipe=recipe, out=tmp_path / "m", background=0.5))
