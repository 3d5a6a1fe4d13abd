"""The text track: SMS (or any short text) through the normaliser and a tokenizer.

What only text has lives here: the normaliser, the tokenizer (a pretrained one, or a
vocabulary built from the training texts for TextCNN), the [UNK] audit, domain-adaptive
pretraining of the encoder before fine-tuning, and length-bucketed batches that pad each
batch to its own longest message.

Example:
    >>> from tunewise.tracks import get_track
    >>> track = get_track("text")
    >>> built = track.build(opts, data, None, Console())  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from rich.console import Console
from torch.utils.data import DataLoader

from tunewise.data.augment import TextAugmenter
from tunewise.data.loading import DataError, Example
from tunewise.data.normalize import SmsNormalizer
from tunewise.data.prepare import PreparedData, prepare_data
from tunewise.model_dir import TOKENIZER_CONFIG_FILE
from tunewise.recipes.schema import Recipe
from tunewise.tracks import Built
from tunewise.training.batching import Collator, LengthBucketBatchSampler, TextDataset
from tunewise.training.loop import FitResult, classification_task, fit

if TYPE_CHECKING:
    from tunewise.training.run import TrainOptions

#: more [UNK] than this in the training texts: the tokenizer does not fit the text
UNK_WARNING = 0.05


class TextTrack:
    """Texts: normalised, tokenized, length-bucketed."""

    name = "text"

    def prepare(self, opts: TrainOptions) -> PreparedData:
        """``prepare_data`` with the run's normaliser, split and columns."""
        return prepare_data(
            opts.data,
            normalizer=SmsNormalizer(opts.normalizer),
            fractions=opts.split,
            seed=opts.seed if opts.split_seed is None else opts.split_seed,
            text_column=opts.text_column,
            label_column=opts.label_column,
            label_map=opts.label_map,
            audit=opts.audit,
        )

    def build(
        self, opts: TrainOptions, data: PreparedData, resume_dir: Path | None, console: Console
    ) -> Built:
        """The recipe's model and tokenizer; the [UNK] rate of the training texts is reported."""
        from tunewise.models.build import build_model
        from tunewise.models.tokenization import unk_rate

        recipe = opts.recipe
        built = build_model(
            recipe.model,
            data.labels,
            pretrained=encoder_for(opts, data, console),
            train_texts=data.texts("train"),
            trust_remote_code=opts.trust_remote_code,
        )
        tokenizer = built.tokenizer
        resumable = resume_dir is not None and (resume_dir / TOKENIZER_CONFIG_FILE).is_file()
        if resumable and recipe.model.architecture == "textcnn" and opts.pretrained is None:
            from transformers import AutoTokenizer

            # the vocabulary was built from the training texts when the run started; reuse it
            tokenizer = AutoTokenizer.from_pretrained(str(resume_dir))
        rate = unk_rate(tokenizer, data.texts("train"))
        notes = [*built.notes, f"[UNK] rate of the training texts under this tokenizer: {rate:.2%}"]
        warnings = []
        if rate > UNK_WARNING:
            warnings.append(
                f"more than {UNK_WARNING:.0%} of tokens are [UNK]; the tokenizer does not fit this "
                "text (traditional vs simplified? an English vocabulary?)"
            )
        meta = {"normalizer": opts.normalizer.to_dict(), "max_length": recipe.model.max_length}
        return Built(built.model, tokenizer, built.source, notes, meta, warnings)

    def loaders(
        self,
        built: Built,
        train: list[Example],
        select: list[Example],
        labels: list[str],
        recipe: Recipe,
        seed: int,
    ) -> tuple[DataLoader, DataLoader]:
        return text_loaders(built.inputs, as_split(train, labels), as_split(select, labels), recipe, seed)

    def save(self, built: Built, out: Path) -> None:
        from tunewise.models.tokenization import save_tokenizer

        save_tokenizer(built.inputs, out)

    def logits(self, model_dir: Path, examples: list[Example]) -> np.ndarray:
        """Over-long texts truncated, as the dev scores that chose the epoch were."""
        from tunewise.inference import Predictor

        predictor = Predictor(model_dir, calibrated=False, long_text="truncate")
        logits, _ = predictor.piece_logits([e.text for e in examples])
        return logits


