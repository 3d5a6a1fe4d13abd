"""Data: loading, normalisation, augmentation, splitting."""

from tunewise.data.loading import DataError, Example, LabelMap, LoadResult, Problem, load_data
from tunewise.data.normalize import NormalizerConfig, SmsNormalizer

# tunewise.data.prepare needs numpy and scikit-learn; it is imported when first used, so that
# the command line can check its arguments (tunewise.data.loading) before paying for them
_LAZY = {"DataReport", "PreparedData", "prepare_data", "split_off", "subsample"}


def __getattr__(name: str):
    if name in _LAZY:
        from tunewise.data import prepare

        return getattr(prepare, name)
    raise AttributeError(f"module 'tunewise.data' has no attribute {name!r}")


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
