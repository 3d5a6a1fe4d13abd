"""Several processes under ``accelerate launch`` (CPU, gloo): sharding, gathering, who writes,
parity with one process, and resuming after the launcher is killed.

The launches are real: ``accelerate launch --multi_gpu --num_processes 2`` starts two Python
processes that run the unchanged ``tunewise`` command line (on a machine without a GPU
Accelerate needs ``--multi_gpu`` to start more than one process; tunewise then picks CPU and
gloo). Each process runs under a small probe that records, through Python's audit hooks,
every file it opens for writing or renames: the proof that only the main process writes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from tunewise.training.distributed import ShardedBatchSampler

from .conftest import accelerate_launch, make_messages, save_tiny_bert, write_csv

PROBE = r'''
"""Run the tunewise CLI, recording every write under $PROBE_WATCH (audit hooks)."""
import json, os, sys

watch, log = os.environ["PROBE_WATCH"], os.environ["PROBE_LOG"]
writes = []


def inside(path):
    path = os.path.abspath(os.fsdecode(path))
    return path == watch or path.startswith(watch + os.sep)


def hook(event, args):
    if event == "open":
        path, mode, flags = args
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
        )
        if writing and isinstance(path, (str, bytes, os.PathLike)) and inside(path):
            writes.append(os.fsdecode(path))
    elif event == "os.rename" and inside(args[1]):
        writes.append(os.fsdecode(args[1]))

sys.addaudithook(hook)

import atexit

rank = os.environ.get("RANK", "0")
atexit.register(lambda: open(f"{log}/writes-rank{rank}.json", "w").write(json.dumps(writes)))

from tunewise.cli import app

sys.argv = ["tunewise", *sys.argv[1:]]
app()
'''

RECIPE = """
name: ddp-test
description: tiny fine-tune for the multi-process tests
model: {init: pretrained, architecture: auto, head: {type: linear}, max_length: 48}
freeze: {modules: [backbone]}
optimizer: {name: adamw, lr: 2.0e-3, weight_decay: 0.01}
scheduler: {name: linear_warmup, warmup_ratio: 0.1}
stages:
  - {name: head, epochs: 1, trainable: head}
  - {name: full, epochs: EPOCHS, trainable: all}
