"""Labelled images from disk: ImageFolder directories or CSV/JSONL lists of ``path,label``.

Three layouts are read:

- ``root/<split>/<class>/<file>`` (torchvision's ``ImageFolder`` per split, as the
  PyTorch tutorial's ``hymenoptera_data``): the splits given are kept. ``val`` (or
  ``valid``, ``validation``, ``dev``) beside a ``test`` folder is the dev split; with no
  ``test`` folder it is the held-out test split — the set the data's authors report on —
  and the dev split that picks the epoch is carved from ``train`` instead, so that no
  figure is reported on the images that chose it.
- ``root/<class>/<file>``: one pool, split by tunewise's seeded stratified split.
- a ``.csv``/``.tsv``/``.jsonl`` file with a path column (``path``, ``image``, ``file``…;
  relative paths are relative to the file) and a label column: split the same way.

Every image is decoded once here, so a truncated JPEG, a non-image with an image's name,
or a file type tunewise does not read (``.gif``: a placeholder more often than a photo;
torchvision's ImageFolder skips it too) is reported with its path and skipped, never met
mid-training. Byte-identical files are kept once; one file under two labels is dropped.

Example:
    >>> data = prepare_images("../shared/data/hymenoptera", seed=0)  # doctest: +SKIP
    >>> {s: len(x) for s, x in data.splits.items()}  # doctest: +SKIP
    {'train': 220, 'dev': 24, 'test': 153}
"""

from __future__ import annotations

import csv
import hashlib
import json
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tunewise.data.encoding import read_text
from tunewise.data.loading import Example, LabelMap, Problem, _apply_label_map, find_column
from tunewise.data.prepare import DataReport, PreparedData, split_off
from tunewise.data.split import SPLITS, stratified_split, text_key
from tunewise.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
LIST_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json")
PATH_COLUMNS = ("path", "image", "file", "filename", "filepath", "image_path", "img")
DEV_DIRS = ("val", "valid", "validation", "dev")
# decoding more pixels than this is refused: Pillow's own decompression-bomb limit
MAX_PIXELS = 89_478_485


@dataclass
class ImageLoad:
    """Readable images (``Example.text`` is the file's path), unusable ones with the reason,
    and the split each came from when the folder had split folders."""

    examples: list[Example] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    given_split: dict[str, str] = field(default_factory=dict)  # path -> train/dev/test
    layout: str = ""


def looks_like_images(path: str | Path) -> bool:
    """True when ``path`` is a folder whose files (two levels down at most, as in
    ``split/class/file``) are mostly images, or a list whose first column is named like a path.

    Example:
        >>> looks_like_images("../shared/data/hymenoptera")  # doctest: +SKIP
        True
    """
    root = Path(path)
    if root.is_file():
        return root.suffix.lower() in LIST_SUFFIXES and _first_column(root) in PATH_COLUMNS
    if not root.is_dir():
        return False
    files = [p for pattern in ("*", "*/*", "*/*/*") for p in root.glob(pattern) if p.is_file()][:2000]
    images = sum(p.suffix.lower() in IMAGE_SUFFIXES for p in files)
    return images > 0 and images >= len(files) / 2


def _first_column(file: Path) -> str:
    try:
        with open(file, encoding="utf-8-sig", errors="replace") as f:
            first = f.readline()
    except OSError:
        return ""
    if file.suffix.lower() in (".jsonl", ".json"):
        try:
            return next(iter(json.loads(first)), "").lower()
        except (json.JSONDecodeError, TypeError, AttributeError):
            return ""
    return first.split("\t" if file.suffix.lower() == ".tsv" else ",")[0].strip().lower()


def check_image(path: Path) -> str | None:
    """Why ``path`` cannot be trained on, or ``None`` when it decodes as an image.

    Example:
        >>> import tempfile
        >>> bad = Path(tempfile.mkdtemp()) / "x.jpg"; _ = bad.write_text("not a photo")
        >>> check_image(bad)
        'not an image Pillow can read'
    """
    from PIL import Image, UnidentifiedImageError

    if path.suffix.lower() not in IMAGE_SUFFIXES:
        kind = path.suffix.lower() or "no suffix"
        return f"not an image type tunewise reads ({kind}; reads {', '.join(IMAGE_SUFFIXES)})"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                if image.width * image.height > MAX_PIXELS:
                    return f"{image.width}x{image.height} pixels is too large to decode safely"
                image.load()  # decodes every byte: a truncated file fails here, not mid-epoch
    except UnidentifiedImageError:
        return "not an image Pillow can read"
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        return "too many pixels to decode safely (a decompression bomb?)"
    except (OSError, SyntaxError, ValueError) as e:  # truncated or corrupt data
        return f"cannot decode: {e}"
    return None


