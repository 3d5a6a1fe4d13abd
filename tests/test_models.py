"""Model building: the Chinese checkpoint pitfalls, [UNK] rates, heads, batching."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

from tunewise.models import MLPHead, ModelError, build_model
from tunewise.models.tokenization import train_bert_vocab, unk_rate
from tunewise.recipes import load_recipe, parse_recipe
from tunewise.training.batching import Collator, LengthBucketBatchSampler, TextDataset
from tunewise.training.freeze import freeze, set_frozen_batchnorm_eval
from tunewise.training.loop import apply_initial_freeze

LABELS = ["normal", "fraud"]


def test_roberta_wwm_checkpoint_loads_with_bert_classes(tmp_path: Path, tiny_bert_dir: Path) -> None:
    # hfl/chinese-roberta-wwm-ext style: a BERT checkpoint whose config says "roberta"
    ckpt = tmp_path / "chinese-roberta-wwm-ext"
    shutil.copytree(tiny_bert_dir, ckpt)
    config = json.loads((ckpt / "config.json").read_text())
    config["model_type"] = "roberta"
    config["architectures"] = ["RobertaForMaskedLM"]
    (ckpt / "config.json").write_text(json.dumps(config))
    (ckpt / "tokenizer_config.json").unlink()
    (ckpt / "tokenizer.json").unlink()
    (ckpt / "vocab.txt").write_text(
        "\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "诈", "骗"]) + "\n" * 1
    )
    built = build_model(load_recipe("finetune").model, LABELS, pretrained=str(ckpt))
    assert type(built.model).__name__ == "BertForSequenceClassification"
    assert any("RoBERTa-wwm" in n and "BERT" in n for n in built.notes)
    # the pretrained weights really arrived (not a random re-initialisation)
    from safetensors.torch import load_file

    saved = load_file(str(tiny_bert_dir / "model.safetensors"))
    key = next(k for k in saved if k.endswith("encoder.layer.0.attention.self.query.weight"))
    assert torch.equal(built.model.bert.encoder.layer[0].attention.self.query.weight, saved[key])


# How the hub's Chinese checkpoints are laid out (names, weights format, tokenizer files);
# each is rebuilt small in a local directory and loaded through the same --pretrained path.
HUB_LAYOUTS = {
    # google-bert/bert-base-chinese: BertForPreTraining weights (with the NSP pooler),
    # safetensors, a fast tokenizer.json beside vocab.txt
    "bert-base-chinese": {"cls": "BertForPreTraining", "layers": 2, "bin": False, "vocab_only": False},
    # hfl/rbt3: 3 layers, pytorch_model.bin only, vocab.txt + tokenizer_config.json
    "hfl/rbt3": {"cls": "BertForMaskedLM", "layers": 3, "bin": True, "vocab_only": True},
    # hfl/chinese-macbert-base: masked-LM weights (no pooler), vocab.txt only
    "hfl/chinese-macbert-base": {"cls": "BertForMaskedLM", "layers": 2, "bin": False, "vocab_only": True},
}


def write_hub_layout(directory: Path, tiny_bert_dir: Path, layout: dict) -> nn.Module:
    import transformers
    from transformers import AutoTokenizer, BertConfig

    config = BertConfig.from_pretrained(tiny_bert_dir)
    config.num_hidden_layers = layout["layers"]
    config.architectures = [layout["cls"]]
    config.directionality, config.pooler_type = "bidi", "first_token_transform"  # as the originals
    model = getattr(transformers, layout["cls"])(config)
    directory.mkdir(parents=True)
    if layout["bin"]:
        config.save_pretrained(directory)
        torch.save(model.state_dict(), directory / "pytorch_model.bin")
    else:
        model.save_pretrained(directory)
    tok = AutoTokenizer.from_pretrained(tiny_bert_dir)
    vocab = sorted(tok.get_vocab().items(), key=lambda kv: kv[1])
    (directory / "vocab.txt").write_text("".join(f"{t}\n" for t, _ in vocab), encoding="utf-8")
    if layout["vocab_only"]:
        (directory / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True}))
        (directory / "special_tokens_map.json").write_text(
            json.dumps(
                {
                    k: f"[{k[:-6].upper()}]"
                    for k in ("unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
                }
            )
        )
    else:
        tok.save_pretrained(str(directory))
    return model


@pytest.mark.parametrize("name", sorted(HUB_LAYOUTS))
def test_hub_checkpoint_layouts_load_with_their_weights(
    tmp_path: Path, tiny_bert_dir: Path, name: str
) -> None:
    layout = HUB_LAYOUTS[name]
    ckpt = tmp_path / name
    original = write_hub_layout(ckpt, tiny_bert_dir, layout)
    built = build_model(load_recipe("finetune").model, LABELS, pretrained=str(ckpt))
    model = built.model
    assert type(model).__name__ == "BertForSequenceClassification"
    assert len(model.bert.encoder.layer) == layout["layers"]
    for layer in (0, layout["layers"] - 1):  # the pretrained weights arrived, first to last layer
        assert torch.equal(
            model.bert.encoder.layer[layer].attention.self.query.weight,
            original.bert.encoder.layer[layer].attention.self.query.weight,
        )
    assert torch.equal(
        model.bert.embeddings.word_embeddings.weight[:50],
        original.bert.embeddings.word_embeddings.weight[:50],
    )
    has_pooler = layout["cls"] == "BertForPreTraining"
    assert any("no pretrained pooler" in n for n in built.notes) != has_pooler
    assert any("weights_only=True" in n for n in built.notes) == layout["bin"]
    assert built.tokenizer.tokenize("公安局[URL]") == ["公", "安", "局", "[URL]"]


def test_pickle_only_checkpoint_trains_and_saves_safetensors(tmp_path: Path, tiny_bert_dir: Path) -> None:
    from typer.testing import CliRunner

    from tunewise.cli import app

    from .conftest import make_messages, write_csv

    ckpt = tmp_path / "rbt3"
    write_hub_layout(ckpt, tiny_bert_dir, HUB_LAYOUTS["hfl/rbt3"])
    data = write_csv(tmp_path / "sms.csv", make_messages(20))
    out = tmp_path / "clf"
    args = ["train", "--data", str(data), "--recipe", "finetune", "--pretrained", str(ckpt)]
    result = CliRunner().invoke(app, [*args, "--out", str(out), "--epochs", "2", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert (out / "model.safetensors").is_file() and not list(out.glob("*.bin"))


def test_tokenizer_that_does_not_fit_the_model_is_refused(tmp_path: Path, tiny_bert_dir: Path) -> None:
    ckpt = tmp_path / "mismatch"
    shutil.copytree(tiny_bert_dir, ckpt)
    big = train_bert_vocab([chr(0x4E00 + i) * 2 for i in range(2000)], vocab_size=3000, min_frequency=1)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (ckpt / name).unlink()
    big.save_pretrained(str(ckpt))
    with pytest.raises(ModelError, match="do not belong together"):
        build_model(load_recipe("finetune").model, LABELS, pretrained=str(ckpt))


def test_missing_backbone_weights_are_an_error(tmp_path: Path, tiny_bert_dir: Path) -> None:
    ckpt = tmp_path / "renamed"
    shutil.copytree(tiny_bert_dir, ckpt)
    config = json.loads((ckpt / "config.json").read_text())
    config["num_hidden_layers"] = 3  # a layer the weights file does not have
    (ckpt / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match="backbone weights are missing"):
        build_model(load_recipe("finetune").model, LABELS, pretrained=str(ckpt))


def test_unk_rate_and_typed_tokens(tiny_bert_dir: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_bert_dir)
    assert unk_rate(tok, ["我是公安局民警"]) < unk_rate(tok, ["龘靐齉爩"]) == 1.0
    built = build_model(load_recipe("finetune").model, LABELS, pretrained=str(tiny_bert_dir))
    assert built.tokenizer.tokenize("点击[URL]领取[MONEY]") == ["点", "击", "[URL]", "领", "取", "[MONEY]"]


def test_random_init_same_architecture(tiny_bert_dir: Path) -> None:
    pre = build_model(load_recipe("finetune").model, LABELS, pretrained=str(tiny_bert_dir)).model
    rnd = build_model(load_recipe("scratch-transformer").model, LABELS, pretrained=str(tiny_bert_dir)).model
    assert type(pre) is type(rnd) and pre.num_parameters() == rnd.num_parameters()
    w = "bert.encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(pre.state_dict()[w], rnd.state_dict()[w])


def test_mlp_head_is_the_notes_head(tiny_bert_dir: Path) -> None:
    spec = parse_recipe(
        {"name": "m", "model": {"head": {"type": "mlp", "hidden_size": 8, "dropout": 0.5}}}
    ).model
    model = build_model(spec, LABELS, pretrained=str(tiny_bert_dir)).model
    assert isinstance(model.classifier, MLPHead)
    assert [type(m) for m in model.classifier.layers] == [nn.Linear, nn.ReLU, nn.Dropout, nn.Linear]
    assert model.classifier.layers[2].p == 0.5 and model.classifier.layers[3].out_features == 2


def test_train_batchnorm_keeps_bn_trainable_inside_frozen_blocks() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    model.classifier = nn.Linear(4, 2)
    recipe = parse_recipe(
        {
            "name": "bn",
            "model": {"init": "random"},
            "freeze": {"modules": ["backbone"], "train_batchnorm": True},
        }
    )
    apply_initial_freeze(model, recipe)
    assert not model[0].weight.requires_grad and model[1].weight.requires_grad
    model.train()
    set_frozen_batchnorm_eval(model)
    assert model[1].training  # trainable BN keeps updating its statistics
    freeze(model, ["1"])
    set_frozen_batchnorm_eval(model)
    assert not model[1].training


def test_length_buckets_and_dynamic_padding(tiny_bert_dir: Path) -> None:
    from transformers import AutoTokenizer

    lengths = [3, 40, 4, 41, 5, 42, 6, 43]
    sampler = LengthBucketBatchSampler(lengths, batch_size=2, seed=0)
    sampler.use_epoch(0)
    first = list(sampler)
    sampler.use_epoch(1)
    assert sorted(map(sorted, first)) == sorted(map(sorted, list(sampler)))  # same buckets
    assert all(abs(lengths[a] - lengths[b]) <= 3 for a, b in first)  # similar lengths together
    sampler.use_epoch(0)
    assert list(sampler) == first  # an epoch's order is reproducible
    tok = AutoTokenizer.from_pretrained(tiny_bert_dir)
    data = TextDataset(["短", "长一点的短信内容"], [0, 1])
    batch = Collator(tok, max_length=64)([data[0]])
    assert batch["input_ids"].shape == (1, 3)  # [CLS] 短 [SEP]: padded to itself only
    wide = Collator(tok, max_length=5)([data[0], data[1]])
    assert wide["input_ids"].shape == (2, 5) and wide["labels"].tolist() == [0, 1]
