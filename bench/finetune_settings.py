"""Few-label fine-tuning settings for a small encoder, chosen without touching the dev split.

The ``finetune`` recipe's rates (backbone 5e-5) are the usual ones for BERT-base; a 4-layer,
256-wide encoder with a few dozen labelled messages may want more steps and larger rates.
This script compares recipe overrides on a *tuning set carved out of the training split*
(stratified, seed 99), drawing the labelled fraction from the rest of the training split, so
the dev split that ``bench/pretraining_value.py`` reports stays untouched by the choice.

    python bench/finetune_settings.py --data ../shared/data/telecom_fraud_5 \
        --label-map examples/telecom_fraud_5.labels.yaml --out runs/bench-finetune-settings

A setting is comma-separated overrides of the ``finetune`` recipe: ``epochs=30,lr=3e-4,batch=16``
(``lr`` is the base rate: the full stage runs at half of it, the head group at ``head_lr``;
also ``patience`` for early stopping and ``max_length``).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from fewlabel import FewLabelSplits, apply_setting, train_selected  # bench/fewlabel.py, beside this script
from rich.console import Console

from tunewise.data.prepare import prepare_data
from tunewise.pretrained import resolve_pretrained
from tunewise.recipes import load_recipe

DEFAULT_SETTINGS = [
    "epochs=10",  # what bench/pretraining_value.py used first
    "epochs=30,batch=16",
    "epochs=30,batch=16,lr=3e-4",
    "epochs=30,batch=16,lr=1e-3",
]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", required=True)
    parser.add_argument("--label-map")
    parser.add_argument("--encoder", default="tunewise-mini-zh")
    parser.add_argument("--recipe", default="finetune", help="recipe the settings override")
    parser.add_argument("--settings", nargs="+", default=DEFAULT_SETTINGS)
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.01, 0.05])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--out", default="runs/bench-finetune-settings")
    args = parser.parse_args()

    console = Console(stderr=True, soft_wrap=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    encoder = resolve_pretrained(args.encoder)
    data = prepare_data(args.data, seed=0, label_map=args.label_map)
    splits = FewLabelSplits(data)
    base = load_recipe(args.recipe)
    base = base.model_copy(update={"model": base.model.model_copy(update={"max_length": args.max_length})})

    results_path = out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else []
    done = {(r["setting"], r["fraction"], r["seed"]) for r in results}
    for fraction in args.fractions:
        for seed in args.seeds:
            train = splits.labelled(fraction, seed)
            for setting in args.settings:
                if (setting, fraction, seed) in done:
                    continue
                recipe = apply_setting(base, setting)
                run = train_selected(recipe, splits, train, encoder, seed, console)
                fit = run.fit
                results.append(
                    {
                        "setting": setting,
                        "fraction": fraction,
                        "seed": seed,
                        "train_size": len(train.texts),
                        "tune_macro_f1": fit.best_metric,
                        "best_epoch": fit.best_epoch,
                        "epochs_run": fit.epochs_run,
                        "seconds": round(run.seconds, 1),
                    }
                )
                console.print(
                    f"[bold]{fraction:.0%} seed {seed} {setting}: tuning macro-F1 {fit.best_metric:.4f}[/]"
                )
                results_path.write_text(json.dumps(results, indent=2), encoding="utf-8")

    lines = [
        f"Tuning set: {len(splits.validation.texts):,} messages held back from the training split "
        "(dev untouched).",
        "",
        "| setting | " + " | ".join(f"{f:.0%} labels" for f in args.fractions) + " | seconds |",
        "|---|" + "---|" * len(args.fractions) + "---|",
    ]
    for setting in args.settings:
        rows = [r for r in results if r["setting"] == setting and r["seed"] in args.seeds]
        cells = [
            f"{statistics.mean(r['tune_macro_f1'] for r in rows if r['fraction'] == f):.4f}"
            for f in args.fractions
        ]
        secs = sum(r["seconds"] for r in rows) / max(1, len(rows))
        lines.append(f"| `{setting}` | {' | '.join(cells)} | {secs:.0f} |")
    table = "\n".join(lines) + "\n"
    (out / "table.md").write_text(table, encoding="utf-8")
    print(table)


if __name__ == "__main__":
    main()
