"""`tunewise demo` end to end on a small budget (the full budget is timed in BENCHMARKS.md)."""

from __future__ import annotations

import csv
import json

from tunewise.compare.runs import run_dir
from tunewise.demo import EXAMPLE_MESSAGES, DemoOptions, best_full_run, best_recipe, run_demo
from tunewise.samples import sample_sms_path


def _grams(text: str, n: int = 5) -> set[str]:
    return {text[i : i + n] for i in range(max(1, len(text) - n + 1))}


def test_example_messages_are_new():
    with sample_sms_path().open(encoding="utf-8", newline="") as f:
        samples = [r["text"] for r in csv.DictReader(f)]
    for message in EXAMPLE_MESSAGES:
        g = _grams(message)
        closest = max(len(g & _grams(s)) / len(g | _grams(s)) for s in samples)
        assert closest < 0.5, message


def test_demo_compares_trains_the_best_and_classifies(tmp_path):
    opts = DemoOptions(
        out=tmp_path / "demo",
        fractions=[0.5, 1.0],
        seeds=1,
        epochs={"scratch": 2, "finetune-small": 2},
    )
    summary = run_demo(opts)
    results = summary["results"]
    assert {r["recipe"] for r in results["runs"]} == {"tfidf-svm", "scratch", "finetune-small"}
    assert len(results["runs"]) == 3 * 2
    assert results["split_sizes"]["train"] == 839  # the whole sample set, 80/10/10
    # the demo's budget is what ran: 2 epochs each, max 128 tokens
    assert all(r["epochs_run"] <= 2 for r in results["runs"] if r["recipe"] != "tfidf-svm")
    assert results["recipes"]["finetune-small"]["model"]["max_length"] == 128
    assert summary["final_recipe"] == best_recipe(results)
    assert (summary["model"] / "model.safetensors").is_file()
    assert summary["report"]["html"].is_file()
    predictions = summary["predictions"]
    assert [p["text"] for p in predictions] == EXAMPLE_MESSAGES
    for p in predictions:
        assert p["label"] in ("normal", "fraud")
        assert abs(sum(p["probabilities"].values()) - 1) < 1e-5

    # the final model is the comparison's best all-labels run of that recipe, not a retrain:
    # same weights byte for byte, no checkpoints copied; the partial-label runs kept no weights
    compare_dir = tmp_path / "demo" / "compare"
    best = best_full_run(results, summary["final_recipe"])
    source = run_dir(compare_dir, best["key"])
    model = summary["model"]
    assert (model / "model.safetensors").read_bytes() == (source / "model.safetensors").read_bytes()
    assert not (model / "checkpoints").exists()
    assert json.loads((model / "run.json").read_text(encoding="utf-8"))["label_fraction"] == 1.0
    partial = [r for r in results["runs"] if r["fraction"] < 1 and r["recipe"] != "tfidf-svm"]
    assert partial and not any(
        (run_dir(compare_dir, r["key"]) / "model.safetensors").exists() for r in partial
    )

    # rerun with those weights gone: the comparison resumes (nothing to redo) and the final
    # model is trained again instead, and still classifies the messages
    (source / "model.safetensors").unlink()
    again = run_demo(opts)
    assert len(again["results"]["runs"]) == len(results["runs"])
    assert (again["model"] / "model.safetensors").is_file()
    assert (again["model"] / "checkpoints").is_dir()  # written by training, never by the copy
    assert [p["text"] for p in again["predictions"]] == EXAMPLE_MESSAGES
