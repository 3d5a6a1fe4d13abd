"""Fine-tuning speed of tunewise's loop against Hugging Face ``Trainer``, side by side.

Same encoder weights, same tokenizer, same normalised texts, same batch size, maximum
length, epochs, learning rate and schedule (AdamW, linear warmup over 10% then linear decay,
weight decay 0.01, gradient clipping at 1.0), same per-epoch work (score the dev split, keep
the best epoch, write a checkpoint). Each arm runs in a fresh process, one after another, so
its peak RSS is its own and no two arms share the cores.

Arms:

- ``tunewise``: ``fit`` — the loop ``tunewise train`` runs (length-bucketed batches padded to
  their own longest text, tokenised in the collator);
- ``trainer``: ``Trainer`` as most users run it: texts tokenised up front (not timed),
  ``DataCollatorWithPadding`` (each batch padded to its longest), random batches;
- ``trainer-grouped``: the same with ``train_sampling_strategy="group_by_length"``, Trainer's
  own answer to padding, for the best case of the usual choice.

Samples/s is training examples x epochs / wall time of the training call (``fit`` or
``trainer.train()``), evaluation and checkpoints included; the ratio is against ``trainer``.
The profile says where tunewise's time goes: padding share of the training tokens (both
batchings), collation, evaluation and checkpointing per epoch.

    python bench/train_throughput.py --data ../shared/data/telecom_fraud_5 \
        --label-map examples/telecom_fraud_5.labels.yaml --out runs/bench-throughput

Models: the bundled encoder (``tunewise-mini-zh``) and a BERT-base-shaped encoder with random
weights (12 layers, 768 wide, the bundled vocabulary) to show the trend with size; the
larger model gets fewer examples (``--base-train``) so the run fits on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

ARMS = ("tunewise", "trainer", "trainer-grouped")


def recipe_dict(args_ns: dict) -> dict:
    """The one-stage full fine-tune both loops run."""
    return {
        "name": "throughput",
        "description": "full fine-tune, one stage: the settings Trainer gets too",
        "model": {
            "init": "pretrained",
            "architecture": "auto",
            "head": {"type": "linear"},
            "max_length": args_ns["max_length"],
        },
        "optimizer": {"name": "adamw", "lr": args_ns["lr"], "weight_decay": 0.01},
        "scheduler": {"name": "linear_warmup", "warmup_ratio": 0.1},
        "epochs": args_ns["epochs"],
        "batch_size": args_ns["batch_size"],
        "eval_batch_size": 128,
        "augmentation": "none",
        "max_grad_norm": 1.0,
    }


def padding_share(lengths: list[int], batches: list[list[int]]) -> float:
    """Share of the tokens in ``batches`` that are padding (each batch padded to its longest)."""
    real = sum(lengths[i] for b in batches for i in b)
    padded = sum(max(lengths[i] for i in b) * len(b) for b in batches)
    return 1 - real / padded


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_tunewise(job: dict) -> dict:
    import torch
    from accelerate.utils import set_seed

    from tunewise.models.build import build_model
    from tunewise.recipes.schema import parse_recipe
    from tunewise.tracks.text import TextSplit, fit_classifier
    from tunewise.training.batching import Collator, LengthBucketBatchSampler
    from tunewise.training.checkpoint import save_checkpoint
    from tunewise.training.loop import TrainState

    recipe = parse_recipe(recipe_dict(job), source="bench")
    set_seed(job["seed"])
    built = build_model(recipe.model, job["labels"], pretrained=job["encoder"])
    train = TextSplit(job["train_texts"], job["train_ids"])
    dev = TextSplit(job["dev_texts"], job["dev_ids"])
    with tempfile.TemporaryDirectory() as work:
        start = time.perf_counter()
        fit = fit_classifier(
            built.model,
            built.tokenizer,
            train,
            dev,
            recipe,
            work,
            labels=job["labels"],
            seed=job["seed"],
            show_progress=False,
            log_with=None,
        )
        seconds = time.perf_counter() - start
        peak = peak_rss_mb()  # before the profile below adds anything
        # profile: what one checkpoint (weights, optimizer, state) costs
        optimizer = torch.optim.AdamW(built.model.parameters(), lr=1e-5)
        built.model(**built.tokenizer(["预热"], return_tensors="pt")).logits.sum().backward()
        optimizer.step()
        t0 = time.perf_counter()
        save_checkpoint(Path(work) / "probe", built.model, optimizer, {}, TrainState())
        checkpoint_s = time.perf_counter() - t0
    tokenizer = built.tokenizer
    lengths = [
        len(x)
        for x in tokenizer(job["train_texts"], truncation=True, max_length=job["max_length"])["input_ids"]
    ]
    sampler = LengthBucketBatchSampler([len(t) for t in job["train_texts"]], job["batch_size"], job["seed"])
    batches = list(sampler)
    collator = Collator(tokenizer, job["max_length"])
    t0 = time.perf_counter()
    for b in batches:
        collator([(i, job["train_texts"][i], job["train_ids"][i]) for i in b])
    collate_s = time.perf_counter() - t0
    history = fit.history
    return {
        "seconds": seconds,
        "peak_rss_mb": peak,
        "dev_macro_f1": fit.best_metric,
        "best_epoch": fit.best_epoch,
        "padding_share": padding_share(lengths, batches),
        "profile": {
            "train_s_per_epoch": float(np.mean([h["train_seconds"] for h in history])),
            "eval_and_checkpoint_s_per_epoch": float(
                np.mean([h["seconds"] - h["train_seconds"] for h in history])
            ),
            "checkpoint_s": checkpoint_s,
            "collate_s_per_epoch": collate_s,
        },
    }


def run_trainer(job: dict, grouped: bool) -> dict:
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )
    from transformers.trainer_utils import set_seed

    from tunewise.metrics import classification_metrics

    set_seed(job["seed"])
    tokenizer = AutoTokenizer.from_pretrained(job["encoder"])
    t0 = time.perf_counter()

    def encode(texts, ids):
        enc = tokenizer(texts, truncation=True, max_length=job["max_length"])
        return [
            {"input_ids": a, "attention_mask": m, "labels": y}
            for a, m, y in zip(enc["input_ids"], enc["attention_mask"], ids, strict=True)
        ]

    train = encode(job["train_texts"], job["train_ids"])
    dev = encode(job["dev_texts"], job["dev_ids"])
    tokenize_s = time.perf_counter() - t0
    model = AutoModelForSequenceClassification.from_pretrained(job["encoder"], num_labels=len(job["labels"]))

    def metrics(pred):
        return {
            "macro_f1": classification_metrics(
                pred.label_ids.tolist(), pred.predictions.argmax(-1).tolist(), job["labels"]
            )["macro_f1"]
        }

    with tempfile.TemporaryDirectory() as work:
        args = TrainingArguments(
            output_dir=work,
            per_device_train_batch_size=job["batch_size"],
            per_device_eval_batch_size=128,
            num_train_epochs=job["epochs"],
            learning_rate=job["lr"],
            weight_decay=0.01,
            warmup_steps=0.1,
            lr_scheduler_type="linear",
            max_grad_norm=1.0,
            eval_strategy="epoch",
            save_strategy="epoch",
            logging_strategy="epoch",
            load_best_model_at_end=True,
            metric_for_best_model="macro_f1",
            save_total_limit=1,
            report_to="none",
            use_cpu=True,
            seed=job["seed"],
            data_seed=job["seed"],
            disable_tqdm=True,
            dataloader_num_workers=0,
            train_sampling_strategy="group_by_length" if grouped else "random",
        )
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=train,
            eval_dataset=dev,
            data_collator=DataCollatorWithPadding(tokenizer),
            processing_class=tokenizer,
            compute_metrics=metrics,
        )
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
        peak = peak_rss_mb()
        evals = [h for h in trainer.state.log_history if "eval_macro_f1" in h]
        sampler = trainer._get_train_sampler()
        order = list(iter(sampler)) if sampler is not None else list(range(len(train)))
    lengths = [len(x["input_ids"]) for x in train]
    b = job["batch_size"]
    batches = [order[i : i + b] for i in range(0, len(order), b)]
    del torch
    return {
        "seconds": seconds,
        "peak_rss_mb": peak,
        "dev_macro_f1": max(h["eval_macro_f1"] for h in evals),
        "best_epoch": int(max(evals, key=lambda h: h["eval_macro_f1"])["epoch"]),
        "padding_share": padding_share(lengths, batches),
        "profile": {
            "tokenize_up_front_s": tokenize_s,
            "eval_s_per_epoch": float(np.mean([h["eval_runtime"] for h in evals])),
        },
    }


def _arm(job: dict, arm: str, queue) -> None:
    import torch

    torch.set_num_threads(job["threads"])
    result = run_tunewise(job) if arm == "tunewise" else run_trainer(job, grouped=arm == "trainer-grouped")
    queue.put(result)


def run_arm(job: dict, arm: str) -> dict:
    """One arm in a fresh process (its own imports, caches and peak memory)."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_arm, args=(job, arm, queue))
    proc.start()
    result = queue.get()
    proc.join()
    if proc.exitcode:
        raise RuntimeError(f"arm {arm} failed with exit code {proc.exitcode}")
    n = len(job["train_texts"]) * job["epochs"]
    result["samples_per_s"] = n / result["seconds"]
    return result


