"""The one training loop. Text or images, scratch or fine-tune: only the recipe differs.

Read it top to bottom like the note's loop: for each stage, set what trains, build the
optimizer over the trainable parameters, then for each epoch train, evaluate on dev,
keep the best weights, write a checkpoint. Accelerate runs the same code on CPU, one GPU
or many (``accelerate launch``); ``tunewise.training.distributed`` says which examples each
process sees, so N processes take the same steps as one.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import send_to_device, set_seed
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from safetensors.torch import load_file
from torch.utils.data import DataLoader

from tunewise.errors import RecipeError
from tunewise.faults import fault_point
from tunewise.metrics import majority_baseline
from tunewise.recipes.schema import Recipe, StageSpec
from tunewise.training.checkpoint import (
    TrainState,
    resume_checkpoint,
    save_checkpoint,
    save_weights_atomic,
)
from tunewise.training.distributed import shard_loader, world_size
from tunewise.training.freeze import (
    first_n_children,
    first_n_groups,
    freeze,
    freeze_to,
    set_frozen_batchnorm_eval,
    trainable_summary,
    unfreeze,
    unfreeze_batchnorm,
)
from tunewise.training.losses import build_loss
from tunewise.training.optim import build_optimizer, build_param_groups, build_scheduler
from tunewise.training.tasks import ClassificationTask, Task

BEST_WEIGHTS = "best.safetensors"


@dataclass
class FitResult:
    best_metric: float
    best_epoch: int
    epochs_run: int
    history: list[dict]
    wall_time_s: float
    trainable_params: int
    total_params: int
    resumed_from: str | None = None
    stages: list[dict] = field(default_factory=list)


def apply_initial_freeze(model: torch.nn.Module, recipe: Recipe) -> None:
    """The recipe's ``freeze`` plan, applied once before the first stage."""
    unfreeze(model)
    if recipe.freeze.modules:
        freeze(model, recipe.freeze.modules)
    if recipe.freeze.first_n_groups:
        freeze(model, first_n_groups(model, recipe.freeze.first_n_groups))
    if recipe.freeze.first_n_children:
        freeze(model, first_n_children(model, recipe.freeze.first_n_children))
    if recipe.freeze.train_batchnorm:
        unfreeze_batchnorm(model)


def apply_stage(model: torch.nn.Module, stage: StageSpec, recipe: Recipe | None = None) -> None:
    """Change what trains at the start of ``stage`` (relative to the previous stage)."""
    if stage.trainable is not None:
        freeze(model)
        unfreeze(model, stage.trainable)
    if stage.freeze_to is not None:
        freeze_to(model, stage.freeze_to)
    if stage.unfreeze:
        unfreeze(model, stage.unfreeze)
    if stage.freeze:
        freeze(model, stage.freeze)
    if recipe is not None and recipe.freeze.train_batchnorm:
        unfreeze_batchnorm(model)


def _set_trainable_exactly(model: torch.nn.Module, names: list[str]) -> None:
    wanted = set(names)
    for name, p in model.named_parameters():
        p.requires_grad_(name in wanted)


def _native_cpu_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16, AMX); where it does not, autocast
    to bf16 is emulated and slow. Unknown (a torch without the probe) counts as native."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return True


