"""Tokenizers: BERT-compatible vocabularies built from text, typed tokens, [UNK] rates.

Chinese BERT tokenizers split every CJK character into its own token and use WordPiece
for Latin script and digits; vocabularies we build follow the same rules so a model
trained here loads with ``BertTokenizer`` in any tool.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import transformers
from tokenizers.normalizers import BertNormalizer
from tokenizers.pre_tokenizers import BertPreTokenizer
from transformers import BertTokenizer, PreTrainedTokenizerBase

from tunewise.data.normalize import TYPED_TOKENS, split_typed_tokens
from tunewise.parallel import map_chunks

BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def _count_words(texts: Sequence[str], lowercase: bool = True) -> Counter[str]:
    """Words of ``texts`` split exactly as ``BertTokenizer`` splits them, typed tokens left out."""
    normalizer = BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=False, lowercase=lowercase
    )
    pre_tokenizer = BertPreTokenizer()
    typed = set(TYPED_TOKENS)
    words: Counter[str] = Counter()
    for text in texts:
        for piece in split_typed_tokens(text):
            if piece in typed:
                continue
            normalized = normalizer.normalize_str(piece)
            words.update(w for w, _ in pre_tokenizer.pre_tokenize_str(normalized))
    return words


def train_bert_vocab(
    texts: Iterable[str],
    vocab_size: int = 8000,
    min_frequency: int = 2,
    lowercase: bool = True,
    workers: int = 0,
) -> BertTokenizer:
    """Build a WordPiece vocabulary (CJK characters kept whole) and return a ``BertTokenizer``.

    Texts are split exactly as ``BertTokenizer`` splits them (the ``tokenizers`` BERT
    normaliser and pre-tokenizer), then the vocabulary is: special and typed tokens; every
    character seen ``min_frequency`` times, word-initial and as a ``##`` continuation (so
    any word of known characters can be spelled); then whole words by frequency up to
    ``vocab_size``. Ties are broken by the token itself, so the same texts always give the
    same ids; the trainer in ``tokenizers`` orders ties by a per-process hash seed, which
    made a resumed run see different ids than the run it resumed. ``workers`` processes
    count the words of a large corpus; the vocabulary is the same for any number of them.

    Example:
        >>> tok = train_bert_vocab(["请加微信领取红包", "您的快递到了"] * 5, vocab_size=100)
        >>> tok.tokenize("加微信[URL]")
        ['加', '微', '信', '[URL]']
    """
    words: Counter[str] = Counter()
    for counts in map_chunks(partial(_count_words, lowercase=lowercase), list(texts), workers):
        words.update(counts)
    initial: Counter[str] = Counter()
    inner: Counter[str] = Counter()
    for word, n in words.items():
        initial[word[0]] += n
        for ch in word[1:]:
            inner["##" + ch] += n
    vocab = BERT_SPECIALS + list(TYPED_TOKENS)

    def by_count(counts: Counter[str]) -> list[str]:
        return [t for t, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if n >= min_frequency]

    for token in (
        by_count(initial)
        + by_count(inner)
        + by_count(Counter({w: n for w, n in words.items() if len(w) > 1}))
    ):
        if len(vocab) >= vocab_size:
            break
        if token not in vocab:
            vocab.append(token)
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
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


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' warnings for a block where they are expected (new heads while
    loading, over-long texts while counting tokens); tunewise reports what matters itself."""
    level = transformers.logging.get_verbosity()
    bars = transformers.logging.is_progress_bar_enabled()
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()  # "Loading weights" bars: noise in a log
    try:
        yield
    finally:
        transformers.logging.set_verbosity(level)
        if bars:
            transformers.logging.enable_progress_bar()


def unk_rate(tokenizer: PreTrainedTokenizerBase, texts: list[str], sample: int = 2000) -> float:
    """Fraction of tokens that are [UNK] over (a sample of) ``texts``.

    A high rate means the tokenizer does not fit the data: a vocabulary for traditional
    characters on simplified text, or an English model on Chinese.
    """
    unk = tokenizer.unk_token_id
    if unk is None or not texts:
        return 0.0
    step = max(1, len(texts) // sample)
    with quiet_transformers():
        ids = tokenizer(texts[::step], add_special_tokens=False)["input_ids"]
    total = sum(len(x) for x in ids)
    return sum(x.count(unk) for x in ids) / total if total else 0.0


def save_tokenizer(tokenizer: PreTrainedTokenizerBase, directory: str | Path) -> None:
    """``save_pretrained`` plus, for WordPiece tokenizers, a classic ``vocab.txt``.

    transformers 5 saves only ``tokenizer.json``; tools built on earlier versions (and
    many Chinese BERT toolkits) look for ``vocab.txt``, so we write it as well.
    """
    tokenizer.save_pretrained(str(directory))
    backend = getattr(tokenizer, "backend_tokenizer", None)
    vocab_file = Path(directory) / "vocab.txt"
    if backend is not None and type(backend.model).__name__ == "WordPiece" and not vocab_file.exists():
        vocab = backend.model.get_vocab() if hasattr(backend.model, "get_vocab") else tokenizer.get_vocab()
        ordered = sorted(vocab.items(), key=lambda kv: kv[1])
        vocab_file.write_text("".join(f"{tok}\n" for tok, _ in ordered), encoding="utf-8")
