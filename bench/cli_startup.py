"""How long the command line takes to say an argument is wrong, against ``tunewise --help``.

A wrong path, a missing column or a misspelled recipe must be reported before torch and
transformers are imported (they take seconds): the target is at most twice the time of
``tunewise --help``. Each command is run ``--repeats`` times as a fresh process (the median
is reported); the baseline, ``tunewise --help``, is measured in the same run, and the runs
are interleaved (one of each case per round) so that a machine slowing down mid-run moves
every case alike.

A second reference row is Typer's own floor: a command whose required option is missing is
refused by the argument parser itself, before any tunewise code runs, yet it already pays
for what Typer loads to convert arguments (pydantic, since Typer 0.29). No argument error
can be reported faster than that.

    python bench/cli_startup.py --repeats 9 --out bench/results/cli_startup.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TUNEWISE = [sys.executable, "-m", "tunewise"]


BASELINE = "tunewise --help (baseline)"
FLOOR = "train without --out (Typer's floor)"


def _run(args: list[str]) -> tuple[float, int, str]:
    start = time.perf_counter()
    done = subprocess.run([*TUNEWISE, *args], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    return seconds, done.returncode, (done.stderr.strip().splitlines() or [""])[-1]


def _time_interleaved(cases: dict[str, list[str]], repeats: int) -> dict[str, tuple[float, int, str]]:
    runs: dict[str, list[float]] = {name: [] for name in cases}
    last: dict[str, tuple[int, str]] = {}
    _run(["--help"])  # warm the file cache: the first process of a run reads every module from disk
    for _ in range(repeats):
        for name, args in cases.items():
            seconds, code, message = _run(args)
            runs[name].append(seconds)
            last[name] = (code, message)
    return {name: (statistics.median(runs[name]), *last[name]) for name in cases}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        no_label = tmp / "no_label.csv"
        no_label.write_text("text,source\n您好，明天开会,sms\n", encoding="utf-8")
        good = tmp / "sms.csv"
        good.write_text("text,label\n您好，明天开会,normal\n点击链接领取补贴,fraud\n", encoding="utf-8")
        out = str(tmp / "out")
        cases = {
            BASELINE: ["--help"],
            FLOOR: ["train", "--data", str(good), "--recipe", "scratch"],
            "train --data nonexistent.csv": [
                "train",
                "--data",
                "nonexistent.csv",
                "--recipe",
                "scratch",
                "--out",
                out,
            ],
            "train: no label column": ["train", "--data", str(no_label), "--recipe", "scratch", "--out", out],
            "train --recipe scrach (misspelled)": [
                "train",
                "--data",
                str(good),
                "--recipe",
                "scrach",
                "--out",
                out,
            ],
            "predict --model nonexistent": ["predict", "--model", "nonexistent", "--text", "你好"],
            "evaluate --data nonexistent.csv": [
                "evaluate",
                "--model",
                "nonexistent",
                "--data",
                "nonexistent.csv",
            ],
        }
        rows = _time_interleaved(cases, args.repeats)
    base, floor = rows[BASELINE][0], rows[FLOOR][0]
    report = {
        "repeats": args.repeats,
        "baseline_s": round(base, 3),
        "floor_s": round(floor, 3),
        "cases": {},
    }
    failures = []
    print(f"{'command':40} {'median s':>9} {'x --help':>9} {'x floor':>8}  exit  message")
    for name, (seconds, code, message) in rows.items():
        ratio = seconds / base
        report["cases"][name] = {
            "seconds": round(seconds, 3),
            "ratio": round(ratio, 2),
            "ratio_to_floor": round(seconds / floor, 2),
            "exit": code,
            "message": message,
        }
        print(f"{name:40} {seconds:9.2f} {ratio:9.2f} {seconds / floor:8.2f}  {code:4}  {message[:60]}")
        if name != BASELINE and (ratio > 2.0 or code != 2):
            failures.append(name)
    report["failures"] = failures
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
