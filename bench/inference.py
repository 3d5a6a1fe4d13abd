"""Inference speed in one run: a `transformers` text-classification pipeline (the baseline)
vs our PyTorch path, ONNX fp32 and ONNX int8, at batch 1 and batch 64 — plus a bounded
loopback load test of `tunewise serve`.

    python bench/inference.py --out runs/bench-inference            # trains a model if needed
    python bench/inference.py --model runs/demo/model --messages 2000 --load-seconds 60

The model: `finetune-small` on the bundled `tunewise-mini-zh`, trained (once, cached in
--out) on 20% of ../shared/data/telecom_fraud_5 when it is there, else on the embedded
sample set. The int8 macro-F1 change is measured on that model's held-out test split.
Every figure comes from this run, on this machine; ratios are against the pipeline.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "telecom_fraud_5"
LABEL_MAP = Path(__file__).resolve().parents[1] / "examples" / "telecom_fraud_5.labels.yaml"


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def train_default_model(out: Path) -> tuple[Path, Path, str | None]:
    from tunewise.recipes import load_recipe
    from tunewise.samples import sample_sms_path
    from tunewise.training.run import TrainOptions, train_model

    model = out / "model"
    real = SHARED.is_dir()
    data = SHARED if real else sample_sms_path()
    label_map = str(LABEL_MAP) if real else None
    if not (model / "model.safetensors").is_file():
        recipe = load_recipe("finetune-small").with_epochs(10)
        recipe = recipe.model_copy(update={"model": recipe.model.model_copy(update={"max_length": 128})})
        train_model(
            TrainOptions(
                data=data,
                recipe=recipe,
                out=model,
                label_fraction=0.2 if real else 1.0,
                label_map=label_map,
                show_progress=False,
                log_with=None,
            )
        )
    return model, data, label_map


def load_messages(data: Path, label_map: str | None, n: int) -> list[str]:
    from tunewise.data.loading import load_data

    texts = [e.text for e in load_data(data, label_map=label_map).examples]
    rng = np.random.default_rng(0)
    return [texts[i] for i in rng.choice(len(texts), size=min(n, len(texts)), replace=False)]


def time_path(name: str, predict, texts: list[str], single: int) -> dict:
    """Throughput: all texts in one call at batch size 64 (each path batches its own way:
    the pipeline in input order, tunewise length-sorted), the median of three passes.
    Latency: calls of 64 texts and of one text (the first ``single``)."""
    predict(texts[:64])  # warm-up
    passes = []
    for _ in range(3):
        start = time.perf_counter()
        predict(texts)
        passes.append(time.perf_counter() - start)
    total = statistics.median(passes)
    batch_lat = []
    for i in range(0, min(len(texts), 640), 64):
        t = time.perf_counter()
        predict(texts[i : i + 64])
        batch_lat.append(time.perf_counter() - t)
    one_lat = []
    for text in texts[:single]:
        t = time.perf_counter()
        predict([text])
        one_lat.append(time.perf_counter() - t)
    return {
        "path": name,
        "batch64_msgs_per_s": len(texts) / total,
        "batch64_p50_ms": 1000 * percentile(batch_lat, 50),
        "batch64_p99_ms": 1000 * percentile(batch_lat, 99),
        "batch1_msgs_per_s": len(one_lat) / sum(one_lat),
        "batch1_p50_ms": 1000 * percentile(one_lat, 50),
        "batch1_p99_ms": 1000 * percentile(one_lat, 99),
    }


async def load_test(url: str, texts: list[str], seconds: float, concurrency: int) -> dict:
    import httpx

    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def worker(k: int) -> None:
        nonlocal errors
        async with httpx.AsyncClient(timeout=30) as client:
            i = k
            while time.perf_counter() < deadline:
                t = time.perf_counter()
                try:
                    r = await client.post(f"{url}/v1/classify", json={"text": texts[i % len(texts)]})
                    if r.status_code != 200:
                        errors += 1
                except httpx.HTTPError:
                    errors += 1
                latencies.append(time.perf_counter() - t)
                i += concurrency

    start = time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(concurrency)))
    wall = time.perf_counter() - start
    return {
        "concurrency": concurrency,
        "seconds": wall,
        "requests": len(latencies),
        "errors": errors,
        "requests_per_s": len(latencies) / wall,
        "p50_ms": 1000 * percentile(latencies, 50),
        "p99_ms": 1000 * percentile(latencies, 99),
    }


def serve_and_load(
    model: Path, texts: list[str], seconds: float, concurrency: int, port: int, max_batch: int
) -> dict:
    """Start ``tunewise serve`` (ONNX int8) in its own process and load-test it over loopback.
    ``max_batch`` 1 turns cross-request batching off: one request per forward pass."""
    import httpx

    cmd = [sys.executable, "-m", "tunewise", "serve", "--model", str(model), "--port", str(port)]
    cmd += ["--backend", "onnx", "--quantized", "--max-batch", str(max_batch)]  # serve: spin=False
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                httpx.get(f"{url}/healthz", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        result = asyncio.run(load_test(url, texts, seconds, concurrency))
        result["backend"] = "onnx int8"
        result["batching"] = httpx.get(f"{url}/v1/model", timeout=10).json()["batching"]
        return result
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", help="a trained model directory (default: train one into --out)")
    parser.add_argument(
        "--eval", help="labelled data for the int8 macro-F1 change (default: the model's data)"
    )
    parser.add_argument("--out", default="runs/bench-inference")
    parser.add_argument("--messages", type=int, default=2000, help="messages for batch-64 throughput")
    parser.add_argument("--single", type=int, default=300, help="messages for batch-1 latency")
    parser.add_argument("--load-seconds", type=float, default=60)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()

    import torch  # here: bench/tables.py imports this file for markdown_report alone
    from transformers import pipeline
    from transformers.utils import logging as hf_logging

    from tunewise.export import export_onnx
    from tunewise.inference import Predictor

    hf_logging.disable_progress_bar()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.model:
        model, data, label_map = Path(args.model), Path(args.eval) if args.eval else None, None
    else:
        model, data, label_map = train_default_model(out)
    export_dir = out / "onnx"
    export = export_onnx(
        model,
        export_dir,
        quantize=True,
        eval_data=args.eval or data,
        label_map=label_map,
    )
    # the same export with standard ONNX operators only: what the fused graph gains
    plain_dir = out / "onnx-standard-ops"
    export_onnx(model, plain_dir, quantize=True, optimize=False)
    texts = load_messages(data or Path(args.eval), label_map, args.messages) if (data or args.eval) else []
    if not texts:
        raise SystemExit("no messages to time: give --eval FILE")

    # like for like: the pipeline truncates long texts, and so does tunewise by default; the
    # last row is the opt-in `--long-text window` (overlapping windows averaged), which reads
    # every token of long texts
    common = {"batch_size": 64, "long_text": "truncate"}
    torch_predictor = Predictor(model, backend="torch", **common)
    fp32 = Predictor(export_dir, backend="onnx", threads=args.threads, **common)
    int8 = Predictor(export_dir, backend="onnx", quantized=True, threads=args.threads, **common)
    fp32_plain = Predictor(plain_dir, backend="onnx", threads=args.threads, **common)
    int8_plain = Predictor(plain_dir, backend="onnx", quantized=True, threads=args.threads, **common)
    int8_windows = Predictor(
        export_dir, backend="onnx", quantized=True, threads=args.threads, batch_size=64, long_text="window"
    )
    hf = pipeline("text-classification", model=str(model), tokenizer=str(model), device=-1, top_k=None)
    max_length = torch_predictor.window + len(torch_predictor.prefix) + len(torch_predictor.suffix)

    def run_pipeline(batch: list[str]) -> None:
        hf(batch, batch_size=64, truncation=True, max_length=max_length)

    rows = [
        time_path("transformers pipeline (baseline)", run_pipeline, texts, args.single),
        time_path("tunewise PyTorch", torch_predictor.predict, texts, args.single),
        time_path("tunewise ONNX fp32", fp32.predict, texts, args.single),
        time_path("tunewise ONNX fp32, standard ops (--no-optimize)", fp32_plain.predict, texts, args.single),
        time_path("tunewise ONNX int8", int8.predict, texts, args.single),
        time_path("tunewise ONNX int8, standard ops (--no-optimize)", int8_plain.predict, texts, args.single),
        time_path("tunewise ONNX int8, long texts as windows", int8_windows.predict, texts, args.single),
    ]
    base = rows[0]
    for row in rows:
        row["batch64_vs_pipeline"] = row["batch64_msgs_per_s"] / base["batch64_msgs_per_s"]
        row["batch1_vs_pipeline"] = row["batch1_msgs_per_s"] / base["batch1_msgs_per_s"]
    services = [
        serve_and_load(export_dir, texts, args.load_seconds, args.concurrency, args.port, max_batch)
        for max_batch in (1, 128)
    ]

    result = {
        "machine": {"cpus": os.cpu_count(), "threads": args.threads, "torch": torch.__version__},
        "model": str(model),
        "messages": len(texts),
        "export": export,
        "paths": rows,
        "service": services,
    }
    (out / "results.json").write_text(json.dumps(result, indent=2, ensure_ascii=False), encoding="utf-8")
    table = f"{len(texts)} messages, {args.threads} threads; model {model}\n\n" + markdown_report(result)
    (out / "table.md").write_text(table + "\n", encoding="utf-8")
    print(table)


def markdown_report(result: dict) -> str:
    """The paths table and the parity, accuracy and service lines, from a results.json
    (BENCHMARKS.md's inference table is generated from it: bench/tables.py)."""
    export, services = result["export"], result["service"]
    lines = [
        "| path | batch 64 msgs/s | vs pipeline | p50 / p99 ms per batch "
        "| batch 1 msgs/s | vs pipeline | p50 / p99 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["paths"]:
        lines.append(
            f"| {r['path']} | {r['batch64_msgs_per_s']:,.0f} | {r['batch64_vs_pipeline']:.2f}x | "
            f"{r['batch64_p50_ms']:.0f} / {r['batch64_p99_ms']:.0f} | {r['batch1_msgs_per_s']:,.0f} | "
            f"{r['batch1_vs_pipeline']:.2f}x | {r['batch1_p50_ms']:.1f} / {r['batch1_p99_ms']:.1f} |"
        )
    ev = export.get("eval", {})
    lines += [
        "",
        f"- ONNX fp32 parity: max probability difference {export['fp32']['max_prob_diff']:.2e}; "
        f"int8: {export['int8']['max_prob_diff']:.2e}.",
    ]
    if ev:
        lines.append(
            f"- Macro-F1 on the {ev['selection']}: PyTorch {ev['pytorch']:.4f}, "
            f"ONNX fp32 {ev['onnx_fp32']:.4f}, int8 {ev['onnx_int8']:.4f} "
            f"(change {100 * ev['int8_macro_f1_change']:+.2f} points)."
        )
    for s in services:
        b = s["batching"]
        lines.append(
            f"- Service ({s['backend']}, loopback, concurrency {s['concurrency']}, {s['seconds']:.0f} s, "
            f"--max-batch {b['max_batch']}): {s['requests']:,} requests, {s['errors']} errors, "
            f"{s['requests_per_s']:.0f} req/s, p50 {s['p50_ms']:.1f} ms, p99 {s['p99_ms']:.1f} ms; "
            f"{b['requests_per_batch']} requests per forward pass."
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
