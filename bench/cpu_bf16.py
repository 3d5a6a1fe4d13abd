"""Is bf16 autocast worth it on this CPU? One training step of a BERT encoder (masked-LM,
AdamW) in fp32 against the same step under ``torch.autocast(dtype=torch.bfloat16)``.

CPUs without native bf16 instructions (no AVX512-BF16, no AMX) emulate it; the training loop
warns then (tunewise.training.loop._native_cpu_bf16). The baseline, fp32, is measured in the
same run; each figure is the fastest of ``--repeats`` steps after one warm-up step.

    python bench/cpu_bf16.py --out bench/results/cpu_bf16.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
from transformers import BertConfig, BertForMaskedLM


def step_seconds(model: torch.nn.Module, batch: torch.Tensor, bf16: bool, repeats: int) -> float:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    times = []
    for _ in range(repeats + 1):  # the first step warms up allocators and kernels
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        times.append(time.perf_counter() - start)
    return min(times[1:])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--hidden", type=int, default=384)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--length", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)

    from tunewise.training.loop import _native_cpu_bf16

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=10000,
        hidden_size=args.hidden,
        num_hidden_layers=args.layers,
        num_attention_heads=max(1, args.hidden // 64),
        intermediate_size=4 * args.hidden,
    )
    model = BertForMaskedLM(config)
    batch = torch.randint(5, config.vocab_size, (args.batch, args.length))
    tokens = args.batch * args.length
    fp32 = step_seconds(model, batch, bf16=False, repeats=args.repeats)
    bf16 = step_seconds(model, batch, bf16=True, repeats=args.repeats)
    report = {
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "native_bf16": _native_cpu_bf16(),
        "threads": torch.get_num_threads(),
        "cores": os.cpu_count(),
        "model": f"BERT {args.layers} layers, hidden {args.hidden}, {model.num_parameters():,} parameters",
        "batch": f"{args.batch} x {args.length} tokens",
        "fp32_step_s": round(fp32, 3),
        "bf16_step_s": round(bf16, 3),
        "fp32_tokens_per_s": round(tokens / fp32),
        "bf16_tokens_per_s": round(tokens / bf16),
        "bf16_over_fp32_time": round(bf16 / fp32, 1),
    }
    print(json.dumps(report, indent=2))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