def _class_files(folder: Path) -> list[tuple[Path, str]]:
    pairs = []
    for class_dir in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for file in sorted(class_dir.rglob("*")):
            if file.is_file() and not file.name.startswith("."):  # .DS_Store and friends
                pairs.append((file, class_dir.name))
    return pairs


def _split_folders(root: Path) -> dict[str, Path]:
    """``{split: folder}`` when ``root`` holds split folders (``train`` and another), else ``{}``."""
    names = {p.name.lower(): p for p in root.iterdir() if p.is_dir()}
    if "train" not in names:
        return {}
    dev = next((names[n] for n in DEV_DIRS if n in names), None)
    test = names.get("test")
    if dev is None and test is None:
        return {}
    folders = {"train": names["train"]}
    if test is not None:
        folders["test"] = test
        if dev is not None:
            folders["dev"] = dev
    else:  # train + val only: val is what the data's own figures are reported on
        folders["test"] = dev
    return folders


def _path_column(file: Path, wanted: str | None) -> tuple[str, str | None]:
    """(format, the name of the column that holds image paths) of a CSV/TSV/JSONL list."""
    text = read_text(file).text
    if file.suffix.lower() in (".jsonl", ".json"):
        first = next((line for line in text.splitlines() if line.strip()), "")
        try:
            header = list(json.loads(first)) if first else []
        except (json.JSONDecodeError, TypeError):
            raise DataError(f"{file}:1: not a JSON object per line") from None
        fmt = "jsonl"
    else:
        delimiter = "\t" if file.suffix.lower() == ".tsv" else ","
        header = next(csv.reader(text.splitlines()[:1], delimiter=delimiter), [])
        fmt = "tsv" if delimiter == "\t" else "csv"
    index = find_column(header, wanted, PATH_COLUMNS)
    return fmt, None if index is None else header[index]


def load_images(
    path: str | Path,
    *,
    path_column: str | None = None,
    label_column: str | None = None,
    label_map: str | Path | LabelMap | None = None,
) -> ImageLoad:
    """Read the labelled images at ``path`` (see the module docstring for the layouts),
    decoding each one; unusable files become problems naming the file.

    Example:
        >>> load_images("photos/").layout  # doctest: +SKIP
        'class/file (split by tunewise)'
    """
    from tunewise.data.loading import load_file

    root = Path(path)
    if not root.exists():
        raise DataError(f"{root}: no such file or folder")
    result = ImageLoad()
    candidates: list[tuple[Path, str, str, int]] = []  # file, label, source, line
    if root.is_file():
        if root.suffix.lower() not in LIST_SUFFIXES:
            raise DataError(f"{root}: an image list is a {', '.join(LIST_SUFFIXES)} file of path,label rows")
        _, column = _path_column(root, path_column)
        if column is None:
            raise DataError(
                f"{root}:1: no image path column: expected "
                f"{repr(path_column) if path_column else 'one of ' + ', '.join(PATH_COLUMNS)}"
            )
        rows = load_file(root, text_column=column, label_column=label_column)
        result.problems.extend(rows.problems)
        for ex in rows.examples:
            file = Path(ex.text).expanduser()
            candidates.append(
                (file if file.is_absolute() else root.parent / file, str(ex.label), ex.source, ex.line)
            )
        result.layout = f"{root.suffix.lstrip('.')} list of path,label (split by tunewise)"
    else:
        folders = _split_folders(root)
        if folders:
            for split, folder in folders.items():
                for file, label in _class_files(folder):
                    candidates.append((file, label, str(file), 0))
                    result.given_split[str(file)] = split
            named = ", ".join(f"{f.name}/ -> {s}" for s, f in folders.items())
            result.layout = f"split/class/file ({named})"
        else:
            candidates = [(file, label, str(file), 0) for file, label in _class_files(root)]
            result.layout = "class/file (split by tunewise)"
        if not candidates:
            raise DataError(
                f"{root}: no class folders with files; expected {root}/<class>/<image> or "
                f"{root}/train/<class>/<image> (or a CSV of path,label)"
            )
    for file, label, source, line in candidates:
        if not file.is_file():
            result.problems.append(Problem(source, line, f"{file}: no such image file"))
            continue
        reason = check_image(file)
        if reason is not None:
            result.problems.append(Problem(str(file) if line == 0 else source, line, reason))
            continue
        result.examples.append(Example(str(file), label, source, line))
    if label_map is not None:
        rules = label_map if isinstance(label_map, LabelMap) else LabelMap.from_file(label_map)
        mapped = _apply_label_map(_as_load_result(result), rules)
        result.examples, result.problems = mapped.examples, mapped.problems
    return result


