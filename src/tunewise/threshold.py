"""A fraud score and the decision threshold that meets a target precision.

With a label set that has a normal class, ``fraud score = 1 - P(normal)``: the probability
that a message is *some* kind of fraud, whatever kind. An anti-fraud team rarely wants the
arg-max label's trade-off; it wants "flag only when at least 99% of flagged messages are
fraud" — the lowest threshold whose precision on held-out data reaches the target, which
maximises recall under that constraint.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from tunewise.errors import DataError, NormalLabelError
from tunewise.model_dir import THRESHOLD_FILE

NORMAL_NAMES = (
    "normal",
    "正常",
    "正常短信",
    "ham",
    "legit",
    "legitimate",
    "benign",
    "non-fraud",
    "not_fraud",
)


def find_normal_label(labels: list[str]) -> str | None:
    """The label that means "not fraud", recognised by name, if the label set has one.

    Example:
        >>> find_normal_label(["fraud", "Normal"]), find_normal_label(["a", "b"])
        ('Normal', None)
    """
    lowered = {label.lower(): label for label in labels}
    return next((lowered[n] for n in NORMAL_NAMES if n in lowered), None)


def resolve_normal_label(labels: list[str], given: str | None = None, meta: dict | None = None) -> str | None:
    """The one place that decides which class is "normal" (fraud score = 1 - P(normal)).

    In order: the label the user named (``--normal-label``; it must be one of ``labels``),
    then what the model directory recorded at training (``meta["normal_label"]``, which may
    be ``None`` for "no normal class"), then a label recognised by name (``normal``, ``正常``,
    ``ham``…). ``None`` means the model has no normal class: no fraud score, no threshold.

    Example:
        >>> resolve_normal_label(["0", "冒充客服服务"]), resolve_normal_label(["0", "冒充客服服务"], "0")
        (None, '0')
        >>> resolve_normal_label(["0", "x"], meta={"normal_label": "0"})
        '0'
        >>> resolve_normal_label(["a", "b"], "c")
        Traceback (most recent call last):
        ...
        tunewise.errors.NormalLabelError: --normal-label 'c' is not one of the labels ['a', 'b']
    """
    if given is not None:
        if given not in labels:
            raise NormalLabelError(f"--normal-label {given!r} is not one of the labels {labels}")
        return given
    if meta and "normal_label" in meta:
        stored = meta["normal_label"]
        if stored is not None and stored not in labels:
            raise NormalLabelError(f"the recorded normal label {stored!r} is not one of the labels {labels}")
        return stored
    return find_normal_label(labels)


def no_normal_class_message(labels: list[str]) -> str:
    """What to tell a user whose model has no recognisable normal class."""
    return (
        f"the model's labels {labels} have no recognisable normal class, so there is no fraud score; "
        "name it with --normal-label LABEL (e.g. --normal-label 0)"
    )


@dataclass
class ThresholdChoice:
    threshold: float
    target_precision: float
    precision: float  # measured at the threshold on the data it was chosen on
    recall: float
    flagged: int
    fraud: int
    n: int
    data: str = ""
    selection: str = ""
    normal_label: str | None = None  # the class the fraud score was computed against
    temperature: float = 1.0  # the calibration the scores were computed under

    def save(self, model_dir: str | Path) -> Path:
        path = Path(model_dir) / THRESHOLD_FILE
        path.write_text(json.dumps(asdict(self), ensure_ascii=False, indent=2), encoding="utf-8")
        return path


def load_threshold(model_dir: str | Path) -> ThresholdChoice | None:
    path = Path(model_dir) / THRESHOLD_FILE
    return ThresholdChoice(**json.loads(path.read_text(encoding="utf-8"))) if path.is_file() else None


def choose_threshold(scores: np.ndarray, is_fraud: np.ndarray, target_precision: float) -> ThresholdChoice:
    """The lowest score threshold whose precision (flagged = score >= threshold) reaches
    ``target_precision``; raises ``ValueError`` when no threshold does.

    Example:
        >>> scores = np.array([0.95, 0.9, 0.8, 0.6, 0.3, 0.1])
        >>> truth = np.array([1, 1, 0, 1, 0, 0])
        >>> c = choose_threshold(scores, truth, 0.75)
        >>> c.threshold, round(c.precision, 2), round(c.recall, 2)
        (0.6, 0.75, 1.0)
        >>> choose_threshold(scores, truth, 1.0).threshold
        0.9
    """
    if not 0 < target_precision <= 1:
        raise DataError(f"target precision must be in (0, 1], got {target_precision}")
    scores = np.asarray(scores, dtype=float)
    truth = np.asarray(is_fraud, dtype=bool)
    if not truth.any():
        raise DataError("no fraud messages in the data: a threshold cannot be chosen for precision")
    order = np.argsort(-scores, kind="stable")
    s, t = scores[order], truth[order]
    hits = np.cumsum(t)
    flagged = np.arange(1, len(s) + 1)
    # only the last of equal scores is a valid cut: a threshold flags all of them or none
    last_of_tie = np.append(s[1:] != s[:-1], True)
    precision = hits / flagged
    ok = np.flatnonzero(last_of_tie & (precision >= target_precision))
    if not len(ok):
        best = float(precision[last_of_tie].max())
        raise DataError(
            f"no threshold reaches precision {target_precision:g} on this data (best: {best:.4f}); "
            "lower --target-precision or use more held-out data"
        )
    i = int(ok[-1])  # the deepest cut that still meets the target: highest recall
    return ThresholdChoice(
        threshold=float(s[i]),
        target_precision=target_precision,
        precision=float(precision[i]),
        recall=float(hits[i] / truth.sum()),
        flagged=int(flagged[i]),
        fraud=int(truth.sum()),
        n=len(s),
    )
