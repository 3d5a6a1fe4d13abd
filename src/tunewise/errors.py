"""tunewise's errors: one base class for "what you gave tunewise is wrong".

Every error tunewise raises about its input — a data file, a recipe, a model directory, a
freeze plan, a corpus — derives from :class:`TunewiseError`, and its message says what was
expected, what was found and where (file and line when there is one). The command line
shows these as one line without a traceback; anything else is a bug and keeps its
traceback. The base is a ``ValueError`` so code that caught ``ValueError`` keeps working.

The classes live here, in one place; the modules that raise them re-export them under
their old names (``tunewise.data.loading.DataError`` is ``tunewise.errors.DataError``).

Example:
    >>> from tunewise.errors import DataError, TunewiseError
    >>> try:
    ...     raise DataError("train.csv, line 3: no label")
    ... except TunewiseError as e:
    ...     print(e)
    train.csv, line 3: no label
"""

from __future__ import annotations


class TunewiseError(ValueError):
    """Base class of every error about the user's input; the message says what and where."""


class DataError(TunewiseError):
    """A data file or folder cannot be used as training or evaluation data."""


class ImageTooLarge(DataError):
    """An image with more pixels than may be decoded (a decompression bomb, or a limit)."""


class MissingExtra(TunewiseError):
    """A feature whose optional dependencies are not installed (``pip install 'tunewise[vision]'``)."""


class EncodingError(TunewiseError):
    """A file's bytes could not be decoded as text."""


class ModelError(TunewiseError):
    """A model or tokenizer cannot be built or loaded as asked; the message says why."""


class ExportError(ModelError):
    """The export cannot be made or does not match the PyTorch model."""


class RecipeError(TunewiseError):
    """A recipe file is not valid; the message lists every problem with its field path."""


class FreezeError(TunewiseError):
    """A freeze plan is wrong: a pattern matched nothing, a layer-group index is out of
    range, or it leaves nothing to train."""


class CorpusError(TunewiseError):
    """A pretraining corpus is missing, unreadable or empty."""


class NormalLabelError(TunewiseError):
    """The normal class asked for is not one of the model's labels."""


class ResumeMismatch(DataError):
    """``resume`` found a directory written by a run with other data, split, seed or recipe."""


class CheckpointError(TunewiseError):
    """A checkpoint cannot be written (a full disk) or read back (damaged); the message says
    which one is intact."""


class CompareError(DataError):
    """A comparison cannot start or continue; the message says why and what to do."""


# The exceptions the command line reports as one clear line (exit code 2), no traceback.
# FileNotFoundError: a path the user typed does not exist.
USER_ERRORS: tuple[type[BaseException], ...] = (TunewiseError, FileNotFoundError)