def fit(
    model: torch.nn.Module,
    train_loader: DataLoader,
    dev_loader: DataLoader,
    recipe: Recipe,
    work_dir: str | Path,
    *,
    task: Task,
    seed: int = 0,
    resume: bool = False,
    console: Console | None = None,
    show_progress: bool = True,
    log_with: str | None = "tensorboard",
    cpu: bool = False,
) -> FitResult:
    """Train ``model`` by ``recipe`` on ``task``; checkpoints go to ``work_dir/checkpoints``.

    The loaders' batch sampler, sampler, dataset and collate function may have
    ``use_epoch(epoch)``: it is called before each epoch so shuffling and augmentation
    depend on the epoch number alone, which makes a resumed run repeat the interrupted one
    exactly. On return the
    model holds the weights of the best dev epoch.

    Example:
        >>> task = ClassificationTask(nn.CrossEntropyLoss(), ["normal", "fraud"])  # doctest: +SKIP
        >>> fit(model, train_loader, dev_loader, load_recipe("scratch"), "out", task=task)  # doctest: +SKIP
    """
    console = console or Console(stderr=True)
    work_dir = Path(work_dir)
    ckpt_dir = work_dir / "checkpoints"
    started = time.perf_counter()
    set_seed(seed)
    # launched as several processes on a machine without a GPU: Accelerate needs to be told
    # CPU to pick its gloo backend (else each process would think it runs alone)
    cpu = cpu or (world_size() > 1 and not torch.cuda.is_available())
    # Accelerate keeps its settings in a process-wide singleton that refuses a second
    # precision; one process may run fits with different recipes (compare, tests), so each
    # fit starts from fresh settings (the process group, if any, is kept)
    AcceleratorState._reset_state(reset_partial_state=False)
    accelerator = Accelerator(
        cpu=cpu,
        log_with=log_with,
        project_dir=str(work_dir / "logs"),
        mixed_precision=recipe.mixed_precision,
    )
    if recipe.mixed_precision == "fp16" and accelerator.device.type == "cpu":
        raise RecipeError(
            f"recipe {recipe.name!r}: mixed_precision fp16 needs a GPU (its loss scaler runs on CUDA); "
            "on a CPU use bf16"
        )
    if recipe.mixed_precision == "bf16" and accelerator.device.type == "cpu" and not _native_cpu_bf16():
        console.print(
            f"[yellow]warning[/]: recipe {recipe.name!r} asks for bf16, which this CPU emulates (no "
            "native bf16 instructions): a step is far slower than in fp32 (27x for a 6-layer BERT "
            "on a 2-core AMD EPYC, BENCHMARKS.md); mixed_precision: no is faster here"
        )
    # every process takes its slice of each global batch; see tunewise.training.distributed
    rank, n_proc = accelerator.process_index, accelerator.num_processes
    loader = shard_loader(train_loader, rank, n_proc, training=True)
    dev_loader_p = shard_loader(dev_loader, rank, n_proc, training=False)
    accumulate = recipe.gradient_accumulation_steps
    shard_log = _ShardLog.from_env(rank)
    stages = recipe.resolved_stages()

    state = TrainState()
    ckpt = None
    resumed_from = None
    if resume:
        ckpt = resume_checkpoint(
            ckpt_dir,
            warn=lambda m: console.print(f"[yellow]{escape(m)}[/]"),
            clean=accelerator.is_main_process,
        )
        if ckpt is None:
            console.print("[yellow]--resume: no checkpoint found; starting from the beginning[/]")
        else:
            model.load_state_dict(ckpt.model)
            state = ckpt.state
            resumed_from = f"{ckpt.path} (epoch {state.epoch} done)"
            console.print(f"resuming from {resumed_from}")
    if ckpt is None:
        apply_initial_freeze(model, recipe)
    elapsed_before = state.elapsed_s

    if log_with and accelerator.is_main_process:
        accelerator.init_trackers("tunewise", config=_flat_config(recipe, seed))

    raw_model = model
    task = task.to(accelerator.device)
    stage_log: list[dict] = []
    first_stage = state.stage
    for stage_index in range(state.stage, len(stages)):
        stage = stages[stage_index]
        if stage_index > first_stage:
            fault_point("train.stage")
        resuming_mid_stage = ckpt is not None and state.stage_epoch > 0
        if ckpt is not None and state.trainable:
            # back to exactly what trained when the checkpoint was written
            _set_trainable_exactly(raw_model, state.trainable)
        if not resuming_mid_stage:
            apply_stage(raw_model, stage, recipe)
        state.trainable = [n for n, p in raw_model.named_parameters() if p.requires_grad]
        groups = build_param_groups(raw_model, recipe, stage)
        optimizer = build_optimizer(recipe, groups)
        # a stage re-prepares the model: what trains changed, and DDP must know it
        accelerator.free_memory()
        model, optimizer = accelerator.prepare(raw_model, optimizer)
        # one optimizer step per `accumulate` batches (and one for the epoch's last few)
        schedule = build_scheduler(recipe, optimizer, math.ceil(len(loader) / accumulate), stage.epochs)
        if resuming_mid_stage:
            optimizer.load_state_dict(ckpt.optimizer)
            schedule.load_state_dict(ckpt.scheduler)
        if ckpt is not None:
            ckpt.restore_rng()
            ckpt = None  # everything it held is now in use
        n_train, n_total = trainable_summary(raw_model)
        stage_log.append({"stage": stage.name, "trainable_params": n_train, "lr_groups": len(groups)})
        console.print(
            f"[bold]stage {stage_index + 1}/{len(stages)} '{stage.name}'[/]: {stage.epochs} epochs, "
            f"{n_train:,} of {n_total:,} parameters trainable, "
            f"LR {_lr_range(optimizer)} in {len(groups)} group(s)"
        )
        while state.stage_epoch < stage.epochs and not state.stage_done:
            epoch_start = time.perf_counter()
            use_epoch(train_loader, state.epoch)
            model.train()
            set_frozen_batchnorm_eval(model)
            running, seen = 0.0, 0
            with _progress(show_progress, console) as progress:
                bar = progress.add_task(
                    f"epoch {state.epoch + 1}/{recipe.total_epochs()} ({stage.name})",
                    total=len(loader),
                    loss="",
                )
                for i, batch in enumerate(loader):
                    group_start = i - i % accumulate
                    in_group = min(accumulate, len(loader) - group_start)  # the last group may be short
                    steps_now = i - group_start + 1 == in_group
                    shard_log.record(state.epoch, batch)
                    batch = send_to_device(batch, accelerator.device)
                    # gradients of a group's first batches stay local: DDP syncs them once, at the step
                    with _maybe_no_sync(accelerator, model, not steps_now):
                        loss, count = task.train_loss(model, batch)
                        accelerator.backward(loss / in_group)
                    fault_point("train.batch")
                    if steps_now:
                        if recipe.max_grad_norm:
                            accelerator.clip_grad_norm_(model.parameters(), recipe.max_grad_norm)
                        optimizer.step()
                        optimizer.zero_grad(set_to_none=True)
                        if schedule.per == "batch":
                            schedule.scheduler.step()
                        state.global_step += 1
                    running += loss.item() * count
                    seen += count
                    progress.update(bar, advance=1, loss=f"loss {running / seen:.4f}")
            train_seconds = time.perf_counter() - epoch_start
            if n_proc > 1:
                # the epoch's loss over every process's examples, the same in each
                totals = accelerator.reduce(torch.tensor([running, float(seen)], device=accelerator.device))
                running, seen = totals.tolist()
            if not math.isfinite(running):
                raise FloatingPointError(
                    f"training loss became {running} in epoch {state.epoch + 1}; lower the learning rate"
                )
            dev_metrics = task.evaluate(accelerator, model, dev_loader_p)
            metric = dev_metrics[task.metric]
            if schedule.per == "epoch":
                plateau_mode = recipe.scheduler.mode  # type: ignore[union-attr]
                schedule.scheduler.step(metric if plateau_mode == "max" else dev_metrics["loss"])
            state.epoch += 1
            state.stage_epoch += 1
            improved = _improved(state, metric, dev_metrics["loss"], recipe)
            if improved:
                state.best_metric, state.best_epoch = metric, state.epoch
                state.best_loss = dev_metrics["loss"]
                state.epochs_without_improvement = 0
                if accelerator.is_main_process:
                    save_weights_atomic(accelerator.unwrap_model(model), ckpt_dir / BEST_WEIGHTS)
            elif state.stage_epoch > warmup_epochs(recipe, stage):
                # epochs spent warming the rate up are not a verdict on the stage
                state.epochs_without_improvement += 1
            row = {
                "epoch": state.epoch,
                "stage": stage.name,
                "train_loss": running / max(1, seen),
                **{f"dev_{k}": dev_metrics[k] for k in task.logged},
                "lr": max(g["lr"] for g in optimizer.param_groups),
                "train_seconds": train_seconds,
                "seconds": time.perf_counter() - epoch_start,
            }
            state.history.append(row)
            accelerator.log({k: v for k, v in row.items() if isinstance(v, (int, float))}, step=state.epoch)
            scores = " · ".join(f"dev {k.replace('_', ' ')} {dev_metrics[k]:.4f}" for k in task.logged)
            console.print(
                f"epoch {state.epoch:>3} ({stage.name}) train loss {row['train_loss']:.4f} · {scores} · "
                f"lr {row['lr']:.2e} · {row['seconds']:.1f}s" + (" [green]best[/]" if improved else "")
            )
            if should_stop(state, stage, recipe, getattr(task, "baseline", None)):
                console.print(
                    f"early stopping: no dev improvement for {state.epochs_without_improvement} epochs; "
                    f"ending stage '{stage.name}'"
                )
                state.stage_done = True
            if state.stage_epoch >= stage.epochs or state.stage_done:
                # checkpoint already points at the next stage, so a resume starts it fresh
                state.stage, state.stage_epoch, state.stage_done = stage_index + 1, 0, False
                state.epochs_without_improvement = 0
            state.elapsed_s = elapsed_before + time.perf_counter() - started
            if accelerator.is_main_process:
                save_checkpoint(
                    ckpt_dir, accelerator.unwrap_model(model), optimizer, schedule.state_dict(), state
                )
            accelerator.wait_for_everyone()
            if state.stage != stage_index:
                break
        model = accelerator.unwrap_model(model)
    accelerator.end_training()

    best = ckpt_dir / BEST_WEIGHTS
    if best.is_file():
        raw_model.load_state_dict(load_file(str(best)))
    n_train, n_total = trainable_summary(raw_model)
    return FitResult(
        best_metric=state.best_metric if state.best_metric is not None else float("nan"),
        best_epoch=state.best_epoch or 0,
        epochs_run=state.epoch,
        history=state.history,
        # a resumed run reports its whole training time, not only the part after the resume
        wall_time_s=elapsed_before + time.perf_counter() - started,
        trainable_params=n_train,
        total_params=n_total,
        resumed_from=resumed_from,
        stages=stage_log,
    )


