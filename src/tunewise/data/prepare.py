"""From files on disk to normalised, deduplicated, split, leakage-checked examples.

This is the first arrow of the pipeline. ``prepare_data`` does the work and returns a
:class:`PreparedData` whose ``report`` says what happened to every row.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table

from tunewise.data.loading import DataError, Example, LabelMap, Problem, load_data
from tunewise.data.normalize import SmsNormalizer
from tunewise.data.shortcuts import ShortcutAudit, audit_shortcuts
from tunewise.data.split import (
    SPLITS,
    LeakPair,
    deduplicate,
    near_duplicate_leaks,
    stratified_split,
    text_key,
)

# what SMS files are saved in; anything else was a guess by charset detection
_EXPECTED_ENCODINGS = {"utf-8", "utf-8-sig", "utf-16", "gb18030", "big5", "ascii"}


@dataclass
class DataReport:
    """What loading and splitting did; printed before training and saved as JSON."""

    files: dict[str, str]  # file -> "format, encoding"
    rows_read: int
    problems: list[Problem]
    duplicates: int
    conflicts: list[Problem]
    counts: dict[str, dict[str, int]]  # split -> label -> rows
    leaks: list[LeakPair] = field(default_factory=list)
    leak_threshold: float | None = 0.8  # None: no near-duplicate check was run (images)
    shortcuts: ShortcutAudit | None = None  # what surface features alone achieve on train
    notes: list[str] = field(default_factory=list)  # how the data was read and split

    def to_dict(self) -> dict:
        return {
            "files": self.files,
            "rows_read": self.rows_read,
            "unusable_rows": [str(p) for p in self.problems],
            "duplicates_removed": self.duplicates,
            "conflicting_labels": [str(p) for p in self.conflicts],
            "counts": self.counts,
            "near_duplicate_leaks": {
                "threshold": self.leak_threshold,
                "pairs": [vars(p) for p in self.leaks],
            },
            "shortcut_audit": self.shortcuts.to_dict() if self.shortcuts else None,
            "notes": self.notes,
        }

    def print(self, console: Console | None = None, max_problems: int = 15) -> None:
        console = console or Console(stderr=True)
        for file, desc in self.files.items():
            console.print(f"[dim]read[/] {file} [dim]({desc})[/]")
        for note in self.notes:
            console.print(f"[dim]{note}[/]")
        splits = [s for s in SPLITS if s in self.counts]
        table = Table(title="Data", show_footer=True)
        labels = sorted({lab for c in self.counts.values() for lab in c})
        table.add_column("label", footer="total")
        for s in splits:
            table.add_column(s, justify="right", footer=str(sum(self.counts[s].values())))
        for lab in labels:
            table.add_row(lab, *(str(self.counts[s].get(lab, 0)) for s in splits))
        console.print(table)
        console.print(
            f"rows read {self.rows_read:,} · exact duplicates removed {self.duplicates:,} · "
            f"conflicting labels {len(self.conflicts):,} · unusable rows {len(self.problems):,}"
        )
        for problem in (self.problems + self.conflicts)[:max_problems]:
            console.print(f"  [yellow]skipped[/] {problem}")
        hidden = len(self.problems) + len(self.conflicts) - max_problems
        if hidden > 0:
            console.print(f"  … and {hidden:,} more (see data_report.json)")
        if self.leaks:
            by_split = Counter(p.split for p in self.leaks)
            detail = ", ".join(f"{n} {s}" for s, n in by_split.items())
            console.print(
                f"[yellow]near-duplicate leakage[/]: {detail} texts have a train text with "
                f"character 5-gram Jaccard >= {self.leak_threshold}"
            )
        elif len(splits) > 1 and self.leak_threshold is not None:  # images: no near-duplicate check
            console.print(f"no near-duplicate leakage between splits (Jaccard >= {self.leak_threshold})")
        if self.shortcuts is not None:
            for line in self.shortcuts.lines():
                console.print(line)


@dataclass
class PreparedData:
    """Examples per split (normalised texts, or image paths), the label set, and the report."""

    splits: dict[str, list[Example]]
    labels: list[str]
    report: DataReport
    normalizer: SmsNormalizer | None  # None for images
    # the whole training split's texts, kept before a labelled fraction is drawn (a recipe's
    # domain-adaptive pretraining reads them with the labels unused)
    unlabelled_texts: list[str] = field(default_factory=list)
    # the split record's key of each example, where it is not its text's (images: the hash
    # of the file's bytes, so a moved folder still finds its test split)
    keys: dict[str, str] = field(default_factory=dict)

    def texts(self, split: str) -> list[str]:
        return [e.text for e in self.splits[split]]

    def label_ids(self, split: str) -> list[int]:
        index = {lab: i for i, lab in enumerate(self.labels)}
        return [index[e.label] for e in self.splits[split]]

    def split_keys(self) -> dict[str, list[str]]:
        """Hashes of each split's texts (or images), saved with a model so ``evaluate`` finds
        its test set."""
        return {
            s: [self.keys.get(e.text) or text_key(e.text, e.label) for e in ex]
            for s, ex in self.splits.items()
        }


def prepare_data(
    path: str | Path,
    *,
    normalizer: SmsNormalizer | None = None,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    text_column: str | None = None,
    label_column: str | None = None,
    label_map: str | Path | LabelMap | None = None,
    leak_threshold: float = 0.8,
    audit: bool = True,
) -> PreparedData:
    """Load, normalise, deduplicate, split and leakage-check labelled data, and audit the
    training split for surface shortcuts (``tunewise.data.shortcuts``; ``audit=False`` skips it).

    Example:
        >>> data = prepare_data("../shared/data/telecom_fraud_5", seed=0)  # doctest: +SKIP
        >>> data.report.print()  # doctest: +SKIP
    """
    normalizer = normalizer or SmsNormalizer()
    loaded = load_data(path, text_column=text_column, label_column=label_column, label_map=label_map)
    if not loaded.examples:
        detail = f"; first problem: {loaded.problems[0]}" if loaded.problems else ""
        raise DataError(f"{path}: no usable labelled rows{detail}")
    normalized = [normalizer(e.text) for e in loaded.examples]
    dedup = deduplicate(loaded.examples, normalized)
    examples = [e for e in dedup.examples if e.text]
    labels = sorted({e.label for e in examples if e.label is not None})
    if len(labels) < 2:
        raise DataError(f"{path}: need at least 2 labels to train a classifier, found {labels}")
    index = stratified_split([e.label for e in examples], fractions, seed)
    splits = {s: [examples[i] for i in index[s]] for s in SPLITS}
    leaks = near_duplicate_leaks(
        [e.text for e in splits["train"]],
        {s: [e.text for e in splits[s]] for s in ("dev", "test")},
        threshold=leak_threshold,
    )
    shortcuts = None
    if audit:
        raw = {(e.source, e.line): e.text for e in loaded.examples}
        train = splits["train"]
        shortcuts = audit_shortcuts(
            [raw.get((e.source, e.line), e.text) for e in train],
            [e.text for e in train],
            [str(e.label) for e in train],
            seed=seed,
        )
    report = DataReport(
        files={f: f"{loaded.formats[f]}, {enc}" for f, enc in loaded.encodings.items()},
        rows_read=len(loaded.examples) + len(loaded.problems),
        problems=loaded.problems,
        duplicates=dedup.duplicates,
        conflicts=dedup.conflicts,
        counts={s: dict(sorted(Counter(e.label for e in ex).items())) for s, ex in splits.items()},
        leaks=leaks,
        leak_threshold=leak_threshold,
        shortcuts=shortcuts,
        notes=[
            f"{f}: read as {enc}, neither UTF-8 nor a Chinese encoding; check that its texts look right"
            for f, enc in loaded.encodings.items()
            if enc.lower().replace("_", "-") not in _EXPECTED_ENCODINGS
        ],
    )
    return PreparedData(splits=splits, labels=labels, report=report, normalizer=normalizer)


def subsample(
    examples: list[Example], fraction: float, seed: int = 0, min_per_label: int = 1
) -> list[Example]:
    """A stratified ``fraction`` of ``examples`` (at least ``min_per_label`` of each label).

    Example:
        >>> exs = [Example(str(i), "ab"[i % 2], "x", i) for i in range(100)]
        >>> len(subsample(exs, 0.1))
        10
    """
    if not 0 < fraction <= 1:
        raise DataError(f"label fraction must be in (0, 1], got {fraction}")
    if fraction == 1:
        return list(examples)
    import random

    rng = random.Random(seed)
    by_label: dict[str | None, list[Example]] = {}
    for ex in examples:
        by_label.setdefault(ex.label, []).append(ex)
    chosen: list[Example] = []
    for label in sorted(by_label, key=str):
        group = by_label[label]
        k = max(min_per_label, round(len(group) * fraction))
        chosen.extend(rng.sample(group, min(k, len(group))))
    return sorted(chosen, key=lambda e: (e.source, e.line))


def split_off(examples: list[Example], fraction: float, seed: int = 0) -> tuple[list[Example], list[Example]]:
    """Split ``examples`` into (rest, held) with ``held`` a stratified ``fraction`` of them.

    Used to carve a validation set out of a training split, so that model selection never
    looks at the split a figure is reported on. Each label with two or more examples gives
    at least one to ``held`` and keeps at least one in ``rest``; a label seen once stays in
    ``rest`` (a class the model never trains on cannot be learned, whatever it is scored on).

    Example:
        >>> exs = [Example(str(i), "ab"[i % 2], "x", i) for i in range(80)]
        >>> rest, held = split_off(exs, 0.125)
        >>> len(rest), len(held), sorted({e.label for e in held})
        (70, 10, ['a', 'b'])
        >>> [len(part) for part in split_off(exs[:3], 0.5)]  # a: 2 examples, b: 1
        [2, 1]
    """
    import random

    if not 0 < fraction < 1:
        raise DataError(f"the held-out share must be in (0, 1), got {fraction}")
    rng = random.Random(seed)
    by_label: dict[str | None, list[Example]] = {}
    for ex in examples:
        by_label.setdefault(ex.label, []).append(ex)
    held: list[Example] = []
    for label in sorted(by_label, key=str):
        group = by_label[label]
        if len(group) < 2:
            continue
        k = min(len(group) - 1, max(1, round(len(group) * fraction)))
        held.extend(rng.sample(group, k))
    keys = {(e.source, e.line) for e in held}
    return [e for e in examples if (e.source, e.line) not in keys], sorted(
        held, key=lambda e: (e.source, e.line)
    )
