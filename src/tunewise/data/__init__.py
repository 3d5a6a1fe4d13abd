"""Data: loading, normalisation, augmentation, splitting."""

from tunewise.data.loading import DataError, Example, LabelMap, LoadResult, Problem, load_data
from tunewise.data.normalize import NormalizerConfig, SmsNormalizer
from tunewise.data.prepare import DataReport, PreparedData, prepare_data, split_off, subsample

__all__ = [
    "DataError",
    "DataReport",
    "Example",
    "LabelMap",
    "LoadResult",
    "NormalizerConfig",
    "PreparedData",
    "Problem",
    "SmsNormalizer",
    "load_data",
    "prepare_data",
    "split_off",
    "subsample",
]
