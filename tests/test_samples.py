"""The embedded sample set: size, variety, no templated near-duplicates, and a data card
that tells the truth about it."""

from __future__ import annotations

import csv
import re
from collections import Counter

from tunewise.data.loading import load_data
from tunewise.samples import SAMPLES_DIR, sample_sms_path

FRAUD_KINDS_REQUIRED = 10
NORMAL_KINDS = {
    "verification_code",
    "bank_notice",
    "delivery",
    "bill",
    "appointment",
    "marketing",
    "personal",
    "service_notice",
}


def _rows() -> list[dict]:
    with sample_sms_path().open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def _grams(text: str, n: int = 5) -> set[str]:
    return {text[i : i + n] for i in range(max(1, len(text) - n + 1))}


def test_size_labels_and_kinds():
    rows = _rows()
    assert len(rows) >= 1000
    assert {r["label"] for r in rows} == {"normal", "fraud"}
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


def test_no_templated_near_duplicates():
    """No two messages share a character-5-gram Jaccard similarity of 0.5 or more."""
    texts = [r["text"] for r in _rows()]
    grams = [_grams(t) for t in texts]
    index: dict[str, list[int]] = {}
    for i, g in enumerate(grams):
        for gram in g:
            index.setdefault(gram, []).append(i)
    worst = (0.0, -1, -1)
    for i, g in enumerate(grams):
        candidates = {j for gram in g for j in index[gram] if j > i}
        for j in candidates:
            sim = len(g & grams[j]) / len(g | grams[j])
            worst = max(worst, (sim, i, j))
    sim, i, j = worst
    assert sim < 0.5, f"near-duplicates ({sim:.2f}):\n{texts[i]}\n{texts[j]}"


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
