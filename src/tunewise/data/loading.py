"""Read labelled (or unlabelled) SMS from CSV, TSV, JSONL and ``label<TAB>text`` files.

Every row keeps its file and line, so each problem can be reported where a user can fix
it. Rows that cannot be used are not silently dropped: they become :class:`Problem`
entries in the :class:`LoadResult`, and the data report prints them.
"""

from __future__ import annotations

import csv
import fnmatch
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TextIO

from tunewise.data.encoding import CONTROL_CHARS, decode_bytes, read_text
from tunewise.errors import DataError

TEXT_COLUMNS = ("text", "content", "sms", "message", "msg", "body", "sentence", "短信", "内容", "文本")
LABEL_COLUMNS = ("label", "labels", "class", "category", "target", "类别", "标签", "分类")
SUPPORTED_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".txt")
# A text this long is not an SMS; it is almost always a broken quote that swallowed the
# rest of the file. Such rows are reported, not trained on.
MAX_TEXT_CHARS = 20_000


@dataclass(frozen=True)
class Example:
    """One message: its text, its label (``None`` when unlabelled) and where it came from."""

    text: str
    label: str | None
    source: str
    line: int
    # the row's other columns, in file order, when asked for (prediction passes them through)
    columns: dict[str, object] | None = field(default=None, compare=False, hash=False)

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line}"


@dataclass(frozen=True)
class Problem:
    """A row that was not used, with the reason."""

    source: str
    line: int
    reason: str

    def __str__(self) -> str:
        # line 0: the problem is a whole file (an image), not a row of one
        return (
            f"{self.source}: {self.reason}" if self.line == 0 else f"{self.source}:{self.line}: {self.reason}"
        )


@dataclass
class LoadResult:
    """Everything read from one or more files."""

    examples: list[Example] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    encodings: dict[str, str] = field(default_factory=dict)
    formats: dict[str, str] = field(default_factory=dict)

    def extend(self, other: LoadResult) -> None:
        self.examples.extend(other.examples)
        self.problems.extend(other.problems)
        self.encodings.update(other.encodings)
        self.formats.update(other.formats)


@dataclass(frozen=True)
class LabelMap:
    """Maps each source's labels onto one taxonomy.

    The YAML file is either a flat mapping ``source label -> label`` or, to combine sources
    that use the same raw label for different things, a mapping from a file-name glob to
    such a mapping. A label mapped to ``null`` drops its rows on purpose (reported).

    Example:
        >>> m = LabelMap({"*": {"0": "normal", "冒充客服服务": "fraud"}})
        >>> m.lookup("label03.csv", "冒充客服服务")
        (True, 'fraud')
    """

    rules: dict[str, dict[str, str | None]]

    @classmethod
    def from_file(cls, path: str | Path) -> LabelMap:
        import yaml  # label maps only: not on the way to a first error

        path = Path(path)
        try:
            raw = yaml.safe_load(read_text(path).text)
        except yaml.YAMLError as err:
            raise DataError(f"{path}: not valid YAML: {err}") from err
        if not isinstance(raw, dict) or not raw:
            raise DataError(f"{path}: expected a mapping of labels, found {type(raw).__name__}")
        if all(isinstance(v, dict) for v in raw.values()):
            rules = {str(k): _str_map(v, path) for k, v in raw.items()}
        elif any(isinstance(v, dict) for v in raw.values()):
            raise DataError(f"{path}: mix of per-file sections and plain label entries; use one form")
        else:
            rules = {"*": _str_map(raw, path)}
        return cls(rules)

    def lookup(self, source: str, label: str) -> tuple[bool, str | None]:
        """Return ``(known, mapped_label)`` for ``label`` read from file ``source``."""
        name = Path(source).name
        for pattern, mapping in self.rules.items():
            matches_file = fnmatch.fnmatch(name, pattern) or fnmatch.fnmatch(source, pattern)
            if matches_file and label in mapping:
                return True, mapping[label]
        return False, None


def _str_map(raw: dict, path: Path) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for key, value in raw.items():
        if value is not None and not isinstance(value, (str, int)):
            raise DataError(f"{path}: label {key!r} maps to {value!r}; expected a label or null")
        out[str(key)] = None if value is None else str(value)
    return out


