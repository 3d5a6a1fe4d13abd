"""Run recipes x label fractions x seeds on one fixed split, plus the TF-IDF reference.

Every run trains on a stratified ``label_fraction`` of the same training split (drawn with
the run's seed), selects its epoch on the same dev split, and is scored once on the same
test split. ``results.json`` is rewritten atomically after each run, so an interrupted
comparison picks up where it stopped; a run killed half-way resumes from its checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from queue import Empty

from rich.console import Console

from tunewise import __version__
from tunewise.compare.summary import fmt_fraction
from tunewise.compare.worker import TFIDF, execute
from tunewise.data.image_cache import SIDE_FACTOR
from tunewise.data.images import looks_like_images
from tunewise.data.normalize import NormalizerConfig
from tunewise.data.prepare import subsample
from tunewise.errors import CompareError
from tunewise.ood import describe
from tunewise.pretrained import resolve_pretrained, suited_recipe
from tunewise.recipes.schema import Recipe, load_recipe
from tunewise.threshold import no_normal_class_message, resolve_normal_label
from tunewise.training.checkpoint import write_json_atomic
from tunewise.tuning import TuneSpec, describe_tuning

RESULTS_FILE = "results.json"
DEFAULT_FRACTIONS = (0.01, 0.05, 0.2, 1.0)


@dataclass
class CompareOptions:
    """What ``tunewise compare`` takes.

    ``recipes`` are built-in names or YAML files (default: :func:`default_recipes`); the TF-IDF
    reference is added unless ``baseline`` is off. Seeds are ``0 .. seeds-1``; the split
    always uses ``split_seed``.
    """

    data: str | Path
    out: str | Path
    recipes: list[str] | None = None  # None: default_recipes(pretrained)
    fractions: list[float] = field(default_factory=lambda: list(DEFAULT_FRACTIONS))
    seeds: int = 3
    baseline: bool = True
    pretrained: str | None = None
    epochs: int | None = None
    max_length: int | None = None  # override every recipe's max tokens per text
    # override image recipes' input side: one size for all, or {recipe name: size} for some
    image_size: int | dict[str, int] | None = None
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)
    split_seed: int = 0
    text_column: str | None = None
    label_column: str | None = None
    label_map: str | Path | None = None
    normalizer: NormalizerConfig = field(default_factory=NormalizerConfig)
    # extra, out-of-domain test sets (tunewise.ood.TestSet) every run is scored on
    test_sets: list = field(default_factory=list)
    normal_label: str | None = None  # the "not fraud" class, when not recognisable by name
    # general-text sentences added to every run's training set as normal, per labelled message
    background: float = 0.0
    # the same search for every recipe at every fraction (tunewise.tuning.TuneSpec); None: none
    tune: TuneSpec | None = None
    keep_models: bool = False
    # keep the weights (not the checkpoints) of the runs on all the labels, so the best one
    # can serve as the final model without training it again (``tunewise demo`` does)
    keep_full_models: bool = False
    show_progress: bool = False
    quiet_runs: bool = True  # the runs' own epoch logs; the comparison prints one line per run


def default_recipes(pretrained: str | None, images: bool = False) -> list[str]:
    """The arms of a comparison. For images, the note's pair: its CustomCNN from scratch and
    the ImageNet network fine-tuned. For text (beside the TF-IDF reference): the TextCNN from scratch, the
    fine-tuned encoder's own architecture from random weights (``scratch-transformer``: only
    the initialisation differs from fine-tuning), and the fine-tuning recipe that suits the
    encoder: ``finetune`` (rates for BERT-base-sized checkpoints), or ``finetune-small`` for
    the bundled mini encoder, which ``finetune``'s 5e-5 barely moves (BENCHMARKS.md).

    Example:
        >>> default_recipes("bert-base-chinese")
        ['scratch', 'scratch-transformer', 'finetune']
        >>> default_recipes(None)
        ['scratch', 'scratch-transformer', 'finetune-small']
        >>> default_recipes(None, images=True)
        ['image-scratch', 'image-finetune']
    """
    if images:
        return ["image-scratch", "image-finetune"]
    if resolve_pretrained(pretrained) is None:  # no encoder installed: the small rates
        return ["scratch", "scratch-transformer", "finetune-small"]
    return ["scratch", "scratch-transformer", suited_recipe("finetune", pretrained)[0]]


def run_key(recipe: str, fraction: float, seed: int) -> str:
    """The identifier of one run, stable across resumptions.

    Example:
        >>> run_key("finetune", 0.05, 2)
        'finetune/f0.05/s2'
    """
    return f"{recipe}/f{fraction:g}/s{seed}"


def run_dir(out: str | Path, key: str) -> Path:
    """Where the run ``key`` of the comparison in ``out`` keeps its files.

    Example:
        >>> run_dir("runs/compare", run_key("scratch", 1.0, 0)).as_posix()
        'runs/compare/runs/scratch_f1_s0'
    """
    return Path(out) / "runs" / key.replace("/", "_")


def load_results(out: str | Path) -> dict | None:
    """The ``results.json`` of a comparison directory, or ``None`` when there is none."""
    path = Path(out) / RESULTS_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _split_fingerprint(keys: dict[str, list[str]]) -> str:
    h = hashlib.sha256()
    for split in sorted(keys):
        h.update(split.encode())
        h.update("".join(keys[split]).encode())
    return h.hexdigest()[:20]


def parse_image_size(value: str) -> int | dict[str, int]:
    """``--image-size``: one side for every image recipe, or ``RECIPE=SIZE`` entries.

    Example:
        >>> parse_image_size("224"), parse_image_size("image-finetune=64, image-scratch=32")
        (224, {'image-finetune': 64, 'image-scratch': 32})
    """

    def side(text: str, what: str) -> int:
        try:
            return int(text)  # the recipe checks the range (and CustomCNN's multiple of 8)
        except ValueError:
            raise CompareError(
                f"--image-size{what}: expected a whole number of pixels, got {text!r}"
            ) from None

    if "=" not in value:
        return side(value.strip(), "")
    sizes: dict[str, int] = {}
    for part in (p.strip() for p in value.split(",") if p.strip()):
        name, sep, number = part.partition("=")
        if not sep or not name.strip():
            raise CompareError(
                f"--image-size: expected RECIPE=SIZE entries (image-finetune=64), got {part!r}"
            )
        if name.strip() in sizes:
            raise CompareError(f"--image-size names {name.strip()!r} twice")
        sizes[name.strip()] = side(number.strip(), f" for {name.strip()}")
    return sizes


def _load_recipes(opts: CompareOptions, names: list[str]) -> dict[str, Recipe]:
    recipes: dict[str, Recipe] = {}
    for name in names:
        recipe = load_recipe(name)
        if opts.epochs is not None:
            recipe = recipe.with_epochs(opts.epochs)
        if opts.max_length is not None and recipe.track == "text":  # images have no tokens
            model = recipe.model.model_copy(update={"max_length": opts.max_length})
            recipe = recipe.model_copy(update={"model": model})
        size = opts.image_size.get(recipe.name) if isinstance(opts.image_size, dict) else opts.image_size
        if size is not None and recipe.track == "image":
            recipe = recipe.with_model(image_size=size)
        if recipe.name in recipes or recipe.name == TFIDF:
            raise CompareError(f"two recipes are named {recipe.name!r}; give each a distinct name")
        recipes[recipe.name] = recipe
    if isinstance(opts.image_size, dict):
        unknown = sorted(set(opts.image_size) - set(recipes))
        if unknown:
            raise CompareError(
                f"--image-size names {', '.join(map(repr, unknown))}, which this comparison does not "
                f"run (its recipes: {', '.join(recipes) or 'none'})"
            )
        text = sorted(n for n in opts.image_size if recipes[n].track != "image")
        if text:
            raise CompareError(f"--image-size names {', '.join(map(repr, text))}: not an image recipe")
    if not recipes and not opts.baseline:
        raise CompareError("nothing to compare: no recipes and the baseline is off")
    return recipes


def _one_track(recipes: dict[str, Recipe]):
    """The track every recipe of the comparison is for (text when only the baseline runs)."""
    from tunewise.tracks import get_track

    tracks = sorted({r.track for r in recipes.values()})
    if len(tracks) > 1:
        listed = ", ".join(f"{n} ({r.track})" for n, r in recipes.items())
        raise CompareError(f"a comparison runs recipes of one track on one data set; got {listed}")
    return get_track(tracks[0] if tracks else "text")


def prepare_split(opts: CompareOptions, track, recipe: Recipe | None):
    """The comparison's one split of ``opts.data``, as each run's ``train_model`` will make it
    (the track's ``prepare`` with the comparison's split seed), audited once."""
    from tunewise.training.run import TrainOptions

    return track.prepare(
        TrainOptions(
            data=opts.data,
            recipe=recipe or load_recipe("scratch"),
            out=opts.out,
            seed=opts.split_seed,
            split=opts.split,
            text_column=opts.text_column,
            label_column=opts.label_column,
            label_map=opts.label_map,
            normalizer=opts.normalizer,
            background=0.0,
        )
    )


def _check_fractions(fractions: list[float]) -> list[float]:
    bad = [f for f in fractions if not 0 < f <= 1]
    if bad:
        raise CompareError(f"label fractions must be in (0, 1], got {bad}")
    return sorted(set(fractions))


def _check_same_recipes(results: dict, recipes: dict[str, Recipe], out: Path) -> None:
    """Runs recorded under a recipe name must have used the recipe as it is now: a resumed
    comparison never mixes two versions of a recipe in one table."""
    stored = results.get("recipes") or {}
    done = {r["recipe"] for r in results.get("runs", [])}
    for name, recipe in recipes.items():
        before = stored.get(name)
        if name in done and before is not None and before != recipe.model_dump(mode="json"):
            finished = sum(r["recipe"] == name for r in results["runs"])
            raise CompareError(
                f"recipe {name!r} differs from the one its {finished} "
                f"finished runs in {out} used (an edited YAML, --epochs, --max-length or a new tunewise "
                "version); use another --out, or delete those runs from results.json to redo them"
            )


def run_comparison(opts: CompareOptions, console: Console | None = None) -> dict:
    """Run every (recipe, fraction, seed) not yet in ``out/results.json``; return all results.

    Example:
        >>> results = run_comparison(CompareOptions(data="sms.csv", out="runs/cmp",
        ...                                         fractions=[0.1, 1.0], seeds=2))  # doctest: +SKIP
        >>> len(results["runs"])  # 3 recipes (with TF-IDF) x 2 fractions x 2 seeds  # doctest: +SKIP
        12
    """
    console = console or Console(stderr=True, soft_wrap=True)
    out = Path(opts.out)
    fractions = _check_fractions(list(opts.fractions))
    if opts.seeds < 1:
        raise CompareError(f"--seeds must be at least 1, got {opts.seeds}")
    images = opts.recipes is None and looks_like_images(opts.data)
    recipe_names = opts.recipes if opts.recipes is not None else default_recipes(opts.pretrained, images)
    if opts.recipes is None:
        what = "for images" if images else "for this encoder"
        console.print(f"recipes: {', '.join(recipe_names)} (the defaults {what}; see --recipes)")
    recipes = _load_recipes(opts, recipe_names)
    track = _one_track(recipes)
    baseline = opts.baseline
    if track.name != "text":
        if baseline:
            console.print("no TF-IDF reference: it classifies texts, and these recipes are for images")
        baseline = False
        if opts.test_sets:
            raise CompareError("--test-data (out-of-domain fraud-score sets) is for text recipes")
    # the bundled text encoder is the text track's default; an image recipe has its own
    pretrained = resolve_pretrained(opts.pretrained) if track.name == "text" else opts.pretrained
    data = prepare_split(opts, track, next(iter(recipes.values()), None))
    data.report.print(console)
    if opts.test_sets and resolve_normal_label(data.labels, opts.normal_label) is None:
        raise CompareError("--test-data needs a fraud score: " + no_normal_class_message(data.labels))
    if not data.splits["dev"] or not data.splits["test"]:
        raise CompareError("the dev or test split is empty; give more data or larger --split fractions")
    fingerprint = _split_fingerprint(data.split_keys())

    results = load_results(out)
    if results is not None and results.get("split_fingerprint") != fingerprint:
        raise CompareError(
            f"{out} holds a comparison of different data or another split; choose another --out "
            "(nothing was overwritten)"
        )
    results = results or {"runs": []}
    _check_same_recipes(results, recipes, out)
    tune = json.loads(json.dumps(asdict(opts.tune))) if opts.tune else None  # as results.json has it
    if results["runs"] and results.get("tune") != tune:
        before = f"tuned with {results.get('tune')}" if results.get("tune") else "not tuned"
        raise CompareError(
            f"{out} holds runs {before}; this comparison asks for "
            f"{'tuning ' + str(tune) if tune else 'no tuning'}. Use another --out (nothing was overwritten)"
        )
    if results["runs"] and results.get("background", 0) != opts.background:
        raise CompareError(
            f"{out} holds runs trained with --background {results.get('background', 0):g}, not "
            f"{opts.background:g}; use another --out (nothing was overwritten)"
        )
    if results["runs"] and _encoder_id(results.get("pretrained")) != _encoder_id(pretrained):
        raise CompareError(
            f"{out} holds runs that fine-tuned {results.get('pretrained')!r}; this comparison asks for "
            f"{pretrained!r}. Use another --out (nothing was overwritten)"
        )
    if track.name == "image":
        # what every image is reduced to before its transform (tunewise.data.image_cache):
        # runs made under another reduction are not mixed into one table
        factor, before = round(SIDE_FACTOR, 6), results.get("image_decode_side_factor")
        if results["runs"] and before != factor:
            read = "whole" if before is None else f"reduced to {before:g}x the input side"
            raise CompareError(
                f"{out} holds image runs that read images {read}; this tunewise reduces them to "
                f"{factor:g}x (tunewise.data.image_cache). Use another --out (nothing was overwritten)"
            )
        results["image_decode_side_factor"] = factor
    names = ([TFIDF] if baseline else []) + list(recipes)
    results.update(
        {
            "tunewise_version": __version__,
            "track": track.name,
            "data": str(opts.data),
            "split": list(opts.split),
            "split_seed": opts.split_seed,
            "split_fingerprint": fingerprint,
            "labels": data.labels,
            "split_sizes": {s: len(ex) for s, ex in data.splits.items()},
            "pretrained": pretrained,
            "fractions": fractions,
            "seeds": list(range(opts.seeds)),
            "recipes": {
                **{n: r.model_dump(mode="json") for n, r in recipes.items()},
                **({TFIDF: None} if baseline else {}),
            },
            "order": names,
            "test_sets": {t.name: str(t.path) for t in opts.test_sets},
            "shortcut_audit": data.report.shortcuts.to_dict() if data.report.shortcuts else None,
            "background": opts.background,
            "tune": tune,
            # the test split's messages (text keys) and true labels: each run's predictions are
            # stored in this order, so two runs can be compared message by message
            "test_keys": data.split_keys()["test"],
            "test_labels": data.label_ids("test"),
            "options": json.loads(json.dumps(asdict(opts), default=str)),
        }
    )
    done = {r["key"] for r in results["runs"]}
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / RESULTS_FILE, results)

    jobs = []
    for fraction in fractions:  # small fractions first: the informative part finishes early
        n_train = len(subsample(data.splits["train"], fraction, seed=0))
        for seed in range(opts.seeds):
            for name in names:
                key = run_key(name, fraction, seed)
                if key not in done:
                    jobs.append((key, name, fraction, seed, n_train))
    total = len(results["runs"]) + len(jobs)
    if len(results["runs"]):
        console.print(f"resuming: {len(results['runs'])} of {total} runs already done in {out}")

    context = _process_context()
    for key, name, fraction, seed, n_train in jobs:
        job = {
            "recipe_name": name,
            "recipe": recipes[name].model_dump(mode="json") if name in recipes else None,
            "data": str(opts.data),
            "run_dir": str(run_dir(out, key)),
            "pretrained": pretrained,
            "seed": seed,
            "split_seed": opts.split_seed,
            "fraction": fraction,
            "split": list(opts.split),
            "text_column": opts.text_column,
            "label_column": opts.label_column,
            "label_map": str(opts.label_map) if opts.label_map else None,
            "normalizer": opts.normalizer.to_dict(),
            "test_sets": [[t.name, str(t.path)] for t in opts.test_sets],
            "normal_label": opts.normal_label,
            "background": opts.background,
            "tune": tune,
            "n_labelled": n_train,
            "encoder_cache": str(out / "encoders"),
            "keep_checkpoints": opts.keep_models,
            "keep_weights": opts.keep_models or (opts.keep_full_models and fraction >= 1.0),
            "show_progress": opts.show_progress,
            "quiet": opts.quiet_runs,
        }
        done_count = len(results["runs"]) + 1
        console.print(
            f"[{done_count}/{total}] {name} · {fmt_fraction(fraction)} of the labels "
            f"(~{n_train:,}) · seed {seed}"
        )
        started = time.perf_counter()
        record = _run_in_child(context, job, key)
        by_key = record.pop("test_predictions", None) or {}
        # -1: a test message the run did not score (it never happens with the data unchanged)
        record["test_predictions"] = [by_key.get(k, -1) for k in results["test_keys"]] if by_key else None
        record.update(
            {
                "key": key,
                "recipe": name,
                "fraction": fraction,
                "seed": seed,
                "seconds": time.perf_counter() - started,
            }
        )
        results["runs"].append(record)
        write_json_atomic(out / RESULTS_FILE, results)
        resumed = f" · resumed from {record['resumed_from']}" if record.get("resumed_from") else ""
        if record.get("set_aside"):
            resumed += f" · an unfinished run with other settings was moved to {record['set_aside']}"
        if record.get("tuning"):
            console.print(f"    tuned: {describe_tuning(record)}")
        console.print(
            f"    test macro-F1 {record['test_macro_f1']:.4f} · accuracy {record['test_accuracy']:.4f} · "
            f"train {record['train_seconds']:.1f}s · peak memory {record['peak_memory_mb']:.0f} MiB{resumed}"
        )
        for summary in record.get("ood", {}).values():
            console.print(f"    {describe(summary)}")
    return results


# What every run imports. A fork server imports it once; each run is then forked from it, a
# clean process that starts in a fraction of a second instead of re-importing torch.
_PRELOAD = ["torch", "transformers", "sklearn.svm", "tunewise.training.run", "tunewise.evaluation"]


def _encoder_id(pretrained: str | None) -> str | None:
    """The encoder a comparison fine-tunes, comparable across checkouts: a bundled encoder by
    its name (its directory is wherever the package is installed), anything else as given."""
    from tunewise.pretrained import bundled_encoders

    if pretrained is None:
        return None
    path = Path(pretrained)
    bundled = path.parent.name == "pretrained" and path.parent.parent.name == "tunewise"
    return path.name if bundled and path.name in bundled_encoders() else pretrained


def _process_context():
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["tunewise.compare.worker", *_PRELOAD])
        return context
    return multiprocessing.get_context("spawn")  # Windows


def _run_in_child(context, job: dict, key: str) -> dict:
    queue = context.Queue()
    process = context.Process(target=execute, args=(job, queue), name=f"tunewise-{key}")
    process.start()
    try:
        while True:
            try:
                ok, payload = queue.get(timeout=1.0)
                break
            except Empty:
                if not process.is_alive() and queue.empty():
                    # killed from outside (out of memory, a signal) before it could report
                    ok, payload = False, f"the run's process ended with exit code {process.exitcode}"
                    break
    except KeyboardInterrupt:
        process.terminate()
        process.join()
        raise
    process.join()
    if not ok:
        raise CompareError(
            f"run {key} failed: {payload}. Finished runs are saved; rerun the same command to continue."
        )
    return payload
