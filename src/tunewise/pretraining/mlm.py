"""Masked-language-model pretraining pieces: packed sequences, (whole-word) masking, and a
model that computes the output layer only where it is needed.

Two things make MLM pretraining affordable on two CPU cores:
- packing: documents are concatenated and cut into full-length blocks, so no compute
  is spent on padding;
- the vocabulary projection (hidden -> vocab, the largest matrix product in a small
  BERT) runs only at the ~15% masked positions instead of at every token.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import torch
from accelerate import Accelerator
from accelerate.utils import send_to_device
from torch import nn
from torch.utils.data import DataLoader, Dataset
from transformers import BertForMaskedLM, PreTrainedTokenizerBase

from tunewise.models.tokenization import quiet_transformers


@dataclass
class PackedSequence:
    ids: list[int]
    word_starts: list[bool]  # True where a new word begins (whole-word masking unit)


def pack_documents(
    documents: list[str],
    tokenizer: PreTrainedTokenizerBase,
    max_length: int = 128,
    whole_word: bool = False,
    batch_size: int = 2000,
) -> list[PackedSequence]:
    """Tokenize, concatenate with [SEP] between documents, and cut into full blocks.

    With ``whole_word`` the word boundaries come from jieba, so all characters of a
    Chinese word are masked together (as in Chinese BERT-wwm); otherwise every CJK
    character and every WordPiece word is its own unit.

    Example:
        >>> from tunewise.models.tokenization import train_bert_vocab
        >>> tok = train_bert_vocab(["今天天气很好", "我们去公园"], vocab_size=50, min_frequency=1)
        >>> [len(s.ids) for s in pack_documents(["今天天气很好", "我们去公园"], tok, max_length=8)]
        [8, 8]
    """
    cls_id, sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
    block = max_length - 2
    stream: list[int] = []
    starts: list[bool] = []
    if whole_word:
        import jieba

        jieba.setLogLevel(60)  # jieba announces its dictionary loading on stderr
    else:
        # a token starts a word unless it is a WordPiece continuation: looked up by id, not by
        # converting every id back to its string (half of the packing time on a large corpus)
        word_start = [True] * len(tokenizer)
        for token, i in tokenizer.get_vocab().items():
            word_start[i] = not token.startswith("##")
    for begin in range(0, len(documents), batch_size):
        docs = documents[begin : begin + batch_size]
        with quiet_transformers():
            enc = tokenizer(docs, add_special_tokens=False, return_offsets_mapping=whole_word)
        offsets_of = enc["offset_mapping"] if whole_word else [None] * len(docs)
        for doc, ids, offsets in zip(docs, enc["input_ids"], offsets_of, strict=True):
            if not ids:
                continue
            if whole_word:
                bounds, pos = set(), 0
                for word in jieba.cut(doc):
                    bounds.add(pos)
                    pos += len(word)
                flags = [start in bounds for start, _ in offsets]
            else:
                flags = [word_start[i] for i in ids]
            stream.extend(ids)
            starts.extend(flags)
            stream.append(sep_id)
            starts.append(True)
    sequences = []
    for i in range(0, len(stream), block):
        ids = stream[i : i + block]
        flags = starts[i : i + block]
        if len(ids) < min(8, block):  # a stub left at the end: too little to mask
            continue
        sequences.append(PackedSequence([cls_id, *ids, sep_id], [True, *flags, True]))
    return sequences


class PackedDataset(Dataset):
    def __init__(self, sequences: list[PackedSequence]) -> None:
        self.sequences = sequences

    def __len__(self) -> int:
        return len(self.sequences)

    def __getitem__(self, i: int) -> tuple[int, PackedSequence]:
        return i, self.sequences[i]


class MaskingCollator:
    """BERT masking: ``probability`` of the words chosen; of their tokens 80% become [MASK],
    10% a random token, 10% stay. Seeded by (seed, epoch, sequence): reproducible."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, probability: float = 0.15, seed: int = 0) -> None:
        self.mask_id = tokenizer.mask_token_id
        self.pad_id = tokenizer.pad_token_id or 0
        self.special = set(tokenizer.all_special_ids)
        self.vocab_size = len(tokenizer)
        self.probability = probability
        self.seed = seed
        self.epoch = 0

    def use_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def mask(self, seq: PackedSequence, rng: random.Random) -> tuple[list[int], list[int]]:
        ids = list(seq.ids)
        words: list[list[int]] = []
        for pos, (tok, start) in enumerate(zip(ids, seq.word_starts, strict=True)):
            if tok in self.special:
                continue
            if start or not words:
                words.append([pos])
            else:
                words[-1].append(pos)
        rng.shuffle(words)
        budget = max(1, round(len(ids) * self.probability))
        labels = [-100] * len(ids)
        chosen = 0
        for word in words:
            if chosen >= budget:
                break
            for pos in word:
                labels[pos] = ids[pos]
                r = rng.random()
                if r < 0.8:
                    ids[pos] = self.mask_id
                elif r < 0.9:
                    ids[pos] = rng.randrange(self.vocab_size)
            chosen += len(word)
        return ids, labels

    def __call__(self, batch: list[tuple[int, PackedSequence]]) -> dict[str, torch.Tensor]:
        width = max(len(seq.ids) for _, seq in batch)
        input_ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(batch), width), -100, dtype=torch.long)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        for row, (index, seq) in enumerate(batch):
            ids, labs = self.mask(seq, random.Random(f"{self.seed}-{self.epoch}-{index}"))
            input_ids[row, : len(ids)] = torch.tensor(ids)
            labels[row, : len(ids)] = torch.tensor(labs)
            attention[row, : len(ids)] = 1
        index = torch.tensor([index for index, _ in batch], dtype=torch.long)
        return {"input_ids": input_ids, "attention_mask": attention, "labels": labels, "index": index}


