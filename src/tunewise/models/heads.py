"""Task heads, and which modules of a classifier are "head" and which are "backbone"."""

from __future__ import annotations

from torch import nn

from tunewise.errors import ModelError
from tunewise.recipes.schema import HeadSpec

# Attribute names the Hugging Face sequence-classification models use for their head.
HEAD_ATTRIBUTES = ("pre_classifier", "classifier", "score")


class MLPHead(nn.Module):
    """The note's head: ``Linear -> ReLU -> Dropout -> Linear``.

    Accepts pooled features ``(batch, hidden)`` or token features ``(batch, seq, hidden)``
    (RoBERTa-style models hand the head every token; the first one, ``<s>``/[CLS], is used).

    Example:
        >>> import torch
        >>> MLPHead(8, 3, hidden_size=4)(torch.zeros(2, 8)).shape
        torch.Size([2, 3])
    """

    def __init__(self, in_features: int, num_labels: int, hidden_size: int = 256, dropout: float = 0.5):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(in_features, hidden_size),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden_size, num_labels),
        )

    def forward(self, features):
        if features.dim() == 3:
            features = features[:, 0]
        return self.layers(features)


def head_module_names(model: nn.Module) -> list[str]:
    """Names of the top-level modules that form the task head (new, randomly initialised):
    the ones the image builder recorded (``fc`` of a ResNet, ``classifier`` of MobileNetV2),
    else the Hugging Face attribute names.

    Example:
        >>> m = nn.Sequential(); m.fc = nn.Linear(2, 2); m.tunewise_head = ["fc"]
        >>> head_module_names(m)
        ['fc']
    """
    recorded = getattr(model, "tunewise_head", None)
    if recorded:
        return list(recorded)
    names = [n for n, _ in model.named_children() if n in HEAD_ATTRIBUTES]
    if not names:
        raise ModelError(
            f"cannot find the classification head of {type(model).__name__}: expected a child "
            f"named one of {HEAD_ATTRIBUTES}, found {[n for n, _ in model.named_children()]}"
        )
    return names


def apply_head(model: nn.Module, spec: HeadSpec, num_labels: int) -> None:
    """Replace the model's classifier with ``spec``'s head (``linear`` keeps the native one)."""
    if spec.type == "linear":
        return
    hidden = getattr(model.config, "hidden_size", None) or getattr(model.config, "dim", None)
    if hidden is None:
        raise ModelError(f"{type(model).__name__}: config has no hidden_size; cannot size the head")
    model.classifier = MLPHead(hidden, num_labels, spec.hidden_size, spec.dropout)
