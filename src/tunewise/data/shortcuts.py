"""The shortcut audit: how far surface features alone go in telling the classes apart.

A model can score well on a data set without reading its messages when the classes differ in
form — fraud texts long and link-free, normal ones short notices with masked digits (that is
``telecom_fraud_5``). Such a model fails on real traffic, where form and class are unrelated.
Before training, tunewise fits a shallow model (logistic regression) on surface features only
— length, the shares of digits, Latin letters, punctuation and spaces, 【】 headers, links by
kind, phone numbers, masking placeholders, the typed tokens, the first and last characters —
cross-validated on the training split, and reports its macro-F1, the features that carry each
class and how often each marker occurs per class. When the surface alone separates the
classes, it says so loudly: in-domain scores on such data say little about the world.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field

from tunewise.data.normalize import TYPED_TOKENS, has_mask

# the audit warns when the surface-only model reaches this macro-F1, or this F1 on one class
# (that class can be told from the rest by its form alone); it notes a milder case. Real
# fraud and real notices do differ in form somewhat, so only the strong case is a warning.
WARN_MACRO_F1, WARN_CLASS_F1 = 0.9, 0.95
NOTE_MACRO_F1 = 0.8
_HEADER_START = re.compile(r"^\s*[【\[［〔][^】\]］〕]{1,20}[】\]］〕]")
_HEADER_END = re.compile(r"[【\[［〔][^】\]］〕]{1,20}[】\]］〕]\s*$")
_CJK = re.compile(r"[\u4e00-\u9fff]")
_LATIN = re.compile(r"[A-Za-z]")
_DIGIT = re.compile(r"\d")
_PUNCT = re.compile(r"[^\w\s\u4e00-\u9fff]")
# markers whose rate per class the report lists: a marker found in one class only is a shortcut
MARKERS = ("header", "link", "phone", "placeholder", "latin_text")


def surface_features(raw: str, normalized: str) -> dict[str, float | str]:
    """The features the audit's model sees for one message (nothing about its words).

    Example:
        >>> f = surface_features("【招商银行】详见 cmbchina.com", "【招商银行】详见 [URL]")
        >>> f["header_start"], f["token:[URL]"], f["first=【"]
        (1.0, 1.0, 1.0)
    """
    n = max(1, len(raw))
    features: dict[str, float | str] = {
        "log_length": math.log1p(len(raw)),
        "digit_share": len(_DIGIT.findall(raw)) / n,
        "latin_share": len(_LATIN.findall(raw)) / n,
        "cjk_share": len(_CJK.findall(raw)) / n,
        "punct_share": len(_PUNCT.findall(raw)) / n,
        "space_share": raw.count(" ") / n,
        "header_start": float(bool(_HEADER_START.search(raw))),
        "header_end": float(bool(_HEADER_END.search(raw))),
        "placeholder": float(has_mask(raw)),
        "exclamation": float("!" in raw or "！" in raw),
    }
    for token in TYPED_TOKENS:
        count = normalized.count(token)
        if count:
            features[f"token:{token}"] = float(min(count, 3))
    stripped = raw.strip()
    if stripped:
        features[f"first={stripped[0]}"] = 1.0
        features[f"last={stripped[-1]}"] = 1.0
    return features


def markers(features: dict[str, float | str]) -> dict[str, bool]:
    """The yes/no markers of one message, for the per-class rates.

    Example:
        >>> markers(surface_features("加微信 abc12345", "加微信 [ID]"))["link"]
        False
    """
    return {
        "header": bool(features["header_start"] or features["header_end"]),
        "link": any(k.startswith("token:[URL") for k in features),
        "phone": "token:[PHONE]" in features,
        "placeholder": bool(features["placeholder"]),
        "latin_text": float(features["latin_share"]) > 0.5,
    }


@dataclass
class ShortcutAudit:
    """What the surface-only model achieved, and why."""

    macro_f1: float  # cross-validated on the training split
    majority_macro_f1: float  # always predicting the most common class, for scale
    per_class_f1: dict[str, float]
    top_features: dict[str, list[str]]  # label -> the features that most raise its score
    marker_rates: dict[str, dict[str, float]]  # label -> marker -> share of its messages
    n: int
    folds: int
    notes: list[str] = field(default_factory=list)

    @property
    def separated(self) -> list[str]:
        """The classes the surface alone picks out (F1 >= ``WARN_CLASS_F1``)."""
        return [lab for lab, f in self.per_class_f1.items() if f >= WARN_CLASS_F1]

    @property
    def warning(self) -> bool:
        return self.macro_f1 >= WARN_MACRO_F1 or bool(self.separated)

    @property
    def note(self) -> bool:
        """Not a warning, but the surface alone gets far: worth an out-of-domain check."""
        return not self.warning and self.macro_f1 >= NOTE_MACRO_F1

    def to_dict(self) -> dict:
        return {
            "macro_f1": self.macro_f1,
            "majority_macro_f1": self.majority_macro_f1,
            "per_class_f1": self.per_class_f1,
            "top_features": self.top_features,
            "marker_rates": self.marker_rates,
            "n": self.n,
            "folds": self.folds,
            "warning": self.warning,
            "note": self.note,
            "separated_classes": self.separated,
            "warn_at": {"macro_f1": WARN_MACRO_F1, "class_f1": WARN_CLASS_F1, "note_macro_f1": NOTE_MACRO_F1},
            "notes": self.notes,
        }

    def lines(self) -> list[str]:
        """The audit as console lines (rich markup)."""
        head = (
            f"shortcut audit: surface features alone (length, digits, Latin, punctuation, 【】 headers, "
            f"links, phones, placeholders, first/last character) reach macro-F1 {self.macro_f1:.3f} "
            f"({self.folds}-fold CV on {self.n:,} training texts; "
            f"majority class {self.majority_macro_f1:.3f})"
        )
        out = [f"[bold red]warning[/]: {head}" if self.warning else head]
        if self.note:
            out[0] = f"[yellow]note[/]: {head}"
            out.append(
                "  surface features carry much of the signal here; out-of-domain figures (--test-data) "
                "say how the model does on messages of other forms"
            )
        if self.warning:
            which = f" ({', '.join(self.separated)} by form alone)" if self.separated else ""
            out.append(
                f"  [bold red]the classes differ in form, not only in content{which}[/]: a model can "
                "score well here without reading the messages; check it on out-of-domain data "
                "(--test-data)"
            )
        for label, feats in self.top_features.items():
            rates = self.marker_rates.get(label, {})
            shown = ", ".join(f"{m} {rates[m]:.0%}" for m in MARKERS if m in rates)
            out.append(f"  {label}: F1 {self.per_class_f1.get(label, 0):.2f} · carried by {', '.join(feats)}")
            out.append(f"    {shown}")
        return out


def audit_shortcuts(
    raw_texts: list[str], normalized: list[str], labels: list[str], *, folds: int = 5, seed: int = 0
) -> ShortcutAudit | None:
    """Cross-validate a logistic regression on :func:`surface_features`; ``None`` when there is
    too little data (fewer than 2 texts in some class).

    Example:
        >>> texts = ["【银行】您的验证码1234", "加微信领红包"] * 10
        >>> audit = audit_shortcuts(texts, texts, ["normal", "fraud"] * 10)
        >>> audit.macro_f1, audit.warning
        (1.0, True)
    """
    import numpy as np
    from sklearn.feature_extraction import DictVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import MaxAbsScaler

    counts = Counter(labels)
    k = min(folds, min(counts.values())) if counts else 0
    if len(counts) < 2 or k < 2:
        return None
    feats = [surface_features(r, n) for r, n in zip(raw_texts, normalized, strict=True)]
    y = np.asarray(labels)

    def model():
        return make_pipeline(
            DictVectorizer(),
            MaxAbsScaler(),
            LogisticRegression(max_iter=2000, C=1.0, class_weight="balanced"),
        )

    cv = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    predicted = cross_val_predict(model(), feats, y, cv=cv)
    classes = sorted(counts)
    per_class = f1_score(y, predicted, labels=classes, average=None, zero_division=0)
    majority = counts.most_common(1)[0][0]
    majority_f1 = float(f1_score(y, [majority] * len(y), labels=classes, average="macro", zero_division=0))

    fitted = model().fit(feats, y)
    vec, clf = fitted.named_steps["dictvectorizer"], fitted.named_steps["logisticregression"]
    names = np.asarray(vec.get_feature_names_out())
    coef = clf.coef_ if len(clf.classes_) > 2 else np.vstack([-clf.coef_[0], clf.coef_[0]])
    top = {}
    for row, label in zip(coef, clf.classes_, strict=True):
        order = np.argsort(-row)[:5]
        top[str(label)] = [f"{names[i]} ({row[i]:+.1f})" for i in order if row[i] > 0]
    rates: dict[str, dict[str, float]] = {}
    for label in classes:
        rows = [markers(f) for f, lab in zip(feats, labels, strict=True) if lab == label]
        rates[label] = {m: sum(r[m] for r in rows) / len(rows) for m in MARKERS}
    return ShortcutAudit(
        macro_f1=float(f1_score(y, predicted, labels=classes, average="macro", zero_division=0)),
        majority_macro_f1=majority_f1,
        per_class_f1={lab: float(f) for lab, f in zip(classes, per_class, strict=True)},
        top_features=top,
        marker_rates=rates,
        n=len(y),
        folds=k,
    )
