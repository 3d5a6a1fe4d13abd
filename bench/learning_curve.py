"""The full learning curve on real data: `tunewise compare --tune` on Telecom_Fraud_Texts_5.

Five arms — the TF-IDF + linear SVM reference, the TextCNN from scratch (`scratch`), the
bundled encoder's architecture from random weights (`scratch-transformer`), fine-tuning the
bundled tunewise-mini-zh (`finetune-small`) and fine-tuning after domain-adaptive pretraining
on the training texts (`finetune-small-dapt`, ULMFiT) — at 1%, 5%, 20% and 100% of the
training labels, 3 paired seeds each, on one fixed split (seed 0, 80/10/10). Every arm gets
the same search (`--tune grid`: learning rate x1/3, x1, x3, epochs up to a step budget with
early stopping), scored on a 20% validation slice of each run's own labels; figures are on
the test split, which no choice looks at, with paired bootstrap intervals for every gap.

    python bench/learning_curve.py --data ../shared/data/telecom_fraud_5 \\
        --label-map examples/telecom_fraud_5.labels.yaml --out runs/bench-learning-curve-tuned

Resumable (rerun the same command); --report-only writes the report from the runs finished
so far without running any. The whole curve is many CPU-hours on a laptop, so it can also
go on in a fresh checkout: when --out holds no results yet and --data names the data set
the saved runs used, the runs saved in bench/results/learning_curve_tuned.json (by an
earlier --save) are taken as finished and only the missing ones run. Writes the
comparison's results.json, report.md, report.html and plots into --out, and with --save
copies results.json and the learning curve into bench/results/ for BENCHMARKS.md.

The same protocol on images (issue 17): the note's CustomCNN from scratch against the
ImageNet EfficientNet-Lite0 fine-tuned, each saved under its own name:

    python bench/learning_curve.py --data ../shared/data/hymenoptera \\
        --recipes image-scratch image-finetune --fractions 0.25 0.5 1 \\
        --out runs/bench-hymenoptera-tuned --results hymenoptera_tuned --save
    python bench/learning_curve.py --data ../shared/data/cifar10_subset \\
        --recipes image-scratch image-finetune --image-size image-finetune=64 \\
        --fractions 0.02 0.1 1 --seeds 1 --out runs/bench-cifar10-tuned --results cifar10_tuned --save
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from rich.console import Console

from tunewise.compare import CompareOptions, load_results, print_comparison, run_comparison, write_report
from tunewise.compare.runs import parse_image_size
from tunewise.compare.summary import cells, fmt_fraction, fmt_score, fractions, gap_ci, recipe_order, verdict
from tunewise.tuning import TuneSpec

RESULTS = Path(__file__).parent / "results"
SAVED = RESULTS / "learning_curve_tuned.json"


def continue_saved(out: Path, data: str, console: Console, saved: Path = SAVED) -> bool:
    """Start ``out`` from the runs saved in the repository when it has none of its own and the
    saved runs are of the same data set (same file or folder name: the checkout, and with it
    the path, changes between sessions). The comparison then resumes from ``results.json``: it
    re-derives the test split's keys, which the saved copy leaves out, and still refuses the
    file if the data's content, split or tuning differ. Returns whether it seeded ``out``.

    >>> continue_saved(Path("runs/curve"), "../shared/data/telecom_fraud_5", Console())  # doctest: +SKIP
    True
    """
    if (out / "results.json").exists() or not saved.exists():
        return False
    runs = json.loads(saved.read_text())
    if Path(str(runs.get("data", ""))).name != Path(data).name:
        return False  # another data set: start from nothing, the saved runs are not these
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(saved, out / "results.json")
    console.print(f"continuing from the {len(runs['runs'])} runs saved in {saved}")
    return True


def save(out: Path, plot: Path, saved: Path = SAVED) -> None:
    """Copy the results into bench/results/ for BENCHMARKS.md (``saved``, and the plot beside
    it as ``.png``): one compact line of JSON, and without the test split's keys (hashes of
    the messages or images, which are not ours to publish)."""
    saved.parent.mkdir(exist_ok=True)
    results = json.loads((out / "results.json").read_text())
    results.pop("test_keys", None)
    saved.write_text(json.dumps(results, ensure_ascii=False, separators=(",", ":")) + "\n")
    shutil.copy(plot, saved.with_suffix(".png"))


def markdown_tables(results: dict) -> str:
    """The tables BENCHMARKS.md quotes: test macro-F1 (mean ± sd, and per seed), training
    time, and the gaps between arms with their paired bootstrap intervals."""
    table = cells(results)
    names = recipe_order(results)
    fr = fractions(results)

    def size(f: float) -> float:
        return max((table[(n, f)].train_size for n in names if (n, f) in table), default=0)

    head = "| recipe | " + " | ".join(f"{fmt_fraction(f)} ({size(f):,.0f})" for f in fr) + " |"
    rule = "|---|" + "---|" * len(fr)
    out = ["**Test macro-F1** (mean ± sd over seeds; per seed below)", "", head, rule]
    for n in names:
        out.append(f"| {n} | " + " | ".join(fmt_score(table.get((n, f))) for f in fr) + " |")
    seeds = sorted({r["seed"] for r in results["runs"]})
    out += ["", f"Per seed ({' / '.join(str(s) for s in seeds)}):", "", head, rule]
    for n in names:
        row = []
        for f in fr:
            c = table.get((n, f))
            row.append(
                " / ".join(f"{r['test_macro_f1']:.3f}" for r in sorted(c.runs, key=lambda r: r["seed"]))
                if c
                else "—"
            )
        out.append(f"| {n} | " + " | ".join(row) + " |")
    out += ["", "Training time per run, search included (mean seconds):", "", head, rule]
    for n in names:
        out.append(
            f"| {n} | "
            + " | ".join(
                f"{table[(n, f)].mean('train_seconds'):,.0f}" if (n, f) in table else "—" for f in fr
            )
            + " |"
        )
    out += ["", "Gaps (test macro-F1 points, first minus second, 95% paired bootstrap interval):", ""]
    out += ["| gap | " + " | ".join(fmt_fraction(f) for f in fr) + " |", rule]
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            row = []
            for f in fr:
                ci = gap_ci(results, a, b, f)
                row.append("—" if ci is None else ci.fmt() + (" (tie)" if ci.tie else ""))
            out.append(f"| {a} − {b} | " + " | ".join(row) + " |")
    out += ["", "Verdict:", ""] + [f"- {line}" for line in verdict(results)]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", help="the labelled data (required unless --report-only)")
    parser.add_argument("--label-map")
    parser.add_argument(
        "--recipes",
        nargs="+",
        default=["scratch", "scratch-transformer", "finetune-small", "finetune-small-dapt"],
    )
    parser.add_argument("--tune", choices=["grid", "lr-find", "off"], default="grid")
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.01, 0.05, 0.2, 1.0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--max-length", type=int, default=128, help="tokens per message (SMS are short)")
    parser.add_argument("--pretrained", help="encoder for the fine-tuning recipes (default: bundled)")
    parser.add_argument(
        "--image-size", help="image recipes' input side: 224, or RECIPE=SIZE entries (image-finetune=64)"
    )
    parser.add_argument(
        "--results",
        default=SAVED.stem,
        help=f"name of the saved copy in bench/results/ (default {SAVED.stem}; e.g. hymenoptera_tuned)",
    )
    parser.add_argument("--out", default="runs/bench-learning-curve-tuned")
    parser.add_argument("--save", action="store_true", help="copy results and plot into bench/results/")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="run nothing: write the report (and with --save copy it) from the runs finished so far",
    )
    args = parser.parse_args()

    if not args.data and not args.report_only:
        parser.error("--data is required")
    console = Console(stderr=True, soft_wrap=True)
    saved = RESULTS / f"{args.results}.json"
    if args.report_only:
        results = load_results(args.out)
        if results is None or not results["runs"]:
            raise SystemExit(f"{args.out}: no finished runs to report")
        console.print(f"{len(results['runs'])} finished runs in {args.out}")
    else:
        continue_saved(Path(args.out), args.data, console, saved)
        results = run_comparison(
            CompareOptions(
                data=args.data,
                out=args.out,
                recipes=args.recipes,
                fractions=args.fractions,
                seeds=args.seeds,
                pretrained=args.pretrained,
                max_length=args.max_length,
                image_size=parse_image_size(args.image_size) if args.image_size else None,
                label_map=args.label_map,
                tune=None if args.tune == "off" else TuneSpec(method=args.tune),
            ),
            console=console,
        )
    print(markdown_tables(results))
    given = (("data", args.data), ("label_map", args.label_map), ("image_size", args.image_size))
    command = "python bench/learning_curve.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in given if v
    )
    files = write_report(results, args.out, command=command)
    print_comparison(results, Console(soft_wrap=True))
    console.print(f"report: {files['markdown']}")
    if args.save:
        save(Path(args.out), files["learning_curve"], saved)
        console.print(f"saved to {saved}")


if __name__ == "__main__":
    main()
