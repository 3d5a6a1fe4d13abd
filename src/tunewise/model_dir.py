"""The saved model directory: the one place that knows its file names, and writes and reads
tunewise's own files in it.

A text model directory is a Hugging Face ``save_pretrained`` layout, so any tool of that
ecosystem loads it, plus what tunewise adds. An image model (``track: image``) has the same
files but no tokenizer; its ``config.json`` names the torchvision/timm architecture, head,
labels and input size (``tunewise.tracks.image``), and ``model.safetensors`` is its state dict.

============================  ==========================  =====================================
file                          written by                  holds
============================  ==========================  =====================================
``config.json``               ``train`` (transformers)    architecture, labels (``id2label``)
``model.safetensors``         ``train`` (transformers)    the weights
tokenizer files               ``train`` (transformers)    ``tokenizer_config.json``, ``vocab.txt``…
``tunewise.json``             ``train``                   normaliser, length limit, head, recipe,
                                                          seed, best epoch, dev figures
``recipe.yaml``               ``train``                   the recipe, fully resolved
``labels.json``               ``train``                   labels, ids and the label map's rules
``history.json``              ``train``                   one row per epoch
``data_report.json``          ``train``                   what loading and splitting found
``split.json``                ``train``                   the seeded split, to re-create it
``run.json``                  ``train``                   what ``--resume`` checks
``calibration.json``          ``train``                   the temperature fitted on dev
``threshold.json``            ``threshold``               the fraud-score threshold
``metrics.json``              ``evaluate --out``          accuracy, macro-F1, confusion matrix
``model.onnx``                ``export``                  the ONNX graph (``model.int8.onnx``
                                                          with ``--quantize``; ``export.json``)
``manifest.json``             ``train``                   SHA-256 of every file loading reads
============================  ==========================  =====================================

Every load goes through :func:`require_model_dir`, which checks the directory before any
of it is used: ``config.json`` parses, the files in ``manifest.json`` are all there and
unchanged since training, ``model.safetensors`` is complete (its header accounts for every
byte), and the labels of ``config.json`` and ``labels.json`` agree. What is wrong is named
in a :class:`~tunewise.errors.ModelError`.

Example:
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> write_meta(d, {"max_length": 128})
    >>> read_meta(d)["max_length"], has_weights(d)
    (128, False)
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import shutil
import struct
import tempfile
from pathlib import Path

from tunewise.errors import ModelError

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
LEGACY_WEIGHTS_FILE = "pytorch_model.bin"  # older transformers; loaded with weights_only=True
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
META_FILE = "tunewise.json"
RECIPE_FILE = "recipe.yaml"
LABELS_FILE = "labels.json"
HISTORY_FILE = "history.json"
DATA_REPORT_FILE = "data_report.json"
SPLIT_FILE = "split.json"
RUN_FILE = "run.json"
CALIBRATION_FILE = "calibration.json"
THRESHOLD_FILE = "threshold.json"
METRICS_FILE = "metrics.json"
ONNX_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
EXPORT_FILE = "export.json"
MANIFEST_FILE = "manifest.json"
# what loading a model reads, so what the manifest covers (files written later, such as
# threshold.json or an evaluation's metrics.json, are not in it)
_MANIFEST_PATTERNS = (
    CONFIG_FILE,
    WEIGHTS_FILE,
    LEGACY_WEIGHTS_FILE,
    META_FILE,
    LABELS_FILE,
    CALIBRATION_FILE,
    "tokenizer*.json",
    "vocab.txt",
    "special_tokens_map.json",
    "*.model",
    "adapter_*",
)


def has_config(directory: str | Path) -> bool:
    """True when ``directory`` has a ``config.json`` (a Hugging Face model directory)."""
    return (Path(directory) / CONFIG_FILE).is_file()


def require_model_dir(directory: str | Path, verify: bool = True) -> Path:
    """``directory`` as a Path once it is checked (see the module docstring), or a
    :class:`ModelError` saying what is wrong with it. ``verify=False`` only checks that it is
    a model directory (the command line, before it loads anything, so weights are hashed once)."""
    directory = Path(directory)
    if not has_config(directory):
        raise ModelError(f"{directory}: not a model directory (no {CONFIG_FILE})")
    if not verify:
        return directory
    config = _read_json_object(directory / CONFIG_FILE)
    _check_manifest(directory)
    if (directory / WEIGHTS_FILE).is_file():
        _check_safetensors(directory / WEIGHTS_FILE)
    labels_file = directory / LABELS_FILE
    id2label = config.get("id2label")
    if labels_file.is_file() and isinstance(id2label, dict):
        listed = _read_json_object(labels_file).get("labels")
        in_config = [id2label.get(str(i), id2label.get(i)) for i in range(len(id2label))]
        if listed is not None and listed != in_config:
            raise ModelError(
                f"{directory}: {LABELS_FILE} lists {listed} but {CONFIG_FILE} has {in_config}; "
                "the two come from different models"
            )
    return directory


def _read_json_object(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelError(f"{path}: not valid JSON ({e}); retrain, or restore the file") from None
    if not isinstance(value, dict):
        raise ModelError(f"{path}: expected a JSON object, found {type(value).__name__}")
    return value


def sha256_file(path: Path) -> str:
    """The SHA-256 of a file, hex (checkpoints and the manifest both record these)."""
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def write_manifest(directory: str | Path) -> dict[str, str]:
    """Record the SHA-256 of every file loading reads in ``manifest.json``; returns it.

    Example:
        >>> d = tempfile.mkdtemp(); write_meta(d, {})
        >>> list(write_manifest(d))
        ['tunewise.json']
    """
    from tunewise.training.checkpoint import write_json_atomic

    directory = Path(directory)
    names = sorted(
        p.name
        for p in directory.iterdir()
        if p.is_file() and any(fnmatch.fnmatch(p.name, pat) for pat in _MANIFEST_PATTERNS)
    )
    sums = {name: sha256_file(directory / name) for name in names}
    write_json_atomic(directory / MANIFEST_FILE, {"sha256": sums})
    return sums


def _check_manifest(directory: Path) -> None:
    if not (directory / MANIFEST_FILE).is_file():
        return  # a plain Hugging Face directory, or one trained before manifests
    sums = _read_json_object(directory / MANIFEST_FILE).get("sha256") or {}
    for name, digest in sums.items():
        path = directory / name
        if not path.is_file():
            raise ModelError(f"{directory}: {name} is missing (it is listed in {MANIFEST_FILE}); restore it")
        if sha256_file(path) != digest:
            raise ModelError(
                f"{path}: changed since training (its SHA-256 differs from {MANIFEST_FILE}): "
                "damaged or altered; restore it or retrain"
            )


def _check_safetensors(path: Path) -> None:
    """A safetensors file is an 8-byte header length, a JSON header and the tensor bytes;
    the header's offsets must account for the file's size exactly (a truncated copy fails)."""
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
        n = struct.unpack("<Q", head)[0] if len(head) == 8 else -1
        if not 0 < n <= size - 8:
            raise ModelError(f"{path}: not a safetensors file, or truncated ({size:,} bytes)")
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ModelError(f"{path}: its header is damaged; restore the file or retrain") from None
    ends = [t["data_offsets"][1] for k, t in header.items() if k != "__metadata__" and isinstance(t, dict)]
    expected = 8 + n + max(ends, default=0)
    if expected != size:
        raise ModelError(
            f"{path}: {size:,} bytes where its header describes {expected:,}: "
            f"{'truncated' if size < expected else 'extra bytes'}; restore the file or retrain"
        )


def has_weights(directory: str | Path) -> bool:
    """True when ``directory`` holds PyTorch weights (safetensors, or the legacy ``.bin``)."""
    d = Path(directory)
    return (d / WEIGHTS_FILE).is_file() or (d / LEGACY_WEIGHTS_FILE).is_file()


def onnx_path(directory: str | Path, quantized: bool = False) -> Path:
    """Where ``export`` puts the ONNX graph (``quantized``: the int8 one)."""
    return Path(directory) / (INT8_FILE if quantized else ONNX_FILE)


def read_meta(directory: str | Path) -> dict:
    """tunewise's own settings of a model directory (``tunewise.json``); ``{}`` for a plain
    Hugging Face directory that has none."""
    path = Path(directory) / META_FILE
    return _read_json_object(path) if path.is_file() else {}


def write_meta(directory: str | Path, meta: dict) -> None:
    """Write ``tunewise.json`` atomically (a reader sees the old file or the new one)."""
    from tunewise.training.checkpoint import write_json_atomic  # torch; this module stays light

    write_json_atomic(Path(directory) / META_FILE, meta)


def write_recipe(directory: str | Path, recipe_yaml: str) -> None:
    """Write ``recipe.yaml`` atomically."""
    from tunewise.training.checkpoint import write_text_atomic

    write_text_atomic(Path(directory) / RECIPE_FILE, recipe_yaml)


def save_weights(model, directory: str | Path, config: dict | None = None) -> None:
    """``model.save_pretrained(directory)``, atomically file by file: the files are written
    into a temporary folder beside them and renamed over the old ones, so a kill leaves each
    of ``config.json`` and ``model.safetensors`` whole (the old one or the new one). A model
    that is not a Hugging Face one (an image CNN) is saved as its state dict, with ``config``
    as its ``config.json``.

    Example:
        >>> from transformers import BertConfig, BertForSequenceClassification
        >>> m = BertForSequenceClassification(BertConfig(vocab_size=30, hidden_size=8,
        ...     num_hidden_layers=1, num_attention_heads=1, intermediate_size=8))
        >>> d = tempfile.mkdtemp(); save_weights(m, d); has_weights(d)
        True
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=directory, prefix=".save-"))
    try:
        if hasattr(model, "save_pretrained"):
            model.save_pretrained(str(tmp))
        else:
            from safetensors.torch import save_file

            if config is None:
                raise ModelError(f"{type(model).__name__} is not a Hugging Face model: give its config")
            save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp / WEIGHTS_FILE))
            (tmp / CONFIG_FILE).write_text(json.dumps(config, ensure_ascii=False, indent=2), encoding="utf-8")
        # weights first, config last: a directory with the new config has the new weights
        names = sorted(os.listdir(tmp), key=lambda n: n == CONFIG_FILE)
        for name in names:
            os.replace(tmp / name, directory / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
