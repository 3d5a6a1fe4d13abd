"""Domain-adaptive pretraining as a recipe stage (ULMFiT's middle step).

A recipe with ``domain_adaptation`` first continues masked-language-model training of its
pretrained encoder on the run's training texts (labels unused), then fine-tunes the adapted
encoder. The adapted encoder depends only on the encoder, the texts, the settings and the
seed, so it is cached under a key made of those: the runs of a comparison at every label
fraction share one per seed instead of each repeating the same minutes of pretraining.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from rich.console import Console

from tunewise.errors import DataError
from tunewise.model_dir import has_weights
from tunewise.recipes.schema import DomainAdaptationSpec

CORPUS_FILE = "corpus.txt"


def adaptation_key(spec: DomainAdaptationSpec, encoder: str, texts: list[str], seed: int) -> str:
    """A short hash naming one adapted encoder.

    Example:
        >>> spec = DomainAdaptationSpec()
        >>> adaptation_key(spec, "a", ["x"], 0) == adaptation_key(spec, "a", ["x"], 0)
        True
        >>> adaptation_key(spec, "a", ["x"], 0) == adaptation_key(spec, "a", ["x"], 1)
        False
    """
    h = hashlib.sha256()
    h.update(json.dumps([spec.model_dump(mode="json"), str(encoder), seed], sort_keys=True).encode())
    for text in texts:
        h.update(text.encode())
        h.update(b"\x00")
    return h.hexdigest()[:16]


def domain_adapt(
    spec: DomainAdaptationSpec,
    encoder: str,
    texts: list[str],
    *,
    seed: int,
    cache_dir: str | Path,
    console: Console | None = None,
    show_progress: bool = False,
) -> Path:
    """The directory of ``encoder`` after ``spec.epochs`` of masked-LM training on ``texts``.

    Reuses a finished adaptation with the same key in ``cache_dir``; an interrupted one
    resumes from its checkpoint.

    Example:
        >>> d = domain_adapt(DomainAdaptationSpec(), "tunewise-mini-zh", train_texts, seed=0,
        ...                  cache_dir="runs/encoders")  # doctest: +SKIP
    """
    from tunewise.pretraining.run import CARD_JSON, PretrainOptions, pretrain
    from tunewise.training.checkpoint import has_checkpoint

    console = console or Console(stderr=True)
    if not texts:
        raise DataError("domain adaptation needs training texts; the training split is empty")
    target = Path(cache_dir) / f"adapted-{adaptation_key(spec, encoder, texts, seed)}"
    if (target / CARD_JSON).is_file() and has_weights(target):
        console.print(f"domain-adapted encoder: reusing {target}")
        return target
    target.mkdir(parents=True, exist_ok=True)
    corpus = target / CORPUS_FILE
    corpus.write_text("\n".join(t.replace("\n", " ") for t in texts), encoding="utf-8")
    console.print(
        f"domain-adaptive pretraining: {spec.epochs} epoch(s) of masked-LM training of {encoder} "
        f"on {len(texts):,} training texts (labels unused) → {target}"
    )
    pretrain(
        PretrainOptions(
            out=target,
            corpus_files=[corpus],
            default_corpus=False,
            from_dir=encoder,
            mask_probability=spec.mask_probability,
            epochs=spec.epochs,
            max_length=spec.max_length,
            batch_size=spec.batch_size,
            lr=spec.lr,
            seed=seed,
            resume=has_checkpoint(target / "checkpoints"),
            show_progress=show_progress,
            log_with=None,
        ),
        console=console,
    )
    # the weights are what fine-tuning needs; checkpoints and the corpus copy are not
    import shutil

    shutil.rmtree(target / "checkpoints", ignore_errors=True)
    corpus.unlink(missing_ok=True)
    return target
