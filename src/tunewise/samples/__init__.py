"""Data shipped inside the package: ``sms_zh.csv``, Chinese SMS written for tunewise, and
``probe_sms.csv``, a held-out probe set never trained on (see the data card ``README.md``
beside them)."""

from __future__ import annotations

from pathlib import Path

SAMPLES_DIR = Path(__file__).parent
SAMPLE_SMS = SAMPLES_DIR / "sms_zh.csv"
PROBE_SMS = SAMPLES_DIR / "probe_sms.csv"


def sample_sms_path() -> Path:
    """Path of the embedded sample set (columns ``text``, ``label``, ``kind``).

    Example:
        >>> from tunewise.data.loading import load_data
        >>> loaded = load_data(sample_sms_path())
        >>> len(loaded.examples), sorted({e.label for e in loaded.examples})
        (5380, ['fraud', 'normal'])
    """
    return SAMPLE_SMS


def probe_sms_path() -> Path:
    """Path of the held-out probe set (columns ``text``, ``label``, ``kind``): messages of other
    brands, pretexts and styles than the sample set, for an out-of-domain check
    (``--test-data probe=PATH``); nothing trains on it.

    Example:
        >>> from tunewise.data.loading import load_data
        >>> sorted({e.label for e in load_data(probe_sms_path()).examples})
        ['fraud', 'normal']
    """
    return PROBE_SMS
