"""Data shipped inside the package: ``sms_zh.csv``, Chinese SMS written for tunewise (see
the data card ``README.md`` beside it)."""

from __future__ import annotations

from pathlib import Path

SAMPLES_DIR = Path(__file__).parent
SAMPLE_SMS = SAMPLES_DIR / "sms_zh.csv"


def sample_sms_path() -> Path:
    """Path of the embedded sample set (columns ``text``, ``label``, ``kind``).

    Example:
        >>> from tunewise.data.loading import load_data
        >>> loaded = load_data(sample_sms_path())
        >>> len(loaded.examples), sorted({e.label for e in loaded.examples})
        (1049, ['fraud', 'normal'])
    """
    return SAMPLE_SMS
