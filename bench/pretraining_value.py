"""Does pretraining earn its place? Fine-tune a pretrained encoder vs the same architecture
from random initialisation (same recipe, same budget), plus domain-adaptive pretraining
and a TF-IDF + linear SVM baseline, at small label fractions, over several seeds.

Every run uses one fixed stratified split of the data (seed 0) and reports macro-F1 on
its dev split; the label fraction is drawn from the training split with the run's seed.

    python bench/pretraining_value.py --data ../shared/data/telecom_fraud_5 \
        --label-map examples/telecom_fraud_5.labels.yaml --encoder tunewise-mini-zh \
        --out runs/bench-pretraining

Prints a table and writes results.json and table.md to --out.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from rich.console import Console
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics import f1_score
from sklearn.svm import LinearSVC

from tunewise.data.prepare import prepare_data, subsample
from tunewise.models import build_model
from tunewise.pretrained import resolve_pretrained
from tunewise.pretraining.run import PretrainOptions, pretrain
from tunewise.recipes import load_recipe
from tunewise.training.loop import TextSplit, fit_classifier


def tfidf_svm(train_texts, train_ids, dev_texts, dev_ids) -> float:
    vec = TfidfVectorizer(analyzer="char", ngram_range=(1, 3), sublinear_tf=True, min_df=1)
    clf = LinearSVC(C=1.0).fit(vec.fit_transform(train_texts), train_ids)
    return float(f1_score(dev_ids, clf.predict(vec.transform(dev_texts)), average="macro"))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", required=True)
    parser.add_argument("--label-map")
    parser.add_argument("--encoder", default="tunewise-mini-zh", help="pretrained encoder (name or dir)")
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.01, 0.05])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=20, help="finetune recipe scaled to this many epochs")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--dapt-epochs", type=int, default=2, help="0 skips domain-adaptive pretraining")
    parser.add_argument("--out", default="runs/bench-pretraining")
    args = parser.parse_args()

    console = Console(stderr=True, soft_wrap=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    encoder = resolve_pretrained(args.encoder)
    data = prepare_data(args.data, seed=0, label_map=args.label_map)
    labels, dev = data.labels, TextSplit(data.texts("dev"), data.label_ids("dev"))

    variants = {"finetune (pretrained)": encoder, "same architecture, random init": encoder}
    if args.dapt_epochs:
        corpus = out / "train_texts.txt"  # the training split's texts; labels unused
        corpus.write_text("\n".join(data.texts("train")), encoding="utf-8")
        dapt_dir = out / "encoder-dapt"
        if not (dapt_dir / "model.safetensors").is_file():
            pretrain(
                PretrainOptions(
                    out=dapt_dir,
                    corpus_files=[corpus],
                    default_corpus=False,
                    from_dir=encoder,
                    epochs=args.dapt_epochs,
                    show_progress=False,
                    log_with=None,
                ),
                console=console,
            )
        variants["finetune after domain-adaptive pretraining"] = str(dapt_dir)

    base = load_recipe("finetune").with_epochs(args.epochs)
    base = base.model_copy(update={"model": base.model.model_copy(update={"max_length": args.max_length})})
    results = []
    for fraction in args.fractions:
        for seed in args.seeds:
            train_ex = subsample(data.splits["train"], fraction, seed=seed)
            index = {lab: i for i, lab in enumerate(labels)}
            train = TextSplit([e.text for e in train_ex], [index[e.label] for e in train_ex])
            start = time.perf_counter()
            f1 = tfidf_svm(train.texts, train.label_ids, dev.texts, dev.label_ids)
            results.append(
                {
                    "fraction": fraction,
                    "seed": seed,
                    "variant": "TF-IDF char 1-3 + LinearSVC",
                    "macro_f1": f1,
                    "seconds": time.perf_counter() - start,
                    "train_size": len(train.texts),
                }
            )
            for name, source in variants.items():
                recipe = base
                if "random" in name:
                    recipe = base.model_copy(
                        update={"model": base.model.model_copy(update={"init": "random"})}
                    )
                from accelerate.utils import set_seed

                set_seed(seed)
                built = build_model(recipe.model, labels, pretrained=source)
                start = time.perf_counter()
                with tempfile.TemporaryDirectory() as work:
                    fit = fit_classifier(
                        built.model,
                        built.tokenizer,
                        train,
                        dev,
                        recipe,
                        work,
                        labels=labels,
                        seed=seed,
                        console=console,
                        show_progress=False,
                        log_with=None,
                    )
                results.append(
                    {
                        "fraction": fraction,
                        "seed": seed,
                        "variant": name,
                        "macro_f1": fit.best_metric,
                        "best_epoch": fit.best_epoch,
                        "seconds": time.perf_counter() - start,
                        "train_size": len(train.texts),
                    }
                )
                console.print(
                    f"[bold]{fraction:.0%} seed {seed} {name}: dev macro-F1 {fit.best_metric:.4f}[/]"
                )
            (out / "results.json").write_text(
                json.dumps(results, indent=2, ensure_ascii=False), encoding="utf-8"
            )

    table = summarise(results, args)
    (out / "table.md").write_text(table, encoding="utf-8")
    print(table)


def summarise(results: list[dict], args) -> str:
    names = list(dict.fromkeys(r["variant"] for r in results))
    sizes = {r["fraction"]: r["train_size"] for r in results}
    headers = [f"{f:.0%} labels (n={sizes[f]})" for f in args.fractions]
    lines = [f"| variant | {' | '.join(headers)} |", "|---|" + "---|" * len(args.fractions)]
    means: dict[tuple[str, float], float] = {}
    for name in names:
        cells = []
        for f in args.fractions:
            scores = [r["macro_f1"] for r in results if r["variant"] == name and r["fraction"] == f]
            means[name, f] = statistics.mean(scores)
            sd = statistics.stdev(scores) if len(scores) > 1 else 0.0
            cells.append(f"{means[name, f]:.4f} ± {sd:.4f}")
        lines.append(f"| {name} | {' | '.join(cells)} |")
    pre, rnd = "finetune (pretrained)", "same architecture, random init"
    gaps = [f"{f:.0%}: {100 * (means[pre, f] - means[rnd, f]):+.1f} points" for f in args.fractions]
    lines.append("")
    lines.append(
        f"Pretrained minus random init (macro-F1, mean of {len(args.seeds)} seeds): " + "; ".join(gaps)
    )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
