"""Several processes (``accelerate launch --num_processes N``), one result.

Accelerate starts the processes and DDP averages their gradients; what is left to us is
which examples each process sees. Accelerate's own loader sharding deals whole batches
round-robin and assumes every batch but the last is full, which our length-bucketed
batches are not (each bucket ends in a short batch): it would silently drop them. So
tunewise shards itself, the same way for training and evaluation:

- the loader's batch sampler still makes the *global* batch (the recipe's ``batch_size``),
  identically in every process, because its order depends only on seed and epoch;
- process ``i`` takes the ``i``-th of ``N`` near-equal slices of every global batch.

A run with N processes therefore takes exactly the optimizer steps of a one-process run
with the same recipe, on the same examples, in the same order: the recipe's batch size
means the same thing on a laptop and on eight GPUs. A training batch too small to give
every process one example is topped up by repeating its own examples (DDP needs every
process to take every step); an evaluation slice may be empty instead, and results are
gathered from every process before they are scored.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TypeVar

import numpy as np
from torch.utils.data import DataLoader

T = TypeVar("T")


class ShardedBatchSampler:
    """Process ``index``'s slice of each batch of ``batches`` (any batch sampler).

    Example:
        >>> list(ShardedBatchSampler([[0, 1, 2, 3], [4, 5, 6]], index=1, num_shards=2))
        [[2, 3], [6]]
        >>> list(ShardedBatchSampler([[7]], index=1, num_shards=2, allow_empty=False))
        [[7]]
    """

    def __init__(self, batches, index: int, num_shards: int, allow_empty: bool = True) -> None:
        if not 0 <= index < num_shards:
            raise ValueError(f"shard {index} of {num_shards} does not exist")
        self.batches = batches
        self.index = index
        self.num_shards = num_shards
        self.allow_empty = allow_empty

    def use_epoch(self, epoch: int) -> None:
        """Pass the epoch on, so the global batches are the epoch's (see ``fit``)."""
        for part in (self.batches, getattr(self.batches, "sampler", None)):
            if hasattr(part, "use_epoch"):
                part.use_epoch(epoch)

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.batches:
            batch = list(batch)
            if not self.allow_empty and len(batch) < self.num_shards:
                # every process must take the step: repeat this batch's own examples
                batch = [batch[i % len(batch)] for i in range(self.num_shards)]
            size, extra = divmod(len(batch), self.num_shards)
            start = self.index * size + min(self.index, extra)
            yield batch[start : start + size + (self.index < extra)]


def shard_loader(loader: DataLoader, index: int, num_shards: int, *, training: bool) -> DataLoader:
    """``loader`` for process ``index`` of ``num_shards``: same data, collation and workers,
    each global batch sliced (see the module docstring). One process: ``loader`` itself.

    Example:
        >>> shard_loader(loader, 0, 1, training=True) is loader  # doctest: +SKIP
        True
    """
    if num_shards == 1:
        return loader
    return DataLoader(
        loader.dataset,
        batch_sampler=ShardedBatchSampler(loader.batch_sampler, index, num_shards, allow_empty=not training),
        collate_fn=_SkipEmpty(loader.collate_fn),
        num_workers=loader.num_workers,
        pin_memory=loader.pin_memory,
    )


class _SkipEmpty:
    """A collate function that lets an empty evaluation slice through as ``None``."""

    def __init__(self, collate) -> None:
        self.collate = collate

    def use_epoch(self, epoch: int) -> None:
        if hasattr(self.collate, "use_epoch"):
            self.collate.use_epoch(epoch)

    def __call__(self, batch: list):
        return self.collate(batch) if batch else None


def is_main_process() -> bool:
    """True in the process that writes files: the only one, or rank 0 of a launched group.

    Read from the environment ``accelerate launch`` and ``torchrun`` set, so asking does not
    start a process group.

    Example:
        >>> is_main_process()
        True
    """
    return int(os.environ.get("RANK", "0")) == 0


def world_size() -> int:
    """How many processes the launcher started (1 without a launcher).

    Example:
        >>> world_size()
        1
    """
    return int(os.environ.get("WORLD_SIZE", "1"))


def process_index() -> int:
    """This process's rank (0 without a launcher).

    Example:
        >>> process_index()
        0
    """
    return int(os.environ.get("RANK", "0"))


def wait_for_everyone() -> None:
    """A barrier across the launched processes, callable before ``fit`` creates its
    Accelerator (no-op in a single process).

    Example:
        >>> wait_for_everyone()
    """
    if world_size() == 1:
        return
    import torch
    from accelerate import PartialState

    # the same device choice fit() makes, so the state it creates later agrees with this one
    PartialState(cpu=not torch.cuda.is_available()).wait_for_everyone()


def my_share(items: Iterable[T], block: int = 1) -> Iterator[T]:
    """This process's round-robin share of ``items``, dealt in blocks of ``block`` (block ``k``
    goes to process ``k mod N``). A stream stays a stream: every process reads it, each keeps
    its own. Blocks of a predictor's batch size keep every batch as one process would form it.

    Example:
        >>> list(my_share("abcde"))  # one process keeps everything
        ['a', 'b', 'c', 'd', 'e']
    """
    rank, n = process_index(), world_size()
    for k, item in enumerate(items):
        if (k // block) % n == rank:
            yield item


def gather_in_order(rows: Iterable[dict], beside: Path, block: int = 1) -> Iterator[dict] | None:
    """Every process's ``rows`` (one per item of its ``my_share(items, block)``), back in input
    order, in the main process (None in the others).

    Each process writes its rows as JSON lines to ``<beside>.rank<R>.part``; after a barrier the
    main process reads them back block by block, round-robin (the order ``my_share`` dealt
    them in), and deletes them when done. One process: ``rows`` unchanged, nothing written.

    Example:
        >>> list(gather_in_order([{"a": 1}], Path("out.jsonl")))
        [{'a': 1}]
    """
    if world_size() == 1:
        return iter(rows)
    beside = Path(beside)
    beside.parent.mkdir(parents=True, exist_ok=True)
    mine = beside.with_name(f"{beside.name}.rank{process_index()}.part")
    with mine.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    wait_for_everyone()
    if not is_main_process():
        return None
    return _merge([beside.with_name(f"{beside.name}.rank{r}.part") for r in range(world_size())], block)


def _merge(parts: list[Path], block: int) -> Iterator[dict]:
    files = [p.open(encoding="utf-8") for p in parts]
    try:
        k = 0
        while line := files[(k // block) % len(files)].readline():
            yield json.loads(line)
            k += 1
    finally:
        for f in files:
            f.close()
        for p in parts:
            p.unlink(missing_ok=True)


def local_device() -> str | None:
    """The GPU of this process under a launcher (``cuda:<LOCAL_RANK>``); None otherwise
    (the library's own choice).

    Example:
        >>> local_device() is None or local_device().startswith("cuda")
        True
    """
    import torch

    if world_size() == 1 or not torch.cuda.is_available():
        return None
    return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"


def sum_across_processes(array: np.ndarray) -> np.ndarray:
    """``array`` summed over the launched processes (each gets the sum; one process: as is).

    Example:
        >>> sum_across_processes(np.ones(2))
        array([1., 1.])
    """
    if world_size() == 1:
        return array
    import torch
    from accelerate import PartialState

    state = PartialState(cpu=not torch.cuda.is_available())
    tensor = torch.from_numpy(np.ascontiguousarray(array)).to(state.device)
    torch.distributed.all_reduce(tensor)
    return tensor.cpu().numpy()