def find_column(header: list[str], wanted: str | None, candidates: Iterable[str]) -> int | None:
    """Index of the column named ``wanted`` (or of the first known candidate name)."""
    normalised = [h.strip().lstrip("\ufeff").lower() for h in header]
    if wanted is not None:
        return normalised.index(wanted.lower()) if wanted.lower() in normalised else None
    for name in candidates:
        if name.lower() in normalised:
            return normalised.index(name.lower())
    return None


def _detect_format(path: Path, text: str) -> str:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        return "jsonl"
    if suffix == ".tsv":
        return "tsv"
    if suffix == ".csv":
        return "csv"
    if suffix == ".txt":
        return "label-tab-text"
    first = next((line for line in text.splitlines() if line.strip()), "")
    if first.lstrip().startswith("{"):
        return "jsonl"
    cells = first.split("\t")
    if len(cells) >= 2 and find_column(cells, None, TEXT_COLUMNS) is not None:
        return "tsv"
    if "\t" in first:
        return "label-tab-text"
    return "csv"


def load_file(
    path: str | Path,
    *,
    text_column: str | None = None,
    label_column: str | None = None,
    require_labels: bool = True,
) -> LoadResult:
    """Read one file. The format follows the suffix; ``.txt`` holds ``label<TAB>text`` lines.

    Example:
        >>> result = load_file("sms.csv")  # doctest: +SKIP
        >>> result.examples[0].where  # doctest: +SKIP
        'sms.csv:2'
    """
    path = Path(path)
    decoded = read_text(path)
    fmt = _detect_format(path, decoded.text)
    source = str(path)
    result = LoadResult()
    stream = io.StringIO(decoded.text, newline="" if fmt in ("csv", "tsv") else None)
    for item in _iter_rows(stream, fmt, source, text_column, label_column, require_labels):
        (result.problems if isinstance(item, Problem) else result.examples).append(item)
    result.encodings[source] = decoded.encoding
    result.formats[source] = fmt
    return result