def bert_base_like(encoder: str, folder: Path, seed: int) -> str:
    """A BERT-base-shaped encoder (random weights, the bundled vocabulary) saved like a hub
    checkpoint, so both loops load exactly the same weights."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(encoder)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        max_position_embeddings=512,
    )
    BertModel(config).save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return str(folder)


def stratified_take(texts: list[str], ids: list[int], n: int, seed: int) -> tuple[list[str], list[int]]:
    """Exactly ``n`` examples (or all there are), each class in its share (largest remainders),
    reproducibly."""
    rng = np.random.default_rng(seed)
    by_class: dict[int, list[int]] = {}
    for i, y in enumerate(ids):
        by_class.setdefault(y, []).append(i)
    n = min(n, len(ids))
    quotas = {y: n * len(m) / len(ids) for y, m in sorted(by_class.items())}
    counts = {y: int(q) for y, q in quotas.items()}
    for y in sorted(quotas, key=lambda y: counts[y] - quotas[y])[: n - sum(counts.values())]:
        counts[y] += 1
    chosen: list[int] = []
    for y, members in sorted(by_class.items()):
        chosen += rng.choice(members, size=counts[y], replace=False).tolist()
    rng.shuffle(chosen)
    return [texts[i] for i in chosen], [ids[i] for i in chosen]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", required=True)
    parser.add_argument("--label-map")
    parser.add_argument("--encoder", default="tunewise-mini-zh")
    parser.add_argument(
        "--models", nargs="+", default=["bundled", "bert-base"], choices=["bundled", "bert-base"]
    )
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    parser.add_argument("--train", type=int, default=2000, help="training examples (bundled encoder)")
    parser.add_argument("--dev", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument(
        "--base-train", type=int, default=320, help="training examples for the BERT-base shape"
    )
    parser.add_argument("--base-dev", type=int, default=160)
    parser.add_argument("--base-epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/bench-throughput")
    args = parser.parse_args()

    from tunewise.data.prepare import prepare_data
    from tunewise.pretrained import resolve_pretrained

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = prepare_data(args.data, seed=args.seed, label_map=args.label_map)
    labels = data.labels
    all_train = (data.texts("train"), data.label_ids("train"))
    all_dev = (data.texts("dev"), data.label_ids("dev"))
    encoder = str(resolve_pretrained(args.encoder))
    report: dict = {"args": vars(args), "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            base = model == "bert-base"
            n_train, n_dev, epochs = (
                (args.base_train, args.base_dev, args.base_epochs)
                if base
                else (args.train, args.dev, args.epochs)
            )
            train_texts, train_ids = stratified_take(*all_train, n_train, args.seed)
            dev_texts, dev_ids = stratified_take(*all_dev, n_dev, args.seed)
            job = {
                "encoder": bert_base_like(encoder, Path(tmp) / "bert-base", args.seed) if base else encoder,
                "labels": labels,
                "train_texts": train_texts,
                "train_ids": train_ids,
                "dev_texts": dev_texts,
                "dev_ids": dev_ids,
                "epochs": epochs,
                "batch_size": args.batch_size,
                "max_length": args.max_length,
                "lr": args.lr,
                "seed": args.seed,
                "threads": args.threads,
            }
            results = {}
            for arm in args.arms:
                print(f"[{model}] {arm}: {len(train_texts)} examples x {epochs} epochs ...", flush=True)
                results[arm] = run_arm(job, arm)
                r = results[arm]
                print(
                    f"  {r['samples_per_s']:.1f} samples/s · {r['seconds']:.0f} s · dev macro-F1 "
                    f"{r['dev_macro_f1']:.4f} · peak RSS {r['peak_rss_mb']:.0f} MB · padding "
                    f"{r['padding_share']:.0%}",
                    flush=True,
                )
            report["models"][model] = {
                "train": len(train_texts),
                "dev": len(dev_texts),
                "epochs": epochs,
                "arms": results,
            }
    print_table(report)
    (out / "results.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))


def markdown_table(report: dict) -> str:
    """One row per model and arm, against Hugging Face ``Trainer`` as most people run it
    (BENCHMARKS.md's throughput tables are generated from it: bench/tables.py)."""
    lines = [
        "| model | arm | samples/s | vs trainer | dev macro-F1 | Δ F1 (points) | peak RSS MB | padding |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for model, block in report["models"].items():
        arms = block["arms"]
        ref = arms.get("trainer")
        for arm, r in arms.items():
            ratio = f"{r['samples_per_s'] / ref['samples_per_s']:.2f}x" if ref else "—"
            delta = f"{100 * (r['dev_macro_f1'] - ref['dev_macro_f1']):+.2f}" if ref else "—"
            lines.append(
                f"| {model} | {arm} | {r['samples_per_s']:.1f} | {ratio} | {r['dev_macro_f1']:.4f} | "
                f"{delta} | {r['peak_rss_mb']:,.0f} | {r['padding_share']:.0%} |"
            )
    return "\n".join(lines) + "\n"


def print_table(report: dict) -> None:
    print("\n" + markdown_table(report))
    for model, block in report["models"].items():
        for arm, r in block["arms"].items():
            print(f"{model} {arm} profile: " + ", ".join(f"{k} {v:.2f}" for k, v in r["profile"].items()))


if __name__ == "__main__":
    main()
