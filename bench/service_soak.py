"""Soak test of ``tunewise serve``: a real server process on loopback under sustained,
mixed valid and invalid traffic, then a graceful shutdown under load.

The server is started with the real command line (``python -m tunewise serve``). ``--concurrency``
clients send requests back to back for ``--seconds``: single and batched messages, a few
with explanations, the read-only endpoints, and a share of bad requests (empty, over a
limit, malformed JSON, wrong types, unknown fields). Every response is checked against the
status that request should get. Then a last wave of requests is sent, the server gets
SIGTERM while they are in flight, and every one of them must still be answered.

It reports, and fails (exit status 1) when one is broken:
  * 5xx responses: none allowed;
  * dropped requests (connection errors, timeouts, a status other than the expected one): none;
  * the server's resident memory at the end against after warm-up (first 10% of the run):
    at most 10% more (``--max-rss-growth``);
  * the requests in flight at SIGTERM: all answered, and the server exits (with status 0, or
    by SIGTERM, which uvicorn re-raises after its graceful shutdown so a supervisor sees why).
Latency p50/p99 are reported per request kind. Timing figures are for the machine it ran on.

    python bench/service_soak.py --model runs/demo/model --seconds 600 --concurrency 32 \
        --out bench/results/service_soak.json
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import httpx


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def _messages() -> list[str]:
    from tunewise.samples import sample_sms_path

    with sample_sms_path().open(encoding="utf-8", newline="") as f:
        return [r["text"] for r in csv.DictReader(f)]


# (kind, weight, expected status); the request itself is built by _request
KINDS = [
    ("one", 30, 200),
    ("many", 20, 200),
    ("explain", 2, 200),
    ("health", 5, 200),
    ("model", 3, 200),
    ("empty", 6, 422),
    ("nul_only", 3, 422),
    ("too_long", 6, 413),
    ("too_many", 4, 413),
    ("huge_body", 2, 413),
    ("malformed", 7, (400, 422)),  # 400 when the cut falls inside a UTF-8 character
    ("wrong_type", 6, 422),
    ("extra_field", 6, 422),
]
EXPECTED = {kind: status if isinstance(status, tuple) else (status,) for kind, _, status in KINDS}


def _request(kind: str, rng: random.Random, messages: list[str]) -> tuple[str, str, dict]:
    """(method, path, httpx keyword arguments) of one request of ``kind``."""
    msg = rng.choice(messages)
    body: object
    if kind == "health":
        return "GET", "/healthz", {}
    if kind == "model":
        return "GET", "/v1/model", {}
    if kind == "one":
        body = {"text": msg}
    elif kind == "many":
        body = {"texts": rng.sample(messages, rng.randint(2, 16))}
    elif kind == "explain":
        body = {"text": msg[:40], "explain": True}
    elif kind == "empty":
        body = {"text": " \n "}
    elif kind == "nul_only":
        body = {"text": "\u0000\u0000"}
    elif kind == "too_long":
        body = {"text": msg * (6000 // max(1, len(msg)) + 1)}
    elif kind == "too_many":
        body = {"texts": [msg] * 300}
    elif kind == "huge_body":
        return "POST", "/v1/classify", {"content": b'{"text": "' + b"a" * 1_200_000 + b'"}'}
    elif kind == "malformed":
        return "POST", "/v1/classify", {"content": b'{"text": "' + msg.encode()[:20], "headers": _JSON}
    elif kind == "wrong_type":
        body = {"text": rng.choice([5, None, ["a"], {"a": 1}, True])}
    elif kind == "extra_field":
        body = {"text": msg, "lang": "zh"}
    else:
        raise ValueError(kind)
    return "POST", "/v1/classify", {"json": body}


_JSON = {"content-type": "application/json"}


class Record:
    def __init__(self) -> None:
        self.statuses: dict[str, Counter] = defaultdict(Counter)
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.dropped: list[str] = []
        self.unexpected: list[str] = []

    def add(self, kind: str, status: int | None, seconds: float, error: str | None = None) -> None:
        if status is None:
            self.dropped.append(f"{kind}: {error}")
            return
        self.statuses[kind][status] += 1
        self.latency[kind].append(seconds)
        if status not in EXPECTED[kind]:
            self.unexpected.append(f"{kind}: {status} (expected {' or '.join(map(str, EXPECTED[kind]))})")


async def _one(
    client: httpx.AsyncClient, kind: str, rng: random.Random, messages: list[str], rec: Record
) -> None:
    method, path, kwargs = _request(kind, rng, messages)
    start = time.perf_counter()
    try:
        r = await client.request(method, path, **kwargs)
    except httpx.HTTPError as e:
        rec.add(kind, None, time.perf_counter() - start, f"{type(e).__name__}: {e}")
        return
    rec.add(kind, r.status_code, time.perf_counter() - start)


async def _client(i: int, base: str, deadline: float, messages: list[str], rec: Record, seed: int) -> None:
    rng = random.Random(seed * 1000 + i)
    kinds, weights = [k for k, _, _ in KINDS], [w for _, w, _ in KINDS]
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        while time.perf_counter() < deadline:
            await _one(client, rng.choices(kinds, weights)[0], rng, messages, rec)


async def _soak(
    base: str, seconds: float, concurrency: int, messages: list[str], seed: int, pid: int
) -> dict:
    rec = Record()
    start = time.perf_counter()
    deadline = start + seconds
    warm = start + max(2.0, 0.1 * seconds)
    samples: list[tuple[float, float]] = []

    async def sample_rss() -> None:
        while time.perf_counter() < deadline:
            samples.append((time.perf_counter() - start, _rss_mb(pid)))
            await asyncio.sleep(1.0)

    await asyncio.gather(
        sample_rss(), *(_client(i, base, deadline, messages, rec, seed) for i in range(concurrency))
    )
    after_warmup = next((mb for t, mb in samples if t >= warm - start), samples[-1][1])
    end = _rss_mb(pid)
    return {
        "rec": rec,
        "rss_after_warmup_mb": after_warmup,
        "rss_end_mb": end,
        "rss_max_mb": max(mb for _, mb in samples),
        "rss_trajectory_mb": [round(mb) for _, mb in samples[:: max(1, len(samples) // 20)]],
    }


async def _shutdown_under_load(
    base: str, proc: subprocess.Popen, concurrency: int, messages: list[str]
) -> dict:
    """``concurrency`` batched requests in flight, then SIGTERM: every one must be answered.
    Each client first opens its connection (a health check), so the requests arrive on
    connections the server has accepted; then SIGTERM follows while they are being scored."""
    rec = Record()
    rng = random.Random(7)
    clients = [httpx.AsyncClient(base_url=base, timeout=60) for _ in range(concurrency)]
    try:
        await asyncio.gather(*(c.get("/healthz") for c in clients))
        tasks = [asyncio.create_task(_one(c, "many", rng, messages, rec)) for c in clients]
        await asyncio.sleep(0.3)  # sent, read by the server and queued for scoring
        sent_at = time.perf_counter()
        proc.send_signal(signal.SIGTERM)
        await asyncio.gather(*tasks)
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))
    code = await asyncio.to_thread(proc.wait, 60)
    return {
        "in_flight": concurrency,
        "answered_200": rec.statuses["many"][200],
        "dropped": rec.dropped + rec.unexpected,
        # uvicorn ends by re-raising the signal it caught, so a supervisor sees why it stopped
        "exit_code": code,
        "exit_seconds_after_sigterm": round(time.perf_counter() - sent_at, 2),
    }


def _percentiles(values: list[float]) -> dict:
    if not values:
        return {}
    values = sorted(values)
    p99 = values[min(len(values) - 1, int(0.99 * len(values)))]
    return {
        "n": len(values),
        "p50_ms": round(1000 * statistics.median(values), 1),
        "p99_ms": round(1000 * p99, 1),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="Model directory to serve.")
    ap.add_argument("--seconds", type=float, default=600)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, help="Write the figures here as JSON.")
    ap.add_argument(
        "--max-rss-growth",
        type=float,
        default=0.10,
        help="Most the server's RSS may grow from the end of warm-up (first 10%%) to the end.",
    )
    args = ap.parse_args(argv)

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "tunewise", "serve", "--model", str(args.model), "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                print(proc.stderr.read() if proc.stderr else "", file=sys.stderr)
                raise SystemExit("the server did not start")
            time.sleep(0.2)
        messages = _messages()
        rss_start = _rss_mb(proc.pid)
        soak = asyncio.run(_soak(base, args.seconds, args.concurrency, messages, args.seed, proc.pid))
        shutdown = asyncio.run(_shutdown_under_load(base, proc, args.concurrency, messages))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    rec: Record = soak.pop("rec")
    statuses = Counter()
    for counts in rec.statuses.values():
        statuses.update(counts)
    all_latency = [x for kind, xs in rec.latency.items() for x in xs]
    valid = [x for kind in ("one", "many", "explain") for x in rec.latency[kind]]
    ratio = soak["rss_end_mb"] / soak["rss_after_warmup_mb"]
    report = {
        "command": "python bench/service_soak.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "model": str(args.model),
        "seconds": args.seconds,
        "concurrency": args.concurrency,
        "cpus": os.cpu_count(),
        "requests": sum(statuses.values()) + len(rec.dropped),
        "requests_per_second": round((sum(statuses.values()) + len(rec.dropped)) / args.seconds, 1),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "server_errors_5xx": sum(v for k, v in statuses.items() if k >= 500),
        "dropped": len(rec.dropped),
        "unexpected_status": len(rec.unexpected),
        "examples_of_failures": (rec.dropped + rec.unexpected)[:10],
        "latency_all": _percentiles(all_latency),
        "latency_valid_classify": _percentiles(valid),
        "latency_by_kind": {kind: _percentiles(xs) for kind, xs in sorted(rec.latency.items())},
        "rss_mb": {
            "at_start": round(rss_start, 1),
            "after_warmup": round(soak["rss_after_warmup_mb"], 1),
            "end": round(soak["rss_end_mb"], 1),
            "max": round(soak["rss_max_mb"], 1),
            "every_5_percent": soak["rss_trajectory_mb"],
            "end_over_warmup": round(ratio, 3),
        },
        "graceful_shutdown": shutdown,
    }
    failures = []
    if report["server_errors_5xx"]:
        failures.append(f"{report['server_errors_5xx']} responses were 5xx")
    if rec.dropped or rec.unexpected:
        failures.append(f"{len(rec.dropped)} dropped, {len(rec.unexpected)} with an unexpected status")
    if ratio > 1 + args.max_rss_growth:
        failures.append(
            f"server RSS went from {soak['rss_after_warmup_mb']:.0f} to {soak['rss_end_mb']:.0f} MB"
        )
    if shutdown["answered_200"] != shutdown["in_flight"] or shutdown["exit_code"] not in (0, -signal.SIGTERM):
        failures.append(f"graceful shutdown: {shutdown}")
    report["failures"] = failures
    text = json.dumps(report, ensure_ascii=False, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