class _ShardLog:
    """With ``TUNEWISE_SHARD_LOG=DIR``, each process appends the example indices of every
    training batch it takes to ``DIR/rank<N>.jsonl``: which examples each process saw, per
    epoch (the multi-process tests check the shards with it)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path

    @classmethod
    def from_env(cls, rank: int) -> _ShardLog:
        folder = os.environ.get("TUNEWISE_SHARD_LOG")
        return cls(Path(folder) / f"rank{rank}.jsonl" if folder else None)

    def record(self, epoch: int, batch: dict) -> None:
        if self.path is None or "index" not in batch:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps({"epoch": epoch, "index": batch["index"].tolist()}) + "\n")


def _maybe_no_sync(accelerator: Accelerator, model: torch.nn.Module, skip_sync: bool):
    return accelerator.no_sync(model) if skip_sync else contextlib.nullcontext()


def stage_patience(recipe: Recipe, stage: StageSpec) -> int | None:
    """Epochs without improvement that end ``stage``: the recipe's patience, or its
    ``patience_ratio`` of the stage's epochs when that is more (None: no early stopping).

    Example:
        >>> from tunewise.recipes import load_recipe
        >>> r = load_recipe("scratch").with_epochs(300)
        >>> stage_patience(r, r.resolved_stages()[0])
        60
    """
    es = recipe.early_stopping
    if es is None:
        return None
    return max(es.patience, math.ceil(es.patience_ratio * stage.epochs))


def warmup_epochs(recipe: Recipe, stage: StageSpec) -> int:
    """How many of ``stage``'s first epochs the schedule spends raising the learning rate.

    Example:
        >>> from tunewise.recipes import load_recipe
        >>> r = load_recipe("finetune-small")
        >>> [warmup_epochs(r, s) for s in r.resolved_stages()]
        [1, 3]
    """
    spec = recipe.scheduler
    share = {"linear_warmup": getattr(spec, "warmup_ratio", 0.0), "onecycle": getattr(spec, "pct_start", 0.0)}
    return math.ceil(share.get(spec.name, 0.0) * stage.epochs)


def should_stop(state: TrainState, stage: StageSpec, recipe: Recipe, floor: float | None) -> bool:
    """Early stopping's decision after an epoch of ``stage``.

    Never before the run's best dev score beats ``floor`` (the majority-class baseline): a
    run still predicting one class is in the slow first phase, not at a plateau. The last
    epoch of a stage needs no decision, the stage ends anyway.
    """
    patience = stage_patience(recipe, stage)
    if patience is None or state.stage_epoch >= stage.epochs:
        return False
    if floor is not None and (state.best_metric is None or state.best_metric <= floor):
        return False
    return state.epochs_without_improvement >= patience


def _improved(state: TrainState, metric: float, loss: float, recipe: Recipe) -> bool:
    """A better dev metric, or the same one at a lower dev loss.

    Macro-F1 moves in steps: a model still predicting only the majority class scores the
    same epoch after epoch while its loss falls. Counting that as "no improvement" would
    early-stop it just before it starts to separate the classes.
    """
    if state.best_metric is None:
        return True
    min_delta = recipe.early_stopping.min_delta if recipe.early_stopping else 0.0
    if metric > state.best_metric + min_delta:
        return True
    return metric == state.best_metric and state.best_loss is not None and loss < state.best_loss


def use_epoch(loader: DataLoader, epoch: int) -> None:
    """Tell the loader's parts which epoch comes next (see ``fit``)."""
    for part in (loader.batch_sampler, loader.sampler, loader.dataset, loader.collate_fn):
        if hasattr(part, "use_epoch"):
            part.use_epoch(epoch)