@dataclass
class TextSplit:
    """Normalised texts and integer labels of one split."""

    texts: list[str]
    label_ids: list[int]


def as_split(examples: list[Example], labels: list[str]) -> TextSplit:
    """The texts and label ids of ``examples``.

    Example:
        >>> as_split([Example("您好", "normal", "a.csv", 2)], ["fraud", "normal"])
        TextSplit(texts=['您好'], label_ids=[1])
    """
    index = {lab: i for i, lab in enumerate(labels)}
    return TextSplit([e.text for e in examples], [index[e.label] for e in examples])


def text_loaders(
    tokenizer, train: TextSplit, dev: TextSplit, recipe: Recipe, seed: int = 0
) -> tuple[DataLoader, DataLoader]:
    """Length-bucketed loaders: ``train`` shuffled and augmented by the recipe, ``dev`` as is.

    Example:
        >>> train_loader, dev_loader = text_loaders(tok, train, dev, load_recipe("scratch"))  # doctest: +SKIP
    """
    augmenter = TextAugmenter(recipe.augmentation) if recipe.augmentation != "none" else None
    train_loader = DataLoader(
        TextDataset(train.texts, train.label_ids),
        batch_sampler=LengthBucketBatchSampler([len(t) for t in train.texts], recipe.batch_size, seed),
        collate_fn=Collator(tokenizer, recipe.model.max_length, augmenter, seed),
    )
    dev_loader = DataLoader(
        TextDataset(dev.texts, dev.label_ids),
        batch_sampler=LengthBucketBatchSampler(
            [len(t) for t in dev.texts], recipe.eval_batch_size, shuffle=False
        ),
        collate_fn=Collator(tokenizer, recipe.model.max_length),
    )
    return train_loader, dev_loader


def fit_classifier(
    model: torch.nn.Module,
    tokenizer,
    train: TextSplit,
    dev: TextSplit,
    recipe: Recipe,
    work_dir: str | Path,
    *,
    labels: list[str],
    seed: int = 0,
    **options,
) -> FitResult:
    """``fit`` for text classification from texts in memory (no data files, nothing saved
    but checkpoints): what benchmarks and tests that train many small models use.

    Example:
        >>> fit_classifier(model, tok, TextSplit(texts, ids), TextSplit(dev_texts, dev_ids),
        ...                load_recipe("scratch"), "runs/x", labels=["normal", "fraud"])  # doctest: +SKIP
    """
    train_loader, dev_loader = text_loaders(tokenizer, train, dev, recipe, seed)
    task = classification_task(train.label_ids, dev.label_ids, recipe, labels)
    return fit(model, train_loader, dev_loader, recipe, work_dir, task=task, seed=seed, **options)


def encoder_for(opts: TrainOptions, data: PreparedData, console: Console) -> str | None:
    """The encoder a run starts from: ``opts.pretrained``, or, when the recipe has a
    ``domain_adaptation`` stage, that encoder after masked-LM training on the training texts.

    Example:
        >>> encoder_for(opts, data, Console())  # doctest: +SKIP
        'runs/sms.encoders/dapt-3f2a…'
    """
    spec = opts.recipe.domain_adaptation
    if spec is None:
        return opts.pretrained
    from tunewise.pretrained import resolve_pretrained
    from tunewise.pretraining.adapt import domain_adapt

    encoder = resolve_pretrained(opts.pretrained)
    if encoder is None:
        raise DataError("domain adaptation needs a pretrained encoder; give --pretrained")
    cache = opts.encoder_cache or Path(opts.out).with_name(Path(opts.out).name + ".encoders")
    adapted = domain_adapt(
        spec,
        encoder,
        data.unlabelled_texts,
        seed=opts.seed,
        cache_dir=cache,
        console=console,
        show_progress=opts.show_progress,
    )
    return str(adapted)
