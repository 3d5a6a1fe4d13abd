"""Batches: length-bucketed, dynamically padded, augmented on the fly (training only).

SMS lengths vary from 10 to 500+ characters. Padding every batch to the longest message
in the data set wastes most of the compute; sorting messages of similar length into the
same batch (within shuffled buckets, so the order still varies per epoch) and padding
each batch only to its own longest message keeps it low.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset
from transformers import PreTrainedTokenizerBase

from tunewise.data.augment import TextAugmenter


class TextDataset(Dataset):
    """``(index, text, label_id)`` triples; the index seeds per-example augmentation."""

    def __init__(self, texts: list[str], label_ids: list[int] | None = None) -> None:
        if label_ids is not None and len(label_ids) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(label_ids)} labels")
        self.texts = texts
        self.label_ids = label_ids

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, i: int) -> tuple[int, str, int]:
        return i, self.texts[i], -100 if self.label_ids is None else self.label_ids[i]


class LengthBucketBatchSampler:
    """Yields batches of indices of similar length; shuffled per epoch, reproducibly.

    Example:
        >>> s = LengthBucketBatchSampler([5, 50, 6, 49], batch_size=2, seed=0)
        >>> sorted(sorted(b) for b in s)
        [[0, 2], [1, 3]]
    """

    def __init__(
        self,
        lengths: list[int],
        batch_size: int,
        seed: int = 0,
        shuffle: bool = True,
        bucket_batches: int = 50,
    ) -> None:
        self.lengths = np.asarray(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.bucket = batch_size * bucket_batches
        self.epoch = 0

    def use_epoch(self, epoch: int) -> None:
        """Select the epoch whose shuffle to produce (so a resumed run repeats it exactly)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(len(self.lengths) / self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        n = len(self.lengths)
        if not self.shuffle:
            order = np.argsort(self.lengths, kind="stable")
            for i in range(0, n, self.batch_size):
                yield order[i : i + self.batch_size].tolist()
            return
        rng = np.random.default_rng([self.seed, self.epoch])
        perm = rng.permutation(n)
        batches = []
        for start in range(0, n, self.bucket):
            chunk = perm[start : start + self.bucket]
            chunk = chunk[np.argsort(self.lengths[chunk], kind="stable")]
            batches.extend(
                chunk[i : i + self.batch_size].tolist() for i in range(0, len(chunk), self.batch_size)
            )
        for j in rng.permutation(len(batches)):
            yield batches[j]


class Collator:
    """Augments (if asked), tokenizes and pads one batch to its own longest text."""

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        max_length: int,
        augmenter: TextAugmenter | None = None,
        seed: int = 0,
    ) -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.augmenter = augmenter
        self.seed = seed
        self.epoch = 0

    def use_epoch(self, epoch: int) -> None:
        """Augment as in ``epoch`` (so a resumed run repeats it exactly)."""
        self.epoch = epoch

    def __call__(self, batch: list[tuple[int, str, int]]) -> dict[str, torch.Tensor]:
        texts = []
        for index, text, _ in batch:
            if self.augmenter is not None:
                # seeded by (seed, epoch, example): the same on resume and in any worker
                text = self.augmenter(text, random.Random(f"{self.seed}-{self.epoch}-{index}"))
            texts.append(text)
        enc = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        out = dict(enc)
        out["labels"] = torch.tensor([label for _, _, label in batch], dtype=torch.long)
        out["index"] = torch.tensor([index for index, _, _ in batch], dtype=torch.long)
        return out
