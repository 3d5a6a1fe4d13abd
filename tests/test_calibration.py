"""Temperature scaling: fitted on dev after training, stored with the model, applied everywhere."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from tunewise.calibration import (
    CALIBRATION_FILE,
    expected_calibration_error,
    fit_temperature,
    load_calibration,
    softmax,
)
from tunewise.errors import DataError
from tunewise.inference import Predictor
from tunewise.models.build import ModelError


def _overconfident(n: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits of a model right 80% of the time but always ~99.9% sure."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    guess = np.where(rng.random(n) < 0.8, y, (y + rng.integers(1, 3, n)) % 3)
    logits = rng.normal(0, 0.3, (n, 3))
    logits[np.arange(n), guess] += 7.0
    return logits, y


def test_temperature_scaling_fixes_overconfidence_without_changing_a_decision():
    logits, y = _overconfident()
    c = fit_temperature(logits, y)
    assert c.temperature > 2 and c.nll_after < c.nll_before and c.ece_after < c.ece_before / 3
    assert (softmax(logits, c.temperature).argmax(1) == softmax(logits).argmax(1)).all()
    # a held-out draw from the same model is calibrated too
    held_logits, held_y = _overconfident(seed=1)
    assert expected_calibration_error(softmax(held_logits, c.temperature), held_y) < 0.05
    assert expected_calibration_error(softmax(held_logits), held_y) > 0.15
    with pytest.raises(DataError, match="no examples"):
        fit_temperature(np.zeros((0, 2)), np.zeros(0))


def test_ece_of_a_perfectly_calibrated_bin_is_zero():
    probs = np.array([[0.75, 0.25]] * 4)
    assert expected_calibration_error(probs, np.array([0, 0, 0, 1])) == pytest.approx(0.0)
    assert expected_calibration_error(probs, np.array([1, 1, 1, 1])) == pytest.approx(0.75)


@pytest.fixture(scope="module")
def calibrated(scratch_model, tmp_path_factory):
    _, model = scratch_model
    copy = tmp_path_factory.mktemp("cal") / "model"
    shutil.copytree(model, copy)
    return copy


def test_training_stores_a_calibration_that_prediction_applies(calibrated):
    stored = load_calibration(calibrated)
    assert stored is not None and stored.split == "dev" and stored.n > 0 and stored.temperature > 0
    text = ["我是公安局民警，请把钱转入安全账户"]
    applied = Predictor(calibrated)
    raw = Predictor(calibrated, calibrated=False)
    assert applied.temperature == stored.temperature and raw.temperature == 1.0
    logits, encoded = raw.piece_logits(text)
    expected = softmax(logits, stored.temperature)[0]
    got = applied.predict(text)[0]
    assert [got.probabilities[lab] for lab in applied.labels] == pytest.approx(list(expected))
    assert got.label == raw.predict(text)[0].label  # calibration never changes the decision


def test_evaluate_reports_calibration(calibrated, scratch_model):
    from tunewise.evaluation import evaluate_model

    data, _ = scratch_model
    metrics = evaluate_model(calibrated, data, calibrated / "eval")
    cal = metrics["calibration"]
    assert cal["temperature"] == load_calibration(calibrated).temperature
    assert 0 <= cal["ece"] <= 1 and 0 <= cal["ece_uncalibrated"] <= 1


def test_a_broken_calibration_file_is_a_clear_error(calibrated, tmp_path):
    broken = tmp_path / "model"
    shutil.copytree(calibrated, broken)
    (broken / CALIBRATION_FILE).write_text(json.dumps({"temperature": -1}), encoding="utf-8")
    with pytest.raises(ModelError, match="calibration"):
        Predictor(broken)
    (broken / CALIBRATION_FILE).write_text("{not json", encoding="utf-8")
    with pytest.raises(ModelError, match="calibration"):
        Predictor(broken)
