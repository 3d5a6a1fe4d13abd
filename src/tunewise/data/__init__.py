"""Data: loading, normalisation, augmentation, splitting.

The names below are imported when first used: the command line checks its arguments
through :mod:`tunewise.data.loading` and :mod:`tunewise.data.encoding` alone, before paying
for the normaliser's expressions or for numpy and scikit-learn (:mod:`tunewise.data.prepare`).
"""

from __future__ import annotations

import importlib

_LAZY = {
    "DataError": "loading",
    "Example": "loading",
    "LabelMap": "loading",
    "LoadResult": "loading",
    "Problem": "loading",
    "load_data": "loading",
    "NormalizerConfig": "normalize",
    "SmsNormalizer": "normalize",
    "DataReport": "prepare",
    "PreparedData": "prepare",
    "prepare_data": "prepare",
    "split_off": "prepare",
    "subsample": "prepare",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"tunewise.data.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'tunewise.data' has no attribute {name!r}")


__all__ = sorted(_LAZY)
