"""Tokenizers: BERT-compatible vocabularies built from text, typed tokens, [UNK] rates.

Chinese BERT tokenizers split every CJK character into its own token and use WordPiece
for Latin script and digits; vocabularies we build follow the same rules so a model
trained here loads with ``BertTokenizer`` in any tool.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from pathlib import Path

from tokenizers import BertWordPieceTokenizer
from transformers import BertTokenizer, PreTrainedTokenizerBase

from tunewise.data.normalize import TYPED_TOKENS

BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def train_bert_vocab(
    texts: Iterable[str], vocab_size: int = 8000, min_frequency: int = 2, lowercase: bool = True
) -> BertTokenizer:
    """Build a WordPiece vocabulary (CJK characters kept whole) and return a ``BertTokenizer``.

    Example:
        >>> tok = train_bert_vocab(["请加微信领取红包", "您的快递到了"] * 5, vocab_size=100)
        >>> tok.tokenize("加微信[URL]")
        ['加', '微', '信', '[URL]']
    """
    wp = BertWordPieceTokenizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=False, lowercase=lowercase
    )
    wp.train_from_iterator(
        texts,
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=BERT_SPECIALS + list(TYPED_TOKENS),
        show_progress=False,
    )
    with tempfile.TemporaryDirectory() as tmp:
        wp.save_model(tmp)
        tokenizer = BertTokenizer.from_pretrained(tmp, do_lower_case=lowercase)
    ensure_typed_tokens(tokenizer)
    return tokenizer


def ensure_typed_tokens(tokenizer: PreTrainedTokenizerBase) -> int:
    """Make the normaliser's typed tokens atomic; returns how many new ids were added.

    Tokens already in the vocabulary keep their id; missing ones get new ids, after which
    the model's embedding matrix must be resized.
    """
    before = len(tokenizer)
    tokenizer.add_tokens(list(TYPED_TOKENS), special_tokens=True)
    return len(tokenizer) - before


def unk_rate(tokenizer: PreTrainedTokenizerBase, texts: list[str], sample: int = 2000) -> float:
    """Fraction of tokens that are [UNK] over (a sample of) ``texts``.

    A high rate means the tokenizer does not fit the data: a vocabulary for traditional
    characters on simplified text, or an English model on Chinese.
    """
    unk = tokenizer.unk_token_id
    if unk is None or not texts:
        return 0.0
    step = max(1, len(texts) // sample)
    ids = tokenizer(texts[::step], add_special_tokens=False)["input_ids"]
    total = sum(len(x) for x in ids)
    return sum(x.count(unk) for x in ids) / total if total else 0.0


def save_tokenizer(tokenizer: PreTrainedTokenizerBase, directory: str | Path) -> None:
    tokenizer.save_pretrained(str(directory))
