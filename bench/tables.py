"""Tables in BENCHMARKS.md generated from the results files the benchmarks write, so that a
figure in the documentation is the figure a run produced, not one typed in by hand.

A generated table sits between two markers in BENCHMARKS.md::

    <!-- table: service_soak -->
    | ... |
    <!-- /table -->

``python bench/tables.py`` rewrites every marked block from its results file under
``bench/results/``; ``python bench/tables.py --check`` changes nothing and exits 1, naming
the blocks, when a committed block differs from what its results file gives (CI runs it:
``tests/test_tables.py``). Add a table by writing a renderer below and the markers.

The demo's results file is a summary of ``tunewise demo``'s comparison, written with
``python bench/tables.py --summarize-demo runs/demo/compare/results.json``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
BENCHMARKS = ROOT / "BENCHMARKS.md"
BLOCK = re.compile(r"(<!-- table: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /table -->)", re.S)


def _service_soak(r: dict) -> str:
    statuses = ", ".join(f"{v:,} × {k}" for k, v in sorted(r["statuses"].items(), key=lambda kv: -kv[1]))
    refused = [
        v for k, v in r["latency_by_kind"].items() if k not in ("one", "many", "explain", "health", "model")
    ]
    rss, down, valid = r["rss_mb"], r["graceful_shutdown"], r["latency_valid_classify"]
    rows = [
        (
            f"requests in {r['seconds']:.0f} s",
            f"{r['requests']:,} ({r['requests_per_second']:.0f} per second): {statuses}",
        ),
        (
            "5xx / dropped / wrong status",
            f"**{r['server_errors_5xx']} / {r['dropped']} / {r['unexpected_status']}**",
        ),
        (
            "latency, all requests",
            f"p50 {r['latency_all']['p50_ms']:.0f} ms · p99 {r['latency_all']['p99_ms']:.0f} ms",
        ),
        (
            "latency, classify (one, many, explained)",
            f"p50 {valid['p50_ms']:.0f} ms · p99 {valid['p99_ms']:.0f} ms",
        ),
        (
            "latency, refused requests",
            f"p50 {min(x['p50_ms'] for x in refused):.0f}–{max(x['p50_ms'] for x in refused):.0f} ms · "
            f"p99 {min(x['p99_ms'] for x in refused):.0f}–{max(x['p99_ms'] for x in refused):.0f} ms",
        ),
        (
            "server RSS",
            f"{rss['at_start']:,.0f} MB idle → {rss['after_warmup']:,.0f} MB after warm-up (first "
            f"{r['seconds'] / 10:.0f} s) → {rss['end']:,.0f} MB at the end: "
            f"**{100 * (rss['end_over_warmup'] - 1):+.1f}%**",
        ),
        (
            f"SIGTERM with {down['in_flight']} requests in flight",
            f"{down['answered_200']} of {down['in_flight']} answered (200), server gone "
            f"{down['exit_seconds_after_sigterm']:.2f} s after the signal",
        ),
    ]
    return "| | |\n|---|---|\n" + "".join(f"| {a} | {b} |\n" for a, b in rows)


def _fraction(f: float) -> str:
    return f"{100 * f:g}%"


def _demo(r: dict) -> str:
    fractions = r["fractions"]
    head = (
        "| recipe | "
        + " | ".join(f"{_fraction(f)} ({r['train_sizes'][str(f)]:,})" for f in fractions)
        + " | probe ROC-AUC "
        + " / ".join(_fraction(f) for f in fractions)
        + " | train s at 100% |\n"
    )
    lines = [head, "|---" * (len(fractions) + 3) + "|\n"]
    for recipe, by in r["cells"].items():
        scores = []
        for f in fractions:
            c = by.get(str(f))
            scores.append(
                "—"
                if c is None
                else f"{c['test_macro_f1']:.3f}" + (f" ± {c['sd']:.3f}" if c["n"] > 1 else "")
            )
        probe = " / ".join(
            "—" if by.get(str(f), {}).get("probe") is None else f"{by[str(f)]['probe']:.3f}"
            for f in fractions
        )
        top = by.get(str(fractions[-1]), {})
        seconds = "—" if top.get("train_seconds") is None else f"{top['train_seconds']:.1f}"
        lines.append(f"| {recipe} | " + " | ".join(scores) + f" | {probe} | {seconds} |\n")
    lines.append("\nVerdict (computed by `tunewise.compare.verdict` from the same results):\n\n")
    lines += [f"- {line}\n" for line in r["verdict"]]
    lines.append(f"\nFinal model: `{r['final_recipe']}` on all labels.\n")
    return "".join(lines)


def _cli_startup(r: dict) -> str:
    rows = "".join(
        f"| `{name}` | {c['seconds']:.2f} s | {c['ratio']:.2f} | {c['ratio_to_floor']:.2f} |\n"
        for name, c in r["cases"].items()
    )
    return "| command | median | × `--help` | × Typer's floor |\n|---|---|---|---|\n" + rows


def _script_report(script: str, function: str, newline: str = "") -> Callable[[dict], str]:
    """The report function of a script under bench/: the table is the script's own printout,
    so BENCHMARKS.md shows what a run prints."""

    def render(results: dict) -> str:
        if str(ROOT / "bench") not in sys.path:
            sys.path.insert(0, str(ROOT / "bench"))
        return getattr(importlib.import_module(script), function)(results) + newline

    return render


def _cpu_bf16(r: dict) -> str:
    cpu = f"{r['cpu_capability']}, {r['cores']} cores, {r['threads']} threads"
    fp32 = f"{r['fp32_step_s']:.2f} s ({r['fp32_tokens_per_s']:,} tokens/s)"
    bf16 = f"{r['bf16_step_s']:.2f} s ({r['bf16_tokens_per_s']:,} tokens/s)"
    native = "yes" if r["native_bf16"] else "no"
    ratio = f"**{r['bf16_over_fp32_time']}x**"
    return (
        "| CPU | native bf16 | model, batch | fp32 step | bf16 step | bf16 / fp32 time |\n"
        "|---|---|---|---|---|---|\n"
        f"| {cpu} | {native} | {r['model']}, {r['batch']} | {fp32} | {bf16} | {ratio} |\n"
    )


def _url_kinds(r: dict) -> str:
    return r["table"] + "\n"  # the table the run printed, saved with its figures


_learning_curve = _script_report("learning_curve", "markdown_tables", newline="\n")
_train_throughput = _script_report("train_throughput", "markdown_table")
_inference = _script_report("inference", "markdown_report")

# a table named NAME is rendered from bench/results/NAME.json
RENDERERS: dict[str, Callable[[dict], str]] = {
    "cli_startup": _cli_startup,
    "service_soak": _service_soak,
    "demo": _demo,
    "learning_curve_tuned": _learning_curve,
    "hymenoptera_tuned": _learning_curve,
    "cifar10_tuned": _learning_curve,
    "train_throughput_4ep": _train_throughput,
    "train_throughput": _train_throughput,
    "inference": _inference,
    "inference_small_size": _inference,
    "pretrain_settings": _script_report("pretrain_settings", "summarise"),
    "url_kinds": _url_kinds,
    "cpu_bf16": _cpu_bf16,
}


def summarize_demo(results_file: Path, out: Path) -> dict:
    """The demo comparison's figures that BENCHMARKS.md shows, from its results.json."""
    sys.path.insert(0, str(ROOT / "src"))
    from tunewise.compare.summary import cells, fractions, recipe_order, verdict
    from tunewise.demo import best_recipe

    results = json.loads(results_file.read_text(encoding="utf-8"))
    table = cells(results)
    fr = fractions(results)
    summary = {
        "source": "tunewise demo (runs/demo/compare/results.json)",
        "fractions": fr,
        "train_sizes": {
            str(f): next(r["train_size"] for r in results["runs"] if r["fraction"] == f) for f in fr
        },
        "cells": {},
        "verdict": verdict(results),
        "final_recipe": best_recipe(results),
    }
    for name in recipe_order(results):
        summary["cells"][name] = {}
        for f in fr:
            cell = table.get((name, f))
            if cell is None:
                continue
            summary["cells"][name][str(f)] = {
                "test_macro_f1": round(cell.mean("test_macro_f1"), 4),
                "sd": round(cell.sd("test_macro_f1"), 4),
                "n": len(cell.runs),
                "probe": None
                if cell.mean(("ood", "probe", "headline")) is None
                else round(cell.mean(("ood", "probe", "headline")), 4),
                "train_seconds": None
                if cell.mean("train_seconds") is None
                else round(cell.mean("train_seconds"), 1),
            }
    out.write_text(json.dumps(summary, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return summary


def render(text: str, only: set[str] | None = None) -> tuple[str, list[str]]:
    """``text`` with every marked block regenerated (or those named in ``only``), and the names
    of the blocks that changed."""
    changed: list[str] = []

    def replace(m: re.Match) -> str:
        name = m["name"]
        if only is not None and name not in only:
            return m.group(0)
        if name not in RENDERERS:
            raise SystemExit(f"BENCHMARKS.md: no renderer for table {name!r} (bench/tables.py)")
        body = RENDERERS[name](json.loads((RESULTS / f"{name}.json").read_text(encoding="utf-8")))
        if body != m["body"]:
            changed.append(name)
        return m.group(1) + body + m.group(4)

    return BLOCK.sub(replace, text), changed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="Change nothing; exit 1 if a table is stale.")
    ap.add_argument("--summarize-demo", type=Path, metavar="RESULTS_JSON")
    args = ap.parse_args(argv)
    if args.summarize_demo:
        summarize_demo(args.summarize_demo, RESULTS / "demo.json")
    text = BENCHMARKS.read_text(encoding="utf-8")
    new, changed = render(text)
    if args.check:
        if changed:
            print(
                f"BENCHMARKS.md tables that differ from their results files: {', '.join(changed)}; "
                "run python bench/tables.py",
                file=sys.stderr,
            )
            return 1
        return 0
    if changed:
        BENCHMARKS.write_text(new, encoding="utf-8")
    print(f"regenerated: {', '.join(changed) or 'nothing (all up to date)'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
