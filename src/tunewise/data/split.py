"""Deduplicate, split (stratified, seeded) and check the splits for leakage.

Duplicates are removed *before* splitting: a message that sits in both train and test
makes the test score a memory test. Near-duplicates (the same template with another
number or name) survive exact deduplication, so we measure them between splits with a
character 5-gram Jaccard similarity and report every pair above the threshold.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.model_selection import train_test_split

from tunewise.data.loading import DataError, Example, Problem

SPLITS = ("train", "dev", "test")


def text_key(text: str, label: str | None = None) -> str:
    """Stable short hash of a (normalised) text and its label, used to remember splits."""
    return hashlib.sha1(f"{label}\x00{text}".encode()).hexdigest()[:16]


@dataclass
class Deduplicated:
    examples: list[Example]
    duplicates: int
    conflicts: list[Problem] = field(default_factory=list)


def deduplicate(examples: list[Example], normalized: list[str]) -> Deduplicated:
    """Keep the first of each identical normalised text; drop texts seen with two labels.

    A text that occurs with different labels cannot be learned or scored fairly, so every
    copy is dropped and reported with its line.
    """
    labels_of: dict[str, set[str | None]] = {}
    for ex, norm in zip(examples, normalized, strict=True):
        labels_of.setdefault(norm, set()).add(ex.label)
    seen: set[str] = set()
    kept: list[Example] = []
    conflicts: list[Problem] = []
    duplicates = 0
    for ex, norm in zip(examples, normalized, strict=True):
        if len(labels_of[norm]) > 1:
            others = sorted(str(x) for x in labels_of[norm] if x != ex.label)
            conflicts.append(Problem(ex.source, ex.line, f"same text also labelled {', '.join(others)}"))
            continue
        if norm in seen:
            duplicates += 1
            continue
        seen.add(norm)
        kept.append(Example(norm, ex.label, ex.source, ex.line))
    return Deduplicated(kept, duplicates, conflicts)


def stratified_split(
    labels: list[str], fractions: tuple[float, float, float] = (0.8, 0.1, 0.1), seed: int = 0
) -> dict[str, list[int]]:
    """Indices of a stratified train/dev/test split; the same inputs give the same split.

    Example:
        >>> s = stratified_split(["a"] * 10 + ["b"] * 10, seed=1)
        >>> [len(s[k]) for k in ("train", "dev", "test")]
        [16, 2, 2]
    """
    train_f, dev_f, test_f = fractions
    if min(fractions) < 0 or abs(sum(fractions) - 1) > 1e-6:
        raise DataError(f"split fractions must be non-negative and sum to 1, got {fractions}")
    counts = Counter(labels)
    too_few = {lab: n for lab, n in counts.items() if n < 3}
    if too_few and (dev_f > 0 and test_f > 0):
        raise DataError(f"labels with fewer than 3 examples cannot be split into train/dev/test: {too_few}")
    index = np.arange(len(labels))
    y = np.asarray(labels)
    try:
        if test_f > 0:
            rest, test = train_test_split(index, test_size=test_f, stratify=y, random_state=seed)
        else:
            rest, test = index, np.array([], dtype=int)
        if dev_f > 0:
            train, dev = train_test_split(
                rest, test_size=dev_f / (train_f + dev_f), stratify=y[rest], random_state=seed
            )
        else:
            train, dev = rest, np.array([], dtype=int)
    except ValueError as e:  # scikit-learn's: a split too small to hold every class
        raise DataError(
            f"cannot split {len(labels)} examples of {len(counts)} labels into train/dev/test "
            f"{train_f:g}/{dev_f:g}/{test_f:g} with every label in each ({e}); give more data or "
            "larger --split fractions"
        ) from None
    return {"train": sorted(train.tolist()), "dev": sorted(dev.tolist()), "test": sorted(test.tolist())}


@dataclass(frozen=True)
class LeakPair:
    split: str
    index: int  # in the dev/test split's list
    train_index: int
    similarity: float


def near_duplicate_leaks(
    train_texts: list[str],
    other_texts: dict[str, list[str]],
    threshold: float = 0.8,
    ngram: int = 5,
) -> list[LeakPair]:
    """Pairs (dev/test text, train text) with character n-gram Jaccard >= ``threshold``.

    Computed exactly with one sparse product per split (intersection counts), which is fast
    for tens of thousands of messages.

    Example:
        >>> train = ["您的快递已到菜鸟驿站请取件"]
        >>> near_duplicate_leaks(train, {"dev": ["您的快递已到菜鸟驿站请及时取件"]}, 0.5)[0].split
        'dev'
    """
    if not train_texts:
        return []
    vec = CountVectorizer(analyzer="char", ngram_range=(ngram, ngram), binary=True, lowercase=False)
    try:
        train_x = vec.fit_transform(train_texts)
    except ValueError:  # every text shorter than one n-gram
        return []
    train_sizes = np.asarray(train_x.sum(axis=1)).ravel()
    leaks: list[LeakPair] = []
    for split, texts in other_texts.items():
        if not texts:
            continue
        x = vec.transform(texts)
        # n-grams unseen in train cannot intersect but still count towards |A ∪ B|.
        sizes = np.array([len({t[i : i + ngram] for i in range(len(t) - ngram + 1)}) for t in texts])
        inter = (x @ train_x.T).tocoo()
        union = sizes[inter.row] + train_sizes[inter.col] - inter.data
        sim = np.divide(inter.data, union, out=np.zeros(len(union)), where=union > 0)
        best: dict[int, tuple[float, int]] = {}
        for r, c, s in zip(inter.row, inter.col, sim, strict=True):
            if s >= threshold and s > best.get(r, (0.0, -1))[0]:
                best[r] = (float(s), int(c))
        leaks.extend(LeakPair(split, int(r), c, s) for r, (s, c) in sorted(best.items()))
    return leaks
