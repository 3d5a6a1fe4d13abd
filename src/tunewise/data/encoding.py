"""Decode text files whose encoding nobody wrote down.

Chinese SMS data arrives as UTF-8, UTF-8 with a BOM, GBK/GB18030 (Windows Excel exports)
or UTF-16 (some phone backup tools), now and then Big5 (Hong Kong, Taiwan). We try the
unambiguous cases first (BOMs, strict UTF-8), then GB18030 and Big5 when the decoded text
reads as ordinary Chinese, and ask charset-normalizer only for the rest, so a valid UTF-8
file is never "detected" as something exotic and a short GBK file never as Korean.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from pathlib import Path

from tunewise.errors import EncodingError

# NUL, bell, DEL and the C1 controls: corruption in a text, never content
CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")

# charset-normalizer names the GB family by its smallest member that fits the sample;
# GB18030 is a strict superset of GB2312 and GBK, so decoding with it never loses a
# character that a later line of the same file needs.
_GB_FAMILY = {"gb2312", "gbk", "gb18030", "hz", "cp936"}


@dataclass(frozen=True)
class DecodedFile:
    """The text of a file and the encoding it was read with."""

    path: Path
    text: str
    encoding: str


def decode_bytes(data: bytes, source: str = "<bytes>", partial: bool = False) -> tuple[str, str]:
    """Decode ``data`` and return ``(text, encoding_name)``.

    ``partial=True`` says ``data`` is the head of a longer file and may end inside a
    character; that last character is then dropped instead of failing the decode.

    Example:
        >>> decode_bytes("诈骗短信".encode("gb18030"))[1]
        'gb18030'
        >>> decode_bytes("詐騙簡訊".encode("big5"))
        ('詐騙簡訊', 'big5')
        >>> decode_bytes(codecs.BOM_UTF8 + "你好".encode())
        ('你好', 'utf-8-sig')
    """
    if data.startswith(codecs.BOM_UTF8):
        return _decode(data[len(codecs.BOM_UTF8) :], "utf-8", partial), "utf-8-sig"
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return _decode(data, "utf-16", partial), "utf-16"
    utf16 = _bomless_utf16(data, partial)
    if utf16 is not None:
        return utf16
    try:
        return _decode(data, "utf-8", partial), "utf-8"
    except UnicodeDecodeError as err:
        utf8_error = err
    # Statistical detection is unreliable on short Chinese text (a 4-character GBK file is
    # "detected" as Big5 or Korean cp949). Chinese encodings are tried first and accepted
    # only if the result reads as ordinary Chinese. (The price: EUC-KR Korean, whose byte
    # ranges coincide with GB2312's, reads as Chinese; Korean SMS are out of scope.)
    for encoding, plausible in (("gb18030", _plausible_gb), ("big5", _plausible_big5)):
        try:
            text = _decode(data, encoding, partial)
        except UnicodeDecodeError:
            continue
        if plausible(text):
            return text, encoding
    import charset_normalizer  # only for the rare file that is none of the above

    best = charset_normalizer.from_bytes(data).best()
    if best is None:
        raise EncodingError(
            f"{source}: cannot decode as text: not UTF-8 (first bad byte at offset "
            f"{utf8_error.start}), and no other encoding fits. Save the file as UTF-8."
        )
    family = best.encoding.lower().replace("-", "").replace("_", "")
    encoding = "gb18030" if family in _GB_FAMILY else best.encoding
    try:
        return _decode(data, encoding, partial), encoding
    except UnicodeDecodeError as err:  # charset-normalizer guessed from a sample only
        raise EncodingError(
            f"{source}: looks like {encoding} but byte {err.start} does not decode; "
            "the file may mix encodings. Save it as UTF-8."
        ) from err


def _decode(data: bytes, encoding: str, partial: bool) -> str:
    if not partial:
        return data.decode(encoding)
    # an incremental decoder keeps an unfinished trailing character back instead of failing
    return codecs.getincrementaldecoder(encoding)().decode(data, final=False)


def _bomless_utf16(data: bytes, partial: bool) -> tuple[str, str] | None:
    """UTF-16 without a byte-order mark, recognised by its NUL bytes.

    ASCII (CSV headers, commas, digits, URLs) in UTF-16 has a NUL in every other byte,
    and such bytes are valid UTF-8, so without this check a header ``text,label`` would be
    read as ``t\\x00e\\x00x\\x00t...``. Text never contains NUL, so a file where NULs
    sit almost only at odd (little-endian) or even (big-endian) offsets is UTF-16.
    """
    if len(data) < 4 or (len(data) % 2 and not partial) or b"\x00" not in data:
        return None
    even, odd = data[0::2].count(0), data[1::2].count(0)
    pairs = len(data) // 2
    for encoding, nuls, other in (("utf-16-le", odd, even), ("utf-16-be", even, odd)):
        # (U+xx00 characters such as 一 put a few NULs on the other side)
        if nuls >= 0.05 * pairs and other * 4 <= nuls:
            try:
                return _decode(data, encoding, partial), encoding
            except UnicodeDecodeError:
                return None
    return None


def _common_share(text: str, is_common) -> float:
    """Share of the non-ASCII characters of ``text`` that ``is_common`` accepts."""
    wide = [c for c in text if ord(c) > 0x7F and not c.isspace()]
    return sum(map(is_common, wide)) / len(wide) if wide else 0.0


def _in_gb2312(char: str) -> bool:
    # GB2312: the 6,763 common simplified characters plus CJK punctuation and full-width forms
    try:
        char.encode("gb2312")
        return True
    except UnicodeEncodeError:
        return False


def _in_big5_common(char: str) -> bool:
    # Big5 symbols (0xA140-0xA3BF) and level-1 "frequently used" characters (0xA440-0xC67E)
    try:
        code = int.from_bytes(char.encode("big5"), "big")
    except UnicodeEncodeError:
        return False
    return 0xA140 <= code <= 0xA3BF or 0xA440 <= code <= 0xC67E


def _clean(text: str) -> bool:
    # NUL (UTF-16 read as bytes) or private-use code points (where GB18030 and Big5 put
    # unassigned byte pairs) never occur in real messages
    return "\x00" not in text and not any(0xE000 <= ord(c) <= 0xF8FF for c in text)


def _plausible_gb(text: str) -> bool:
    """GB18030 bytes of simplified Chinese decode to (almost) only GB2312 characters;
    other bytes that happen to decode give rare characters and symbols."""
    return _clean(text) and _common_share(text, _in_gb2312) >= 0.9


def _plausible_big5(text: str) -> bool:
    return _clean(text) and _common_share(text, _in_big5_common) >= 0.9


def read_text(path: str | Path) -> DecodedFile:
    """Read a whole file as text, detecting its encoding.

    Example:
        >>> f = read_text("data/messages.csv")  # doctest: +SKIP
        >>> f.encoding  # doctest: +SKIP
        'gb18030'
    """
    path = Path(path)
    text, encoding = decode_bytes(path.read_bytes(), source=str(path))
    return DecodedFile(path=path, text=text, encoding=encoding)
