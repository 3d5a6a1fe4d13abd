"""``tunewise evaluate``: score a saved model on labelled data; write ``metrics.json`` and a
confusion-matrix PNG.

When the data is the file the model was trained on, only its held-out test split is
scored (found through ``split.json``), so a model is never graded on its training texts.
Extra, out-of-domain test sets (``test_sets``) are scored beside it (``tunewise.ood``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from tunewise.calibration import expected_calibration_error
from tunewise.data.loading import DataError, Example, load_data
from tunewise.data.split import text_key
from tunewise.inference import DEFAULT_LONG_TEXT, LongText, Predictor
from tunewise.metrics import classification_metrics
from tunewise.model_dir import METRICS_FILE, SPLIT_FILE, read_meta
from tunewise.ood import TestSet, evaluate_test_set
from tunewise.threshold import ThresholdChoice, choose_threshold, no_normal_class_message
from tunewise.tracks import track_of
from tunewise.training.checkpoint import write_json_atomic

SplitChoice = Literal["auto", "all", "train", "dev", "test"]


@dataclass
class EvaluationData:
    texts: list[str]
    label_ids: list[int]
    split: str
    note: str
    keys: list[str] = field(default_factory=list)  # text_key of each row, to pair runs by message


def check_known_labels(examples: list[Example], labels: list[str]) -> None:
    """A clear error naming the first row of each label the model does not know.

    Example:
        >>> try:
        ...     check_known_labels([Example("hi", "spam", "a.csv", 2)], ["fraud", "normal"])
        ... except DataError as e:
        ...     print(str(e)[:57])
        labels the model does not know: 'spam' (first at a.csv:2)
    """
    known = set(labels)
    unknown: dict[str, str] = {}
    for ex in examples:
        if ex.label not in known:
            unknown.setdefault(str(ex.label), ex.where)
    if unknown:
        listed = ", ".join(f"{lab!r} (first at {where})" for lab, where in list(unknown.items())[:5])
        raise DataError(
            f"labels the model does not know: {listed}. The model knows {labels}; map them with --label-map."
        )


def text_rows(
    predictor: Predictor,
    data: str | Path,
    *,
    text_column: str | None = None,
    label_column: str | None = None,
    label_map: str | Path | None = None,
) -> list[tuple[str, int, str]]:
    """``(text, label id, split key)`` of each distinct labelled message of ``data``,
    normalised and keyed as training keyed its split."""
    loaded = load_data(data, text_column=text_column, label_column=label_column, label_map=label_map)
    check_known_labels(loaded.examples, predictor.labels)
    index = {lab: i for i, lab in enumerate(predictor.labels)}
    seen: set[str] = set()
    rows = []
    for ex in loaded.examples:
        norm = predictor.normalizer(ex.text)
        key = text_key(norm, ex.label)
        if norm and key not in seen:  # score each distinct message once, as training did
            seen.add(key)
            rows.append((ex.text, index[ex.label], key))
    return rows


def select_examples(
    predictor,
    data: str | Path,
    split: SplitChoice = "auto",
    *,
    model_dir: str | Path,
    text_column: str | None = None,
    label_column: str | None = None,
    label_map: str | Path | None = None,
) -> EvaluationData:
    """Load labelled data — texts, or images for an image model — and pick the rows to
    score (see module docstring)."""
    read_rows = getattr(predictor, "labelled_rows", None)
    columns = {"text_column": text_column, "label_column": label_column, "label_map": label_map}
    rows = read_rows(data, **columns) if read_rows else text_rows(predictor, data, **columns)
    split_file = Path(model_dir) / SPLIT_FILE
    stored = json.loads(split_file.read_text(encoding="utf-8")) if split_file.is_file() else {}
    if split == "all":
        chosen, note = rows, "all rows"
    elif split == "auto":
        test = set(stored.get("test", []))
        in_test = [r for r in rows if r[2] in test]
        train = set(stored.get("train", []))
        if in_test:
            chosen = in_test
            note = f"held-out test split of the training data ({len(in_test)} of {len(rows)} rows)"
        else:
            chosen = rows
            overlap = sum(r[2] in train for r in rows)
            note = "all rows (not the data the model was trained on)"
            if overlap:
                note += f"; warning: {overlap} rows were in the training split"
        split = "test" if in_test else "all"
    else:
        if split not in stored:
            raise DataError(f"{split_file}: no stored '{split}' split to select (is this a tunewise model?)")
        wanted = set(stored[split])
        chosen = [r for r in rows if r[2] in wanted]
        note = f"stored {split} split ({len(chosen)} rows)"
        if not chosen:
            raise DataError(f"none of the rows of {data} belong to the model's {split} split")
    if not chosen:
        raise DataError(f"{data}: no rows to evaluate")
    return EvaluationData([r[0] for r in chosen], [r[1] for r in chosen], split, note, [r[2] for r in chosen])


def threshold_for_precision(
    predictor: Predictor,
    model_dir: str | Path,
    data: str | Path,
    target_precision: float,
    split: SplitChoice = "dev",
    **columns,
) -> ThresholdChoice:
    """The fraud-score threshold that reaches ``target_precision`` on held-out data: the model's
    own ``split`` (dev by default) when ``data`` is its training data, else all of ``data``.
    The scores are the calibrated ones the model delivers. Not saved; ``choice.save(model_dir)``.

    Example:
        >>> p = Predictor("runs/sms")  # doctest: +SKIP
        >>> threshold_for_precision(p, "runs/sms", "sms.csv", 0.98).threshold  # doctest: +SKIP
        0.70
    """
    if predictor.normal_label is None:
        raise DataError(no_normal_class_message(predictor.labels))
    try:  # the model's own training data: its held-out split, never the training rows
        chosen = select_examples(predictor, data, split, model_dir=model_dir, **columns)
    except DataError as e:
        if "belong to the model's" not in str(e) and "no stored" not in str(e):
            raise
        chosen = select_examples(predictor, data, "all", model_dir=model_dir, **columns)  # other data
    results = predictor.predict(chosen.texts)
    normal = predictor.labels.index(predictor.normal_label)
    scores = np.array([r.fraud_score for r in results], dtype=float)
    truth = np.array([label != normal for label in chosen.label_ids])
    choice = choose_threshold(scores, truth, target_precision)
    choice.data, choice.selection, choice.normal_label = str(data), chosen.note, predictor.normal_label
    choice.temperature = predictor.temperature  # calibrated scores (temperature scaling)
    return choice


def evaluate_model(
    model_dir: str | Path,
    data: str | Path | None,
    out: str | Path | None = None,
    *,
    split: SplitChoice = "auto",
    text_column: str | None = None,
    label_column: str | None = None,
    label_map: str | Path | None = None,
    batch_size: int = 64,
    long_text: LongText = DEFAULT_LONG_TEXT,
    progress: Callable[[int], None] | None = None,
    test_sets: list[TestSet] | tuple[TestSet, ...] = (),
    normal_label: str | None = None,
    return_predictions: bool = False,
) -> dict:
    """Evaluate ``model_dir`` on ``data`` and on each extra test set; write ``metrics.json``
    (the extra sets under ``test_sets``) + ``confusion_matrix.png``. ``data`` may be ``None``
    when only extra test sets are scored.

    Example:
        >>> spam = TestSet.parse("spam=../shared/data/sms_spam_sample")  # doctest: +SKIP
        >>> m = evaluate_model("runs/finetune", "../shared/data/telecom_fraud_5",
        ...                    test_sets=[spam])  # doctest: +SKIP
        >>> sorted(m)[:3], sorted(m["test_sets"])  # doctest: +SKIP
        (['accuracy', 'confusion_matrix', 'data'], ['spam'])
    """
    if track_of(read_meta(model_dir)) == "image":
        from tunewise.tracks.image import ImagePredictor

        if test_sets:
            raise DataError("--test-data (out-of-domain fraud-score sets) is for text models")
        predictor = ImagePredictor(model_dir, batch_size=batch_size)
    else:
        predictor = Predictor(
            model_dir, batch_size=batch_size, long_text=long_text, normal_label=normal_label
        )
    extra = {
        t.name: evaluate_test_set(
            predictor, t, label_map=label_map, text_column=text_column, label_column=label_column
        )
        for t in test_sets
    }
    out = Path(out) if out is not None else Path(model_dir)
    out.mkdir(parents=True, exist_ok=True)
    if data is None:
        if not extra:
            raise DataError("nothing to evaluate: give --data, --test-data or both")
        metrics = {"model": str(model_dir), "test_sets": extra}
        write_json_atomic(out / METRICS_FILE, metrics)
        return metrics
    chosen = select_examples(
        predictor,
        data,
        split,
        model_dir=model_dir,
        text_column=text_column,
        label_column=label_column,
        label_map=label_map,
    )
    # what the model delivers (calibrated), what the raw network said, and how inputs were
    # handled (long texts)
    probs, raw, handling = predictor.scores(chosen.texts, progress)
    metrics = classification_metrics(chosen.label_ids, probs.argmax(1).tolist(), predictor.labels)
    truth = np.asarray(chosen.label_ids)
    metrics["calibration"] = {
        "temperature": predictor.temperature,
        "ece": expected_calibration_error(probs, truth),
        "ece_uncalibrated": expected_calibration_error(raw, truth),
    }
    metrics.update(
        {
            "split": chosen.split,
            "selection": chosen.note,
            "model": str(model_dir),
            "data": str(data),
            **handling,
            "test_sets": extra,
        }
    )
    write_json_atomic(out / METRICS_FILE, metrics)
    plot_confusion_matrix(metrics, out / "confusion_matrix.png")
    if return_predictions:  # returned, not written: a comparison pairs runs message by message
        metrics["predictions"] = dict(zip(chosen.keys, probs.argmax(1).tolist(), strict=True))
    return metrics


def plot_confusion_matrix(metrics: dict, path: Path) -> None:
    """Row-normalised confusion matrix with counts, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib import font_manager

    labels = metrics["labels"]
    cm = np.asarray(metrics["confusion_matrix"], dtype=float)
    rows = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    cjk = _cjk_font(font_manager)
    needs_cjk = any(ord(c) > 0x2E80 for lab in labels for c in lab)
    # Without a CJK font, Chinese labels would render as boxes: number them instead and
    # leave the names to metrics.json.
    ticks = labels if (cjk or not needs_cjk) else [f"#{i}" for i in range(len(labels))]
    size = max(4.0, 0.9 * len(labels) + 2.5)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(
                j,
                i,
                f"{int(cm[i, j])}",
                ha="center",
                va="center",
                color="white" if rows[i, j] > 0.5 else "black",
                fontsize=9,
            )
    font = {"fontproperties": font_manager.FontProperties(fname=cjk)} if cjk else {}
    ax.set_xticks(range(len(labels)), ticks, rotation=45, ha="right", **font)
    ax.set_yticks(range(len(labels)), ticks, **font)
    numbered = ticks is not labels
    ax.set_xlabel("predicted (#i is labels[i] in metrics.json)" if numbered else "predicted")
    ax.set_ylabel("true")
    ax.set_title(
        f"accuracy {metrics['accuracy']:.3f} · macro-F1 {metrics['macro_f1']:.3f} (n={metrics['n']})"
    )
    fig.colorbar(image, ax=ax, fraction=0.046, label="share of true class")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _cjk_font(font_manager) -> str | None:
    for f in font_manager.findSystemFonts():
        name = Path(f).name.lower()
        if any(
            k in name
            for k in ("notosanscjk", "notoserifcjk", "wqy", "simhei", "droidsansfallback", "sourcehansans")
        ):
            return f
    return None
