"""Out-of-domain test sets: how a model does on data it was not trained to imitate.

A score on a data set's own test split says how well a model learned that data set. Real
traffic differs: a model that scores 0.97 macro-F1 on ``telecom_fraud_5``'s test split can
rank real phishing no better than chance. So every place that scores a model — ``evaluate``,
``threshold``, ``compare``, ``demo`` — also takes extra test sets (``--test-data NAME=PATH``)
and scores them the way an anti-fraud team would use the model:

- **binary**, always: each message is fraud or not, whatever the set's taxonomy. Labels the
  model knows keep their meaning (its normal class is "not fraud", its other classes are
  fraud); other labels are read by name (``normal``, ``ham``, ``advertising``, ``广告`` … are
  not fraud; ``fraud``, ``scam``, ``phishing``, ``诈骗`` … are). From the fraud score: ROC-AUC and
  PR-AUC, the best recall at precision 0.8 and 0.9, and, at the model's threshold (its
  ``threshold.json``, else 0.5), the share of each label's messages flagged — on a set of
  legitimate messages that share *is* the false-positive rate;
- **multi-class** as well, when the set's labels are the model's own: macro-F1 and accuracy.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tunewise.data.loading import DataError, LabelMap, load_data
from tunewise.threshold import NORMAL_NAMES

# labels that are not fraud although they are not "normal" either: legal advertising is a
# false positive for a fraud classifier, not a catch
BENIGN_NAMES = (*NORMAL_NAMES, "advertising", "advert", "ad", "ads", "marketing", "promotion", "广告", "营销")
FRAUD_NAMES = ("fraud", "scam", "phishing", "smishing", "诈骗", "欺诈", "诈骗短信")
PRECISION_TARGETS = (0.8, 0.9)
DEFAULT_THRESHOLD = 0.5


@dataclass(frozen=True)
class TestSet:
    """An extra test set: a name for the report and the file or folder it is read from."""

    __test__ = False  # not a pytest class, despite the name

    name: str
    path: Path

    @classmethod
    def parse(cls, spec: str) -> TestSet:
        """``NAME=PATH`` (or a bare ``PATH``, named after the file).

        Example:
            >>> TestSet.parse("acceptance=examples/acceptance_sms.csv").name
            'acceptance'
        """
        name, sep, path = spec.partition("=")
        if not sep:
            name, path = Path(spec).stem, spec
        name, path = name.strip(), path.strip()
        if not name or not path:
            raise DataError(f"--test-data takes NAME=PATH, got {spec!r}")
        if not Path(path).exists():
            raise DataError(f"--test-data {name}: {path} does not exist")
        return cls(name, Path(path))


@dataclass
class LabelledTexts:
    """A test set's distinct texts and their labels (after the label map, where it knows them)."""

    texts: list[str]
    labels: list[str]
    skipped: int  # unusable rows (empty text, no label…), reported by the loader


def load_test_set(
    test_set: TestSet,
    *,
    label_map: str | Path | LabelMap | None = None,
    text_column: str | None = None,
    label_column: str | None = None,
) -> LabelledTexts:
    """Read a test set; labels the training label map knows are mapped, others kept as they are
    (an out-of-domain set has its own taxonomy). Exact duplicate messages are scored once.

    Example:
        >>> s = load_test_set(TestSet.parse("spam=../shared/data/sms_spam_sample"))  # doctest: +SKIP
        >>> sorted(set(s.labels))  # doctest: +SKIP
        ['advertising', 'normal']
    """
    loaded = load_data(test_set.path, text_column=text_column, label_column=label_column)
    rules = None
    if label_map is not None:
        rules = label_map if isinstance(label_map, LabelMap) else LabelMap.from_file(label_map)
    seen: set[str] = set()
    texts, labels = [], []
    for ex in loaded.examples:
        if ex.label is None:
            continue
        label = ex.label
        if rules is not None:
            known, mapped = rules.lookup(ex.source, label)
            if known and mapped is None:
                continue  # dropped on purpose by the map
            label = mapped if known else label
        if ex.text in seen:
            continue
        seen.add(ex.text)
        texts.append(ex.text)
        labels.append(label)  # type: ignore[arg-type]
    if not texts:
        raise DataError(f"--test-data {test_set.name}: {test_set.path} has no labelled texts")
    return LabelledTexts(texts, labels, len(loaded.problems))