def load_data(
    path: str | Path,
    *,
    text_column: str | None = None,
    label_column: str | None = None,
    label_map: LabelMap | str | Path | None = None,
    require_labels: bool = True,
) -> LoadResult:
    """Read a file or every supported file in a folder (sorted by name) into one result.

    Example:
        >>> data = load_data("../shared/data/telecom_fraud_5")  # doctest: +SKIP
        >>> sorted({e.label for e in data.examples})[:2]  # doctest: +SKIP
        ['0', '冒充客服服务']
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in SUPPORTED_SUFFIXES)
        if not files:
            raise DataError(f"{path}: folder has no data files (looked for {', '.join(SUPPORTED_SUFFIXES)})")
    else:
        files = [path]
    result = LoadResult()
    for file in files:
        result.extend(
            load_file(
                file,
                text_column=text_column,
                label_column=label_column,
                require_labels=require_labels,
            )
        )
    if label_map is not None:
        if not isinstance(label_map, LabelMap):
            label_map = LabelMap.from_file(label_map)
        result = _apply_label_map(result, label_map)
    return result


def _apply_label_map(result: LoadResult, label_map: LabelMap) -> LoadResult:
    kept: list[Example] = []
    problems = list(result.problems)
    for ex in result.examples:
        if ex.label is None:
            kept.append(ex)
            continue
        known, mapped = label_map.lookup(ex.source, ex.label)
        if not known:
            problems.append(Problem(ex.source, ex.line, f"label {ex.label!r} is not in the label map"))
        elif mapped is None:
            problems.append(Problem(ex.source, ex.line, f"label {ex.label!r} dropped by label map"))
        else:
            kept.append(Example(ex.text, mapped, ex.source, ex.line))
    return LoadResult(kept, problems, result.encodings, result.formats)


def _check_row(
    text: str | None, label: str | None, source: str, line: int, require_labels: bool
) -> Example | Problem:
    if text is None or not CONTROL_CHARS.sub("", str(text)).strip():
        return Problem(source, line, "empty text")
    text = str(text).strip()
    if len(text) > MAX_TEXT_CHARS:
        return Problem(
            source,
            line,
            f"text is {len(text):,} characters (limit {MAX_TEXT_CHARS:,}); probably an unclosed quote",
        )
    if label is not None:
        label = str(label).strip()
    if not label:
        if require_labels:
            return Problem(source, line, "missing label")
        label = None
    return Example(text, label, source, line)


class _Lines:
    """The physical lines of a stream, handed to ``csv.reader`` one at a time, with the lines of
    the current record remembered: after a record that cannot be parsed (a stray quote that
    swallows the lines after it) the lines after its first are put back and read again, so
    one broken row costs that row only."""

    def __init__(self, stream: Iterable[str]) -> None:
        self._source = iter(stream)
        self._pending: list[str] = []  # put back, in reverse order
        self.taken: list[str] = []

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        line = self._pending.pop() if self._pending else next(self._source)
        self.taken.append(line)
        return line

    def put_back_all_but_first(self) -> None:
        self._pending.extend(reversed(self.taken[1:]))
        self.taken = []


def _iter_delimited(
    stream: Iterable[str],
    source: str,
    delimiter: str,
    text_column: str | None,
    label_column: str | None,
    require_labels: bool,
    keep_columns: bool = False,
) -> Iterator[Example | Problem]:
    lines = _Lines(stream)
    reader = csv.reader(lines, delimiter=delimiter, strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise DataError(f"{source}: file is empty") from None
    except csv.Error as err:
        raise DataError(f"{source}:1: cannot parse header: {err}") from err
    text_idx = find_column(header, text_column, TEXT_COLUMNS)
    label_idx = find_column(header, label_column, LABEL_COLUMNS)
    if text_idx is None:
        wanted = repr(text_column) if text_column else "one of " + ", ".join(TEXT_COLUMNS)
        raise DataError(
            f"{source}:1: no text column: expected {wanted}, found header {header}. "
            "Name it with --text-column."
        )
    if label_idx is None and (require_labels or label_column):
        wanted = repr(label_column) if label_column else "one of " + ", ".join(LABEL_COLUMNS)
        raise DataError(
            f"{source}:1: no label column: expected {wanted}, found header {header}. "
            "Name it with --label-column."
        )
    for idx in (text_idx, label_idx):
        if idx is not None:
            same = [i + 1 for i, name in enumerate(header) if name.strip() == header[idx].strip()]
            if len(same) > 1:
                raise DataError(
                    f"{source}:1: the header names column {header[idx]!r} {len(same)} times (columns "
                    f"{', '.join(map(str, same))}); rename the duplicates so it is clear which to read"
                )
    width = len(header)
    line = len(lines.taken)
    while True:
        start = line + 1
        lines.taken = []
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as err:
            reason = f"unparseable row: {err}"
            if "field larger than field limit" in str(err):
                reason = (
                    f"a field over {csv.field_size_limit():,} characters (a text may have "
                    f"{MAX_TEXT_CHARS:,}): an unclosed quote, or not a data file"
                )
            yield Problem(source, start, reason)
            # read again from the next line: the rows after a stray quote are not lost
            lines.put_back_all_but_first()
            reader = csv.reader(lines, delimiter=delimiter, strict=True)
            line = start
            continue
        line = start + len(lines.taken) - 1
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) != width:
            yield Problem(source, start, f"expected {width} fields, found {len(row)}")
            continue
        label = row[label_idx] if label_idx is not None else None
        checked = _check_row(row[text_idx], label, source, start, require_labels)
        if len(row[text_idx]) > MAX_TEXT_CHARS and len(lines.taken) > 1:
            # a huge field over several lines: an unclosed quote; the lines it swallowed are rows
            lines.put_back_all_but_first()
            reader = csv.reader(lines, delimiter=delimiter, strict=True)
            line = start
        if keep_columns and isinstance(checked, Example):
            others = {
                name: value for i, (name, value) in enumerate(zip(header, row, strict=True)) if i != text_idx
            }
            checked = replace(checked, columns=others)
        yield checked


def _iter_jsonl(
    lines: Iterable[str],
    source: str,
    text_column: str | None,
    label_column: str | None,
    require_labels: bool,
    keep_columns: bool = False,
) -> Iterator[Example | Problem]:
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as err:
            yield Problem(source, number, f"invalid JSON: {err.msg}")
            continue
        if not isinstance(obj, dict):
            yield Problem(source, number, "expected a JSON object")
            continue
        keys = list(obj)
        t_idx = find_column(keys, text_column, TEXT_COLUMNS)
        l_idx = find_column(keys, label_column, LABEL_COLUMNS)
        if t_idx is None:
            yield Problem(source, number, f"no text field among {keys}")
            continue
        label = obj[keys[l_idx]] if l_idx is not None else None
        checked = _check_row(obj[keys[t_idx]], label, source, number, require_labels)
        if keep_columns and isinstance(checked, Example):
            checked = replace(checked, columns={k: v for k, v in obj.items() if k != keys[t_idx]})
        yield checked


def _iter_label_tab_text(
    lines: Iterable[str], source: str, require_labels: bool
) -> Iterator[Example | Problem]:
    for number, raw in enumerate(lines, start=1):
        raw = raw.rstrip("\r\n")
        if not raw.strip():
            continue
        if "\t" not in raw:
            if require_labels:
                yield Problem(source, number, "expected 'label<TAB>text'")
                continue
            label, body = None, raw
        else:
            label, body = raw.split("\t", 1)
        yield _check_row(body, label, source, number, require_labels)


def _iter_rows(
    stream: TextIO,
    fmt: str,
    source: str,
    text_column: str | None,
    label_column: str | None,
    require_labels: bool,
    keep_columns: bool = False,
) -> Iterator[Example | Problem]:
    if fmt == "jsonl":
        return _iter_jsonl(stream, source, text_column, label_column, require_labels, keep_columns)
    if fmt == "label-tab-text":
        return _iter_label_tab_text(stream, source, require_labels)
    delimiter = "\t" if fmt == "tsv" else ","
    return _iter_delimited(stream, source, delimiter, text_column, label_column, require_labels, keep_columns)


# How much of a file is read to detect its encoding and format before streaming it.
SNIFF_BYTES = 1 << 20


def data_files(path: str | Path) -> list[Path]:
    """The file itself, or every supported file in a folder, sorted by name."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    if not path.is_dir():
        return [path]
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in SUPPORTED_SUFFIXES)
    if not files:
        raise DataError(f"{path}: folder has no data files (looked for {', '.join(SUPPORTED_SUFFIXES)})")
    return files


