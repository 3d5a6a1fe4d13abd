"""Do typed link kinds help? The normaliser with ``url_kinds`` on ([URL_BRAND], [URL_IP],
[URL_ODD], [URL_SHORT]) against plain ``[URL]``, everything else equal.

Both arms use the same data, the same train/dev/test split (seed 0, 80/10/10) and the same
seeds; each trains the TF-IDF + linear SVM reference (C chosen on dev) and the ``scratch``
TextCNN (epoch chosen on dev), and is scored on held-out data only: the test split (all of it,
and the messages in it that carry a link) and each ``--test-data`` set (out of domain).

    python bench/url_kinds.py --out runs/bench-url-kinds \\
        --test-data probe=src/tunewise/samples/probe_sms.csv \\
        --test-data spam=../shared/data/sms_spam_sample --save

Without ``--data`` it uses the embedded sample set. Prints a table of both arms and their
difference; ``--save`` writes bench/results/url_kinds.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
from rich.console import Console

from tunewise.baseline import fit_tfidf_svm
from tunewise.data.normalize import NormalizerConfig, SmsNormalizer
from tunewise.data.prepare import prepare_data
from tunewise.evaluation import evaluate_model
from tunewise.metrics import classification_metrics
from tunewise.ood import TestSet, load_test_set, score_test_set
from tunewise.recipes import load_recipe
from tunewise.samples import sample_sms_path
from tunewise.training.run import TrainOptions, train_model

RESULTS = Path(__file__).parent / "results"


def _link_rows(texts: list[str]) -> list[int]:
    return [i for i, t in enumerate(texts) if "[URL" in t]


def tfidf_arm(data_path, config: NormalizerConfig, test_sets: list[TestSet], label_column) -> dict:
    data = prepare_data(data_path, normalizer=SmsNormalizer(config), seed=0, label_column=label_column)
    model = fit_tfidf_svm(
        data.texts("train"), data.label_ids("train"), data.texts("dev"), data.label_ids("dev")
    )
    test, truth = data.texts("test"), data.label_ids("test")
    predicted = model.predict(test)
    links = _link_rows(test)
    out = {
        "test_macro_f1": classification_metrics(truth, predicted, data.labels)["macro_f1"],
        "test_link_macro_f1": classification_metrics(
            [truth[i] for i in links], [predicted[i] for i in links], data.labels
        )["macro_f1"],
        "test_link_n": len(links),
        "ood": {},
    }
    normal = data.labels.index("normal")
    normalize = SmsNormalizer(config)
    for t in test_sets:
        loaded = load_test_set(t)
        texts = normalize.batch(loaded.texts)
        labels_predicted = [data.labels[i] for i in model.predict(texts)]
        out["ood"][t.name] = score_test_set(
            t.name,
            loaded.labels,
            model.fraud_scores(texts, normal),
            np.array([p != "normal" for p in labels_predicted]),
            model_labels=data.labels,
            normal_label="normal",
            threshold=None,
            predicted=labels_predicted,
        )
    return out


def scratch_arm(data_path, config, test_sets, label_column, seed: int, out_dir: Path, epochs: int) -> dict:
    recipe = load_recipe("scratch").with_epochs(epochs)
    outcome = train_model(
        TrainOptions(
            data=data_path,
            recipe=recipe,
            out=out_dir,
            seed=seed,
            split_seed=0,
            label_column=label_column,
            normalizer=config,
            show_progress=False,
            log_with=None,
        ),
        console=Console(stderr=True, quiet=True),
    )
    metrics = evaluate_model(out_dir, data_path, out_dir / "eval", split="test", label_column=label_column)
    data = outcome.data
    test = data.texts("test")
    links = set(_link_rows(test))
    from tunewise.inference import Predictor

    predictor = Predictor(out_dir)
    predicted = [predictor.labels.index(p.label) for p in predictor.predict([test[i] for i in sorted(links)])]
    truth = [data.label_ids("test")[i] for i in sorted(links)]
    ood = {}
    if test_sets:
        ood = evaluate_model(out_dir, None, out_dir / "eval-ood", test_sets=test_sets)["test_sets"]
    return {
        "test_macro_f1": metrics["macro_f1"],
        "test_link_macro_f1": classification_metrics(truth, predicted, data.labels)["macro_f1"],
        "test_link_n": len(links),
        "train_seconds": outcome.fit.wall_time_s,
        "ood": ood,
    }


def _figure(run: dict, key: str) -> float | None:
    if key.startswith("ood:"):
        _, name, field = key.split(":")
        value = run["ood"].get(name, {}).get(field)
        return None if value is None else float(value)
    return float(run[key])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", help="labelled data (default: the embedded sample set)")
    parser.add_argument("--test-data", action="append", default=[], help="NAME=PATH, repeatable")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--out", default="runs/bench-url-kinds")
    parser.add_argument("--save", action="store_true")
    args = parser.parse_args()

    console = Console(stderr=True, soft_wrap=True)
    data_path = Path(args.data) if args.data else sample_sms_path()
    label_column = None if args.data else "label"
    test_sets = [TestSet.parse(s) for s in args.test_data]
    out = Path(args.out)
    results: dict = {
        "data": str(data_path),
        "test_sets": {t.name: str(t.path) for t in test_sets},
        "arms": {},
    }
    for kinds in (False, True):
        arm = "url_kinds" if kinds else "plain_url"
        config = NormalizerConfig(url_kinds=kinds)
        started = time.perf_counter()
        runs = {"tfidf-svm": [tfidf_arm(data_path, config, test_sets, label_column)]}
        console.print(f"{arm} tfidf-svm: test macro-F1 {runs['tfidf-svm'][0]['test_macro_f1']:.4f}")
        runs["scratch"] = []
        for seed in range(args.seeds):
            run = scratch_arm(
                data_path, config, test_sets, label_column, seed, out / f"{arm}-scratch-s{seed}", args.epochs
            )
            runs["scratch"].append(run)
            console.print(f"{arm} scratch seed {seed}: test macro-F1 {run['test_macro_f1']:.4f}")
        results["arms"][arm] = {"runs": runs, "seconds": time.perf_counter() - started}

    keys = ["test_macro_f1", "test_link_macro_f1"]
    for t in test_sets:
        keys += [f"ood:{t.name}:headline"]
        if t.name != "spam":
            keys += [f"ood:{t.name}:false_positive_rate", f"ood:{t.name}:recall"]
        else:
            keys += [f"ood:{t.name}:false_positive_rate"]
    lines = ["| model | figure | plain [URL] | link kinds | difference |", "|---|---|---|---|---|"]
    for model in ("tfidf-svm", "scratch"):
        for key in keys:
            values = []
            for arm in ("plain_url", "url_kinds"):
                figures = [_figure(r, key) for r in results["arms"][arm]["runs"][model]]
                figures = [f for f in figures if f is not None]
                values.append(statistics.fmean(figures) if figures else None)
            if None in values:
                continue
            lines.append(
                f"| {model} | {key} | {values[0]:.4f} | {values[1]:.4f} | {values[1] - values[0]:+.4f} |"
            )
    table = "\n".join(lines)
    results["table"] = table
    print(table)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2, ensure_ascii=False), encoding="utf-8")
    if args.save:
        (RESULTS / "url_kinds.json").write_text(
            json.dumps(results, indent=2, ensure_ascii=False), encoding="utf-8"
        )


if __name__ == "__main__":
    main()
