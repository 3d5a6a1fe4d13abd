"""LoRA as a fine-tuning strategy (``model.lora``, the ``finetune-lora`` recipe): what trains,
what is saved (peft-format adapters and the merged plain model), that peft itself loads the
adapters, export and prediction of the merged model, clear errors, and the third arm of
``compare``. On a tiny random BERT, and on the bundled encoder where a comparison needs one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tunewise.errors import FreezeError, ModelError, RecipeError
from tunewise.model_dir import read_meta
from tunewise.models.build import build_model, load_trained
from tunewise.models.lora import ADAPTER_DIR, load_adapter
from tunewise.recipes import load_recipe, parse_recipe
from tunewise.training.freeze import unfreeze
from tunewise.training.run import TrainOptions, train_model

from .conftest import make_messages, write_csv

PROBE = ["您的账户存在异常，请点击[URL]核实，否则将冻结", "妈，我今天晚点回家吃饭"]


def _lora_recipe(epochs: int = 3, **model_changes):
    recipe = load_recipe("finetune-lora").with_epochs(epochs)
    # a tiny random BERT needs a brisker rate than a real encoder to move in 3 epochs
    recipe = recipe.model_copy(update={"optimizer": recipe.optimizer.model_copy(update={"lr": 1e-2})})
    return recipe.with_model(max_length=64, **model_changes)


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, tiny_bert_dir) -> tuple[Path, Path]:
    """(data, run directory): ``finetune-lora`` on ``tiny_bert_dir``, 3 epochs."""
    data = write_csv(tmp_path_factory.mktemp("lora-data") / "sms.csv", make_messages(40))
    out = tmp_path_factory.mktemp("lora-run") / "run"
    train_model(
        TrainOptions(
            data=data,
            recipe=_lora_recipe(),
            out=out,
            pretrained=str(tiny_bert_dir),
            show_progress=False,
            log_with=None,
        )
    )
    return data, out


def _logits(model, tokenizer, texts):
    enc = tokenizer(texts, return_tensors="pt", padding=True)
    model.eval()
    with torch.no_grad():
        return model(**enc).logits


def test_only_adapters_and_head_train_the_rest_is_the_checkpoint(lora_run, tiny_bert_dir):
    _, out = lora_run
    base = load_file(str(tiny_bert_dir / "model.safetensors"))
    merged = load_file(str(out / "model.safetensors"))
    # frozen: untouched, bit for bit (the merged model's keys are BertModel's under "bert.")
    for key in (
        "embeddings.word_embeddings.weight",
        "encoder.layer.0.attention.self.key.weight",
        "encoder.layer.1.intermediate.dense.weight",
        "encoder.layer.1.output.LayerNorm.weight",
    ):
        assert torch.equal(merged[f"bert.{key}"], base[key]), key
    # adapted: the LoRA update B @ A was merged into query and value
    for key in ("encoder.layer.0.attention.self.query.weight", "encoder.layer.1.attention.self.value.weight"):
        assert not torch.equal(merged[f"bert.{key}"], base[key]), key
    assert not any("lora" in k for k in merged)  # a plain model: no adapter tensors left

    meta = read_meta(out)
    assert meta["lora"]["r"] == 8 and meta["adapter"] == ADAPTER_DIR
    hidden, layers, r, labels = 32, 2, 8, len(meta["labels"])
    lora_params = layers * 2 * (r * hidden + hidden * r)  # query and value, A and B
    head = hidden * labels + labels
    assert meta["trainable_params"] == lora_params + head
    assert meta["trainable_params"] < meta["total_params"] / 10


def test_peft_loads_the_saved_adapters_and_they_match_the_merged_model(lora_run, tiny_bert_dir):
    from peft import PeftModel
    from transformers import AutoTokenizer, BertForSequenceClassification

    _, out = lora_run
    adapter = out / ADAPTER_DIR
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["base_model_name_or_path"] == str(tiny_bert_dir)
    assert config["modules_to_save"] == ["classifier"]
    assert (adapter / "adapter_model.safetensors").stat().st_size < 100_000  # adapters, not a model

    plain = load_trained(out)
    tokenizer = AutoTokenizer.from_pretrained(str(out))
    expected = _logits(plain.model, tokenizer, PROBE)
    # peft's own loader, as a user without tunewise would call it
    base = BertForSequenceClassification.from_pretrained(str(tiny_bert_dir), num_labels=len(plain.labels))
    peft_model = PeftModel.from_pretrained(base, str(adapter))
    assert torch.allclose(_logits(peft_model, tokenizer, PROBE), expected, atol=1e-5)
    # and tunewise's, which also restores labels, head type and added tokens
    ours = load_adapter(out)
    assert torch.allclose(_logits(ours, tokenizer, PROBE), expected, atol=1e-5)
    merged_again = ours.merge_and_unload()
    assert torch.allclose(_logits(merged_again, tokenizer, PROBE), expected, atol=1e-5)


@pytest.mark.parametrize("train_new_tokens", [True, False])
def test_new_token_rows_and_a_new_pooler_go_with_the_adapters(tmp_path, train_new_tokens):
    """An encoder whose vocabulary lacks the typed tokens and which has no pretrained pooler:
    the new rows are carried by the adapters (peft's trainable tokens; trained only with
    ``train_new_tokens``), the pooler trains in full beside the head even when a target
    suffix (``dense``) names it, and the saved adapters rebuild the merged model exactly."""
    from torch import nn
    from transformers import BertConfig, BertModel, BertTokenizer

    chars = sorted({c for t, _ in make_messages(40) for c in t})
    encoder = tmp_path / "encoder"
    encoder.mkdir()
    (encoder / "vocab.txt").write_text(
        "\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars]) + "\n", encoding="utf-8"
    )
    tokenizer = BertTokenizer(str(encoder / "vocab.txt"))
    tokenizer.save_pretrained(str(encoder))
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    torch.manual_seed(0)
    base = BertModel(config, add_pooling_layer=False)  # masked-LM-only checkpoints have none
    base.save_pretrained(str(encoder))
    targets = ["query", "value", "dense"]
    recipe = _lora_recipe(2)
    lora = recipe.model.lora.model_copy(
        update={"target_modules": targets, "train_new_tokens": train_new_tokens}
    )
    recipe = recipe.model_copy(update={"model": recipe.model.model_copy(update={"lora": lora})})
    data = write_csv(tmp_path / "sms.csv", make_messages(30))
    out = tmp_path / "run"
    train_model(
        TrainOptions(
            data=data, recipe=recipe, out=out, pretrained=str(encoder), show_progress=False, log_with=None
        )
    )
    plain = load_trained(out)
    added = len(plain.tokenizer) - len(tokenizer)
    assert added > 0
    meta = read_meta(out)
    adapted = [
        m
        for n, m in base.named_modules()
        if isinstance(m, nn.Linear) and any(n == t or n.endswith("." + t) for t in targets)
    ]
    lora_params = sum(8 * (m.in_features + m.out_features) for m in adapted)
    head = 32 * len(meta["labels"]) + len(meta["labels"])
    pooler = 32 * 32 + 32  # new, so it trains in full with the head
    rows = added * 32 if train_new_tokens else 0
    assert meta["trainable_params"] == lora_params + head + pooler + rows
    saved = load_file(str(out / ADAPTER_DIR / "adapter_model.safetensors"))
    assert any(k.endswith("trainable_tokens_delta") for k in saved)  # carried either way
    assert not any("pooler" in k and "lora" in k for k in saved)
    assert "base_model.model.bert.pooler.dense.weight" in saved

    texts = ["点击[URL]领取[MONEY]", *PROBE]
    expected = _logits(plain.model, plain.tokenizer, texts)
    restored = load_adapter(out)
    assert torch.allclose(_logits(restored, plain.tokenizer, texts), expected, atol=1e-5)


def test_a_lora_run_predicts_and_exports_like_any_run(lora_run, tmp_path):
    from tunewise.export import FP32_TOLERANCE, export_onnx
    from tunewise.inference import Predictor

    data, out = lora_run
    predictions = Predictor(out).predict(PROBE)
    assert len(predictions) == 2
    report = export_onnx(out, tmp_path / "onnx", eval_data=data)
    assert report["fp32"]["max_prob_diff"] <= FP32_TOLERANCE


def test_lora_errors_say_what_and_where(tiny_bert_dir):
    with pytest.raises(RecipeError, match="lora adapts a pretrained encoder"):
        parse_recipe({"name": "x", "model": {"init": "random", "lora": {}}})
    with pytest.raises(RecipeError, match="lora adapts a pretrained encoder"):
        parse_recipe({"name": "x", "model": {"init": "random", "architecture": "textcnn", "lora": {}}})
    with pytest.raises(RecipeError, match="model.lora.r"):
        parse_recipe({"name": "x", "model": {"lora": {"r": 0}}})
    spec = load_recipe("finetune-lora").model
    bad = spec.model_copy(update={"lora": spec.lora.model_copy(update={"target_modules": ["q_proj"]})})
    with pytest.raises(ModelError, match=r"match no linear layer.*'query'"):
        build_model(bad, ["a", "b"], pretrained=str(tiny_bert_dir))
    for stages, message in (
        ([{"name": "s", "epochs": 1, "trainable": "all"}], "trains the adapters and the head only"),
        ([{"name": "s", "epochs": 1, "trainable": ["head", "adapters"], "freeze_to": -2}], "head only"),
        ([{"name": "s", "epochs": 1, "trainable": "head"}], "no stage trains the adapters"),
    ):
        with pytest.raises(RecipeError, match=message):
            parse_recipe(
                {"name": "x", "model": {"lora": {}}, "freeze": {"modules": ["backbone"]}, "stages": stages}
            )
    with pytest.raises(RecipeError, match="keeps the pretrained weights frozen"):
        parse_recipe(
            {
                "name": "x",
                "model": {"lora": {}},
                "stages": [{"name": "s", "epochs": 1, "trainable": ["head", "adapters"]}],
            }
        )
    plain = build_model(load_recipe("finetune").model, ["a", "b"], pretrained=str(tiny_bert_dir))
    with pytest.raises(FreezeError, match="'adapters' names LoRA weights"):
        unfreeze(plain.model, ["adapters"])


def test_compare_runs_lora_as_a_third_arm(tmp_path, tiny_bert_dir):
    """`tunewise compare --recipes scratch,finetune-small,finetune-lora`: the LoRA arm is
    trained and scored like the others, and trains far fewer parameters than full fine-tuning
    of the same encoder (the tiny BERT; the figures on real data are in BENCHMARKS.md)."""
    data = write_csv(tmp_path / "sms.csv", make_messages(30))
    out = tmp_path / "cmp"
    cmd = [
        sys.executable,
        "-m",
        "tunewise",
        "compare",
        "--data",
        str(data),
        "--recipes",
        "scratch,finetune-small,finetune-lora",
        "--fractions",
        "1",
        "--seeds",
        "1",
        "--epochs",
        "2",
        "--no-baseline",
        "--pretrained",
        str(tiny_bert_dir),
        "--max-length",
        "64",
        "--out",
        str(out),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    runs = {r["recipe"]: r for r in results["runs"]}
    assert set(runs) == {"scratch", "finetune-small", "finetune-lora"}
    lora, full = runs["finetune-lora"], runs["finetune-small"]
    # the same encoder: LoRA's total is full fine-tuning's plus the adapters
    assert full["total_params"] < lora["total_params"] < full["total_params"] + lora["trainable_params"]
    assert lora["trainable_params"] < full["trainable_params"] / 5
    assert 0 <= lora["test_macro_f1"] <= 1 and lora["peak_memory_mb"] > 0
    report = (out / "report.md").read_text()
    assert "finetune-lora" in report
