"""The same tuning budget for every regime: a learning-rate range test, and a small search
over learning rate and epochs scored on a validation slice of the run's own labels.

A comparison whose defaults decide the winner answers "fine-tune or scratch?" wrongly: a
TextCNN given 60 optimizer steps at 1% of the labels never leaves the majority class, and
looks 50 points worse than it is. Here every recipe, at every label fraction, gets the same
search:

1. the learning rate — a 3-point grid around the recipe's rates (x1/3, x1, x3), or the rate
   the range test suggests (Smith 2015, fastai's ``lr_find``). Recipes with several
   parameter groups keep their ratios: the search scales all of a recipe's rates together;
2. the epochs — each candidate trains for enough epochs to take ``min_steps`` optimizer
   steps (at least the recipe's epochs, at most ``max_epochs_factor`` times them), with
   early stopping on the validation slice; the best epoch is the one kept.

The validation slice is carved from the run's labelled fraction (``validation`` of it,
stratified, the run's seed), so a run with 80 labels chooses with the labels it has — never
with the comparison's dev or test split. The candidate with the best validation score is
the run's model. The TF-IDF reference picks its C on the same slice.

Example:
    >>> from tunewise.recipes import load_recipe
    >>> spec = TuneSpec()
    >>> r = load_recipe("scratch")
    >>> [round(scale_lr(r, m).optimizer.lr, 6) for m in spec.grid]
    [0.000333, 0.001, 0.003]
    >>> epoch_budget(r, n_train=58, spec=spec)  # 1 step per epoch, capped at 10x the recipe's 30
    300
"""

from __future__ import annotations

import copy
import json
import math
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch
from accelerate import Accelerator
from rich.console import Console

from tunewise.model_dir import has_weights
from tunewise.recipes.schema import Recipe, StageSpec
from tunewise.training.checkpoint import has_checkpoint, write_json_atomic
from tunewise.training.loop import (
    FitResult,
    apply_initial_freeze,
    apply_stage,
    classification_task,
    use_epoch,
)
from tunewise.training.optim import build_optimizer, build_param_groups

if TYPE_CHECKING:  # training.run imports this module's callers; a type is all that is needed here
    from tunewise.training.run import TrainOptions

TRIAL_FILE = "trial.json"
SEARCH_FILE = "search.json"  # the finished search, beside the chosen candidate's model
SETTINGS_FILE = "settings.json"  # what a candidate is being trained under, written before it starts
LR_FIND_FILE = "lr_find.json"


@dataclass(frozen=True)
class TuneSpec:
    """The search every recipe gets (``compare --tune``)."""

    method: Literal["grid", "lr-find"] = "grid"
    # multipliers of all the recipe's learning rates (method "grid")
    grid: tuple[float, ...] = (1 / 3, 1.0, 3.0)
    # share of the run's labelled examples held out to score the candidates
    validation: float = 0.2
    # epochs: enough for this many optimizer steps, at least the recipe's, at most factor x.
    # 1000, not 300: the encoder's architecture from random weights sits on a plateau (validation
    # macro-F1 0.28) for its first ~250 steps at 5% of telecom_fraud_5 and reaches 0.90 at step
    # 350; with 300 steps its runs ended on the plateau (test 0.40-0.56) — BENCHMARKS.md
    min_steps: int = 1000
    max_epochs_factor: int = 10

    def describe(self) -> str:
        """One line for the report.

        Example:
            >>> TuneSpec().describe()[:50]
            "learning rate x1/3, x1, x3 of the recipe's rates; "
        """
        if self.method == "grid":
            rates = ", ".join(_fmt_multiplier(m) for m in self.grid) + " of the recipe's rates"
        else:
            rates = "the range test's suggestion"
        return (
            f"learning rate {rates}; epochs for >= {self.min_steps} steps (<= {self.max_epochs_factor}x "
            f"the recipe's), early stopping on a {self.validation:.0%} validation slice of each run's labels"
        )


def _fmt_multiplier(m: float) -> str:
    return f"x1/{round(1 / m)}" if m < 1 and abs(1 / m - round(1 / m)) < 1e-6 else f"x{m:g}"