def classification_task(
    train_ids: list[int], dev_ids: list[int], recipe: Recipe, labels: list[str]
) -> ClassificationTask:
    """The recipe's loss (class weights from ``train_ids``), and the majority-class baseline
    early stopping must beat on ``dev_ids``.

    Example:
        >>> from tunewise.recipes import load_recipe
        >>> task = classification_task([0, 0, 1], [0, 1], load_recipe("scratch"), ["a", "b"])
        >>> task.metric, round(task.baseline, 3)
        ('macro_f1', 0.333)
    """
    return ClassificationTask(
        build_loss(recipe.loss, train_ids, len(labels)),
        labels,
        recipe.metric,
        baseline=majority_baseline(train_ids, dev_ids, labels, recipe.metric),
    )


def _lr_range(optimizer: torch.optim.Optimizer) -> str:
    # schedulers with warmup start at 0; report the rates the groups were built with
    lrs = [g.get("initial_lr", g["lr"]) for g in optimizer.param_groups]
    lo, hi = min(lrs), max(lrs)
    return f"{hi:.1e}" if lo == hi else f"{lo:.1e}–{hi:.1e}"


def _progress(enabled: bool, console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[loss]}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        # a live bar only makes sense on a terminal; in logs it leaves blank lines
        disable=not enabled or not console.is_terminal,
    )


def _flat_config(recipe: Recipe, seed: int) -> dict:
    """Scalar hyper-parameters for TensorBoard's HParams view."""
    return {
        "recipe": recipe.name,
        "seed": seed,
        "init": recipe.model.init,
        "architecture": recipe.model.architecture,
        "optimizer": recipe.optimizer.name,
        "lr": recipe.optimizer.lr,
        "epochs": recipe.total_epochs(),
        "batch_size": recipe.batch_size,
        "augmentation": recipe.augmentation,
        "scheduler": recipe.scheduler.name,
        "stages": len(recipe.resolved_stages()),
    }


def __getattr__(name: str):
    # the text helpers moved to tunewise.tracks.text with the track seam; old imports still work
    if name in ("TextSplit", "fit_classifier", "text_loaders"):
        from tunewise.tracks import text

        return getattr(text, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