def image_files(path: str | Path, *, path_column: str | None = None) -> tuple[list[Path], list[Problem]]:
    """Images to classify (no labels needed): one file, every image under a folder (sorted),
    or the path column of a CSV/JSONL list. Files that do not decode are problems.

    Example:
        >>> files, problems = image_files("new_photos/")  # doctest: +SKIP
    """
    from tunewise.data.loading import load_file

    root = Path(path)
    if not root.exists():
        raise DataError(f"{root}: no such file or folder")
    problems: list[Problem] = []
    if root.is_dir():
        candidates = [
            (p, str(p), 0) for p in sorted(root.rglob("*")) if p.is_file() and not p.name.startswith(".")
        ]
    elif root.suffix.lower() in LIST_SUFFIXES:
        _, column = _path_column(root, path_column)
        if column is None:
            raise DataError(f"{root}:1: no image path column: expected one of {', '.join(PATH_COLUMNS)}")
        rows = load_file(root, text_column=column, require_labels=False)
        problems.extend(rows.problems)
        candidates = []
        for ex in rows.examples:
            file = Path(ex.text).expanduser()
            candidates.append((file if file.is_absolute() else root.parent / file, ex.source, ex.line))
    else:
        candidates = [(root, str(root), 0)]
    files = []
    for file, source, line in candidates:
        reason = check_image(file) if file.is_file() else f"{file}: no such image file"
        if reason is None:
            files.append(file)
        else:
            problems.append(Problem(str(file) if line == 0 else source, line, reason))
    return files, problems


def _as_load_result(load: ImageLoad):
    from tunewise.data.loading import LoadResult

    return LoadResult(list(load.examples), list(load.problems))


def file_digest(path: str | Path) -> str:
    """SHA-1 of a file's bytes: the identity of an image for deduplication and split records."""
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def image_key(path: str | Path, label: str | None) -> str:
    """The split record's key of an image: its bytes and label, wherever the folder moves."""
    return text_key(file_digest(path), label)


def prepare_images(
    path: str | Path,
    *,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    path_column: str | None = None,
    label_column: str | None = None,
    label_map: str | Path | LabelMap | None = None,
) -> PreparedData:
    """Load, deduplicate and split labelled images into a :class:`PreparedData`.

    Example:
        >>> data = prepare_images("../shared/data/cifar10_subset", seed=0)  # doctest: +SKIP
        >>> len(data.labels)  # doctest: +SKIP
        10
    """
    loaded = load_images(path, path_column=path_column, label_column=label_column, label_map=label_map)
    if not loaded.examples:
        detail = f"; first problem: {loaded.problems[0]}" if loaded.problems else ""
        raise DataError(f"{path}: no readable labelled images{detail}")
    digests = {e.text: file_digest(e.text) for e in loaded.examples}
    labels_of: dict[str, set[str]] = {}
    for e in loaded.examples:
        labels_of.setdefault(digests[e.text], set()).add(str(e.label))
    seen: set[str] = set()
    examples, conflicts, duplicates = [], [], 0
    for e in loaded.examples:
        digest = digests[e.text]
        if len(labels_of[digest]) > 1:
            others = sorted(lab for lab in labels_of[digest] if lab != e.label)
            conflicts.append(
                Problem(e.source, e.line, f"the same image is also labelled {', '.join(others)}")
            )
            continue
        if digest in seen:
            duplicates += 1  # a copy, in the same split or another: one would leak into the other
            continue
        seen.add(digest)
        examples.append(e)
    labels = sorted({str(e.label) for e in examples})
    if len(labels) < 2:
        raise DataError(f"{path}: need at least 2 classes to train a classifier, found {labels}")
    notes = [f"layout: {loaded.layout}"]
    if loaded.given_split:
        splits = {s: [e for e in examples if loaded.given_split[e.text] == s] for s in SPLITS}
        if not splits["dev"]:
            train_share, dev_share = fractions[0], fractions[1]
            splits["train"], splits["dev"] = split_off(
                splits["train"], dev_share / (train_share + dev_share), seed
            )
            notes.append(
                f"dev: {len(splits['dev'])} images ({dev_share / (train_share + dev_share):.0%}, stratified, "
                f"seed {seed}) carved from train/ to pick the epoch; the given held-out folder is the "
                "test split"
            )
    else:
        index = stratified_split([str(e.label) for e in examples], fractions, seed)
        splits = {s: [examples[i] for i in index[s]] for s in SPLITS}
    report = DataReport(
        files={str(path): loaded.layout},
        rows_read=len(loaded.examples) + len(loaded.problems),
        problems=loaded.problems,
        duplicates=duplicates,
        conflicts=conflicts,
        counts={s: dict(sorted(Counter(str(e.label) for e in ex).items())) for s, ex in splits.items()},
        leak_threshold=None,
        notes=notes,
    )
    keys = {e.text: text_key(digests[e.text], str(e.label)) for e in examples}
    return PreparedData(splits=splits, labels=labels, report=report, normalizer=None, keys=keys)
