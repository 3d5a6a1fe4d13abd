"""Temperature scaling: probabilities a threshold can trust.

Networks trained with cross-entropy are over-confident: a wrong answer at 0.9997 is common,
and a fraud-score threshold chosen for "precision 0.99" then means little. Temperature
scaling (Guo et al., 2017) divides the logits by one number ``T`` fitted on held-out data —
the dev split, after training — to minimise the negative log-likelihood. It never changes
which class wins (the arg-max is the same), only how sure the model says it is.

``tunewise train`` fits ``T`` and writes ``calibration.json`` (with the expected calibration
error before and after) into the model directory; ``Predictor`` — and so ``predict``,
``serve``, ``threshold``, ``evaluate`` and ONNX exports, which carry the file — applies it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from tunewise.errors import DataError, ModelError
from tunewise.model_dir import CALIBRATION_FILE


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of ``logits / temperature``, computed stably.

    Example:
        >>> softmax(np.array([[2.0, 0.0]]), 2.0).round(3)
        array([[0.731, 0.269]])
    """
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """Top-label ECE: the gap between confidence and accuracy, averaged over equal-width
    confidence bins weighted by how many predictions fall in each.

    Example:
        >>> p = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.2, 0.8]])
        >>> round(expected_calibration_error(p, np.array([0, 1, 0, 1])), 3)
        0.35
    """
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels)
    if not len(labels):
        return 0.0
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        in_bin = which == b
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(ece)


def _nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    p = softmax(logits, temperature)
    return float(-np.log(np.clip(p[np.arange(len(labels)), labels], 1e-12, None)).mean())


@dataclass
class Calibration:
    """A fitted temperature and what it did on the data it was fitted on."""

    temperature: float
    ece_before: float
    ece_after: float
    nll_before: float
    nll_after: float
    n: int
    split: str = "dev"

    def save(self, model_dir: str | Path) -> Path:
        path = Path(model_dir) / CALIBRATION_FILE
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2), encoding="utf-8")
        tmp.replace(path)
        return path


def load_calibration(model_dir: str | Path) -> Calibration | None:
    """The model directory's calibration, or ``None`` (a model saved without one)."""
    path = Path(model_dir) / CALIBRATION_FILE
    if not path.is_file():
        return None
    try:
        calibration = Calibration(**json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, TypeError) as e:
        raise ModelError(f"{path}: not a valid calibration file ({e})") from None
    if not (np.isfinite(calibration.temperature) and calibration.temperature > 0):
        raise ModelError(f"{path}: temperature must be a positive number, got {calibration.temperature}")
    return calibration


def fit_temperature(logits: np.ndarray, labels: np.ndarray, split: str = "dev") -> Calibration:
    """The temperature in [0.05, 20] that minimises the negative log-likelihood of ``labels``.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> y = rng.integers(0, 2, 500)
        >>> logits = np.stack([np.where(y == 0, 4.0, -4.0), np.zeros(500)], 1)  # confident
        >>> logits[:100] *= -1  # ... and wrong a fifth of the time
        >>> c = fit_temperature(logits, y)
        >>> c.temperature > 1, c.ece_after < c.ece_before
        (True, True)
    """
    from scipy.optimize import minimize_scalar

    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) == 0:
        raise DataError("no examples to fit a temperature on")
    # log T is the natural scale: T = 0.5 and T = 2 are equally far from "no change"
    result = minimize_scalar(
        lambda log_t: _nll(logits, labels, float(np.exp(log_t))),
        bounds=(np.log(0.05), np.log(20.0)),
        method="bounded",
        options={"xatol": 1e-4},
    )
    t = float(np.exp(result.x))
    return Calibration(
        temperature=t,
        ece_before=expected_calibration_error(softmax(logits), labels),
        ece_after=expected_calibration_error(softmax(logits, t), labels),
        nll_before=_nll(logits, labels, 1.0),
        nll_after=_nll(logits, labels, t),
        n=len(labels),
        split=split,
    )