def scale_lr(recipe: Recipe, multiplier: float) -> Recipe:
    """``recipe`` with every learning rate it names multiplied by ``multiplier``.

    Ratios between parameter groups (head vs backbone, layer-wise decay) are kept.

    Example:
        >>> from tunewise.recipes import load_recipe
        >>> r = scale_lr(load_recipe("finetune-small"), 2)
        >>> r.optimizer.lr, r.param_groups[0].lr
        (0.002, 0.002)
        >>> [g.lr for g in scale_lr(load_recipe("image-finetune"), 10).stages[1].param_groups]
        [0.0001, 0.1]
    """

    def scaled(groups):
        return [g.model_copy(update={"lr": g.lr * multiplier}) if g.lr else g for g in groups]

    groups = scaled(recipe.param_groups)
    stages = []
    for s in recipe.stages:
        update = {"lr": s.lr * multiplier} if s.lr else {}
        if s.param_groups is not None:  # a stage's own groups (the note's second stage)
            update["param_groups"] = scaled(s.param_groups)
        stages.append(s.model_copy(update=update) if update else s)
    optimizer = recipe.optimizer.model_copy(update={"lr": recipe.optimizer.lr * multiplier})
    return recipe.model_copy(update={"optimizer": optimizer, "param_groups": groups, "stages": stages})


def stretch(recipe: Recipe, epochs: int) -> Recipe:
    """``recipe`` over ``epochs``, each stage keeping its share, and a ReduceLROnPlateau
    patience grown in proportion (at one step per epoch, "3 epochs without progress" is
    3 steps: the rate would be halved to nothing before the model moved).

    Example:
        >>> from tunewise.recipes import load_recipe
        >>> r = stretch(load_recipe("scratch"), 300)
        >>> r.total_epochs(), r.scheduler.patience
        (300, 20)
    """
    total = recipe.total_epochs()
    if epochs == total:
        return recipe
    out = recipe.with_epochs(epochs)
    if out.scheduler.name == "plateau":
        patience = max(out.scheduler.patience, round(out.scheduler.patience * epochs / total))
        out = out.model_copy(update={"scheduler": out.scheduler.model_copy(update={"patience": patience})})
    return out


def epoch_budget(recipe: Recipe, n_train: int, spec: TuneSpec) -> int:
    """Epochs a candidate may train: enough for ``spec.min_steps`` optimizer steps on
    ``n_train`` examples, at least the recipe's epochs, at most ``max_epochs_factor`` x them.

    Example:
        >>> from tunewise.recipes import load_recipe
        >>> epoch_budget(load_recipe("finetune-small"), 5926, TuneSpec())  # 371 steps per epoch
        30
    """
    steps_per_epoch = max(1, math.ceil(n_train / recipe.batch_size))
    wanted = math.ceil(spec.min_steps / steps_per_epoch)
    base = recipe.total_epochs()
    return int(min(max(base, wanted), spec.max_epochs_factor * base))


# ---------------------------------------------------------------------------------------
# The learning-rate range test


