"""``tunewise demo``: the main job on embedded defaults, offline, on 2 CPU cores.

1. compare training from scratch with fine-tuning the bundled ``tunewise-mini-zh`` (and the
   TF-IDF reference) on the embedded sample set, across label fractions, every run also
   scored on the embedded *probe* set it never trained on (out of domain) and on any
   ``--test-data``;
2. write the comparison report;
3. keep as the final model the run on all the labels that did best on the dev split (the
   comparison trained it already; training it again would give the same weights);
4. classify a few new messages with it and score it on the extra test sets.

Every run adds general-text sentences to its training split as "normal" (``background``,
``tunewise.data.background``): without them a model trained on SMS alone flags ordinary
prose as fraud (measured in BENCHMARKS.md).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tunewise.compare import CompareOptions, print_comparison, run_comparison, write_report
from tunewise.compare.runs import run_dir
from tunewise.compare.summary import cells, fractions, recipe_order
from tunewise.compare.worker import TFIDF
from tunewise.evaluation import threshold_for_precision
from tunewise.model_dir import has_weights
from tunewise.ood import describe, evaluate_test_set
from tunewise.recipes.schema import Recipe, load_recipe
from tunewise.samples import sample_sms_path
from tunewise.threshold import THRESHOLD_FILE

# New messages, not in the sample set (a test checks): what the final model is shown doing.
EXAMPLE_MESSAGES = [
    "【中国银行】您尾号3816的借记卡11月30日10:12转入工资7,420.00元，余额9,388.21元。",
    "妈，我周六中午到家，想吃你做的糖醋排骨，别忘了提前买哦。",
    "【菜鸟驿站】您的包裹已到文化路驿站，取件码3-5-1126，请在今天21点前领取。",
    "您好，您的社保卡存在异常即将冻结，请立即点击 sb-jiedong点top 输入银行卡密码进行解冻。",
    "兼❤职日结，给商家刷好评一单二十，手机就能做，加薇：hp-8866，先垫付后返款。",
    "我是你王叔，换号了，我这边出了点急事，你先转我一万块，明天一早就还你，别跟你爸说。",
]


def _default_test_sets() -> list:
    from tunewise.ood import TestSet
    from tunewise.samples import probe_sms_path

    return [TestSet("probe", probe_sms_path())]


@dataclass
class DemoOptions:
    """The demo's budget: one seed, and fewer epochs for the slower fine-tuning, so that it
    takes under 10 minutes on 2 CPU cores (``BENCHMARKS.md`` has the measured time); tests
    shrink it further."""

    out: str | Path = "runs/demo"
    recipes: list[str] = field(default_factory=lambda: ["scratch", "finetune-small"])
    fractions: list[float] = field(default_factory=lambda: [0.05, 0.2, 1.0])
    seeds: int = 1
    epochs: dict[str, int] = field(default_factory=lambda: {"scratch": 20, "finetune-small": 4})
    max_length: int = 128  # the sample messages are at most 157 characters
    data: str | Path | None = None  # default: the embedded sample set
    messages: list[str] = field(default_factory=lambda: list(EXAMPLE_MESSAGES))
    # general-text sentences per labelled message added to every run's training split as normal
    background: float = 0.25
    # the final model flags a message when its fraud score reaches the threshold that gives this
    # precision on the dev split (anti-fraud teams set thresholds by precision)
    target_precision: float = 0.98
    # out-of-domain test sets (tunewise.ood.TestSet) for every run and the final model: the
    # embedded probe set, plus whatever --test-data adds
    test_sets: list = field(default_factory=_default_test_sets)
    # the same search for every recipe (tunewise.tuning.TuneSpec); off by default: measured in
    # BENCHMARKS.md, it does not fit the demo's 10-minute budget on 2 CPU cores
    tune: object | None = None


def write_recipes(recipes: list[Recipe], out: Path) -> list[str]:
    """Write each recipe as ``out/recipes/<name>.yaml`` (the comparison and its report cite
    the files); returns their paths.

    Example:
        >>> import tempfile
        >>> write_recipes([load_recipe("scratch")], Path(tempfile.mkdtemp()))[0].endswith("scratch.yaml")
        True
    """
    paths = []
    for recipe in recipes:
        path = out / "recipes" / f"{recipe.name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(recipe.to_yaml(), encoding="utf-8")
        paths.append(str(path))
    return paths


def _demo_recipes(opts: DemoOptions, out: Path) -> list[str]:
    """The recipes with the demo's epoch budget, written as YAML files into ``out``."""
    recipes = []
    for name in opts.recipes:
        recipe = load_recipe(name)
        if name in opts.epochs:
            recipe = recipe.with_epochs(opts.epochs[name])
        model = recipe.model.model_copy(update={"max_length": min(recipe.model.max_length, opts.max_length)})
        recipes.append(recipe.model_copy(update={"model": model}))
    return write_recipes(recipes, out)


def best_recipe(results: dict) -> str:
    """The neural recipe with the best mean *dev* macro-F1 at the largest label fraction
    (dev, not test: the test split stays untouched by every choice)."""
    top = max(fractions(results))
    grid = cells(results)
    scored = [
        (grid[(name, top)].mean("dev_macro_f1") or 0.0, name)
        for name in recipe_order(results)
        if name != TFIDF and (name, top) in grid
    ]
    return max(scored)[1]


