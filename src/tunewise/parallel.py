"""Work split across processes: the preprocessing of a large pretraining corpus
(normalising and counting tens of millions of characters) on a machine with many cores.

Results never depend on the number of workers: chunks are processed in order and returned
in order, and a run with ``workers <= 1`` does the same work in this process.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def _context() -> multiprocessing.context.BaseContext:
    # forkserver where the platform has it: a plain fork of a process that has started
    # torch's threads can deadlock, and spawn re-imports everything for every worker
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def map_chunks(
    fn: Callable[[Sequence[T]], R], items: Sequence[T], workers: int = 0, chunk_size: int = 5000
) -> list[R]:
    """``fn`` applied to consecutive chunks of ``items``, results in the chunks' order.

    ``fn`` must be picklable (a module-level function, or ``functools.partial`` of one)
    when ``workers > 1``.

    Example:
        >>> map_chunks(sum, list(range(10)), workers=0, chunk_size=4)
        [6, 22, 17]
    """
    chunks = [items[i : i + chunk_size] for i in range(0, len(items), chunk_size)]
    if workers <= 1 or len(chunks) <= 1:
        return [fn(c) for c in chunks]
    with ProcessPoolExecutor(max_workers=min(workers, len(chunks)), mp_context=_context()) as pool:
        return list(pool.map(fn, chunks))
