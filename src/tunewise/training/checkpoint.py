"""Atomic checkpoints, so a killed run loses at most the epoch in progress.

A checkpoint is a directory written under a temporary name and renamed into place (a
rename is atomic on one file system), then a ``latest`` pointer file is replaced
atomically. A kill at any moment leaves either the previous checkpoint or the new one,
never half of one. Weights are safetensors; optimizer and scheduler states are loaded
with ``torch.load(weights_only=True)``, which refuses arbitrary pickled objects.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

LATEST = "latest"


@dataclass
class TrainState:
    """Where training is: enough to continue exactly where it stopped."""

    epoch: int = 0  # epochs completed in total
    stage: int = 0  # index of the stage the next epoch belongs to
    stage_epoch: int = 0  # epochs completed within that stage
    global_step: int = 0
    best_metric: float | None = None
    best_loss: float | None = None  # dev loss at the best epoch: breaks ties in the metric
    best_epoch: int | None = None
    epochs_without_improvement: int = 0
    history: list[dict] = field(default_factory=list)
    trainable: list[str] = field(default_factory=list)
    stage_done: bool = False  # the stage ended early (early stopping)
    elapsed_s: float = 0.0  # wall time up to this checkpoint, summed over resumptions

    def to_dict(self) -> dict:
        return dict(vars(self))


def _umask_mode() -> int:
    # mkstemp creates files readable by the owner only; results are meant to be shared
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def write_json_atomic(path: Path, obj: object) -> None:
    """Write JSON to ``path`` so a reader sees the old file or the new one, never a mix."""
    write_text_atomic(path, json.dumps(obj, ensure_ascii=False, indent=2))  # dumps fails before any write


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` so a reader sees the old file or the new one, never a mix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, _umask_mode())
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        # a full disk or a kill between write and rename: the old file stays, the temporary goes
        Path(tmp).unlink(missing_ok=True)
        raise


def _state_dict_for_save(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    # safetensors refuses tensors that share memory; clone keeps tied weights saveable.
    seen: dict[int, str] = {}
    out = {}
    for k, v in model.state_dict().items():
        ptr = v.data_ptr()
        out[k] = v.detach().clone().contiguous() if ptr in seen else v.detach().contiguous()
        seen.setdefault(ptr, k)
    return out


def _rng_state() -> tuple[dict, dict[str, torch.Tensor]]:
    py_state = random.getstate()
    np_state = np.random.get_state()
    meta = {
        "python": [py_state[0], list(py_state[1]), py_state[2]],
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
    }
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda{i}"] = s
    return meta, tensors


def _set_rng_state(meta: dict, tensors: dict[str, torch.Tensor]) -> None:
    v, internal, gauss = meta["python"]
    random.setstate((v, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("cuda")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)


def save_checkpoint(
    directory: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler_state: dict,
    state: TrainState,
    keep: int = 1,
) -> Path:
    """Write ``checkpoint-epoch-N`` atomically, point ``latest`` at it, prune old ones."""
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"checkpoint-epoch-{state.epoch}"
    tmp = Path(tempfile.mkdtemp(dir=directory, prefix=".tmp-checkpoint-"))
    try:
        save_file(_state_dict_for_save(model), str(tmp / "model.safetensors"))
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(scheduler_state, tmp / "scheduler.pt")
        rng_meta, rng_tensors = _rng_state()
        save_file(rng_tensors, str(tmp / "rng.safetensors"))
        write_json_atomic(tmp / "state.json", {"train": state.to_dict(), "rng": rng_meta})
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    write_json_atomic(directory / LATEST, {"checkpoint": final.name})
    old = sorted(
        (p for p in directory.glob("checkpoint-epoch-*") if p != final),
        key=lambda p: int(p.name.rsplit("-", 1)[1]),
    )
    for stale in old[: max(0, len(old) - (keep - 1))]:
        shutil.rmtree(stale, ignore_errors=True)
    return final


def latest_checkpoint(directory: Path) -> Path | None:
    """The checkpoint ``latest`` points to, or ``None`` when there is none."""
    pointer = directory / LATEST
    if not pointer.is_file():
        return None
    path = directory / json.loads(pointer.read_text(encoding="utf-8"))["checkpoint"]
    return path if (path / "state.json").is_file() else None


@dataclass
class Checkpoint:
    path: Path
    model: dict[str, torch.Tensor]
    optimizer: dict
    scheduler: dict
    state: TrainState
    rng_meta: dict
    rng_tensors: dict[str, torch.Tensor]

    def restore_rng(self) -> None:
        _set_rng_state(self.rng_meta, self.rng_tensors)


def load_checkpoint(path: Path) -> Checkpoint:
    data = json.loads((path / "state.json").read_text(encoding="utf-8"))
    return Checkpoint(
        path=path,
        model=load_file(str(path / "model.safetensors")),
        optimizer=torch.load(path / "optimizer.pt", weights_only=True),
        scheduler=torch.load(path / "scheduler.pt", weights_only=True),
        state=TrainState(**data["train"]),
        rng_meta=data["rng"],
        rng_tensors=load_file(str(path / "rng.safetensors")),
    )


def save_weights_atomic(model: torch.nn.Module, path: Path) -> None:
    """Save only the weights (the best model so far) with the same atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.fchmod(fd, _umask_mode())
    os.close(fd)
    try:
        save_file(_state_dict_for_save(model), tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