@dataclass
class MaskedLMOutput:
    loss: torch.Tensor
    logits: torch.Tensor  # (masked positions, vocab)
    targets: torch.Tensor  # (masked positions,)


class MaskedLMModel(nn.Module):
    """A ``BertForMaskedLM`` whose vocabulary projection runs only at masked positions.

    Wrapping (rather than calling ``mlm.bert`` and ``mlm.cls`` from the loop) keeps it one
    ``forward``, which is what DistributedDataParallel needs to synchronise gradients.
    """

    def __init__(self, mlm: BertForMaskedLM) -> None:
        super().__init__()
        self.mlm = mlm

    def forward(self, input_ids, attention_mask, labels) -> MaskedLMOutput:
        hidden = self.mlm.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        where = labels != -100
        logits = self.mlm.cls(hidden[where])
        targets = labels[where]
        return MaskedLMOutput(nn.functional.cross_entropy(logits.float(), targets), logits, targets)


class MaskedLMTask:
    """Masked-language-model loss; dev metrics are held-out MLM loss and masked accuracy."""

    metric = "masked_accuracy"
    logged = ("loss", "masked_accuracy", "perplexity")

    def to(self, device: torch.device) -> MaskedLMTask:
        return self

    def train_loss(self, model: nn.Module, batch: dict) -> tuple[torch.Tensor, int]:
        batch.pop("index", None)
        out = model(**batch)
        return out.loss, int(out.targets.numel())

    @torch.no_grad()
    def evaluate(self, accelerator: Accelerator, model: nn.Module, loader: DataLoader) -> dict:
        model = accelerator.unwrap_model(model)  # see ClassificationTask.evaluate
        model.eval()
        totals = torch.zeros(3, device=accelerator.device)  # loss sum, correct, count
        for batch in loader:
            if batch is None:  # an empty slice (tunewise.training.distributed)
                continue
            batch.pop("index", None)
            out = model(**send_to_device(batch, accelerator.device))
            n = out.targets.numel()
            totals += torch.tensor(
                [out.loss.item() * n, (out.logits.argmax(-1) == out.targets).sum().item(), n],
                device=accelerator.device,
            )
        loss_sum, correct, count = accelerator.reduce(totals, reduction="sum").tolist()
        loss = loss_sum / max(1, count)
        return {
            "loss": loss,
            "masked_accuracy": correct / max(1, count),
            "perplexity": math.exp(min(loss, 50)),
            "masked_tokens": int(count),
        }
