"""Classification metrics, computed by scikit-learn, in the shape ``metrics.json`` uses."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)


def classification_metrics(y_true: list[int], y_pred: list[int], labels: list[str]) -> dict:
    """Accuracy, macro-F1, per-class precision/recall/F1/support and the confusion matrix.

    Example:
        >>> m = classification_metrics([0, 1, 1], [0, 1, 0], ["normal", "fraud"])
        >>> round(m["accuracy"], 3), m["confusion_matrix"]
        (0.667, [[1, 0], [1, 1]])
    """
    ids = list(range(len(labels)))
    y_true_a, y_pred_a = np.asarray(y_true), np.asarray(y_pred)
    p, r, f, s = precision_recall_fscore_support(y_true_a, y_pred_a, labels=ids, zero_division=0)
    return {
        "accuracy": float(accuracy_score(y_true_a, y_pred_a)) if len(y_true_a) else 0.0,
        "macro_f1": float(f1_score(y_true_a, y_pred_a, labels=ids, average="macro", zero_division=0)),
        "labels": list(labels),
        "per_class": {
            lab: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
            for i, lab in enumerate(labels)
        },
        "confusion_matrix": confusion_matrix(y_true_a, y_pred_a, labels=ids).tolist(),
        "n": int(len(y_true_a)),
    }


def majority_baseline(train_ids: list[int], dev_ids: list[int], labels: list[str], metric: str) -> float:
    """The dev ``metric`` of always predicting the commonest training class.

    A model that scores no better has not started learning: early stopping waits for it.

    Example:
        >>> round(majority_baseline([0, 0, 1], [0, 1, 1, 2], ["a", "b", "c"], "macro_f1"), 3)
        0.133
        >>> majority_baseline([0, 0, 1], [0, 1, 1, 2], ["a", "b", "c"], "accuracy")
        0.25
    """
    if not train_ids or not dev_ids:
        return 0.0
    commonest = int(np.bincount(np.asarray(train_ids), minlength=len(labels)).argmax())
    return float(classification_metrics(dev_ids, [commonest] * len(dev_ids), labels)[metric])