@dataclass
class LRFinderResult:
    """Loss against learning rate from a range test, and the rate it suggests.

    ``lrs`` are the recipe's headline rate (its largest group's) at each step; every other
    group moved in proportion. ``multiplier`` is ``suggested_lr`` over the recipe's rate.
    """

    lrs: list[float]
    losses: list[float]  # smoothed (exponential moving average, bias-corrected)
    raw_losses: list[float]
    suggested_lr: float
    recipe_lr: float
    stopped_early: bool
    notes: list[str] = field(default_factory=list)

    @property
    def multiplier(self) -> float:
        return self.suggested_lr / self.recipe_lr

    def to_dict(self) -> dict:
        return {**asdict(self), "multiplier": self.multiplier}

    def plot(self, path: str | Path) -> Path:
        """Loss against learning rate (log scale), the suggestion and the recipe's rate marked."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6.5, 4))
        ax.plot(self.lrs, self.raw_losses, color="0.8", lw=1, label="loss per batch")
        ax.plot(self.lrs, self.losses, color="C0", lw=2, label="smoothed")
        ax.axvline(self.suggested_lr, color="C3", ls="--", label=f"suggested {self.suggested_lr:.1e}")
        ax.axvline(self.recipe_lr, color="C2", ls=":", label=f"recipe {self.recipe_lr:.1e}")
        ax.set_xscale("log")
        finite = [v for v in self.losses if math.isfinite(v)]
        if finite:
            ax.set_ylim(min(finite) * 0.9, min(max(finite), 3 * finite[0]) * 1.1)
        ax.set_xlabel("learning rate (the recipe's largest; other groups in proportion)")
        ax.set_ylabel("training loss")
        ax.set_title("learning-rate range test")
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = Path(path)
        fig.savefig(path, dpi=120)
        plt.close(fig)
        return path


def suggest_valley(lrs: list[float], losses: list[float]) -> float:
    """fastai's "valley" rule: find the longest stretch over which the (smoothed) loss keeps
    falling, and take the rate about half-way down it — well before the minimum, where the
    loss is about to blow up.

    Example:
        >>> lrs = [10 ** (-6 + i / 10) for i in range(60)]
        >>> losses = [2.0] * 20 + [2.0 - 0.05 * i for i in range(30)] + [0.5 + i for i in range(10)]
        >>> round(math.log10(suggest_valley(lrs, losses)), 1)  # the loss falls from 1e-4 to 1e-1
        -2.5
    """
    n = len(losses)
    if n < 3:
        return lrs[n // 2] if lrs else float("nan")
    # longest decreasing subsequence ending at each point (O(n^2) for n ~ 100 is nothing)
    run = [1] * n
    best_end = 0
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and run[i] < run[j] + 1:
                run[i] = run[j] + 1
        if run[i] > run[best_end]:
            best_end = i
    start = best_end - run[best_end] + 1
    section = (best_end - start) / 3
    return float(lrs[min(n - 1, start + int(section) + int(section / 2))])


def lr_find(
    model: torch.nn.Module,
    train_loader,
    recipe: Recipe,
    task,
    *,
    stage: StageSpec | None = None,
    start_lr: float = 1e-7,
    end_lr: float = 1.0,
    num_steps: int = 100,
    diverge: float = 4.0,
    smoothing: float = 0.98,
    cpu: bool = False,
) -> LRFinderResult:
    """Train ``model`` for ``num_steps`` batches with the learning rate growing exponentially
    from ``start_lr`` to ``end_lr``; record the loss; restore the model as it was.

    The parameters that train are those of ``stage`` (default: the recipe's last, the one
    that trains most); all the recipe's parameter groups move together, keeping their
    ratios. Stops when the smoothed loss exceeds ``diverge`` x its minimum.

    Example:
        >>> result = lr_find(model, loader, load_recipe("scratch"), task)  # doctest: +SKIP
        >>> result.suggested_lr  # doctest: +SKIP
        0.0024
    """
    stage = stage or recipe.resolved_stages()[-1]
    saved = copy.deepcopy(model.state_dict())
    trainable_before = {n: p.requires_grad for n, p in model.named_parameters()}
    apply_initial_freeze(model, recipe)
    for s in recipe.resolved_stages():  # the trainable set as it stands when ``stage`` starts
        apply_stage(model, s, recipe)
        if s == stage:
            break
    groups = build_param_groups(model, recipe, stage)
    optimizer = build_optimizer(recipe, groups)
    base = [g["lr"] for g in optimizer.param_groups]
    headline = max(base)
    accelerator = Accelerator(cpu=cpu)
    prepared, optimizer, loader = accelerator.prepare(model, optimizer, train_loader)
    task = task.to(accelerator.device)
    gamma = (end_lr / start_lr) ** (1 / max(1, num_steps - 1))
    lrs, raw, smooth = [], [], []
    avg, best, stopped = 0.0, math.inf, False
    prepared.train()
    step = 0
    epoch = 0
    while step < num_steps and not stopped:
        use_epoch(train_loader, epoch)
        for batch in loader:
            lr = start_lr * gamma**step
            for g, b in zip(optimizer.param_groups, base, strict=True):
                g["lr"] = b * lr / headline
            loss, _ = task.train_loss(prepared, batch)
            accelerator.backward(loss)
            if recipe.max_grad_norm:
                accelerator.clip_grad_norm_(prepared.parameters(), recipe.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            value = float(loss.item())
            avg = smoothing * avg + (1 - smoothing) * value
            smoothed = avg / (1 - smoothing ** (step + 1))
            lrs.append(lr)
            raw.append(value)
            smooth.append(smoothed)
            step += 1
            if not math.isfinite(smoothed) or (step > 5 and smoothed > diverge * best):
                stopped = True
                break
            best = min(best, smoothed)
            if step >= num_steps:
                break
        epoch += 1
    model = accelerator.unwrap_model(prepared)
    model.load_state_dict(saved)
    for name, p in model.named_parameters():
        p.requires_grad_(trainable_before.get(name, True))
    accelerator.free_memory()
    # the diverged tail says where not to be, not where to be: suggest from the rest
    keep = [i for i, v in enumerate(smooth) if math.isfinite(v)]
    if stopped and len(keep) > 1:
        keep = keep[:-1]
    suggested = suggest_valley([lrs[i] for i in keep], [smooth[i] for i in keep])
    notes = []
    batches = len(train_loader)
    if batches < num_steps:
        notes.append(
            f"the training set is {batches} batch(es): the test went through it {epoch} times; "
            "with so few examples the suggestion is rough"
        )
    return LRFinderResult(
        lrs=lrs,
        losses=smooth,
        raw_losses=raw,
        suggested_lr=suggested,
        recipe_lr=headline,
        stopped_early=stopped,
        notes=notes,
    )


def range_test(opts: TrainOptions, console: Console | None = None, **kwargs) -> LRFinderResult:
    """The range test on the data, model and recipe ``tunewise train`` would use with ``opts``
    (a :class:`~tunewise.training.run.TrainOptions`): the same split, labelled fraction,
    validation slice, normaliser and initialisation; nothing is trained or saved.

    Example:
        >>> from tunewise.training.run import TrainOptions
        >>> result = range_test(TrainOptions(data="sms.csv", recipe=load_recipe("scratch"),
        ...                                  out="unused"))  # doctest: +SKIP
    """
    from accelerate.utils import set_seed

    from tunewise.tracks import get_track
    from tunewise.training.run import load_training_data

    console = console or Console(stderr=True)
    opts = replace(opts, audit=False)
    track = get_track(opts.recipe.track)
    data, _, select_on = load_training_data(opts, console)
    set_seed(opts.seed)
    built = track.build(opts, data, None, console)
    train_loader, _ = track.loaders(
        built, data.splits["train"], select_on, data.labels, opts.recipe, opts.seed
    )
    index = {lab: i for i, lab in enumerate(data.labels)}
    task = classification_task(
        data.label_ids("train"), [index[e.label] for e in select_on], opts.recipe, data.labels
    )
    return lr_find(built.model, train_loader, opts.recipe, task, **kwargs)


# ---------------------------------------------------------------------------------------
# The search


@dataclass
class Trial:
    """One candidate of the search and what it scored on the validation slice."""

    multiplier: float
    lr: float
    epochs_budget: int
    best_epoch: int
    epochs_run: int
    validation_score: float | None  # None: the candidate diverged
    validation_loss: float | None
    train_seconds: float
    diverged: str | None = None  # why (a non-finite training loss): a candidate never chosen

    def key(self) -> tuple[float, float]:
        # higher score first; on a tie the lower validation loss (a flat F1 on a small slice)
        if self.diverged is not None or self.validation_score is None:
            return (-math.inf, -math.inf)
        return (self.validation_score, -(self.validation_loss if self.validation_loss is not None else 0.0))


@dataclass
class TunedRun:
    """The chosen candidate, moved to the run's directory, and every candidate's figures."""

    out: Path
    chosen: Trial
    trials: list[Trial]
    fit: FitResult
    dev_metrics: dict
    train_size: int
    lr_find: dict | None = None

    def to_dict(self) -> dict:
        return {
            "chosen": asdict(self.chosen),
            "trials": [asdict(t) for t in self.trials],
            "lr_find": self.lr_find,
        }


def tune_and_train(
    opts: TrainOptions,
    spec: TuneSpec,
    n_labelled: int,
    console: Console | None = None,
    on_trial: Callable[[Trial], None] | None = None,
) -> TunedRun:
    """Train ``opts.recipe`` at each candidate learning rate for the epoch budget, with the
    validation slice choosing the epoch; keep the best candidate as the model in ``opts.out``.

    Candidates train in ``<out>.tune/`` and each one's figures are written there as it ends,
    so a killed search resumes at the candidate it was in. ``n_labelled`` is the size of the
    run's labelled fraction (it sets the epoch budget).

    Example:
        >>> tuned = tune_and_train(TrainOptions(data="sms.csv", recipe=load_recipe("scratch"),
        ...                        out="runs/s", label_fraction=0.01), TuneSpec(), 72)  # doctest: +SKIP
        >>> tuned.chosen.lr, tuned.chosen.best_epoch  # doctest: +SKIP
        (0.003, 141)
    """
    from tunewise.training.run import train_model

    console = console or Console(stderr=True)
    out = Path(opts.out)
    work = out.with_name(out.name + ".tune")
    if opts.encoder_cache is None:  # every candidate starts from the same adapted encoder
        opts = replace(opts, encoder_cache=out.with_name(out.name + ".encoders"))
    n_fit = n_labelled - max(1, round(n_labelled * spec.validation))
    budget = epoch_budget(opts.recipe, n_fit, spec)
    # what a saved candidate was trained under: a search resumed with other settings (another
    # encoder, recipe, seed or slice) must not reuse it
    settings = {
        "recipe": opts.recipe.model_dump(mode="json"),
        "pretrained": str(opts.pretrained) if opts.pretrained else None,
        "seed": opts.seed,
        "label_fraction": opts.label_fraction,
        "validation": spec.validation,
        "background": opts.background,
        "budget": budget,
    }
    done = out / SEARCH_FILE
    if done.is_file() and has_weights(out):
        search = json.loads(done.read_text(encoding="utf-8"))
        if search.get("settings") == settings:  # this search finished before an interruption
            tuned = _tuned_run(out, search)
            console.print(f"    the search finished before: {summarise_trials(tuned.trials)}")
            return tuned
    finder = None
    if spec.method == "grid":
        multipliers = list(spec.grid)
    else:
        found = work / LR_FIND_FILE
        finder = json.loads(found.read_text(encoding="utf-8")) if found.is_file() else None
        if finder is None or finder.get("settings") != settings:
            result = range_test(replace(opts, validation=spec.validation), console)
            work.mkdir(parents=True, exist_ok=True)
            result.plot(work / "lr_find.png")
            finder = {**result.to_dict(), "settings": settings}
            write_json_atomic(found, finder)
        multipliers = [finder["multiplier"]]

    trials: list[Trial] = []
    outcomes: dict[float, dict] = {}
    for m in multipliers:
        trial_dir = work / f"lr-{_fmt_multiplier(m).replace('/', '_')}"
        record = trial_dir / TRIAL_FILE
        saved = json.loads(record.read_text(encoding="utf-8")) if record.is_file() else None
        if saved is not None and saved.get("settings") != settings:
            console.print(f"    {trial_dir.name}: trained under other settings; training it again")
            saved = None
        if saved is None and trial_dir.exists() and _trial_settings(trial_dir) != settings:
            shutil.rmtree(trial_dir)  # an interrupted candidate of another search: start it afresh
        if saved is None:
            recipe = stretch(scale_lr(opts.recipe, m), budget)
            trial_dir.mkdir(parents=True, exist_ok=True)
            write_json_atomic(trial_dir / SETTINGS_FILE, settings)
            try:
                outcome = train_model(
                    replace(
                        opts,
                        recipe=recipe,
                        out=trial_dir,
                        validation=spec.validation,
                        resume=has_checkpoint(trial_dir / "checkpoints"),
                    ),
                    console=console,
                )
            except FloatingPointError as e:
                # a rate too high for this recipe is an answer of the search, not the end of the
                # comparison: the candidate scores nothing and the others go on
                trial = Trial(m, recipe.optimizer.lr, budget, 0, 0, None, None, 0.0, diverged=str(e))
                saved = {"trial": asdict(trial), "settings": settings}
                shutil.rmtree(trial_dir / "checkpoints", ignore_errors=True)
                write_json_atomic(record, saved)
            else:
                saved = _finished_trial(outcome, m, recipe, budget, settings)
                shutil.rmtree(trial_dir / "checkpoints", ignore_errors=True)  # the weights are saved
                write_json_atomic(record, saved)
        trial = Trial(**saved["trial"])
        trials.append(trial)
        outcomes[m] = saved
        if on_trial is not None:
            on_trial(trial)
        console.print(
            f"    candidate LR {trial.lr:.1e} ({_fmt_multiplier(m)}): "
            + (
                f"diverged ({trial.diverged})"
                if trial.diverged
                else f"validation {trial.validation_score:.4f} at epoch {trial.best_epoch} of "
                f"{trial.epochs_run} (budget {budget})"
            )
        )
    chosen = max(trials, key=Trial.key)
    if chosen.diverged is not None:
        raise FloatingPointError(
            f"every candidate learning rate diverged ({summarise_trials(trials)}); lower the recipe's rate"
        )
    chosen_dir = work / f"lr-{_fmt_multiplier(chosen.multiplier).replace('/', '_')}"
    saved = outcomes[chosen.multiplier]
    search = {
        "settings": settings,
        "chosen": asdict(chosen),
        "trials": [asdict(t) for t in trials],
        "fit": saved["fit"],
        "dev_metrics": saved["dev_metrics"],
        "train_size": saved["train_size"],
        "lr_find": {k: v for k, v in finder.items() if k != "settings"} if finder else None,
    }
    # the search's result goes with the model, so a run killed after it (scoring test, say)
    # does not search again
    write_json_atomic(chosen_dir / SEARCH_FILE, search)
    if out.exists():
        shutil.rmtree(out)
    shutil.move(str(chosen_dir), str(out))
    shutil.rmtree(work, ignore_errors=True)  # the other candidates' figures are in the record
    return _tuned_run(out, search)


def _tuned_run(out: Path, search: dict) -> TunedRun:
    return TunedRun(
        out=out,
        chosen=Trial(**search["chosen"]),
        trials=[Trial(**t) for t in search["trials"]],
        fit=FitResult(**search["fit"]),
        dev_metrics=search["dev_metrics"],
        train_size=search["train_size"],
        lr_find=search["lr_find"],
    )


def _trial_settings(trial_dir: Path) -> dict | None:
    path = trial_dir / SETTINGS_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _finished_trial(outcome, multiplier: float, recipe: Recipe, budget: int, settings: dict) -> dict:
    """What a finished candidate leaves for the search: its figures and the recipe it ran."""
    fit = outcome.fit
    best = next((h for h in fit.history if h["epoch"] == fit.best_epoch), {})
    trial = Trial(
        multiplier=multiplier,
        lr=recipe.optimizer.lr,
        epochs_budget=budget,
        best_epoch=fit.best_epoch,
        epochs_run=fit.epochs_run,
        validation_score=fit.best_metric,
        validation_loss=best.get("dev_loss"),
        train_seconds=fit.wall_time_s,
    )
    return {
        "trial": asdict(trial),
        "fit": asdict(fit),
        "dev_metrics": outcome.dev_metrics,
        "train_size": sum(1 for e in outcome.data.splits["train"] if e.source != _background()),
        "recipe": recipe.model_dump(mode="json"),
        "settings": settings,
    }


def _background() -> str:
    from tunewise.data.background import SOURCE

    return SOURCE


def summarise_trials(trials: list[Trial]) -> str:
    """``x1/3 0.712 · x1 0.845* · x3 0.801`` (validation score per candidate, * chosen).

    Example:
        >>> t = [Trial(m, m, 30, 5, 9, s, 0.1, 1.0) for m, s in ((1 / 3, 0.7), (1.0, 0.8))]
        >>> summarise_trials(t)
        'x1/3 0.700 · x1 0.800*'
    """
    if not trials:
        return "—"
    best = max(trials, key=Trial.key)
    return " · ".join(
        f"{_fmt_multiplier(t.multiplier)} "
        + ("diverged" if t.diverged else f"{t.validation_score:.3f}")
        + ("*" if t is best and not t.diverged else "")
        for t in trials
    )


def describe_tuning(run: dict) -> str:
    """What a tuned comparison run chose, in one line (the report's "tuned" column).

    Example:
        >>> describe_tuning({"tuning": {"chosen": {"C": 10.0}, "validation_size": 14}})
        'C 10 (validation slice of 14)'
        >>> t = {"multiplier": 3.0, "lr": 0.003, "epochs_budget": 300, "best_epoch": 141, "epochs_run": 201,
        ...      "validation_score": 0.9, "validation_loss": 0.2, "train_seconds": 9.0}
        >>> describe_tuning({"tuning": {"chosen": t, "trials": [t]}})
        'LR 3e-03 (x3; x3 0.900*) · best epoch 141 of 201 run (budget 300)'
    """
    tuning = run.get("tuning") or {}
    chosen = tuning.get("chosen")
    if not chosen:
        return "—"
    if "C" in chosen:
        return f"C {chosen['C']:g} (validation slice of {tuning.get('validation_size', '?')})"
    trials = [Trial(**t) for t in tuning.get("trials", [])]
    return (
        f"LR {chosen['lr']:.0e} ({_fmt_multiplier(chosen['multiplier'])}; {summarise_trials(trials)}) · "
        f"best epoch {chosen['best_epoch']} of {chosen['epochs_run']} run (budget {chosen['epochs_budget']})"
    )


__all__ = [
    "describe_tuning",
    "LRFinderResult",
    "Trial",
    "TuneSpec",
    "TunedRun",
    "epoch_budget",
    "lr_find",
    "range_test",
    "scale_lr",
    "stretch",
    "suggest_valley",
    "summarise_trials",
    "tune_and_train",
]
