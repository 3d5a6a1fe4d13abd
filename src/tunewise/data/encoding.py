"""Decode text files whose encoding nobody wrote down.

Chinese SMS data arrives as UTF-8, UTF-8 with a BOM, GBK/GB18030 (Windows Excel exports)
or UTF-16 (some phone backup tools). We try the unambiguous cases first (BOMs, strict
UTF-8) and ask charset-normalizer only for the rest, so a valid UTF-8 file is never
"detected" as something exotic.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from pathlib import Path

import charset_normalizer

# charset-normalizer names the GB family by its smallest member that fits the sample;
# GB18030 is a strict superset of GB2312 and GBK, so decoding with it never loses a
# character that a later line of the same file needs.
_GB_FAMILY = {"gb2312", "gbk", "gb18030", "hz", "cp936"}


class EncodingError(ValueError):
    """A file's bytes could not be decoded as text."""


@dataclass(frozen=True)
class DecodedFile:
    """The text of a file and the encoding it was read with."""

    path: Path
    text: str
    encoding: str


def decode_bytes(data: bytes, source: str = "<bytes>") -> tuple[str, str]:
    """Decode ``data`` and return ``(text, encoding_name)``.

    Example:
        >>> decode_bytes("诈骗短信".encode("gb18030"))[1]
        'gb18030'
        >>> decode_bytes(codecs.BOM_UTF8 + "你好".encode())
        ('你好', 'utf-8-sig')
    """
    if data.startswith(codecs.BOM_UTF8):
        return data[len(codecs.BOM_UTF8) :].decode("utf-8"), "utf-8-sig"
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data.decode("utf-16"), "utf-16"
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError as err:
        utf8_error = err
    best = charset_normalizer.from_bytes(data).best()
    if best is None:
        raise EncodingError(
            f"{source}: cannot decode as text: not UTF-8 (first bad byte at offset "
            f"{utf8_error.start}), and no other encoding fits. Save the file as UTF-8."
        )
    family = best.encoding.lower().replace("-", "").replace("_", "")
    encoding = "gb18030" if family in _GB_FAMILY else best.encoding
    try:
        return data.decode(encoding), encoding
    except UnicodeDecodeError as err:  # charset-normalizer guessed from a sample only
        raise EncodingError(
            f"{source}: looks like {encoding} but byte {err.start} does not decode; "
            "the file may mix encodings. Save it as UTF-8."
        ) from err


def read_text(path: str | Path) -> DecodedFile:
    """Read a whole file as text, detecting its encoding.

    Example:
        >>> f = read_text("data/messages.csv")  # doctest: +SKIP
        >>> f.encoding
        'gb18030'
    """
    path = Path(path)
    text, encoding = decode_bytes(path.read_bytes(), source=str(path))
    return DecodedFile(path=path, text=text, encoding=encoding)
