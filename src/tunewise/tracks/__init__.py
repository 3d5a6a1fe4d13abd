"""Tracks: what one modality (text, images) adds to the modality-neutral pipeline.

Everything that does not care what an example *is* — the recipe, the split, the labelled
fraction, the validation slice, ``training.loop.fit``, checkpoints, calibration, ``compare``
and its report — is written once. A track supplies the rest, in five steps:

=====================  ==============================================================
``prepare(opts)``      files on disk -> split, deduplicated ``PreparedData``
``build(...)``         the recipe's model, and what turns an example into its input
                       (a tokenizer; an image transform)
``loaders(...)``       the training and selection ``DataLoader`` s, augmented by recipe
``save(...)``          what inference needs besides the weights and ``tunewise.json``
``logits(...)``        a saved model's raw logits for held-out examples (calibration)
=====================  ==============================================================

A recipe names its track (``track: text``, the default); the saved model records it in
``tunewise.json``, so ``evaluate``, ``predict`` and ``serve`` pick the same track back up.
A new modality is one new module here and one entry in ``TRACKS``.

Example:
    >>> get_track("text").name
    'text'
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from rich.console import Console
from torch import nn
from torch.utils.data import DataLoader

from tunewise.errors import RecipeError

if TYPE_CHECKING:
    from tunewise.data.loading import Example
    from tunewise.data.prepare import PreparedData
    from tunewise.recipes.schema import Recipe
    from tunewise.training.run import TrainOptions


@dataclass
class Built:
    """A freshly built model and what turns one example into its input."""

    model: nn.Module
    #: the track's preprocessor: a tokenizer (text), an image transform (images)
    inputs: Any
    #: what the weights came from: a hub id, a directory or file, or "random"
    source: str
    notes: list[str] = field(default_factory=list)
    #: the track's entries in ``tunewise.json`` (normaliser and length limit; image size)
    meta: dict = field(default_factory=dict)
    #: what the user should look at before trusting the run (say, a tokenizer that misfits)
    warnings: list[str] = field(default_factory=list)
    #: ``config.json`` of a model that is not a Hugging Face one (an image CNN); a Hugging
    #: Face model writes its own
    config: dict | None = None


class Track(Protocol):
    """The interface ``training.run.train_model`` needs from a modality."""

    #: the value of a recipe's ``track`` field, recorded in ``tunewise.json``
    name: str

    def prepare(self, opts: TrainOptions) -> PreparedData:
        """Load, deduplicate and split ``opts.data`` (the data report printed by the caller)."""

    def build(
        self, opts: TrainOptions, data: PreparedData, resume_dir: Path | None, console: Console
    ) -> Built:
        """The recipe's model for ``data.labels``, seeded by the caller. ``resume_dir``: a run
        directory being resumed, whose saved preprocessor (say, a vocabulary built from the
        training texts) must be reused rather than built again."""

    def loaders(
        self,
        built: Built,
        train: list[Example],
        select: list[Example],
        labels: list[str],
        recipe: Recipe,
        seed: int,
    ) -> tuple[DataLoader, DataLoader]:
        """Batches of ``train`` (shuffled, augmented by the recipe) and of ``select`` (as is);
        each batch a dict of model inputs plus ``labels`` and ``index``."""

    def save(self, built: Built, out: Path) -> None:
        """Write what inference needs besides the weights and ``tunewise.json``."""

    def logits(self, model_dir: Path, examples: list[Example]) -> np.ndarray:
        """Raw logits ``(n, labels)`` of the saved model for ``examples``, as dev was scored."""


def _text() -> Track:
    from tunewise.tracks.text import TextTrack

    return TextTrack()


def _image() -> Track:
    from tunewise.tracks.image import ImageTrack, require_vision

    require_vision()
    return ImageTrack()


#: track name -> a factory (imported on use: the image track pulls in torchvision)
TRACKS: dict[str, Callable[[], Track]] = {"text": _text, "image": _image}


def get_track(name: str) -> Track:
    """The track a recipe names.

    Example:
        >>> get_track("audio")
        Traceback (most recent call last):
        ...
        tunewise.errors.RecipeError: no track 'audio'; tracks: text, image
    """
    if name not in TRACKS:
        raise RecipeError(f"no track {name!r}; tracks: {', '.join(TRACKS)}")
    return TRACKS[name]()


def track_of(meta: dict) -> str:
    """The track a saved model belongs to, from its ``tunewise.json`` (models saved before
    tracks existed are text).

    Example:
        >>> track_of({}), track_of({"track": "text"})
        ('text', 'text')
    """
    return str(meta.get("track", "text"))
