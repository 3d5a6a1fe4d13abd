"""Fault points: named places where a test makes tunewise die, or a write fail, on purpose.

A user kills a run wherever it happens to be; the fault-injection tests need to kill it at
*chosen* places (mid-batch, mid-evaluation, between stages, half-way through writing a
checkpoint) to prove that each of them resumes to the same weights. The code calls
:func:`fault_point` at those places. It does nothing unless the environment variable
``TUNEWISE_FAULT`` names that point:

``TUNEWISE_FAULT=checkpoint.write``
    the process sends itself SIGKILL the first time it reaches ``checkpoint.write`` (no
    handler, no ``finally``, no flush: what the OOM killer or ``kill -9`` does);
``TUNEWISE_FAULT=train.batch:7``
    ... the 7th time instead;
``TUNEWISE_FAULT=checkpoint.write:2:enospc``
    the 2nd time, the write fails with ``OSError(ENOSPC)`` ("No space left on device"), as on
    a full disk, and the program goes on to handle it.

Points (grep for ``fault_point(`` to see them in place): ``train.batch`` (after the
backward pass, before the optimizer step), ``train.eval`` (after the first dev batch),
``train.stage`` (between two stages), ``train.best`` (writing the best weights),
``checkpoint.write`` (a checkpoint's weights written, its other files not yet),
``checkpoint.publish`` (a checkpoint renamed into place, the ``latest`` pointer not yet
moved), ``checkpoint.prune`` (an old checkpoint set aside, not yet deleted),
``model.write`` (the final model directory half written), ``predict.row`` (a prediction
written) and ``export.write`` (the ONNX graph written, the export not finished).

Example:
    >>> fault_point("train.batch")  # TUNEWISE_FAULT unset: nothing happens
"""

from __future__ import annotations

import errno
import os
import signal

ENV = "TUNEWISE_FAULT"
_hits: dict[str, int] = {}


def fault_point(name: str) -> None:
    """Die (SIGKILL) or fail a write (``OSError``) here when ``TUNEWISE_FAULT`` says so."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    point, _, rest = spec.partition(":")
    if point != name:
        return
    nth, _, mode = rest.partition(":")
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] != int(nth or 1):
        return
    if mode == "enospc":
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    os.kill(os.getpid(), signal.SIGKILL)