batch_size: 8
augmentation: mild
"""


def test_shards_are_disjoint_and_cover_every_batch() -> None:
    batches = [[0, 1, 2, 3, 4], [5, 6], [7]]
    shards = [list(ShardedBatchSampler(batches, i, 2)) for i in range(2)]
    assert shards == [[[0, 1, 2], [5], [7]], [[3, 4], [6], []]]
    for k, batch in enumerate(batches):
        assert sorted(shards[0][k] + shards[1][k]) == batch
    # training: every process must take every step, so a one-example batch is repeated
    assert [list(ShardedBatchSampler([[7]], i, 2, allow_empty=False)) for i in range(2)] == [[[7]], [[7]]]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Data, a dropout-free tiny BERT (so one and two processes can agree to rounding), the
    probe and recipes."""
    root = tmp_path_factory.mktemp("ddp")
    data = write_csv(root / "sms.csv", make_messages(60, seed=3))
    encoder = save_tiny_bert(root / "encoder", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    probe = root / "probe.py"
    probe.write_text(PROBE, encoding="utf-8")
    recipes = {}
    for epochs in (3, 12):
        recipes[epochs] = root / f"recipe-{epochs}.yaml"
        recipes[epochs].write_text(RECIPE.replace("EPOCHS", str(epochs)), encoding="utf-8")
    return {"root": root, "data": data, "encoder": encoder, "probe": probe, "recipes": recipes}


def _command(setup: dict, out: Path, processes: int, epochs: int, *extra: str) -> list[str]:
    args = ["train", "--data", str(setup["data"]), "--recipe", str(setup["recipes"][epochs])]
    args += ["--pretrained", str(setup["encoder"]), "--out", str(out), "--no-progress", *extra]
    return _probed(setup, processes, args)


def _probed(setup: dict, processes: int, args: list[str]) -> list[str]:
    """``tunewise ARGS`` under the write probe, in one process or launched as several."""
    start = [sys.executable] if processes == 1 else accelerate_launch(processes)
    return [*start, str(setup["probe"]), *args]


def _env(setup: dict, out: Path, log: Path) -> dict:
    log.mkdir(parents=True, exist_ok=True)
    return {
        **os.environ,
        "PROBE_WATCH": str(out),
        "PROBE_LOG": str(log),
        "TUNEWISE_SHARD_LOG": str(log / "shards"),
        "OMP_NUM_THREADS": "1",
    }


def _run(setup: dict, name: str, processes: int, epochs: int, *extra: str) -> tuple[Path, Path, str]:
    out, log = setup["root"] / name, setup["root"] / f"{name}-log"
    proc = subprocess.run(
        _command(setup, out, processes, epochs, *extra),
        env=_env(setup, out, log),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out, log, proc.stdout


@pytest.fixture(scope="module")
def runs(setup: dict) -> dict:
    """The same run with one process and with two."""
    return {n: _run(setup, f"p{n}", n, 3) for n in (1, 2)}


def _shards(log: Path, rank: int) -> dict[int, list[int]]:
    seen: dict[int, list[int]] = {}
    for line in (log / "shards" / f"rank{rank}.jsonl").read_text().splitlines():
        row = json.loads(line)
        seen.setdefault(row["epoch"], []).extend(row["index"])
    return seen


def test_each_process_trains_on_a_disjoint_half_of_every_epoch(runs: dict) -> None:
    _, log1, _ = runs[1]
    _, log2, _ = runs[2]
    alone = _shards(log1, 0)
    first, second = _shards(log2, 0), _shards(log2, 1)
    assert sorted(alone) == sorted(first) == sorted(second) == [0, 1, 2, 3]
    for epoch, examples in alone.items():
        assert not set(first[epoch]) & set(second[epoch])
        assert sorted(first[epoch] + second[epoch]) == sorted(examples)  # nothing dropped or repeated
        assert abs(len(first[epoch]) - len(second[epoch])) <= 4


def test_only_the_main_process_writes_and_reports(runs: dict) -> None:
    out, log, stdout = runs[2]
    main_writes = json.loads((log / "writes-rank0.json").read_text())
    assert json.loads((log / "writes-rank1.json").read_text()) == []
    assert any(p.endswith("model.safetensors") for p in main_writes)
    assert any("checkpoints" in p for p in main_writes)
    assert len([line for line in stdout.splitlines() if line.startswith("{")]) == 1  # one report
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if "logs" not in p.parts)
    alone = runs[1][0]
    assert files == sorted(p.relative_to(alone).as_posix() for p in alone.rglob("*") if "logs" not in p.parts)


def test_two_processes_match_one_with_the_same_global_batch(runs: dict) -> None:
    import torch

    (one, _, _), (two, _, _) = runs[1], runs[2]
    h1 = json.loads((one / "history.json").read_text())
    h2 = json.loads((two / "history.json").read_text())
    assert len(h1) == len(h2) == 4
    for a, b in zip(h1, h2, strict=True):
        # dev metrics gathered over both processes' halves of the dev split equal one process's
        assert a["dev_macro_f1"] == pytest.approx(b["dev_macro_f1"], abs=1e-9)
        assert a["dev_loss"] == pytest.approx(b["dev_loss"], rel=1e-4)
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
    w1, w2 = load_file(str(one / "model.safetensors")), load_file(str(two / "model.safetensors"))
    assert w1.keys() == w2.keys()
    for k in w1:
        torch.testing.assert_close(w1[k], w2[k], atol=2e-4, rtol=1e-3)
    d1 = json.loads((one / "tunewise.json").read_text())["dev"]
    d2 = json.loads((two / "tunewise.json").read_text())["dev"]
    assert d1["epoch"] == d2["epoch"] and d1["macro_f1"] == pytest.approx(d2["macro_f1"], abs=1e-9)
    assert d1["loss"] == pytest.approx(d2["loss"], rel=1e-4)


def test_resume_after_killing_the_launcher(setup: dict) -> None:
    out, log = setup["root"] / "killed", setup["root"] / "killed-log"
    proc = subprocess.Popen(
        _command(setup, out, 2, 12),
        env=_env(setup, out, log),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group: the kill takes the launcher and workers
    )
    latest = out / "checkpoints" / "latest"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            pointer = json.loads(latest.read_text())["checkpoint"] if latest.is_file() else None
            state = (
                json.loads((out / "checkpoints" / pointer / "state.json").read_text()) if pointer else None
            )
        except FileNotFoundError:  # the live run pruned that checkpoint while we read it
            continue
        if state and state["train"]["epoch"] >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, (
        "the run ended before it could be killed: " + proc.stderr.read().decode()[-2000:]
    )
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert not (out / "model.safetensors").exists()  # killed mid-run
    resumed, _, _ = _run(setup, "killed", 2, 12, "--resume")
    whole, _, _ = _run(setup, "whole", 2, 12)
    h_resumed = json.loads((resumed / "history.json").read_text())
    h_whole = json.loads((whole / "history.json").read_text())
    assert [h["epoch"] for h in h_resumed] == list(range(1, 14))
    for a, b in zip(h_resumed, h_whole, strict=True):
        assert a["dev_loss"] == pytest.approx(b["dev_loss"], rel=1e-4)


def _launch(setup: dict, processes: int, args: list[str], watch: Path, log: Path) -> str:
    command = _probed(setup, processes, args)
    proc = subprocess.run(command, env=_env(setup, watch, log), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stderr


def test_predict_shards_a_file_and_writes_it_once_in_input_order(setup: dict, runs: dict) -> None:
    model = runs[1][0]
    rows = make_messages(30, seed=11)
    data = write_csv(setup["root"] / "to-score.csv", rows[:17] + [("", "normal")] + rows[17:])  # one bad row
    outputs = {}
    # CSV with one process and with two; JSONL (the same rows) with two only: three launches
    for n, suffix in ((1, "csv"), (2, "csv"), (2, "jsonl")):
        folder = setup["root"] / f"predict-{n}"
        out = folder / f"predictions.{suffix}"
        args = ["predict", "--model", str(model), "--input", str(data), "--output", str(out)]
        stderr = _launch(setup, n, [*args, "--batch-size", "4"], folder, folder / "log")
        assert stderr.count(f"wrote {len(rows)} predictions") == 1 and stderr.count("empty text") == 1
        outputs[n, suffix] = out.read_bytes()
    assert sorted(p.name for p in (setup["root"] / "predict-2").iterdir() if p.is_file()) == [
        "predictions.csv",
        "predictions.jsonl",
    ]  # no shard or part file left behind
    assert outputs[1, "csv"] == outputs[2, "csv"]  # byte for byte
    texts = [json.loads(line)["text"] for line in outputs[2, "jsonl"].decode().splitlines()]
    assert texts == [t for t, _ in rows]  # input order, the empty row left out


def test_pretrain_runs_unchanged_under_two_processes(setup: dict) -> None:
    corpus = setup["root"] / "corpus.txt"
    corpus.write_text("\n".join(t for t, _ in make_messages(60, seed=2)), encoding="utf-8")
    tiny = [
        "--corpus",
        str(corpus),
        "--no-default-corpus",
        "--hidden-size",
        "32",
        "--layers",
        "2",
        "--heads",
        "2",
    ]
    tiny += [
        "--intermediate-size",
        "64",
        "--max-length",
        "32",
        "--batch-size",
        "8",
        "--epochs",
        "2",
        "--no-progress",
    ]
    outs = {}
    for n in (1, 2):
        out, log = setup["root"] / f"pretrain-{n}", setup["root"] / f"pretrain-{n}-log"
        _launch(setup, n, ["pretrain", "--out", str(out), *tiny], out, log)
        outs[n] = (out, log)
    (one, _), (two, log) = outs[1], outs[2]
    assert (one / "vocab.txt").read_text() == (two / "vocab.txt").read_text()  # one vocabulary, trained once
    assert json.loads((log / "writes-rank1.json").read_text()) == []
    first, second = _shards(log, 0), _shards(log, 1)
    for epoch in first:
        assert not set(first[epoch]) & set(second[epoch])
    card1 = json.loads((one / "pretraining.json").read_text())
    card2 = json.loads((two / "pretraining.json").read_text())
    assert card1["steps"] == card2["steps"]  # the same global batches
    # masking draws dropout and masks per example, so the two runs agree closely, not exactly
    assert card2["heldout_masked_accuracy"] == pytest.approx(card1["heldout_masked_accuracy"], abs=0.05)
