"""Cross-request batching for the service: requests that arrive together share one forward pass.

A model scores 64 messages in one pass far faster than in 64 passes (the matrix products
use the cores well; per-call overhead is paid once). Requests to ``tunewise serve`` come one
message at a time from many clients, so a single worker thread takes *every* request
waiting in the queue, scores them as one batch, and hands each caller its own results.

The batching is greedy: nothing waits on purpose. While one batch is being scored the next
requests queue up, and they form the next batch — so a lone client sees no added latency,
and under load the batch grows with the load (up to ``max_batch`` texts). Work that must
run alone (occlusion explanations, which score hundreds of variants) goes through
:meth:`MicroBatcher.call` on the same thread, so there is still one forward pass at a time.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from tunewise.inference import Prediction, Predictor


@dataclass
class _Job:
    texts: list[str] = field(default_factory=list)
    fn: Callable[[Predictor], Any] | None = None  # run alone instead of batching texts
    future: Future = field(default_factory=Future)


@dataclass
class BatchStats:
    """Counters since start: how well requests were coalesced."""

    requests: int = 0
    texts: int = 0
    batches: int = 0
    largest_batch: int = 0  # texts

    def as_dict(self) -> dict:
        return {
            "requests": self.requests,
            "texts": self.texts,
            "batches": self.batches,
            "largest_batch": self.largest_batch,
            "requests_per_batch": round(self.requests / self.batches, 2) if self.batches else None,
        }


class MicroBatcher:
    """Score concurrent ``predict`` calls together on one worker thread.

    Example:
        >>> batcher = MicroBatcher(Predictor("runs/demo/model"))  # doctest: +SKIP
        >>> batcher.predict(["您的快递已到驿站"])[0].label  # doctest: +SKIP
        'normal'
        >>> batcher.close()  # doctest: +SKIP
    """

    def __init__(self, predictor: Predictor, max_batch: int = 128) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self.predictor = predictor
        self.max_batch = max_batch
        self.stats = BatchStats()
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="tunewise-batcher", daemon=True)
        self._thread.start()

    def predict(self, texts: list[str]) -> list[Prediction]:
        """Predictions for ``texts``, scored together with whatever else is waiting."""
        if not texts:
            return []
        return self._submit(_Job(texts=list(texts)))

    def call(self, fn: Callable[[Predictor], Any]) -> Any:
        """``fn(predictor)`` on the worker thread, alone (no other forward pass meanwhile)."""
        return self._submit(_Job(fn=fn))

    def close(self) -> None:
        """Finish what is queued, then stop the worker."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._thread.join(timeout=60)

    def _submit(self, job: _Job) -> Any:
        if self._closed:
            raise RuntimeError("the batcher is closed")
        self._queue.put(job)
        return job.future.result()

    def _run(self) -> None:
        held: _Job | None = None  # taken from the queue but not part of the current batch
        while True:
            job = held if held is not None else self._queue.get()
            held = None
            if job is None:
                return
            if job.fn is not None:
                _settle(job, job.fn, self.predictor)
                continue
            batch, size = [job], len(job.texts)
            # take everything already waiting, up to max_batch texts; never wait for more
            while size < self.max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None or nxt.fn is not None or size + len(nxt.texts) > self.max_batch:
                    held = nxt
                    break
                batch.append(nxt)
                size += len(nxt.texts)
            self._score(batch, size)

    def _score(self, batch: list[_Job], size: int) -> None:
        texts = [t for job in batch for t in job.texts]
        try:
            results = self.predictor.predict(texts)
        except Exception:  # noqa: BLE001 - one request's failure must not fail the others
            for job in batch:
                _settle(job, lambda p, j=job: p.predict(j.texts), self.predictor)
        else:
            start = 0
            for job in batch:
                job.future.set_result(results[start : start + len(job.texts)])
                start += len(job.texts)
        self.stats.requests += len(batch)
        self.stats.texts += size
        self.stats.batches += 1
        self.stats.largest_batch = max(self.stats.largest_batch, size)


def _settle(job: _Job, fn: Callable[[Predictor], Any], predictor: Predictor) -> None:
    try:
        job.future.set_result(fn(predictor))
    except BaseException as e:  # noqa: BLE001 - handed to the waiting caller, who re-raises it
        job.future.set_exception(e)
