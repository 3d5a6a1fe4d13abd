"""Losses for imbalanced classes: class-weighted cross-entropy and focal loss."""

from __future__ import annotations

from collections import Counter

import torch
from torch import nn

from tunewise.recipes.schema import LossSpec


def balanced_class_weights(label_ids: list[int], num_labels: int) -> torch.Tensor:
    """scikit-learn's "balanced" weights: ``n_samples / (n_classes * count)``.

    Example:
        >>> balanced_class_weights([0, 0, 0, 1], 2).tolist()
        [0.6666666865348816, 2.0]
    """
    counts = Counter(label_ids)
    n = len(label_ids)
    return torch.tensor(
        [n / (num_labels * counts[i]) if counts[i] else 0.0 for i in range(num_labels)],
        dtype=torch.float32,
    )


class FocalLoss(nn.Module):
    """Focal loss (Lin et al., 2017): down-weights easy examples by ``(1 - p_t) ** gamma``."""

    def __init__(self, gamma: float = 2.0, weight: torch.Tensor | None = None, label_smoothing: float = 0.0):
        super().__init__()
        self.gamma = gamma
        self.register_buffer("weight", weight if weight is not None else None)
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        ce = nn.functional.cross_entropy(
            logits, target, weight=self.weight, reduction="none", label_smoothing=self.label_smoothing
        )
        p_t = torch.softmax(logits, dim=-1).gather(1, target.unsqueeze(1)).squeeze(1)
        return ((1 - p_t) ** self.gamma * ce).mean()


def build_loss(spec: LossSpec, train_label_ids: list[int], num_labels: int) -> nn.Module:
    """The recipe's loss, with balanced class weights computed from the training labels."""
    weight = balanced_class_weights(train_label_ids, num_labels) if spec.class_weight else None
    if spec.type == "focal":
        return FocalLoss(spec.gamma, weight, spec.label_smoothing)
    return nn.CrossEntropyLoss(weight=weight, label_smoothing=spec.label_smoothing)
