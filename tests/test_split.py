"""Deduplication, stratified reproducible splits, leakage checks, label fractions."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tunewise.data.loading import DataError, Example
from tunewise.data.prepare import prepare_data, split_off, subsample
from tunewise.data.split import deduplicate, near_duplicate_leaks, stratified_split

from .conftest import make_messages, write_csv


def test_split_is_stratified_and_reproducible() -> None:
    labels = ["a"] * 80 + ["b"] * 20
    s1 = stratified_split(labels, seed=3)
    assert s1 == stratified_split(labels, seed=3)
    assert s1 != stratified_split(labels, seed=4)
    assert sorted(s1["train"] + s1["dev"] + s1["test"]) == list(range(100))
    assert Counter(labels[i] for i in s1["test"]) == {"a": 8, "b": 2}
    with pytest.raises(DataError, match="fewer than 3"):
        stratified_split(["a"] * 10 + ["b"] * 2)


def test_deduplicate_drops_copies_and_conflicts() -> None:
    exs = [
        Example("同一条", "a", "f", 2),
        Example("同一条", "a", "f", 3),
        Example("冲突", "a", "f", 4),
        Example("冲突", "b", "f", 5),
    ]
    result = deduplicate(exs, [e.text for e in exs])
    assert [e.line for e in result.examples] == [2]
    assert result.duplicates == 1
    assert [str(p) for p in result.conflicts] == [
        "f:4: same text also labelled b",
        "f:5: same text also labelled a",
    ]


def test_near_duplicates_across_splits_are_found() -> None:
    train = ["【顺丰】您的快递已到达菜鸟驿站请凭取件码领取谢谢", "完全不同的一条短信内容在这里"]
    leaks = near_duplicate_leaks(
        train, {"dev": ["【顺丰】您的快递已到达菜鸟驿站请凭取件码及时领取谢谢", "毫无关系"]}, 0.6
    )
    assert [(p.split, p.index, p.train_index) for p in leaks] == [("dev", 0, 0)]
    assert 0.6 <= leaks[0].similarity < 1


def test_prepare_normalises_dedupes_and_reports(tmp_path: Path) -> None:
    rows = make_messages(30)
    rows += [rows[0], ("", "normal")]  # an exact duplicate and an empty text
    data = prepare_data(write_csv(tmp_path / "d.csv", rows), seed=0)
    assert data.labels == ["loan", "normal", "police"]
    assert data.report.duplicates == 1
    assert [p.reason for p in data.report.problems] == ["empty text"]
    assert sum(len(v) for v in data.splits.values()) == 90
    all_texts = [e.text for v in data.splits.values() for e in v]
    assert len(set(all_texts)) == len(all_texts)
    assert not any(ch.isdigit() for t in all_texts for ch in t)  # digits became typed tokens
    again = prepare_data(write_csv(tmp_path / "d.csv", rows), seed=0)
    assert again.split_keys() == data.split_keys()


def test_subsample_is_stratified() -> None:
    exs = [Example(str(i), "a" if i < 90 else "b", "f", i) for i in range(100)]
    part = subsample(exs, 0.1, seed=0)
    assert Counter(e.label for e in part) == {"a": 9, "b": 1}
    assert subsample(exs, 0.1, seed=0) == part
    with pytest.raises(DataError, match="label fraction"):
        subsample(exs, 0)


def test_split_off_is_a_stratified_disjoint_partition() -> None:
    exs = [Example(str(i), "a" if i < 80 else "b", "f", i) for i in range(100)]
    rest, held = split_off(exs, 0.1, seed=3)
    assert Counter(e.label for e in held) == {"a": 8, "b": 2}
    assert len(rest) == 90 and not {e.line for e in rest} & {e.line for e in held}
    assert split_off(exs, 0.1, seed=3) == (rest, held)
