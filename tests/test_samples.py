"""The embedded sample set: size, variety, no templated near-duplicates, and a data card
that tells the truth about it."""

from __future__ import annotations

import csv
import re
from collections import Counter

import numpy as np

from tunewise.data.loading import load_data
from tunewise.samples import SAMPLES_DIR, sample_sms_path

FRAUD_KINDS_REQUIRED = 12
NORMAL_KINDS = {
    "verification_code",
    "bank_notice",
    "delivery",
    "bill",
    "appointment",
    "marketing",
    "carrier_marketing",
    "advertising",
    "government_notice",
    "personal",
    "service_notice",
    "english_normal",
}


def _rows() -> list[dict]:
    with sample_sms_path().open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def _grams(text: str, n: int = 5) -> set[str]:
    return {text[i : i + n] for i in range(max(1, len(text) - n + 1))}


def test_size_labels_and_kinds():
    rows = _rows()
    assert len(rows) >= 5000
    assert {r["label"] for r in rows} == {"normal", "fraud"}
    by_label = Counter(r["label"] for r in rows)
    assert by_label["normal"] > 1.5 * by_label["fraud"]  # mostly legitimate, as real traffic is
    kinds = Counter((r["label"], r["kind"]) for r in rows)
    fraud_kinds = {k for (label, k) in kinds if label == "fraud"}
    normal_kinds = {k for (label, k) in kinds if label == "normal"}
    assert len(fraud_kinds) >= FRAUD_KINDS_REQUIRED
    assert normal_kinds == NORMAL_KINDS
    assert min(kinds.values()) >= 40, kinds  # every kind has enough to learn from
    assert len({r["text"] for r in rows}) == len(rows)


def test_loads_cleanly_through_the_loader():
    loaded = load_data(sample_sms_path())
    assert not loaded.problems
    assert len(loaded.examples) == len(_rows())
    assert loaded.encodings[str(sample_sms_path())] in ("utf-8", "utf_8")


def _most_similar_pair(texts: list[str], others: list[str] | None = None) -> tuple[float, int, int]:
    """The highest character-5-gram Jaccard similarity within ``texts`` (or between ``texts``
    and ``others``), with the pair's indices; a sparse product, so 5,000 texts take seconds."""
    from sklearn.feature_extraction.text import CountVectorizer

    def grams(text: str) -> list[str]:
        return sorted(_grams(text))

    vectorizer = CountVectorizer(analyzer=grams, binary=True)
    a = vectorizer.fit_transform(texts + (others or []))
    x, y = a[: len(texts)], a[len(texts) :] if others else a[: len(texts)]
    inter = (x @ y.T).tocoo()
    sizes_x, sizes_y = np.asarray(x.sum(1)).ravel(), np.asarray(y.sum(1)).ravel()
    keep = inter.row != inter.col if others is None else np.ones(inter.nnz, dtype=bool)
    rows, cols, both = inter.row[keep], inter.col[keep], inter.data[keep]
    if not len(both):
        return 0.0, -1, -1
    jaccard = both / (sizes_x[rows] + sizes_y[cols] - both)
    k = int(jaccard.argmax())
    return float(jaccard[k]), int(rows[k]), int(cols[k])


def test_no_templated_near_duplicates():
    """No two messages share a character-5-gram Jaccard similarity of 0.5 or more."""
    texts = [r["text"] for r in _rows()]
    sim, i, j = _most_similar_pair(texts)
    assert sim < 0.5, f"near-duplicates ({sim:.2f}):\n{texts[i]}\n{texts[j]}"


def test_header_link_and_phone_occur_in_both_classes():
    """None of them may be a shortcut: the shortcut audit's marker rates per class."""
    from tunewise.data.normalize import SmsNormalizer
    from tunewise.data.shortcuts import audit_shortcuts

    rows = _rows()
    raw = [r["text"] for r in rows]
    audit = audit_shortcuts(raw, SmsNormalizer().batch(raw), [r["label"] for r in rows])
    for marker in ("header", "link", "phone"):
        rates = [audit.marker_rates[label][marker] for label in ("normal", "fraud")]
        assert min(rates) >= 0.1, (marker, rates)
    assert not audit.warning, audit.lines()


def test_fraud_messages_use_the_obfuscations_the_card_lists():
    fraud = [r["text"] for r in _rows() if r["label"] == "fraud"]
    patterns = {
        "symbols between characters": r"[\u4e00-\u9fff][▲\-*/][\u4e00-\u9fff][▲\-*/][\u4e00-\u9fff]",
        "spaced-out contact ids": r"(?:\w ){5,}\w",
        "homophones / look-alikes": r"薇|威❤|徽亻言|菠菜|亻尔|扣扣",
        "pinyin": r"jia wei xin|jian zhi|wei xin|\bV:",
        "full-width or circled characters": r"[\uff10-\uff5a]|[\u2460-\u24ff]",
        "broken-up URLs": r"点com|点top|\[\.\]|h t t p|点vip",
    }
    for name, pattern in patterns.items():
        hits = [t for t in fraud if re.search(pattern, t)]
        assert len(hits) >= 2, f"no {name} in the fraud messages"


def test_data_card_counts_match_the_file():
    card = (SAMPLES_DIR / "README.md").read_text(encoding="utf-8")
    stated = {
        (m.group(1), m.group(2)): int(m.group(3))
        for m in re.finditer(r"^\| (normal|fraud) \| `(\w+)` \| (\d+) \|", card, flags=re.M)
    }
    actual = Counter((r["label"], r["kind"]) for r in _rows())
    assert stated == dict(actual)
    total = f"{len(_rows()):,}"
    assert total in card
    by_label = Counter(r["label"] for r in _rows())
    assert f"{by_label['normal']} normal, {by_label['fraud']} fraud" in card


def test_probe_set_is_held_out_and_unlike_the_samples():
    """The probe set: both classes, loads cleanly, nothing near a sample message."""
    from tunewise.samples import probe_sms_path

    with probe_sms_path().open(encoding="utf-8", newline="") as f:
        probe = list(csv.DictReader(f))
    assert Counter(r["label"] for r in probe) == {"fraud": 150, "normal": 150}
    assert not load_data(probe_sms_path()).problems
    sim, i, j = _most_similar_pair([r["text"] for r in probe], [r["text"] for r in _rows()])
    assert sim < 0.5, (sim, probe[i]["text"], _rows()[j]["text"])
