"""One run of a comparison, executed in its own process.

A fresh process per run gives each run a clean memory figure (the peak resident set of
that process alone, not of everything that ran before it) and keeps a crash in one run
from taking the finished ones with it.
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
import time
from pathlib import Path

import numpy as np

TFIDF = "tfidf-svm"
ORPHANED = 3  # exit status of a run whose comparison process died


def exit_with_parent() -> threading.Thread | None:
    """End this process (exit status ``ORPHANED``) as soon as the process that started it has
    ended. A comparison killed from outside (SIGKILL, a closed terminal, a CI timeout) cannot
    stop its run's process, which is forked from a fork server, not from the comparison;
    without this it trains on, unseen, and a resumed comparison would train the same run
    beside it, into the same directory. It waits on multiprocessing's parent sentinel (a pipe
    the parent holds under fork and forkserver, its process handle under spawn), so no pid is
    polled. Results and checkpoints are written to a temporary name and renamed, so ending
    here loses no finished work. Returns the watching thread, or None outside a child process.

    >>> exit_with_parent() is None  # the main process has no parent to watch
    True
    """
    import multiprocessing
    from multiprocessing.connection import wait

    parent = multiprocessing.parent_process()
    if parent is None:
        return None

    def watch() -> None:
        wait([parent.sentinel])
        os._exit(ORPHANED)

    thread = threading.Thread(target=watch, name="tunewise-exit-with-parent", daemon=True)
    thread.start()
    return thread


def peak_memory_mb() -> float:
    """Peak resident memory of this process so far, in MiB (Linux, macOS; psutil elsewhere)."""
    try:
        import resource
    except ImportError:  # Windows
        import psutil

        info = psutil.Process().memory_info()
        return getattr(info, "peak_wset", info.rss) / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def run_neural(job: dict) -> dict:
    """Train ``job['recipe']`` at one label fraction and seed; score its test split."""
    from rich.console import Console

    from tunewise.data.normalize import NormalizerConfig
    from tunewise.evaluation import evaluate_model
    from tunewise.recipes.schema import Recipe
    from tunewise.training.checkpoint import has_checkpoint
    from tunewise.training.run import ResumeMismatch, TrainOptions, train_model

    console = Console(stderr=True, soft_wrap=True, quiet=job["quiet"])
    run_dir = Path(job["run_dir"])
    recipe = Recipe.model_validate(job["recipe"])

    def options(resume: bool) -> TrainOptions:
        return TrainOptions(
            data=job["data"],
            recipe=recipe,
            out=run_dir,
            pretrained=job["pretrained"],
            seed=job["seed"],
            split_seed=job["split_seed"],
            resume=resume,
            label_fraction=job["fraction"],
            split=tuple(job["split"]),
            text_column=job["text_column"],
            label_column=job["label_column"],
            label_map=job["label_map"],
            normalizer=NormalizerConfig(**job["normalizer"]),
            normal_label=job.get("normal_label"),
            background=job.get("background", 0),
            audit=False,  # the comparison audited the data once, before its first run
            encoder_cache=job.get("encoder_cache"),
            show_progress=job["show_progress"],
            log_with=None,
        )

    def train(resume: bool):
        return train_model(options(resume), console=console)

    set_aside = None
    tuning = None
    if job.get("tune"):
        from tunewise.tuning import TuneSpec, tune_and_train

        spec = TuneSpec(**{**job["tune"], "grid": tuple(job["tune"]["grid"])})
        tuned = tune_and_train(options(resume=False), spec, job["n_labelled"], console=console)
        fit, dev_metrics, tuning = tuned.fit, tuned.dev_metrics, tuned.to_dict()
        # the labels the run had; ``fit_size`` of them trained, the rest chose
        train_size, tuning["fit_size"] = job["n_labelled"], tuned.train_size
    else:
        try:
            outcome = train(resume=has_checkpoint(run_dir / "checkpoints"))
        except ResumeMismatch:
            # an unfinished run left by a comparison with other settings (the comparison's own
            # results.json already matched, so this run is not one of its finished ones): it
            # cannot be continued, and it is not deleted either, only moved out of the way
            set_aside = _set_aside(run_dir)
            outcome = train(resume=False)
        fit, dev_metrics = outcome.fit, outcome.dev_metrics
        train_size = _labelled(outcome.data.splits["train"])
    # over-long texts truncated, as the dev scores that chose the epoch were: scoring test
    # another way (windows) measured 3-7 points lower and made dev and test disagree
    columns = {"text_column": job["text_column"], "label_column": job["label_column"]}
    if tuning is not None:  # the dev split chose nothing: it is one more held-out score
        held_out = evaluate_model(
            run_dir, job["data"], split="dev", long_text="truncate", label_map=job["label_map"], **columns
        )
        tuning["validation_macro_f1"] = dev_metrics["macro_f1"]
        dev_metrics = {**dev_metrics, "macro_f1": held_out["macro_f1"]}
    metrics = evaluate_model(
        run_dir,
        job["data"],
        split="test",
        long_text="truncate",
        label_map=job["label_map"],
        return_predictions=True,
        **columns,
    )
    ood = _score_test_sets_neural(job, run_dir)
    # the figures are what a comparison keeps; 36 copies of an encoder are not
    if not job["keep_checkpoints"]:
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    if not job["keep_weights"]:
        for weights in run_dir.glob("*.safetensors"):
            weights.unlink()
    return {
        "train_size": train_size,
        "test_macro_f1": metrics["macro_f1"],
        "test_accuracy": metrics["accuracy"],
        "test_long_text": metrics.get("long_text"),  # how over-long test texts were scored (text)
        "test_long_texts": metrics.get("long_texts"),
        "confusion_matrix": metrics["confusion_matrix"],
        "test_predictions": metrics["predictions"],  # text key -> label id, to pair runs
        "dev_macro_f1": dev_metrics["macro_f1"],
        # a tuned run: the search's candidates and what it chose (tunewise.tuning)
        "tuning": tuning,
        # every candidate's training time: what the run cost, search included
        "train_seconds": sum(t["train_seconds"] for t in tuning["trials"]) if tuning else fit.wall_time_s,
        "best_epoch": fit.best_epoch,
        "epochs_run": fit.epochs_run,
        "trainable_params": max(s["trainable_params"] for s in fit.stages)
        if fit.stages
        else fit.trainable_params,
        "total_params": fit.total_params,
        "stages": fit.stages,
        "resumed_from": fit.resumed_from,  # a run killed mid-way continued from its checkpoint
        "set_aside": set_aside,  # where an incompatible unfinished run in run_dir was moved
        "weights_source": _weights_source(run_dir),
        "history": fit.history,
        "ood": ood,
    }


def _score_test_sets_neural(job: dict, run_dir: Path) -> dict:
    """Each extra test set, scored with the run's model before its weights are deleted."""
    if not job.get("test_sets"):
        return {}
    from tunewise.inference import Predictor
    from tunewise.ood import TestSet, evaluate_test_set

    predictor = Predictor(run_dir, normal_label=job.get("normal_label"))
    return {
        name: evaluate_test_set(predictor, TestSet(name, Path(path)), label_map=job["label_map"])
        for name, path in job["test_sets"]
    }


