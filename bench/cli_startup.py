"""How long the command line takes to say an argument is wrong, against ``tunewise --help``.

A wrong path, a missing column or a misspelled recipe must be reported before torch and
transformers are imported (they take seconds): the target is at most twice the time of
``tunewise --help``. Each command is run ``--repeats`` times as a fresh process (the median
is reported); the baseline, ``tunewise --help``, is measured in the same run.

    python bench/cli_startup.py --repeats 5 --out bench/results/cli_startup.json
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


def _time(args: list[str], repeats: int) -> tuple[float, int, str]:
    runs, code, message = [], 0, ""
    for _ in range(repeats):
        start = time.perf_counter()
        done = subprocess.run([*TUNEWISE, *args], capture_output=True, text=True)
        runs.append(time.perf_counter() - start)
        code, message = done.returncode, (done.stderr.strip().splitlines() or [""])[-1]
    return statistics.median(runs), code, message


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
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
            "tunewise --help (baseline)": ["--help"],
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
        rows = {name: _time(case, args.repeats) for name, case in cases.items()}
    base = rows["tunewise --help (baseline)"][0]
    report = {"repeats": args.repeats, "baseline_s": round(base, 3), "cases": {}}
    failures = []
    print(f"{'command':40} {'median s':>9} {'x --help':>9}  exit  message")
    for name, (seconds, code, message) in rows.items():
        ratio = seconds / base
        report["cases"][name] = {
            "seconds": round(seconds, 3),
            "ratio": round(ratio, 2),
            "exit": code,
            "message": message,
        }
        print(f"{name:40} {seconds:9.2f} {ratio:9.2f}  {code:4}  {message[:70]}")
        if name != "tunewise --help (baseline)" and (ratio > 2.0 or code != 2):
            failures.append(name)
    report["failures"] = failures
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
