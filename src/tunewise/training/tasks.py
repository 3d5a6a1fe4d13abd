"""What the one training loop optimises and how it scores an epoch: a *task*.

The loop (``training.loop.fit``) knows stages, optimizers, checkpoints and logging; a task
knows how a batch becomes a loss and how a dev loader becomes metrics. Sequence
classification and masked-language-model pretraining are the two tasks.
"""

from __future__ import annotations

from typing import Protocol

import torch
from accelerate import Accelerator
from accelerate.utils import gather_object, send_to_device
from torch import nn
from torch.utils.data import DataLoader

from tunewise.faults import fault_point
from tunewise.metrics import classification_metrics


class Task(Protocol):
    """The interface ``fit`` needs."""

    #: the dev metric to maximise (model selection, early stopping, ReduceLROnPlateau "max")
    metric: str
    #: scalar dev metrics copied into each epoch's history row as ``dev_<name>``
    logged: tuple[str, ...]

    def train_loss(self, model: nn.Module, batch: dict) -> tuple[torch.Tensor, int]:
        """Loss of one batch and the number of items it averages over."""

    def evaluate(self, accelerator: Accelerator, model: nn.Module, loader: DataLoader) -> dict:
        """Dev metrics, including ``loss`` and ``self.metric``."""

    def to(self, device: torch.device) -> Task: ...


def logits_of(output) -> torch.Tensor:
    """The logits of a forward pass: a Hugging Face output's ``.logits``, or the tensor a
    torchvision or timm network returns.

    Example:
        >>> logits_of(torch.zeros(1, 2)).shape
        torch.Size([1, 2])
    """
    return output if isinstance(output, torch.Tensor) else output.logits


class ClassificationTask:
    """Classification (of texts or images) with the recipe's loss (cross-entropy or focal,
    weighted). A batch is the model's keyword inputs plus ``labels`` and ``index``."""

    logged = ("loss", "accuracy", "macro_f1")

    def __init__(
        self, loss_fn: nn.Module, labels: list[str], metric: str = "macro_f1", baseline: float | None = None
    ) -> None:
        self.loss_fn = loss_fn
        self.labels = labels
        self.metric = metric
        #: the dev metric of predicting the commonest class; early stopping waits until it is beaten
        self.baseline = baseline

    def to(self, device: torch.device) -> ClassificationTask:
        self.loss_fn = self.loss_fn.to(device)
        return self

    def train_loss(self, model: nn.Module, batch: dict) -> tuple[torch.Tensor, int]:
        gold = batch.pop("labels")
        batch.pop("index", None)
        logits = logits_of(model(**batch))
        return self.loss_fn(logits.float(), gold), len(gold)

    @torch.no_grad()
    def evaluate(self, accelerator: Accelerator, model: nn.Module, loader: DataLoader) -> dict:
        """Dev metrics and mean loss over every process's examples (each scores its slice of the
        dev set; the logits are gathered and scored once, so the figures do not depend on how
        many processes there are)."""
        # the bare model: DDP's forward may talk to the other processes, and a process can
        # have fewer dev batches (or none) to score
        model = accelerator.unwrap_model(model)
        model.eval()
        logits_parts, gold_parts = [], []
        for batch in loader:
            if batch is None:  # an empty slice (tunewise.training.distributed)
                continue
            batch = send_to_device(batch, accelerator.device)
            gold = batch.pop("labels")
            batch.pop("index", None)
            logits_parts.append(logits_of(model(**batch)).float().cpu())
            gold_parts.append(gold.cpu())
            fault_point("train.eval")
        logits = torch.cat(logits_parts) if logits_parts else torch.zeros(0, len(self.labels))
        gold = torch.cat(gold_parts) if gold_parts else torch.zeros(0, dtype=torch.long)
        if accelerator.num_processes > 1:
            parts = gather_object([(logits.tolist(), gold.tolist())])
            logits = torch.tensor([row for rows, _ in parts for row in rows], dtype=torch.float32)
            gold = torch.tensor([g for _, golds in parts for g in golds], dtype=torch.long)
            logits = logits.reshape(-1, len(self.labels))
        metrics = classification_metrics(gold.tolist(), logits.argmax(-1).tolist(), self.labels)
        device = accelerator.device
        loss = self.loss_fn(logits.to(device), gold.to(device)).item() if len(gold) else float("nan")
        metrics["loss"] = loss
        return metrics
