"""BENCHMARKS.md's generated tables match the results files they come from (issue 20: figures
that drift from what the benchmark printed fail CI)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("bench_tables", ROOT / "bench" / "tables.py")
tables = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tables)


def test_committed_tables_match_their_results_files() -> None:
    text = (ROOT / "BENCHMARKS.md").read_text(encoding="utf-8")
    blocks = tables.BLOCK.findall(text)
    assert {name for _, name, _, _ in blocks} >= {
        "cli_startup",
        "service_soak",
        "demo",
        "learning_curve_tuned",
        "hymenoptera_tuned",
        "cifar10_tuned",
        "train_throughput_4ep",
        "train_throughput",
        "inference",
        "pretrain_settings",
        "url_kinds",
        "cpu_bf16",
        "inference_small_size",
    }
    _, changed = tables.render(text)
    assert not changed, f"run python bench/tables.py: {changed} differ from bench/results/"


def test_an_edited_figure_is_caught() -> None:
    text = (ROOT / "BENCHMARKS.md").read_text(encoding="utf-8")
    start = text.index("<!-- table: service_soak -->")
    edited = text[:start] + text[start:].replace("**0 / 0 / 0**", "**0 / 0 / 1**", 1)
    assert tables.render(edited, only={"service_soak"})[1] == ["service_soak"]
