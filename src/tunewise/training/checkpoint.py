"""Atomic checkpoints, so a killed run loses at most the epoch in progress.

A checkpoint is a directory written under a temporary name and renamed into place (a
rename is atomic on one file system), then a ``latest`` pointer file is replaced
atomically. A kill at any moment leaves either the previous checkpoint or the new one,
never half of one; an old checkpoint is renamed aside before it is deleted, so a kill
while pruning leaves no half-deleted one either. The last two are kept, and ``state.json``
records a SHA-256 of every file: a checkpoint damaged afterwards (a bad disk, a truncated
copy) is detected on resume, and the run falls back to the previous one with a message
(:func:`resume_checkpoint`). A write that fails (a full disk) raises
:class:`~tunewise.errors.CheckpointError` and leaves the previous checkpoint as it was.
Weights are safetensors; optimizer and scheduler states are loaded with
``torch.load(weights_only=True)``, which refuses arbitrary pickled objects.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from tunewise.errors import CheckpointError
from tunewise.faults import fault_point
from tunewise.model_dir import sha256_file

LATEST = "latest"
KEEP = 2  # checkpoints kept: the newest, and one to fall back to if the newest is damaged
_FILES = ("model.safetensors", "optimizer.pt", "scheduler.pt", "rng.safetensors")
_TMP_PREFIX, _TRASH_PREFIX = ".tmp-checkpoint-", ".trash-checkpoint-"


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


def _epoch_of(path: Path) -> int:
    return int(path.name.rsplit("-", 1)[1])


def checkpoints(directory: Path) -> list[Path]:
    """The checkpoint directories in ``directory``, newest first."""
    found = [p for p in Path(directory).glob("checkpoint-epoch-*") if p.name.rsplit("-", 1)[1].isdigit()]
    return sorted(found, key=_epoch_of, reverse=True)


def has_checkpoint(directory: Path) -> bool:
    """True when ``directory`` holds a finished checkpoint (readable or not): work that
    ``--resume`` continues and a fresh start must not overwrite."""
    return latest_checkpoint(Path(directory)) is not None or bool(checkpoints(Path(directory)))


def clean_stale(directory: Path) -> None:
    """Remove what a killed write left behind: half-written checkpoints (under their
    temporary names) and old ones set aside for deletion. Finished checkpoints are kept."""
    directory = Path(directory)
    if not directory.is_dir():
        return
    for stale in directory.iterdir():
        if stale.name.startswith((_TMP_PREFIX, _TRASH_PREFIX)):
            shutil.rmtree(stale, ignore_errors=True)
        elif stale.name.startswith(".") and stale.name.endswith(".tmp") and stale.is_file():
            stale.unlink(missing_ok=True)  # an atomic single-file write that never got renamed


def save_checkpoint(
    directory: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler_state: dict,
    state: TrainState,
    keep: int = KEEP,
) -> Path:
    """Write ``checkpoint-epoch-N`` atomically, point ``latest`` at it, prune old ones.

    A failed write (a full disk, a quota) raises :class:`CheckpointError` naming the
    checkpoint still intact; nothing already written is touched.

    Example:
        >>> save_checkpoint(Path("out/checkpoints"), model, opt, {}, TrainState(epoch=3))  # doctest: +SKIP
        PosixPath('out/checkpoints/checkpoint-epoch-3')
    """
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"checkpoint-epoch-{state.epoch}"
    tmp = Path(tempfile.mkdtemp(dir=directory, prefix=_TMP_PREFIX))
    try:
        save_file(_state_dict_for_save(model), str(tmp / "model.safetensors"))
        fault_point("checkpoint.write")
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(scheduler_state, tmp / "scheduler.pt")
        rng_meta, rng_tensors = _rng_state()
        save_file(rng_tensors, str(tmp / "rng.safetensors"))
        sums = {name: sha256_file(tmp / name) for name in _FILES}
        write_json_atomic(tmp / "state.json", {"train": state.to_dict(), "rng": rng_meta, "sha256": sums})
        if final.exists():  # an epoch redone after a resume: its old checkpoint goes aside first
            final.rename(Path(tempfile.mkdtemp(dir=directory, prefix=_TRASH_PREFIX)) / final.name)
        os.replace(tmp, final)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        intact = latest_checkpoint(directory)
        kept = f"{intact.name} is intact" if intact else "no earlier checkpoint exists"
        raise CheckpointError(
            f"could not write {final.name} in {directory}: {exc.strerror or exc}; {kept}. "
            "Free some space and continue with --resume."
        ) from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fault_point("checkpoint.publish")
    write_json_atomic(directory / LATEST, {"checkpoint": final.name})
    for stale in checkpoints(directory)[max(1, keep) :]:
        # renamed first (atomic), deleted second: a kill in between leaves no half checkpoint
        trash = Path(tempfile.mkdtemp(dir=directory, prefix=_TRASH_PREFIX))
        stale.rename(trash / stale.name)
        fault_point("checkpoint.prune")
        shutil.rmtree(trash, ignore_errors=True)
    clean_stale(directory)
    return final


def latest_checkpoint(directory: Path) -> Path | None:
    """The checkpoint ``latest`` points to, or ``None`` when there is none."""
    pointer = directory / LATEST
    if not pointer.is_file():
        return None
    try:
        path = directory / json.loads(pointer.read_text(encoding="utf-8"))["checkpoint"]
    except (ValueError, KeyError, TypeError):
        return None
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


def load_checkpoint(path: Path, verify: bool = True) -> Checkpoint:
    """Read a checkpoint; with ``verify``, every file must match the SHA-256 recorded when
    it was written (a :class:`CheckpointError` says which does not)."""
    try:
        data = json.loads((path / "state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: state.json is unreadable ({exc})") from exc
    if verify:
        for name, want in (data.get("sha256") or {}).items():
            if not (path / name).is_file():
                raise CheckpointError(f"{path}: {name} is missing")
            if sha256_file(path / name) != want:
                raise CheckpointError(f"{path}: {name} does not match its checksum (damaged or altered)")
    try:
        return Checkpoint(
            path=path,
            model=load_file(str(path / "model.safetensors")),
            optimizer=torch.load(path / "optimizer.pt", weights_only=True),
            scheduler=torch.load(path / "scheduler.pt", weights_only=True),
            state=TrainState(**data["train"]),
            rng_meta=data["rng"],
            rng_tensors=load_file(str(path / "rng.safetensors")),
        )
    except (OSError, RuntimeError, ValueError, KeyError, TypeError) as exc:
        # checkpoints from before checksums, or a file damaged so that it no longer parses
        raise CheckpointError(f"{path}: cannot be read ({type(exc).__name__}: {exc})") from exc


def resume_checkpoint(
    directory: Path, warn: Callable[[str], None] = print, clean: bool = True
) -> Checkpoint | None:
    """The newest checkpoint in ``directory`` that reads back intact, or ``None`` when there
    are none. The one ``latest`` points to is tried first; a damaged one is reported
    through ``warn`` and the next older one is tried. ``clean`` first removes what a killed
    write left behind (:func:`clean_stale`). Raises :class:`CheckpointError`
    when checkpoints exist but none is readable.

    Example:
        >>> ckpt = resume_checkpoint(Path("out/checkpoints"))  # doctest: +SKIP
        >>> ckpt.state.epoch  # doctest: +SKIP
        3
    """
    directory = Path(directory)
    if clean:  # under several processes only the main one, which writes, removes anything
        clean_stale(directory)
    pointed = latest_checkpoint(directory)
    candidates = checkpoints(directory)
    if pointed is not None:
        # a checkpoint newer than the pointer was renamed into place by a run killed before
        # it moved the pointer: complete, but the pointer is the record of what was finished
        candidates = [pointed] + [c for c in candidates if _epoch_of(c) < _epoch_of(pointed)]
    problems = []
    for candidate in candidates:
        try:
            ckpt = load_checkpoint(candidate)
        except CheckpointError as exc:
            problems.append(str(exc))
            warn(f"checkpoint {candidate.name} is damaged: {exc}; trying the one before it")
            continue
        return ckpt
    if problems:
        raise CheckpointError(
            f"no readable checkpoint in {directory}: "
            + "; ".join(problems)
            + ". Start again without --resume."
        )
    return None


def save_weights_atomic(model: torch.nn.Module, path: Path) -> None:
    """Save only the weights (the best model so far) with the same atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.fchmod(fd, _umask_mode())
    os.close(fd)
    try:
        save_file(_state_dict_for_save(model), tmp)
        fault_point("train.best")
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise CheckpointError(
            f"could not write {path}: {exc.strerror or exc}; the previous file is intact. "
            "Free some space and continue with --resume."
        ) from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
