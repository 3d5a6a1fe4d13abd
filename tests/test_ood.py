"""Out-of-domain test sets: binary figures from the fraud score, per-label flag rates, and the
--test-data option of evaluate and threshold."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score
from typer.testing import CliRunner

from tunewise.cli import app
from tunewise.data.loading import DataError
from tunewise.ood import TestSet, fraud_truth, recall_at_precision, score_test_set

from .conftest import make_messages, write_csv


def test_binary_figures_match_scikit_learn():
    rng = np.random.default_rng(0)
    labels = list(rng.choice(["normal", "police", "advertising"], size=300))
    is_fraud = np.array([lab == "police" for lab in labels])
    scores = np.clip(is_fraud * 0.3 + rng.random(300) * 0.7, 0, 1)
    s = score_test_set(
        "x",
        labels,
        scores,
        scores >= 0.6,
        model_labels=["normal", "police"],
        normal_label="normal",
        threshold=0.6,
    )
    assert s["roc_auc"] == pytest.approx(roc_auc_score(is_fraud, scores))
    assert s["pr_auc"] == pytest.approx(average_precision_score(is_fraud, scores))
    assert s["false_positive_rate"] == pytest.approx((scores[~is_fraud] >= 0.6).mean())
    assert s["recall"] == pytest.approx((scores[is_fraud] >= 0.6).mean())
    ads = np.array([lab == "advertising" for lab in labels])
    assert s["per_label"]["advertising"]["flagged_rate"] == pytest.approx((scores[ads] >= 0.6).mean())
    assert s["threshold_source"] == "model"
    # recall at a precision: the best threshold that reaches it, checked by brute force
    for target in (0.8, 0.9):
        best = 0.0
        for t in np.unique(scores):
            flagged = scores >= t
            if is_fraud[flagged].mean() >= target:
                best = max(best, is_fraud[flagged].sum() / is_fraud.sum())
        assert s["recall_at_precision"][f"{target:g}"] == pytest.approx(best)
    assert recall_at_precision(np.array([0.9, 0.1]), np.array([0, 1]), 0.8) == 0.0


def test_a_set_of_legitimate_messages_only_reports_the_false_positive_rate():
    s = score_test_set(
        "spam",
        ["advertising", "normal", "normal", "advertising"],
        np.array([0.9, 0.2, 0.7, 0.1]),
        np.array([True, False, True, False]),
        model_labels=["fraud", "normal"],
        normal_label="normal",
        threshold=None,
    )
    assert "roc_auc" not in s and s["recall"] is None
    assert s["false_positive_rate"] == 0.5 and s["threshold"] == 0.5
    assert s["headline"] == 0.5 and s["headline_metric"].startswith("share of legitimate")
    assert s["per_label"]["advertising"] == {"n": 2, "fraud": False, "flagged": 1, "flagged_rate": 0.5}


def test_labels_are_read_as_fraud_or_not_or_refused():
    truth = fraud_truth(["0", "冒充客服服务", "广告", "scam"], ["0", "冒充客服服务"], "0")
    assert truth == {"0": False, "冒充客服服务": True, "广告": False, "scam": True}
    with pytest.raises(DataError, match="'weather'.*--label-map"):
        fraud_truth(["weather"], ["normal", "fraud"], "normal")
    with pytest.raises(DataError, match="NAME=PATH"):
        TestSet.parse("=x")
    with pytest.raises(DataError, match="does not exist"):
        TestSet.parse("a=/no/such/file.csv")


@pytest.fixture(scope="module")
def model(scratch_model, tmp_path_factory) -> tuple[Path, Path]:
    data, source = scratch_model
    copy = tmp_path_factory.mktemp("ood") / "model"
    shutil.copytree(source, copy)  # evaluate and threshold write into it
    return data, copy


@pytest.fixture(scope="module")
def extra_sets(tmp_path_factory) -> tuple[Path, Path]:
    """(same taxonomy as the model, a set of legitimate messages only)."""
    root = tmp_path_factory.mktemp("sets")
    same = write_csv(root / "same.csv", make_messages(6, seed=21))
    legit = write_csv(
        root / "legit.csv",
        [(t, "normal") for t, lab in make_messages(6, seed=22) if lab == "normal"]
        + [("【链家】学区房急售，三室两厅，业主诚心出售，电话138-0000-1234，回T退订", "advertising")],
    )
    return same, legit


def test_evaluate_scores_every_test_set(model, extra_sets, tmp_path):
    data, directory = model
    same, legit = extra_sets
    args = ["evaluate", "--model", str(directory), "--data", str(data), "--out", str(tmp_path)]
    args += ["--test-data", f"same={same}", "--test-data", f"legit={legit}"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["split"] == "test" and set(metrics["test_sets"]) == {"same", "legit"}
    s = metrics["test_sets"]["same"]
    assert s["n"] == 18 and "roc_auc" in s and 0 <= s["macro_f1"] <= 1  # its labels are the model's
    # the fraud score's calibration error out of domain, with and without temperature scaling
    assert 0 <= s["fraud_score_ece"] <= 1 and 0 <= s["fraud_score_ece_uncalibrated"] <= 1
    legit_summary = metrics["test_sets"]["legit"]
    assert legit_summary["fraud"] == 0 and set(legit_summary["per_label"]) == {"normal", "advertising"}
    assert "same (n=18): ROC-AUC" in result.stderr and "legit (n=7)" in result.stderr

    # the extra sets alone, without --data
    alone = CliRunner().invoke(app, ["evaluate", "--model", str(directory), "--test-data", f"legit={legit}"])
    assert alone.exit_code == 0, alone.output
    assert set(json.loads(alone.stdout)["test_sets"]) == {"legit"}
    nothing = CliRunner().invoke(app, ["evaluate", "--model", str(directory)])
    assert nothing.exit_code == 2 and "--test-data" in nothing.stderr
    twice = CliRunner().invoke(
        app, ["evaluate", "--model", str(directory), "--test-data", f"a={same}", "--test-data", f"a={legit}"]
    )
    assert twice.exit_code == 2 and "distinct" in twice.stderr


def test_threshold_reports_what_it_would_flag_out_of_domain(model, extra_sets):
    data, directory = model
    _, legit = extra_sets
    args = ["threshold", "--model", str(directory), "--data", str(data), "--target-precision", "0.8"]
    result = CliRunner().invoke(app, [*args, "--test-data", f"legit={legit}"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    legit_summary = report["test_sets"]["legit"]
    assert legit_summary["threshold"] == report["threshold"] and legit_summary["threshold_source"] == "model"
    assert "legit (n=7): flagged at" in result.stderr
