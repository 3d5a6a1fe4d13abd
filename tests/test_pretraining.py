"""Masked-LM pretraining: corpora, packing, (whole-word) masking, the sparse MLM output,
and `tunewise pretrain` end to end, including domain-adaptive continuation."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertForMaskedLM
from typer.testing import CliRunner

from tunewise.cli import app
from tunewise.models.tokenization import train_bert_vocab
from tunewise.pretrained import resolve_pretrained
from tunewise.pretraining.corpus import load_default_corpus, strip_pos_tags
from tunewise.pretraining.mlm import MaskedLMModel, MaskingCollator, pack_documents

from .conftest import make_messages

DOCS = [
    "中华人民共和国成立以来，经济社会发展取得了巨大成就。",
    "这本书的内容非常精彩，值得推荐给朋友们阅读。",
    "今天的天气很好，我们一起去公园散步吧。",
    "银行提醒您注意账户安全，不要向陌生人透露验证码。",
] * 5


@pytest.fixture(scope="module")
def tokenizer():
    return train_bert_vocab(DOCS, vocab_size=500, min_frequency=1)


def test_people_daily_tags_are_stripped_and_default_corpus_loads() -> None:
    assert (
        strip_pos_tags("１２月/t  ３１日/t  ，/w  [中共/j  中央/n]nt  发表/v") == "１２月３１日，中共中央发表"
    )
    corpus = load_default_corpus()
    assert {s.name for s in corpus.sources} == {"people-daily-199801", "reviews-pos", "reviews-neg"}
    assert corpus.characters > 4_000_000
    assert all(len(s.sha256) == 64 for s in corpus.sources)
    assert not any("/n  " in d for d in corpus.documents[:1000])


def test_packing_fills_blocks_and_whole_words_group_characters(tokenizer) -> None:
    seqs = pack_documents(DOCS, tokenizer, max_length=32)
    assert all(len(s.ids) == 32 for s in seqs[:-1])
    assert all(s.ids[0] == tokenizer.cls_token_id and s.ids[-1] == tokenizer.sep_token_id for s in seqs)
    per_char = pack_documents(DOCS[:1], tokenizer, max_length=64)[0]
    whole = pack_documents(DOCS[:1], tokenizer, max_length=64, whole_word=True)[0]
    assert per_char.ids == whole.ids
    assert sum(whole.word_starts) < sum(per_char.word_starts)  # jieba joins characters into words


def test_masking_is_seeded_and_masks_whole_words(tokenizer) -> None:
    seq = pack_documents(DOCS, tokenizer, max_length=64, whole_word=True)[0]
    collate = MaskingCollator(tokenizer, seed=0)
    ids, labels = collate.mask(seq, random.Random(1))
    assert (ids, labels) == collate.mask(seq, random.Random(1))
    masked = [i for i, lab in enumerate(labels) if lab != -100]
    assert 0.1 <= len(masked) / len(ids) <= 0.3
    assert labels[0] == labels[-1] == -100  # [CLS]/[SEP] never masked
    # a word is masked entirely or not at all
    word = 0
    words: dict[int, list[int]] = {}
    for pos, start in enumerate(seq.word_starts):
        word += start
        words.setdefault(word, []).append(pos)
    for positions in words.values():
        states = {labels[p] != -100 for p in positions if seq.ids[p] not in collate.special}
        assert len(states) <= 1
    batch = collate([(0, seq), (1, seq)])
    assert batch["input_ids"].shape == batch["labels"].shape == (2, len(seq.ids))


def test_sparse_mlm_output_equals_the_full_one(tokenizer) -> None:
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
    )
    mlm = BertForMaskedLM(config).eval()
    seqs = pack_documents(DOCS, tokenizer, max_length=32)
    batch = MaskingCollator(tokenizer, seed=3)([(i, s) for i, s in enumerate(seqs[:4])])
    assert batch.pop("index").tolist() == [0, 1, 2, 3]  # which examples (the loop's shard log)
    sparse = MaskedLMModel(mlm)(**batch)
    full = mlm(**batch)
    n_masked = int((batch["labels"] != -100).sum())
    assert sparse.logits.shape == (n_masked, len(tokenizer))  # the vocab projection ran only there
    assert sparse.loss.item() == pytest.approx(full.loss.item(), abs=1e-5)


def test_pretrain_then_adapt_then_finetune(tmp_path: Path) -> None:
    runner = CliRunner()
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(t for t, _ in make_messages(60, seed=2)), encoding="gb18030")  # any encoding
    tiny = [
        "--hidden-size",
        "32",
        "--layers",
        "2",
        "--heads",
        "2",
        "--intermediate-size",
        "64",
        "--max-length",
        "32",
        "--batch-size",
        "16",
        "--no-progress",
        "--no-default-corpus",
    ]
    general = tmp_path / "general"
    result = runner.invoke(
        app, ["pretrain", "--out", str(general), "--corpus", str(corpus), "--epochs", "2", *tiny]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    card = json.loads((general / "pretraining.json").read_text())
    assert summary["heldout_masked_accuracy"] == card["heldout_masked_accuracy"] > 0
    assert card["corpus"][0]["name"] == "corpus.txt" and card["epochs"] == 2 and card["steps"] > 0
    assert card["history"][1]["dev_loss"] < card["history"][0]["dev_loss"]  # it learns
    assert "masked-token accuracy" in (general / "README.md").read_text()
    for name in ("config.json", "model.safetensors", "vocab.txt", "tokenizer_config.json"):
        assert (general / name).is_file()
    assert "[URL]" in (general / "vocab.txt").read_text().split()

    adapted = tmp_path / "adapted"
    domain = tmp_path / "domain.txt"
    domain.write_text("\n".join(t for t, _ in make_messages(30, seed=9)), encoding="utf-8")
    result = runner.invoke(
        app,
        [
            "pretrain",
            "--out",
            str(adapted),
            "--from",
            str(general),
            "--corpus",
            str(domain),
            "--epochs",
            "1",
            *tiny,
        ],
    )
    assert result.exit_code == 0, result.output
    assert (adapted / "vocab.txt").read_text() == (general / "vocab.txt").read_text()  # vocabulary kept
    before = BertForMaskedLM.from_pretrained(general).bert.encoder.layer[0].output.dense.weight
    after = BertForMaskedLM.from_pretrained(adapted).bert.encoder.layer[0].output.dense.weight
    assert not torch.equal(before, after)
    lineage = json.loads((adapted / "pretraining.json").read_text())["lineage"]
    assert [step["steps"] for step in lineage] == [card["steps"]]  # provenance kept across --from
    assert lineage[0]["command"] == card["command"] and lineage[0]["epochs"] == 2
    assert "Continued from earlier pretraining" in (adapted / "README.md").read_text()
    assert card["mask_probability"] == 0.4 and card["batch_size"] == 16

    data = tmp_path / "sms.csv"
    from .conftest import write_csv

    write_csv(data, make_messages(30))
    result = runner.invoke(
        app,
        [
            "train",
            "--data",
            str(data),
            "--recipe",
            "finetune",
            "--pretrained",
            str(adapted),
            "--out",
            str(tmp_path / "clf"),
            "--epochs",
            "2",
            "--no-progress",
            "--max-length",
            "32",
        ],
    )
    assert result.exit_code == 0, result.output  # an MLM checkpoint fine-tunes without missing weights


def test_bundled_names_resolve() -> None:
    assert resolve_pretrained("hfl/rbt3") == "hfl/rbt3"
    assert resolve_pretrained("/some/dir") == "/some/dir"


def test_bundled_encoder_is_the_default_and_fits_the_size_budget() -> None:
    from tunewise.pretrained import BUNDLED_DIR, bundled_encoders

    assert "tunewise-mini-zh" in bundled_encoders()
    path = Path(resolve_pretrained(None))
    assert path == BUNDLED_DIR / "tunewise-mini-zh" == Path(resolve_pretrained("tunewise-mini-zh"))
    assert sum(f.stat().st_size for f in path.iterdir()) <= 25 * 1024 * 1024
    card = json.loads((path / "pretraining.json").read_text())
    assert card["heldout_masked_accuracy"] > 0.1 and card["corpus"][0]["name"] == "people-daily-199801"
    from tunewise.models import build_model
    from tunewise.recipes import load_recipe

    built = build_model(load_recipe("finetune").model, ["a", "b"], pretrained=None)  # no download needed
    assert built.source == str(path)
    assert built.tokenizer.tokenize("请加微信[ID]领取[MONEY]") == [
        "请",
        "加",
        "微",
        "信",
        "[ID]",
        "领",
        "取",
        "[MONEY]",
    ]


def test_domain_adaptation_of_the_bundled_encoder_by_name(tmp_path: Path) -> None:
    """`--from tunewise-mini-zh` finds the bundled encoder offline, as README tells users."""
    from tunewise.pretrained import BUNDLED_DIR

    corpus = tmp_path / "sms.txt"
    corpus.write_text("\n".join(t for t, _ in make_messages(40, seed=4)), encoding="utf-8")
    out = tmp_path / "adapted"
    result = CliRunner().invoke(
        app,
        ["pretrain", "--from", "tunewise-mini-zh", "--corpus", str(corpus), "--no-default-corpus"]
        + ["--epochs", "1", "--max-length", "32", "--no-progress", "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    card = json.loads((out / "pretraining.json").read_text())
    assert card["from"] == str(BUNDLED_DIR / "tunewise-mini-zh")
    # the bundled vocabulary, kept, plus the typed tokens it predates ([URL_BRAND] …)
    from tunewise.data.normalize import TYPED_TOKENS

    bundled = (BUNDLED_DIR / "tunewise-mini-zh" / "vocab.txt").read_text(encoding="utf-8").split("\n")
    missing = [t for t in TYPED_TOKENS if t not in bundled]
    assert card["lineage"] and card["vocab_size"] == 6062 + len(missing)


def test_compressed_corpus_folder_with_a_token_budget_bf16_and_accumulation(tmp_path: Path) -> None:
    """The large-run settings (issue 21), on CPU: a folder of xz/gzip parts streamed, a token
    budget instead of epochs, bf16 autocast and two batches per optimizer step."""
    import gzip
    import lzma

    parts = tmp_path / "parts"
    parts.mkdir()
    texts = [t for t, _ in make_messages(80, seed=3)]
    half = len(texts) // 2
    (parts / "a-00.txt.xz").write_bytes(lzma.compress("\n".join(texts[:half]).encode("utf-8")))
    (parts / "b-00.txt.gz").write_bytes(gzip.compress("\n".join(texts[half:]).encode("utf-8")))
    (parts / "SHA256SUMS").write_text("not a corpus part\n", encoding="utf-8")
    tiny = ["--hidden-size", "32", "--layers", "2", "--heads", "2", "--intermediate-size", "64"]
    tiny += ["--max-length", "32", "--batch-size", "4", "--no-progress", "--no-default-corpus"]
    out = tmp_path / "enc"
    budget = "1500"
    args = ["pretrain", "--out", str(out), "--corpus", str(parts), "--max-tokens", budget]
    args += ["--precision", "bf16", "--grad-accum", "2", "--workers", "2", *tiny]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    card = json.loads((out / "pretraining.json").read_text())
    assert [s["name"] for s in card["corpus"]] == ["a-00.txt.xz", "b-00.txt.gz"]
    assert sum(s["documents"] for s in card["corpus"]) == len(texts)
    # under one epoch's worth: one epoch over part of the sequences, within one sequence of the budget
    assert card["epochs"] == 1 and card["token_budget"] == 1500
    assert 1500 <= card["train_tokens"] < 1500 + 32 and card["train_tokens"] < card["tokens_per_epoch"] * 2
    sequences = card["train_tokens"] // 32
    batches = math.ceil(sequences / 4)
    assert card["steps"] == math.ceil(batches / 2)  # one optimizer step per two batches
    assert card["mixed_precision"] == "bf16" and card["gradient_accumulation_steps"] == 2
    readme = (out / "README.md").read_text()
    assert "token budget 1,500" in readme and "mixed precision bf16" in readme
    from tunewise.training.loop import _native_cpu_bf16

    if not _native_cpu_bf16():  # this CPU emulates bf16: the user is told it is slow here
        assert "emulates (no native bf16 instructions)" in " ".join(result.output.split())

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "x.txt.xz").write_bytes(lzma.compress("好\n".encode() + "坏".encode("gb18030")))
    result = CliRunner().invoke(
        app, ["pretrain", "--out", str(tmp_path / "o2"), "--corpus", str(broken), *tiny]
    )
    assert result.exit_code == 2 and "x.txt.xz: line 2 is not UTF-8" in result.output
    whole = lzma.compress("\n".join(texts).encode("utf-8"))
    (broken / "x.txt.xz").write_bytes(whole[: len(whole) // 2])  # a download cut short
    result = CliRunner().invoke(
        app, ["pretrain", "--out", str(tmp_path / "o3"), "--corpus", str(broken), *tiny]
    )
    assert result.exit_code == 2 and "x.txt.xz: cannot decompress after line" in result.output


def test_counting_words_across_processes_gives_the_same_counts() -> None:
    from functools import partial

    from tunewise.models.tokenization import _count_words
    from tunewise.parallel import map_chunks

    texts = [t for t, _ in make_messages(40, seed=5)] + DOCS
    one = map_chunks(partial(_count_words, lowercase=True), texts, workers=0, chunk_size=25)
    two = map_chunks(partial(_count_words, lowercase=True), texts, workers=2, chunk_size=25)
    assert len(one) > 2 and one == two
