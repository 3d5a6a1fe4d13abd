"""Does pretraining earn its place? Fine-tune a pretrained encoder vs the same architecture
from random initialisation (same recipe, same budget), plus domain-adaptive pretraining
and a TF-IDF + linear SVM baseline, at small label fractions, over several seeds.

Protocol (bench/fewlabel.py): one fixed stratified split (seed 0); a validation set carved out
of the training split drives early stopping / epoch selection for the transformers and the
choice of C for the SVM; each run's labelled fraction comes from the rest of the training
split with the run's seed; every figure is macro-F1 on the dev split, which nothing is
selected on.

    python bench/pretraining_value.py --data ../shared/data/telecom_fraud_5 \
        --label-map examples/telecom_fraud_5.labels.yaml --encoder tunewise-mini-zh \
        --recipe finetune-small --out runs/bench-pretraining

Prints a table and writes results.json (resumable: finished runs are kept) and table.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from fewlabel import FewLabelSplits, apply_setting, macro_f1, tfidf_svm, train_selected
from rich.console import Console

from tunewise.data.prepare import prepare_data
from tunewise.pretrained import resolve_pretrained
from tunewise.pretraining.run import PretrainOptions, pretrain
from tunewise.recipes import load_recipe

PRETRAINED = "finetune (pretrained)"
RANDOM = "same architecture, random init"
DAPT = "finetune after domain-adaptive pretraining"
TFIDF = "TF-IDF char 1-3 + LinearSVC"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", required=True)
    parser.add_argument("--label-map")
    parser.add_argument("--encoder", default="tunewise-mini-zh", help="pretrained encoder (name or dir)")
    parser.add_argument("--recipe", default="finetune-small", help="recipe for every transformer run")
    parser.add_argument("--set", default="", help="recipe overrides, e.g. epochs=30,lr=1e-3")
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.01, 0.05])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument(
        "--validation", type=float, default=0.0625, help="share of the training split held out for selection"
    )
    parser.add_argument("--dapt-epochs", type=int, default=1, help="0 skips domain-adaptive pretraining")
    parser.add_argument(
        "--variants",
        nargs="+",
        default=["tfidf", "pretrained", "random", "dapt"],
        choices=["tfidf", "pretrained", "random", "dapt"],
        help="run only these (results of others already in --out are kept)",
    )
    parser.add_argument("--out", default="runs/bench-pretraining")
    args = parser.parse_args()

    console = Console(stderr=True, soft_wrap=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    encoder = resolve_pretrained(args.encoder)
    data = prepare_data(args.data, seed=0, label_map=args.label_map)
    splits = FewLabelSplits(data, args.validation)
    labels = splits.labels

    variants = {PRETRAINED: encoder, RANDOM: encoder}
    variants = {
        k: v for k, v in variants.items() if ("pretrained" if k == PRETRAINED else "random") in args.variants
    }
    if args.dapt_epochs and "dapt" in args.variants:
        # the training split's texts, labels unused (validation texts too: unlabelled text is
        # what a user has plenty of); never the dev split
        corpus = out / "train_texts.txt"
        corpus.write_text("\n".join(data.texts("train")), encoding="utf-8")
        dapt_dir = out / "encoder-dapt"
        if not (dapt_dir / "model.safetensors").is_file():
            pretrain(
                PretrainOptions(
                    out=dapt_dir,
                    corpus_files=[corpus],
                    default_corpus=False,
                    from_dir=encoder,
                    epochs=args.dapt_epochs,  # other settings: tunewise pretrain's defaults
                    show_progress=False,
                    log_with=None,
                ),
                console=console,
            )
        variants[DAPT] = str(dapt_dir)

    base = apply_setting(load_recipe(args.recipe), args.set)
    base = base.model_copy(update={"model": base.model.model_copy(update={"max_length": args.max_length})})
    (out / "recipe.yaml").write_text(base.to_yaml(), encoding="utf-8")
    results_path = out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else []
    done = {(r["fraction"], r["seed"], r["variant"]) for r in results}

    def record(row: dict) -> None:
        results.append(row)
        results_path.write_text(json.dumps(results, indent=2, ensure_ascii=False), encoding="utf-8")
        console.print(
            f"[bold]{row['fraction']:.0%} seed {row['seed']} {row['variant']}: "
            f"dev macro-F1 {row['macro_f1']:.4f}[/]"
        )

    for fraction in args.fractions:
        for seed in args.seeds:
            train = splits.labelled(fraction, seed)
            common = {"fraction": fraction, "seed": seed, "train_size": len(train.texts)}
            if "tfidf" in args.variants and (fraction, seed, TFIDF) not in done:
                start = time.perf_counter()
                f1, c = tfidf_svm(train, splits.validation, splits.dev)
                record(
                    {
                        **common,
                        "variant": TFIDF,
                        "macro_f1": f1,
                        "C": c,
                        "seconds": time.perf_counter() - start,
                    }
                )
            for name, source in variants.items():
                if (fraction, seed, name) in done:
                    continue
                recipe = base
                if name == RANDOM:
                    recipe = base.model_copy(
                        update={"model": base.model.model_copy(update={"init": "random"})}
                    )
                run = train_selected(recipe, splits, train, source, seed, console)
                record(
                    {
                        **common,
                        "variant": name,
                        # fit left the model at its best validation epoch; dev is scored once
                        "macro_f1": macro_f1(
                            run.built.model, run.built.tokenizer, splits.dev, recipe, labels
                        ),
                        "validation_macro_f1": run.fit.best_metric,
                        "best_epoch": run.fit.best_epoch,
                        "epochs_run": run.fit.epochs_run,
                        "seconds": run.seconds,
                    }
                )

    table = summarise(results, args, len(splits.validation.texts))
    (out / "table.md").write_text(table, encoding="utf-8")
    print(table)


def summarise(results: list[dict], args, validation_size: int) -> str:
    runs = [r for r in results if r["fraction"] in args.fractions and r["seed"] in args.seeds]
    names = list(dict.fromkeys(r["variant"] for r in runs))
    sizes = {r["fraction"]: r["train_size"] for r in runs}
    headers = [f"{f:.0%} labels (n≈{sizes[f]})" for f in args.fractions]
    lines = [
        f"Dev macro-F1, mean ± sd over seeds {args.seeds}; selection on a {validation_size}-message "
        "validation set from the training split.",
        "",
        f"| variant | {' | '.join(headers)} | mean seconds per run |",
        "|---|" + "---|" * len(args.fractions) + "---|",
    ]
    means: dict[tuple[str, float], float] = {}
    for name in names:
        cells = []
        for f in args.fractions:
            scores = [r["macro_f1"] for r in runs if r["variant"] == name and r["fraction"] == f]
            means[name, f] = statistics.mean(scores)
            sd = statistics.stdev(scores) if len(scores) > 1 else 0.0
            cells.append(f"{means[name, f]:.4f} ± {sd:.4f}")
        secs = statistics.mean(r["seconds"] for r in runs if r["variant"] == name)
        lines.append(f"| {name} | {' | '.join(cells)} | {secs:.0f} |")
    lines.append("")
    for other, label in ((RANDOM, "random init"), (TFIDF, "TF-IDF + SVM")):
        if (other, args.fractions[0]) in means and (PRETRAINED, args.fractions[0]) in means:
            gaps = [f"{f:.0%}: {100 * (means[PRETRAINED, f] - means[other, f]):+.1f}" for f in args.fractions]
            lines.append(f"Pretrained minus {label} (macro-F1 points): " + "; ".join(gaps))
            lines.append("")
    if all((DAPT, f) in means and (PRETRAINED, f) in means for f in args.fractions):
        gaps = [f"{f:.0%}: {100 * (means[DAPT, f] - means[PRETRAINED, f]):+.1f}" for f in args.fractions]
        lines.append("Domain-adapted minus pretrained (macro-F1 points): " + "; ".join(gaps))
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