def _labelled(examples) -> int:
    """Training examples from the data (background sentences are not labels the user gave)."""
    from tunewise.data.background import SOURCE

    return sum(e.source != SOURCE for e in examples)


def _set_aside(run_dir: Path) -> str:
    """Rename ``run_dir`` to the first free ``<name>.stale-N`` beside it; returns the new path."""
    n = 1
    while (target := run_dir.with_name(f"{run_dir.name}.stale-{n}")).exists():
        n += 1
    run_dir.rename(target)
    return str(target)


def _weights_source(run_dir: Path) -> str | None:
    from tunewise.model_dir import read_meta

    return read_meta(run_dir).get("weights_source")


def run_tfidf(job: dict) -> dict:
    """The TF-IDF + linear SVM reference on the same labelled subset, C chosen on dev."""
    from tunewise.baseline import fit_tfidf_svm
    from tunewise.data.normalize import NormalizerConfig, SmsNormalizer
    from tunewise.data.prepare import prepare_data, subsample
    from tunewise.data.split import text_key
    from tunewise.metrics import classification_metrics
    from tunewise.threshold import resolve_normal_label

    data = prepare_data(
        job["data"],
        normalizer=SmsNormalizer(NormalizerConfig(**job["normalizer"])),
        fractions=tuple(job["split"]),
        seed=job["split_seed"],
        text_column=job["text_column"],
        label_column=job["label_column"],
        label_map=job["label_map"],
        audit=False,  # the comparison audited this data once already
    )
    # the same subset train_model draws for this fraction and seed, and the same background
    data.splits["train"] = subsample(data.splits["train"], job["fraction"], seed=job["seed"])
    normal_label = resolve_normal_label(data.labels, job.get("normal_label"))
    index = {lab: i for i, lab in enumerate(data.labels)}
    select_on = data.splits["dev"]
    labelled = _labelled(data.splits["train"])
    if job.get("tune"):  # C chosen on the same validation slice the neural runs choose on
        from tunewise.training.run import carve_validation

        data.splits["train"], select_on = carve_validation(
            data.splits["train"], job["tune"]["validation"], job["seed"]
        )
    if job.get("background"):
        from tunewise.training.run import add_background

        add_background(data, job["background"], normal_label, job["seed"])
    train = data.splits["train"]
    start = time.perf_counter()
    model = fit_tfidf_svm(
        [e.text for e in train],
        [index[e.label] for e in train],
        [e.text for e in select_on],
        [index[e.label] for e in select_on],
    )
    seconds = time.perf_counter() - start
    predicted_test = model.predict(data.texts("test"))
    metrics = classification_metrics(data.label_ids("test"), predicted_test, data.labels)
    dev_f1 = model.validation_macro_f1
    tuning = None
    if job.get("tune"):
        dev_f1 = classification_metrics(data.label_ids("dev"), model.predict(data.texts("dev")), data.labels)[
            "macro_f1"
        ]
        tuning = {
            "chosen": {"C": model.c},
            "validation_macro_f1": model.validation_macro_f1,
            "validation_size": len(select_on),
            "fit_size": _labelled(data.splits["train"]),
        }
    ood = {}
    if job.get("test_sets"):  # run_comparison has checked that the labels have a normal class
        from tunewise.ood import TestSet, load_test_set, score_test_set

        normal = data.labels.index(normal_label)
        for name, path in job["test_sets"]:
            test = load_test_set(TestSet(name, Path(path)), label_map=job["label_map"])
            texts = data.normalizer.batch(test.texts)  # as the training texts were
            predicted = [data.labels[i] for i in model.predict(texts)]
            ood[name] = score_test_set(
                name,
                test.labels,
                model.fraud_scores(texts, normal),
                np.array([p != normal_label for p in predicted]),
                model_labels=data.labels,
                normal_label=normal_label,
                threshold=None,
                predicted=predicted,
            )
            ood[name]["threshold_source"] = "arg-max label (an SVM has no probabilities)"
            ood[name]["path"] = str(path)
    return {
        "train_size": labelled,
        "test_macro_f1": metrics["macro_f1"],
        "test_accuracy": metrics["accuracy"],
        "confusion_matrix": metrics["confusion_matrix"],
        "test_predictions": {
            text_key(e.text, e.label): p for e, p in zip(data.splits["test"], predicted_test, strict=True)
        },
        "dev_macro_f1": dev_f1,
        "tuning": tuning,
        "train_seconds": seconds,
        "best_epoch": None,
        "epochs_run": None,
        "trainable_params": model.n_params,
        "total_params": model.n_params,
        "C": model.c,
        "history": [],
        "ood": ood,
    }


def execute(job: dict, results) -> None:
    """Process entry point: run ``job`` and put ``(ok, record_or_error)`` on ``results``;
    ends with the comparison that started it (``exit_with_parent``)."""
    exit_with_parent()
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # a fresh process: the CLI's setting is not inherited
        record = run_tfidf(job) if job["recipe_name"] == TFIDF else run_neural(job)
        record["peak_memory_mb"] = peak_memory_mb()
        cache = sys.modules.get("tunewise.data.image_cache")
        if cache is not None and cache._shared is not None:  # decoded images are part of that peak
            record["image_cache_mb"] = cache._shared.stats()["bytes"] / 2**20
        results.put((True, record))
    except KeyboardInterrupt:
        results.put((False, "interrupted"))
    except Exception as exc:  # reported by the parent with the run it belongs to
        results.put((False, f"{type(exc).__name__}: {exc}"))
