"""Fraud score = 1 - P(normal), and a threshold chosen on held-out data for a target precision."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tunewise.cli import app
from tunewise.errors import DataError
from tunewise.inference import Predictor
from tunewise.threshold import THRESHOLD_FILE, choose_threshold, find_normal_label, load_threshold

from .conftest import make_messages, write_csv


def test_choose_threshold_maximises_recall_at_the_target_precision():
    rng = np.random.default_rng(0)
    truth = rng.random(2000) < 0.3
    scores = np.clip(truth * 0.35 + rng.random(2000) * 0.65, 0, 1)
    for target in (0.8, 0.9, 0.99):
        c = choose_threshold(scores, truth, target)
        flagged = scores >= c.threshold
        assert flagged.sum() == c.flagged and truth[flagged].mean() == pytest.approx(c.precision)
        assert c.precision >= target
        lower = scores[scores < c.threshold].max()  # the next cut down misses the target
        assert truth[scores >= lower].mean() < target
        assert c.recall == pytest.approx(truth[flagged].sum() / truth.sum())


def test_ties_are_flagged_together_and_impossible_targets_say_so():
    scores = np.array([0.9, 0.7, 0.7, 0.2])
    truth = np.array([1, 1, 0, 0])
    assert choose_threshold(scores, truth, 0.6).threshold == 0.7  # 2 of 3 at 0.7 and above
    assert choose_threshold(scores, truth, 0.7).threshold == 0.9  # cannot split the tie
    with pytest.raises(DataError, match="no fraud messages"):
        choose_threshold(scores, np.zeros(4), 0.9)
    with pytest.raises(DataError, match=r"best: 0\.5"):
        choose_threshold(np.array([0.5, 0.5]), np.array([1, 0]), 0.9)
    with pytest.raises(DataError, match="must be in"):
        choose_threshold(scores, truth, 1.5)
    assert find_normal_label(["fraud", "正常"]) == "正常" and find_normal_label(["spam", "x"]) is None


@pytest.fixture(scope="module")
def trained(scratch_model, tmp_path_factory) -> tuple[Path, Path]:
    data, model = scratch_model
    copy = tmp_path_factory.mktemp("threshold") / "model"
    shutil.copytree(model, copy)  # threshold.json is written into it
    return data, copy


def test_threshold_command_saves_and_predict_uses_it(trained, tmp_path):
    data, model = trained
    runner = CliRunner()
    result = runner.invoke(
        app, ["threshold", "--model", str(model), "--data", str(data), "--target-precision", "0.9"]
    )
    assert result.exit_code == 0, result.output
    choice = load_threshold(model)
    assert choice is not None and choice.precision >= 0.9 and "dev" in choice.selection
    assert json.loads(result.stdout)["threshold"] == choice.threshold

    predictor = Predictor(model)
    assert predictor.threshold == choice.threshold
    (p,) = predictor.predict(["我是北京市公安局民警，你的身份证涉嫌洗钱，请把钱转入安全账户"])
    assert p.fraud_score == pytest.approx(1 - p.probabilities["normal"])
    assert p.flagged == (p.fraud_score >= choice.threshold)

    one = runner.invoke(
        app, ["predict", "--model", str(model), "--text", "您的验证码是123456", "--threshold", "0.999"]
    )
    assert one.exit_code == 0 and json.loads(one.stdout)["flagged"] is False

    source = write_csv(tmp_path / "in.csv", make_messages(3, seed=5))
    out = tmp_path / "out.csv"
    result = runner.invoke(
        app, ["predict", "--model", str(model), "--input", str(source), "--output", str(out)]
    )
    assert result.exit_code == 0, result.output
    with out.open(encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {"fraud_score", "flagged"} <= set(rows[0])
    for row in rows:
        assert (float(row["fraud_score"]) >= choice.threshold) == (row["flagged"] == "1")


def test_threshold_errors(trained, tmp_path):
    data, model = trained
    runner = CliRunner()
    only_normal = write_csv(
        tmp_path / "normal.csv", [(t, lab) for t, lab in make_messages(5, seed=7) if lab == "normal"]
    )
    result = runner.invoke(
        app, ["threshold", "--model", str(model), "--data", str(only_normal), "--target-precision", "0.9"]
    )
    assert result.exit_code == 2 and "no fraud messages" in result.stderr
    bad = runner.invoke(
        app, ["threshold", "--model", str(model), "--data", str(data), "--target-precision", "2"]
    )
    assert bad.exit_code == 2 and "must be in" in bad.stderr
    split = runner.invoke(
        app,
        [
            "threshold",
            "--model",
            str(model),
            "--data",
            str(data),
            "--target-precision",
            "0.9",
            "--split",
            "x",
        ],
    )
    assert split.exit_code == 2 and "--split must be" in split.stderr
    assert not (model / THRESHOLD_FILE).exists() or load_threshold(model) is not None


@pytest.fixture(scope="module")
def unnamed_normal(tmp_path_factory) -> tuple[Path, Path]:
    """A model trained on labels as telecom_fraud_5 publishes them: the normal class is `0`."""
    from tunewise.recipes import load_recipe
    from tunewise.training.run import TrainOptions, train_model

    rows = [("0" if lab == "normal" else lab, t) for t, lab in make_messages(30, seed=3)]
    data = write_csv(tmp_path_factory.mktemp("unnamed") / "sms.csv", [(t, lab) for lab, t in rows])
    out = tmp_path_factory.mktemp("unnamed-model")
    recipe = load_recipe("scratch").with_epochs(1)
    train_model(TrainOptions(data=data, recipe=recipe, out=out, show_progress=False, log_with=None))
    return data, out


def _predict_file(model: Path, tmp_path: Path, *extra: str) -> list[dict]:
    source = write_csv(tmp_path / "in.csv", make_messages(2, seed=9))
    out = tmp_path / "out.csv"
    args = ["predict", "--model", str(model), "--input", str(source), "--output", str(out), *extra]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    with out.open(encoding="utf-8-sig", newline="") as f:
        return list(csv.DictReader(f))


def test_predict_output_without_a_recognisable_normal_class(unnamed_normal, tmp_path):
    """Labels `0`, `police`, `loan`: no fraud score column unless --normal-label names the class
    (this crashed with a TypeError while writing the file)."""
    _, model = unnamed_normal
    rows = _predict_file(model, tmp_path)
    assert rows and "fraud_score" not in rows[0] and {"p_0", "p_police", "p_loan"} <= set(rows[0])
    named = _predict_file(model, tmp_path, "--normal-label", "0")
    for row in named:
        assert float(row["fraud_score"]) == pytest.approx(1 - float(row["p_0"]), abs=2e-6)
    bad = CliRunner().invoke(app, ["predict", "--model", str(model), "--text", "你好", "--normal-label", "x"])
    assert bad.exit_code == 2 and "--normal-label 'x' is not one of the labels" in bad.stderr
    # the threshold command needs one, says so, and records the one it was given
    data, _ = unnamed_normal
    args = ["threshold", "--model", str(model), "--data", str(data), "--target-precision", "0.5"]
    refused = CliRunner().invoke(app, args)
    assert refused.exit_code == 2 and "--normal-label" in refused.stderr


def test_predict_output_with_a_normal_class(trained, tmp_path):
    _, model = trained
    rows = _predict_file(model, tmp_path, "--threshold", "0.5")
    assert rows and {"fraud_score", "flagged"} <= set(rows[0])
    for row in rows:
        assert float(row["fraud_score"]) == pytest.approx(1 - float(row["p_normal"]), abs=2e-6)


def test_normal_label_named_at_training_is_recorded(tmp_path):
    from tunewise.recipes import load_recipe
    from tunewise.training.run import TrainOptions, train_model

    rows = [(t, "ok" if lab == "normal" else lab) for t, lab in make_messages(20, seed=4)]
    data = write_csv(tmp_path / "sms.csv", rows)
    recipe = load_recipe("scratch").with_epochs(1)
    out = tmp_path / "m"
    opts = TrainOptions(
        data=data, recipe=recipe, out=out, show_progress=False, log_with=None, normal_label="ok"
    )
    train_model(opts)
    assert json.loads((out / "tunewise.json").read_text(encoding="utf-8"))["normal_label"] == "ok"
    (p,) = Predictor(out).predict(["您的验证码是123456"])
    assert p.fraud_score == pytest.approx(1 - p.probabilities["ok"])
    from tunewise.data.loading import DataError

    with pytest.raises(DataError, match="not one of the labels"):
        train_model(TrainOptions(data=data, recipe=recipe, out=tmp_path / "m2", normal_label="nope"))
