"""Fault injection: `train`, `pretrain`, `predict` and `export` killed with SIGKILL at chosen
places (``tunewise.faults``), a full disk, and a damaged checkpoint. Nothing finished is
lost: every checkpoint left behind reads back intact, and a resumed run ends with the
weights of a run that was never interrupted (CPU, one thread: the arithmetic is exact).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tunewise.training.checkpoint import checkpoints, latest_checkpoint, load_checkpoint
from tunewise.training.loop import BEST_WEIGHTS

from .conftest import make_messages, write_csv

TUNEWISE = [sys.executable, "-m", "tunewise"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TUNEWISE_FAULT": ""}

# (fault, what the kill interrupts). Two stages (head, then all layers), 4 epochs, 3 batches
# an epoch; two checkpoints are kept, so the first old one is pruned at epoch 3.
KILLS = [
    ("train.batch:5", "mid-batch: after the backward pass of epoch 2's second batch"),
    ("train.eval:3", "mid-evaluation, epoch 2"),
    ("train.stage:1", "between the head stage and the full stage"),
    ("checkpoint.write:3", "half-way through writing epoch 3's checkpoint"),
    ("checkpoint.publish:2", "epoch 2's checkpoint in place, the 'latest' pointer not yet moved"),
    ("checkpoint.prune:1", "an old checkpoint set aside, not yet deleted"),
    ("train.best:2", "half-way through writing the best weights"),
    ("model.write:1", "the final model directory half written"),
]


def _run(args: list[str], fault: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        [*TUNEWISE, *args], env={**ENV, "TUNEWISE_FAULT": fault}, capture_output=True, text=True, timeout=600
    )


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path / "model.safetensors"))


def _assert_same_weights(want: Path, got: Path) -> None:
    a, b = _weights(want), _weights(got)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def _assert_checkpoints_readable(directory: Path) -> None:
    for ckpt in checkpoints(directory):
        load_checkpoint(ckpt)  # every file present and matching its checksum


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_bert_dir) -> dict:
    root = tmp_path_factory.mktemp("faults")
    data = write_csv(root / "sms.csv", make_messages(36, seed=3))  # 108 texts: 3 batches of 32
    train = ["train", "--data", str(data), "--recipe", "finetune", "--pretrained", str(tiny_bert_dir)]
    train += ["--epochs", "4", "--max-length", "32", "--no-progress", "--seed", "2"]
    reference = root / "reference"
    done = _run([*train, "--out", str(reference)])
    assert done.returncode == 0, done.stderr
    return {"root": root, "data": data, "train": train, "reference": reference}


def _kill_and_resume(setup: dict, fault: str) -> tuple[Path, str, str]:
    out = setup["root"] / fault.replace(":", "-")
    killed = _run([*setup["train"], "--out", str(out)], fault)
    assert killed.returncode == -signal.SIGKILL, f"{fault}: not killed\n{killed.stderr[-3000:]}"
    _assert_checkpoints_readable(out / "checkpoints")
    if not fault.startswith("model.write"):
        assert not (out / "model.safetensors").exists()  # it did not get to the end
    if fault.startswith("train.batch"):
        # without --resume the finished epochs are protected, not overwritten
        refused = _run([*setup["train"], "--out", str(out)])
        assert refused.returncode == 2 and "--resume" in refused.stderr, refused.stderr[-2000:]
    resumed = _run([*setup["train"], "--out", str(out), "--resume"])
    return out, resumed.returncode, resumed.stderr


def test_train_killed_anywhere_resumes_to_the_same_weights(setup: dict) -> None:
    faults = [f for f, _ in KILLS]
    with ThreadPoolExecutor(2) as pool:  # two single-threaded runs at a time on two cores
        results = dict(zip(faults, pool.map(lambda f: _kill_and_resume(setup, f), faults), strict=True))
    for fault, (out, code, stderr) in results.items():
        assert code == 0, f"{fault}: resume failed\n{stderr[-3000:]}"
        assert "resuming from" in stderr, fault
        _assert_same_weights(setup["reference"], out)
        # what the kill left half-written is gone; two finished checkpoints remain
        leftovers = [p.name for p in (out / "checkpoints").iterdir() if p.name.startswith(".")]
        assert not leftovers, (fault, leftovers)
        assert len(checkpoints(out / "checkpoints")) == 2, fault
        # the same epochs, the same dev figures, as the run that was never interrupted
        assert _history(out) == _history(setup["reference"]), fault
    # the training time counts the epochs before the kill too, not only those after the resume
    out = results["train.batch:5"][0]
    history = json.loads((out / "history.json").read_text())
    elapsed = load_checkpoint(latest_checkpoint(out / "checkpoints")).state.elapsed_s
    assert elapsed >= sum(h["seconds"] for h in history)


def _history(run: Path) -> list[dict]:
    rows = json.loads((run / "history.json").read_text())
    return [{k: v for k, v in h.items() if k not in ("seconds", "train_seconds")} for h in rows]


def test_a_damaged_latest_checkpoint_falls_back_to_the_one_before(setup: dict) -> None:
    out = setup["root"] / "damaged"
    killed = _run([*setup["train"], "--out", str(out)], "train.batch:7")  # during epoch 3
    assert killed.returncode == -signal.SIGKILL
    latest = latest_checkpoint(out / "checkpoints")
    assert latest is not None and latest.name == "checkpoint-epoch-2"
    weights = latest / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte: still a parseable file, wrong numbers
    weights.write_bytes(bytes(data))

    resumed = _run([*setup["train"], "--out", str(out), "--resume"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "checkpoint-epoch-2 is damaged" in resumed.stderr
    assert "model.safetensors does not match its checksum" in resumed.stderr
    assert "checkpoint-epoch-1" in resumed.stderr.split("resuming from", 1)[1].splitlines()[0]
    _assert_same_weights(setup["reference"], out)


def test_a_full_disk_keeps_the_previous_checkpoint(setup: dict) -> None:
    out = setup["root"] / "full-disk"
    full = _run([*setup["train"], "--out", str(out)], "checkpoint.write:2:enospc")
    assert full.returncode == 2
    assert "Traceback" not in full.stderr
    assert "could not write checkpoint-epoch-2" in full.stderr and "No space left on device" in full.stderr
    assert "checkpoint-epoch-1 is intact" in full.stderr and "--resume" in full.stderr
    # the failed write left nothing behind: epoch 1's checkpoint, the pointer, the best weights
    left = {p.name for p in (out / "checkpoints").iterdir()} - {BEST_WEIGHTS}
    assert left == {"checkpoint-epoch-1", "latest"}, left
    load_checkpoint(latest_checkpoint(out / "checkpoints"))
    resumed = _run([*setup["train"], "--out", str(out), "--resume"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    _assert_same_weights(setup["reference"], out)


def test_pretrain_killed_mid_batch_resumes_to_the_same_weights(setup: dict) -> None:
    corpus = setup["root"] / "corpus.txt"
    corpus.write_text("\n".join(t for t, _ in make_messages(40, seed=8)), encoding="utf-8")
    args = ["pretrain", "--corpus", str(corpus), "--no-default-corpus", "--epochs", "3", "--no-progress"]
    args += ["--hidden-size", "32", "--layers", "2", "--heads", "2", "--intermediate-size", "64"]
    args += ["--max-length", "32", "--batch-size", "16"]
    reference, killed = setup["root"] / "pre-ref", setup["root"] / "pre-killed"
    with ThreadPoolExecutor(2) as pool:
        ref_run = pool.submit(_run, [*args, "--out", str(reference)])
        kill_run = pool.submit(_run, [*args, "--out", str(killed)], "train.batch:9")
        assert ref_run.result().returncode == 0, ref_run.result().stderr[-3000:]
        assert kill_run.result().returncode == -signal.SIGKILL, kill_run.result().stderr[-3000:]
    _assert_checkpoints_readable(killed / "checkpoints")
    resumed = _run([*args, "--out", str(killed), "--resume"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    _assert_same_weights(reference, killed)


def test_predict_and_export_killed_leave_nothing_under_the_final_name(setup: dict) -> None:
    model, root = setup["reference"], setup["root"]
    output = root / "predictions.csv"
    args = ["predict", "--model", str(model), "--input", str(setup["data"]), "--output", str(output)]
    killed = _run(args, "predict.row:10")
    assert killed.returncode == -signal.SIGKILL
    assert not output.exists()  # the rows written so far are in predictions.csv.part only
    export_out = root / "onnx"
    killed = _run(["export", "--model", str(model), "--out", str(export_out)], "export.write:1")
    assert killed.returncode == -signal.SIGKILL
    assert not export_out.exists()  # a half-written model.onnx never appears under --out

    done = _run(["export", "--model", str(model), "--out", str(export_out)])
    assert done.returncode == 0, done.stderr[-3000:]
    assert (export_out / "model.onnx").is_file() and (export_out / "export.json").is_file()
    assert not list(root.glob(".onnx.export-*"))  # the killed export's staging folder was removed
    done = _run(args)
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(output.read_text(encoding="utf-8-sig").splitlines()) == 108 + 1