def check_source(
    path: str | Path,
    *,
    text_column: str | None = None,
    label_column: str | None = None,
    require_labels: bool = True,
) -> None:
    """Fail fast, before anything heavy is loaded: ``path`` exists and every data file in it
    opens and has the columns asked for. Reads each file's header and first row only.

    Example:
        >>> check_source("no-such.csv")
        Traceback (most recent call last):
        ...
        FileNotFoundError: no-such.csv: no such file or folder
    """
    for file in data_files(path):
        rows = stream_file(
            file, text_column=text_column, label_column=label_column, require_labels=require_labels
        )
        next(rows, None)  # the header is checked when the first row is read
        rows.close()


def stream_data(path: str | Path, **kwargs) -> Iterator[Example | Problem]:
    """:func:`stream_file` over a file or each supported file of a folder."""
    for file in data_files(path):
        yield from stream_file(file, **kwargs)


def stream_file(
    path: str | Path,
    *,
    text_column: str | None = None,
    label_column: str | None = None,
    require_labels: bool = False,
    keep_columns: bool = False,
) -> Iterator[Example | Problem]:
    """Rows of one file, read lazily: memory stays constant however large the file is.

    The encoding and format are detected from the first MiB. Used to score files too large
    to load (``tunewise predict --input``). With ``keep_columns`` each example carries the
    row's other columns (``Example.columns``), for output that passes them through.

    Example:
        >>> rows = stream_file("huge.csv")  # doctest: +SKIP
        >>> next(rows).text  # doctest: +SKIP
        '【工商银行】...'
    """
    path = Path(path)
    with path.open("rb") as f:
        head = f.read(SNIFF_BYTES)
    # a full head may end inside a character (of any encoding, UTF-16 included)
    head_text, encoding = decode_bytes(head, source=str(path), partial=len(head) == SNIFF_BYTES)
    fmt = _detect_format(path, head_text[:65536])
    source = str(path)
    with path.open(encoding=encoding, newline="" if fmt in ("csv", "tsv") else None) as stream:
        try:
            yield from _iter_rows(
                stream, fmt, source, text_column, label_column, require_labels, keep_columns
            )
        except UnicodeDecodeError as err:
            raise DataError(
                f"{source}: not {encoding} throughout (detected from its first MiB): {err.reason} "
                f"at byte {err.start} of a later block; convert the file to UTF-8"
            ) from err
