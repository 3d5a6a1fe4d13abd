"""Shared by the few-label benchmarks: the labelled-fraction protocol, recipe overrides,
scoring a trained model on a split, and the TF-IDF baseline.

The protocol: one fixed stratified split of the data (seed 0). A validation set is carved out
of the training split (stratified, ``VALIDATION_SEED``); it is what early stopping, epoch
selection and the baseline's C see. The labelled fraction is drawn from the rest of the
training split, sized as that fraction of the *whole* training split. Figures are reported
on the dev split, which no choice ever looks at.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass

from accelerate import Accelerator
from accelerate.utils import set_seed
from sklearn.metrics import f1_score
from torch import nn
from torch.utils.data import DataLoader

from tunewise.baseline import fit_tfidf_svm
from tunewise.data.loading import Example
from tunewise.data.prepare import PreparedData, split_off, subsample
from tunewise.models import BuiltModel, build_model
from tunewise.recipes.schema import Recipe
from tunewise.tracks.text import TextSplit, fit_classifier
from tunewise.training.batching import Collator, LengthBucketBatchSampler, TextDataset
from tunewise.training.loop import FitResult
from tunewise.training.tasks import ClassificationTask

VALIDATION_SEED = 99


class FewLabelSplits:
    """The validation set, the pool the labelled fractions come from, and the dev split."""

    def __init__(self, data: PreparedData, validation_fraction: float = 0.125) -> None:
        self.labels = data.labels
        self.index = {lab: i for i, lab in enumerate(self.labels)}
        self.train_size = len(data.splits["train"])
        self.pool, validation = split_off(data.splits["train"], validation_fraction, seed=VALIDATION_SEED)
        self.validation = self.as_split(validation)
        self.dev = self.as_split(data.splits["dev"])

    def as_split(self, examples: list[Example]) -> TextSplit:
        return TextSplit([e.text for e in examples], [self.index[e.label] for e in examples])

    def labelled(self, fraction: float, seed: int) -> TextSplit:
        """``fraction`` of the whole training split's size, drawn from the pool."""
        if fraction >= 1:
            return self.as_split(self.pool)
        return self.as_split(subsample(self.pool, fraction * self.train_size / len(self.pool), seed=seed))


def apply_setting(base: Recipe, setting: str) -> Recipe:
    """``base`` with comma-separated overrides: ``epochs=30,batch=16,lr=1e-3,head_lr=..,patience=..,
    max_length=..`` (``lr`` is the base rate; stages scale it by their ``lr_scale``)."""
    values = dict(kv.split("=", 1) for kv in setting.split(",") if kv)
    recipe = base.with_epochs(int(values.pop("epochs", base.total_epochs())))
    update: dict = {}
    if "batch" in values:
        update["batch_size"] = int(values.pop("batch"))
    if "lr" in values:
        update["optimizer"] = recipe.optimizer.model_copy(update={"lr": float(values.pop("lr"))})
    if "head_lr" in values:
        head_lr = float(values.pop("head_lr"))
        update["param_groups"] = [g.model_copy(update={"lr": head_lr}) for g in recipe.param_groups]
    if "patience" in values:
        stop = recipe.early_stopping.model_copy(update={"patience": int(values.pop("patience"))})
        update["early_stopping"] = stop
    if "max_length" in values:
        update["model"] = recipe.model.model_copy(update={"max_length": int(values.pop("max_length"))})
    if values:
        raise SystemExit(f"unknown override(s) in {setting!r}: {sorted(values)}")
    return recipe.model_copy(update=update)


def macro_f1(model: nn.Module, tokenizer, split: TextSplit, recipe: Recipe, labels: list[str]) -> float:
    """Macro-F1 of ``model`` on ``split``, batched exactly as training's dev evaluation."""
    loader = DataLoader(
        TextDataset(split.texts, split.label_ids),
        batch_sampler=LengthBucketBatchSampler(
            [len(t) for t in split.texts], recipe.eval_batch_size, shuffle=False
        ),
        collate_fn=Collator(tokenizer, recipe.model.max_length),
    )
    # fit() already set up this process's accelerator (a GPU when there is one): evaluate
    # there, on the device the model was left on; Accelerator(cpu=True) would clash with it
    accelerator = Accelerator()
    task = ClassificationTask(nn.CrossEntropyLoss(), labels).to(accelerator.device)
    model = model.to(accelerator.device)
    return float(task.evaluate(accelerator, model, accelerator.prepare(loader))["macro_f1"])


def tfidf_svm(train: TextSplit, validation: TextSplit, dev: TextSplit) -> tuple[float, float]:
    """TF-IDF character 1-3-grams + LinearSVC, C chosen on ``validation``: (dev macro-F1, C)."""
    model = fit_tfidf_svm(train.texts, train.label_ids, validation.texts, validation.label_ids)
    return float(f1_score(dev.label_ids, model.predict(dev.texts), average="macro")), model.c


@dataclass
class Trained:
    built: BuiltModel  # its model holds the weights of the best validation epoch
    fit: FitResult
    seconds: float


def train_selected(
    recipe: Recipe, splits: FewLabelSplits, train: TextSplit, encoder: str, seed: int, console
) -> Trained:
    """Build ``recipe``'s model from ``encoder`` and train it on ``train``, early stopping and
    keeping the best epoch by the validation set (never dev)."""
    set_seed(seed)
    built = build_model(recipe.model, splits.labels, pretrained=encoder)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as work:
        fit = fit_classifier(
            built.model,
            built.tokenizer,
            train,
            splits.validation,
            recipe,
            work,
            labels=splits.labels,
            seed=seed,
            console=console,
            show_progress=False,
            log_with=None,
        )
    return Trained(built, fit, time.perf_counter() - start)
