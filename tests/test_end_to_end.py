"""train -> evaluate -> predict through the real command line, on a tiny BERT saved to disk."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer
from typer.testing import CliRunner

from tunewise.cli import app
from tunewise.inference import Predictor

runner = CliRunner()


def run(*args: str) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.stdout


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory: pytest.TempPathFactory, tiny_bert_dir: Path) -> tuple[Path, Path]:
    from .conftest import make_messages, write_csv

    tmp = tmp_path_factory.mktemp("e2e")
    data = write_csv(tmp / "sms.csv", make_messages(40))
    out = tmp / "model"
    summary = json.loads(
        run(
            "train",
            "--data",
            data,
            "--recipe",
            "finetune",
            "--pretrained",
            tiny_bert_dir,
            "--out",
            out,
            "--epochs",
            "2",
            "--no-progress",
            "--max-length",
            "64",
        )
    )
    assert summary["best_epoch"] in (1, 2)
    return data, out


def test_train_writes_a_hugging_face_model_directory(finetuned: tuple[Path, Path]) -> None:
    _, out = finetuned
    for name in (
        "config.json",
        "model.safetensors",
        "tokenizer_config.json",
        "recipe.yaml",
        "tunewise.json",
        "split.json",
        "data_report.json",
        "history.json",
    ):
        assert (out / name).is_file(), name
    assert not list(out.glob("*.bin")) and not list(out.glob("*.pkl"))  # no pickles
    # plain transformers loads it, with our labels, and gives the same probabilities as tunewise
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert model.config.id2label == {0: "loan", 1: "normal", 2: "police"}
    text = "[URL] 我是公安局民警，请转账到安全账户"
    with torch.no_grad():
        hf = torch.softmax(model(**tokenizer(text, return_tensors="pt")).logits, -1)[0]
    ours = Predictor(out, calibrated=False).predict([text])[0]  # raw, as transformers gives them
    assert [ours.probabilities[lab] for lab in ("loan", "normal", "police")] == pytest.approx(
        hf.tolist(), abs=1e-5
    )
    meta = json.loads((out / "tunewise.json").read_text())
    assert meta["recipe"] == "finetune" and meta["weights_source"].endswith("tiny-bert0")
    assert (out / "logs").is_dir()  # TensorBoard event files through Accelerate's tracker
    assert list((out / "logs").rglob("events.out.tfevents.*"))


def test_evaluate_scores_the_held_out_test_split(finetuned: tuple[Path, Path], tmp_path: Path) -> None:
    data, out = finetuned
    summary = json.loads(run("evaluate", "--model", out, "--data", data, "--out", tmp_path))
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    split = json.loads((out / "split.json").read_text())
    assert summary["split"] == "test" and metrics["n"] == len(split["test"])
    assert {"accuracy", "macro_f1", "labels", "per_class", "confusion_matrix"} <= set(metrics)
    assert sum(map(sum, metrics["confusion_matrix"])) == metrics["n"]
    assert set(metrics["per_class"]) == {"loan", "normal", "police"}
    assert (tmp_path / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"
    # the stored dev split, scored with the defaults (which are how training scored it),
    # reproduces the best dev score
    meta = json.loads((out / "tunewise.json").read_text())
    dev = json.loads(run("evaluate", "--model", out, "--data", data, "--out", tmp_path, "--split", "dev"))
    assert dev["n"] == len(split["dev"]) and dev["macro_f1"] == pytest.approx(
        meta["dev"]["macro_f1"], abs=1e-9
    )
    everything = json.loads(
        run("evaluate", "--model", out, "--data", data, "--out", tmp_path, "--split", "all")
    )
    assert everything["n"] == 120


def test_evaluate_rejects_unknown_labels(finetuned: tuple[Path, Path], tmp_path: Path) -> None:
    _, out = finetuned
    (tmp_path / "other.csv").write_text("content,label\n你好,normal\n中奖了,prize\n", encoding="utf-8")
    result = runner.invoke(app, ["evaluate", "--model", str(out), "--data", str(tmp_path / "other.csv")])
    assert result.exit_code == 2
    assert "'prize' (first at" in result.output and "other.csv:3" in result.output


def test_predict_text_and_files(finetuned: tuple[Path, Path], tmp_path: Path) -> None:
    _, out = finetuned
    one = json.loads(run("predict", "--model", out, "--text", "无抵押贷款，加微信 loan12345 办理"))
    assert one["label"] in ("loan", "normal", "police")
    assert sum(one["probabilities"].values()) == pytest.approx(1.0)
    long_text = "您好，我是公安局民警，" * 60  # far beyond max_length 64
    (tmp_path / "in.txt").write_text(
        f"加微信领红包\n【顺丰】您的快递已到驿站\n{long_text}\n", encoding="utf-8"
    )
    run("predict", "--model", out, "--input", tmp_path / "in.txt", "--output", tmp_path / "p.csv")
    with (tmp_path / "p.csv").open(encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    assert [r["text"] for r in rows][:2] == ["加微信领红包", "【顺丰】您的快递已到驿站"]
    columns = {"text", "label", "p_loan", "p_normal", "p_police", "fraud_score", "tokens", "long_text"}
    assert set(rows[0]) == columns  # fraud_score = 1 - p_normal: the labels have a normal class
    assert float(rows[0]["fraud_score"]) == pytest.approx(1 - float(rows[0]["p_normal"]), abs=2e-6)
    # over-long texts are truncated by default, as training scored its dev split
    assert rows[0]["long_text"] == "full" and rows[2]["long_text"] == "truncated"
    run("predict", "--model", out, "--input", tmp_path / "in.txt", "--output", tmp_path / "p.jsonl")
    lines = [json.loads(x) for x in (tmp_path / "p.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(lines) == 3 and lines[2]["long_text"] == rows[2]["long_text"]
    windowed = Predictor(out, long_text="window").predict([long_text])[0]
    assert windowed.handling.startswith("windows:")


def test_cli_errors_are_one_clear_line(finetuned: tuple[Path, Path], tmp_path: Path) -> None:
    data, out = finetuned
    cases = [
        (["predict", "--model", str(out)], "exactly one of --text"),
        (
            ["predict", "--model", str(out), "--input", str(data), "--output", str(tmp_path / "x.xlsx")],
            ".csv or .jsonl",
        ),
        (["train", "--data", str(data), "--recipe", "nope", "--out", str(tmp_path / "m")], "not a built-in"),
        (
            [
                "train",
                "--data",
                str(tmp_path / "missing.csv"),
                "--recipe",
                "scratch",
                "--out",
                str(tmp_path / "m"),
            ],
            "no such file",
        ),
        (
            [
                "train",
                "--data",
                str(data),
                "--recipe",
                "finetune",
                "--pretrained",
                str(tmp_path),
                "--out",
                str(tmp_path / "m"),
            ],
            "no config.json",
        ),
        (["evaluate", "--model", str(tmp_path), "--data", str(data)], "not a model directory"),
        (
            ["evaluate", "--model", str(out), "--data", str(data), "--long-text", "middle"],
            "--long-text must be",
        ),
    ]
    for args, message in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output, (args, result.output)
        assert "Traceback" not in result.output


def test_scratch_textcnn_and_mlp_head_round_trip(tmp_path: Path, tiny_bert_dir: Path) -> None:
    from .conftest import make_messages, write_csv

    data = write_csv(tmp_path / "sms.csv", make_messages(30))
    run(
        "train",
        "--data",
        data,
        "--recipe",
        "scratch",
        "--out",
        tmp_path / "cnn",
        "--epochs",
        "2",
        "--no-progress",
    )
    import tunewise.models  # noqa: F401  registers TextCNN with the Auto classes

    cnn = AutoModelForSequenceClassification.from_pretrained(tmp_path / "cnn")
    assert type(cnn).__name__ == "TextCNNForSequenceClassification"
    recipe = tmp_path / "mlp.yaml"
    recipe.write_text(
        "model: {init: pretrained, head: {type: mlp, hidden_size: 16, dropout: 0.5}, max_length: 64}\n"
        "freeze: {modules: [backbone]}\noptimizer: {name: adam, lr: 0.001}\n"
        "scheduler: {name: plateau}\nepochs: 1\n",
        encoding="utf-8",
    )
    run(
        "train",
        "--data",
        data,
        "--recipe",
        recipe,
        "--pretrained",
        tiny_bert_dir,
        "--out",
        tmp_path / "mlp",
        "--no-progress",
    )
    predictor = Predictor(tmp_path / "mlp")
    assert [type(m).__name__ for m in predictor.model.classifier.layers] == [
        "Linear",
        "ReLU",
        "Dropout",
        "Linear",
    ]
    assert predictor.predict(["你好"])[0].label in ("loan", "normal", "police")


def test_default_scoring_of_long_texts_reproduces_the_training_dev_score(tmp_path: Path) -> None:
    """With max_length 16 nearly every message is over-long; `evaluate` with its defaults must
    still score the dev split exactly as training did, or reported figures would drift from
    the ones that chose the epoch (windows over message middles measured 3-7 points lower)."""
    from .conftest import make_messages, write_csv

    data = write_csv(tmp_path / "sms.csv", make_messages(30))
    out = tmp_path / "cnn16"
    run("train", "--data", data, "--recipe", "scratch", "--out", out, "--epochs", "2", "--max-length", "16")
    meta = json.loads((out / "tunewise.json").read_text())
    dev = json.loads(run("evaluate", "--model", out, "--data", data, "--split", "dev", "--out", tmp_path))
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["long_text"] == "truncate" and metrics["long_texts"] >= dev["n"] // 2
    assert dev["macro_f1"] == pytest.approx(meta["dev"]["macro_f1"], abs=1e-9)


def test_recipes_commands() -> None:
    listing = run("recipes", "list")
    assert "scratch" in listing and "finetune" in listing
    shown = run("recipes", "show", "finetune")
    assert "layerwise_lr_decay: 0.9" in shown and "trainable: head" in shown