def fraud_truth(labels: list[str], model_labels: list[str], normal_label: str | None) -> dict[str, bool]:
    """Whether each distinct label means fraud (see the module docstring); unknown labels are
    an error that says how to map them.

    Example:
        >>> fraud_truth(["advertising", "normal", "police"], ["normal", "police"], "normal")
        {'advertising': False, 'normal': False, 'police': True}
    """
    truth: dict[str, bool] = {}
    for label in dict.fromkeys(labels):
        lowered = label.lower()
        if label == normal_label or lowered in BENIGN_NAMES:
            truth[label] = False
        elif label in model_labels or lowered in FRAUD_NAMES:
            truth[label] = True
        else:
            raise DataError(
                f"test-set label {label!r} is neither the model's normal class ({normal_label!r}), "
                f"one of its classes {model_labels}, nor a name read as fraud or not "
                f"({', '.join(FRAUD_NAMES[:4])} / {', '.join(BENIGN_NAMES[:3])}, advertising…); "
                "map it with --label-map"
            )
    return truth


def recall_at_precision(scores: np.ndarray, is_fraud: np.ndarray, target: float) -> float:
    """The highest recall of any threshold whose precision reaches ``target`` (0 when none does).

    Example:
        >>> recall_at_precision(np.array([0.9, 0.8, 0.7, 0.2]), np.array([1, 0, 1, 0]), 0.6)
        1.0
    """
    from sklearn.metrics import precision_recall_curve

    if not is_fraud.any():
        return 0.0
    precision, recall, _ = precision_recall_curve(is_fraud, scores)
    ok = precision >= target
    return float(recall[ok].max()) if ok.any() else 0.0