def best_full_run(results: dict, recipe: str) -> dict | None:
    """The run of ``recipe`` on all the labels with the best dev macro-F1 (None without one).

    Example:
        >>> runs = [{"recipe": "scratch", "fraction": 1.0, "seed": s, "dev_macro_f1": f}
        ...         for s, f in [(0, 0.91), (1, 0.93)]]
        >>> best_full_run({"runs": runs}, "scratch")["seed"]
        1
    """
    full = [r for r in results["runs"] if r["recipe"] == recipe and r["fraction"] >= 1.0]
    return max(full, key=lambda r: (r["dev_macro_f1"], -r["seed"])) if full else None


def _copy_model(source: Path, target: Path) -> None:
    """Copy a run's model directory, without its checkpoints, into ``target``: first next to
    it, then swapped in, so an interruption never leaves a half-copied model."""
    staging = target.with_name(f".{target.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(source, staging, ignore=shutil.ignore_patterns("checkpoints"))
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)


def run_demo(opts: DemoOptions | None = None, console: Console | None = None) -> dict:
    """Run the whole demo; returns paths, the chosen recipe and the example predictions.

    Example:
        >>> summary = run_demo(DemoOptions(out="runs/demo"))  # doctest: +SKIP
        >>> summary["final_recipe"]  # doctest: +SKIP
        'finetune-small'
    """
    from tunewise.inference import Predictor
    from tunewise.training.run import TrainOptions, train_model

    opts = opts or DemoOptions()
    console = console or Console(stderr=True, soft_wrap=True)
    out = Path(opts.out)
    data = Path(opts.data) if opts.data else sample_sms_path()
    compare_dir = out / "compare"
    console.print(f"[bold]1/4[/] comparing {', '.join(opts.recipes)} and TF-IDF on {data.name}")
    results = run_comparison(
        CompareOptions(
            data=data,
            out=compare_dir,
            recipes=_demo_recipes(opts, out),
            fractions=opts.fractions,
            seeds=opts.seeds,
            label_column="label",
            keep_full_models=True,
            test_sets=list(opts.test_sets),
            background=opts.background,
            tune=opts.tune,
        ),
        console=console,
    )
    files = write_report(results, compare_dir, command="tunewise demo")
    print_comparison(results, console)

    final = best_recipe(results)
    model_dir = out / "model"
    run = best_full_run(results, final)
    source = run_dir(compare_dir, run["key"]) if run else None
    if source is not None and has_weights(source):
        console.print(
            f"[bold]2/4[/] final model: {final} on all labels, seed {run['seed']} (best dev macro-F1 "
            f"{run['dev_macro_f1']:.3f}), taken from the comparison · saved to {model_dir}"
        )
        _copy_model(source, model_dir)
    else:  # a comparison without all-labels weights (e.g. resumed from an older version)
        console.print(f"[bold]2/4[/] training the final model with {final} (best dev macro-F1) on all labels")
        outcome = train_model(
            TrainOptions(
                data=data,
                recipe=load_recipe(out / "recipes" / f"{final}.yaml"),
                out=model_dir,
                label_column="label",
                background=opts.background,
                resume=(model_dir / "checkpoints").is_dir(),
                show_progress=False,
                log_with=None,
            ),
            console=Console(stderr=True, quiet=True),
        )
        console.print(
            f"    dev macro-F1 {outcome.dev_metrics['macro_f1']:.3f} · {outcome.fit.wall_time_s:.0f}s · "
            f"saved to {model_dir}"
        )

    predictor = Predictor(model_dir)
    try:
        choice = threshold_for_precision(
            predictor, model_dir, data, opts.target_precision, "dev", label_column="label"
        )
    except ValueError as e:  # a weak model (a tiny budget) may reach no such precision
        choice = None
        (model_dir / THRESHOLD_FILE).unlink(missing_ok=True)
        console.print(f"[bold]3/4[/] [yellow]no threshold[/]: {escape(str(e))}; flagging at 0.5")
    if choice is not None:
        choice.save(model_dir)
        predictor.threshold, predictor.threshold_choice = choice.threshold, choice
        console.print(
            f"[bold]3/4[/] threshold {choice.threshold:.3f}: precision {choice.precision:.3f}, recall "
            f"{choice.recall:.3f} on the dev split (target precision {opts.target_precision:g}) · "
            f"saved to {model_dir / THRESHOLD_FILE}"
        )
    console.print("[bold]4/4[/] classifying new messages")
    predictions = predictor.predict(opts.messages)
    table = Table(show_lines=False)
    table.add_column("message")
    table.add_column("label")
    table.add_column("fraud score", justify="right")
    table.add_column("flagged")
    for p in predictions:
        score = "—" if p.fraud_score is None else f"{p.fraud_score:.3f}"
        table.add_row(escape(p.text), p.label, score, "yes" if p.flagged else "no")
    console.print(table)
    out_of_domain = {t.name: evaluate_test_set(predictor, t) for t in opts.test_sets}
    for summary in out_of_domain.values():
        console.print(f"final model on {escape(describe(summary))}")
    console.print(
        f"report: {files['markdown']} · {files['html']}\n"
        f"use the model: tunewise predict --model {model_dir} --text '…'"
    )
    return {
        "report": files,
        "results": results,
        "final_recipe": final,
        "model": model_dir,
        "predictions": [p.to_dict() for p in predictions],
        "test_sets": out_of_domain,
        "threshold": choice,
    }