def score_test_set(
    name: str,
    labels: list[str],
    fraud_scores: np.ndarray,
    flagged: np.ndarray,
    *,
    model_labels: list[str],
    normal_label: str | None,
    threshold: float | None,
    predicted: list[str] | None = None,
    uncalibrated_scores: np.ndarray | None = None,
) -> dict:
    """The figures of one test set from the model's outputs on it (see the module docstring).

    ``fraud_scores`` rank messages (higher: more likely fraud); ``flagged`` is the model's
    decision at ``threshold``; ``predicted`` (class names) enables multi-class figures when the
    set's labels are the model's own. When the scores are probabilities, pass the raw network's
    too (``uncalibrated_scores``) to get the fraud score's calibration error with and without
    temperature scaling.

    Example:
        >>> s = score_test_set("t", ["normal", "fraud", "normal"], np.array([0.1, 0.9, 0.6]),
        ...                    np.array([False, True, True]), model_labels=["normal", "fraud"],
        ...                    normal_label="normal", threshold=0.5)
        >>> s["roc_auc"], s["per_label"]["normal"]["flagged_rate"]
        (1.0, 0.5)
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    truth_of = fraud_truth(labels, model_labels, normal_label)
    is_fraud = np.array([truth_of[lab] for lab in labels], dtype=bool)
    scores = np.asarray(fraud_scores, dtype=float)
    flagged = np.asarray(flagged, dtype=bool)
    counts = Counter(labels)
    per_label = {}
    for label in counts:
        rows = np.array([lab == label for lab in labels])
        per_label[label] = {
            "n": int(rows.sum()),
            "fraud": truth_of[label],
            "flagged": int(flagged[rows].sum()),
            "flagged_rate": float(flagged[rows].mean()),
        }
    result: dict = {
        "name": name,
        "n": len(labels),
        "fraud": int(is_fraud.sum()),
        "not_fraud": int((~is_fraud).sum()),
        "threshold": threshold if threshold is not None else DEFAULT_THRESHOLD,
        "threshold_source": "model" if threshold is not None else "default 0.5",
        "per_label": per_label,
        # the share of legitimate messages flagged, and of fraud caught, at the threshold
        "false_positive_rate": float(flagged[~is_fraud].mean()) if (~is_fraud).any() else None,
        "recall": float(flagged[is_fraud].mean()) if is_fraud.any() else None,
    }
    if is_fraud.any() and (~is_fraud).any():
        result.update(
            {
                "roc_auc": float(roc_auc_score(is_fraud, scores)),
                "pr_auc": float(average_precision_score(is_fraud, scores)),
                "recall_at_precision": {
                    f"{p:g}": recall_at_precision(scores, is_fraud, p) for p in PRECISION_TARGETS
                },
                "precision": float(is_fraud[flagged].mean()) if flagged.any() else None,
            }
        )
    if uncalibrated_scores is not None:
        from tunewise.calibration import expected_calibration_error

        def ece(p: np.ndarray) -> float:
            return expected_calibration_error(np.stack([1 - p, p], axis=1), is_fraud.astype(int))

        result["fraud_score_ece"] = ece(np.clip(scores, 0, 1))
        result["fraud_score_ece_uncalibrated"] = ece(np.clip(np.asarray(uncalibrated_scores, float), 0, 1))
    # one figure per set for tables and plots: ROC-AUC when the set has both classes, else the
    # share handled right at the threshold (legitimate ones passed, or fraud caught)
    if "roc_auc" in result:
        result["headline_metric"], result["headline"] = "ROC-AUC", result["roc_auc"]
    elif result["false_positive_rate"] is not None:
        result["headline_metric"] = "share of legitimate messages not flagged"
        result["headline"] = 1.0 - result["false_positive_rate"]
    else:
        result["headline_metric"], result["headline"] = "recall at the threshold", result["recall"]
    if predicted is not None and set(labels) <= set(model_labels):
        from tunewise.metrics import classification_metrics

        index = {lab: i for i, lab in enumerate(model_labels)}
        multi = classification_metrics(
            [index[lab] for lab in labels], [index[lab] for lab in predicted], model_labels
        )
        result.update({"macro_f1": multi["macro_f1"], "accuracy": multi["accuracy"]})
    return result


def evaluate_test_set(
    predictor,
    test_set: TestSet,
    *,
    label_map: str | Path | LabelMap | None = None,
    text_column: str | None = None,
    label_column: str | None = None,
) -> dict:
    """Score a :class:`~tunewise.inference.Predictor` on one extra test set.

    Example:
        >>> from tunewise.inference import Predictor
        >>> s = evaluate_test_set(Predictor("runs/demo/model"),
        ...                       TestSet.parse("spam=../shared/data/sms_spam_sample"))  # doctest: +SKIP
        >>> s["per_label"]["advertising"]["flagged_rate"]  # doctest: +SKIP
        0.06
    """
    if predictor.normal_label is None:
        from tunewise.threshold import no_normal_class_message

        raise DataError(f"--test-data {test_set.name}: " + no_normal_class_message(predictor.labels))
    data = load_test_set(test_set, label_map=label_map, text_column=text_column, label_column=label_column)
    logits, encoded = predictor.piece_logits(data.texts)
    probs, raw = predictor.combine(logits, encoded), predictor.combine(logits, encoded, 1.0)
    normal = predictor.labels.index(predictor.normal_label)
    scores, raw_scores = 1.0 - probs[:, normal], 1.0 - raw[:, normal]
    threshold = predictor.threshold
    flagged = scores >= (threshold if threshold is not None else DEFAULT_THRESHOLD)
    summary = score_test_set(
        test_set.name,
        data.labels,
        scores,
        flagged,
        model_labels=predictor.labels,
        normal_label=predictor.normal_label,
        threshold=threshold,
        predicted=[predictor.labels[i] for i in probs.argmax(axis=1)],
        uncalibrated_scores=raw_scores,
    )
    summary.update({"path": str(test_set.path), "skipped_rows": data.skipped})
    return summary


def describe(summary: dict) -> str:
    """One line for a console: the figures that matter for this set.

    Example:
        >>> describe({"name": "spam", "n": 2, "per_label": {"ad": {"flagged_rate": 0.5, "fraud": False}},
        ...           "threshold": 0.5})
        'spam (n=2): flagged at 0.5: ad 50.0%'
    """
    parts = []
    if "roc_auc" in summary:
        r = summary["recall_at_precision"]
        parts.append(
            f"ROC-AUC {summary['roc_auc']:.3f} · PR-AUC {summary['pr_auc']:.3f} · "
            f"recall@P0.8 {r['0.8']:.3f} · recall@P0.9 {r['0.9']:.3f}"
        )
    if "macro_f1" in summary:
        parts.append(f"macro-F1 {summary['macro_f1']:.3f}")
    rates = ", ".join(f"{lab} {row['flagged_rate']:.1%}" for lab, row in summary["per_label"].items())
    parts.append(f"flagged at {summary['threshold']:g}: {rates}")
    return f"{summary['name']} (n={summary['n']}): " + " · ".join(parts)
