"""The SMS normaliser: one function applied identically at training and prediction time.

Why typed tokens: published SMS corpora mask private data with placeholders (``DIGIT``,
``URL``, ``NAME``, ``CELLPHONE``, ``xxx``) in some classes but leave real numbers and links
in others. A model then learns "placeholder means normal" and fails on real messages.
Mapping both the placeholders *and* the real things they stand for to the same typed
token removes that shortcut and also shrinks the vocabulary of unbounded strings (every
phone number is different; ``[PHONE]`` is one token).

``NAME`` and ``PLACE`` placeholders have no detectable real counterpart (that needs NER),
so they map to ``[ANON]``, the same token as the ``xxx`` masks that *all* classes use.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import asdict, dataclass
from functools import cached_property

URL, PHONE, ACCOUNT, MONEY, NUM, ANON = "[URL]", "[PHONE]", "[ID]", "[MONEY]", "[NUM]", "[ANON]"
TYPED_TOKENS: tuple[str, ...] = (URL, PHONE, ACCOUNT, MONEY, NUM, ANON)

_PLACEHOLDER_TOKEN = {
    "DIGIT": NUM,
    "URL": URL,
    "CELLPHONE": PHONE,
    "PHONE": PHONE,
    "HOTLINE": PHONE,
    "NAME": ANON,
    "PLACE": ANON,
}
# Placeholders are upper case and may be glued together ("PLACENAME", "DIGITDIGIT").
_PLACEHOLDER_RE = re.compile(
    r"(?<![A-Za-z\[])(?:" + "|".join(sorted(_PLACEHOLDER_TOKEN, key=len, reverse=True)) + r")+"
    r"(?![a-z\]])"
)
_PLACEHOLDER_PART_RE = re.compile("|".join(sorted(_PLACEHOLDER_TOKEN, key=len, reverse=True)))
_X_MASK_RE = re.compile(r"(?<![A-Za-z])[xX]{2,}(?![A-Za-z])|[*＊]{3,}")

_TLDS = "com|cn|net|org|cc|top|vip|xyz|info|me|io|co|hk|tw|shop|club|site|online|ink|wang|link"
_URL_RE = re.compile(
    r"(?:https?|ftp)\s*[:：]\s*/*[^\s\u4e00-\u9fff，。！？；、】）]*"
    r"|www\s*\.\s*[A-Za-z0-9-]+(?:\s*\.\s*[A-Za-z0-9-]+)+[^\s\u4e00-\u9fff，。！？；、】）]*"
    rf"|\b[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.(?:{_TLDS})\b(?:/[^\s\u4e00-\u9fff，。！？；、】）]*)?",
    re.IGNORECASE,
)
# Chat accounts: keep the app's name (it is a strong signal) and type the id.
_ACCOUNT_RE = re.compile(
    r"((?:QQ|qq|Qq|扣扣|企鹅|微信|薇信|威信|徽信|VX|vx|Vx|WX|wx|V信|v信|微|加V|加v|飞机|TG|tg|telegram)"
    r"\s*(?:号码|号|群号|群|账号|id|ID)?\s*(?:是|为)?\s*[:：]?\s*)"
    r"([A-Za-z][A-Za-z0-9_-]{4,19}|\d{5,12})"
)
_PHONE_RE = re.compile(
    r"(?<!\d)(?:\+?86[\s-]?)?1[3-9]\d(?:[\s-]?\d{4}){2}(?!\d)"  # mobile
    r"|(?<!\d)0\d{2,3}[\s-]?\d{7,8}(?!\d)"  # landline with area code
    r"|(?<!\d)[48]00[\s-]?\d{3}[\s-]?\d{4}(?!\d)"  # 400/800 hotlines
    r"|(?<!\d)95\d{3,4}(?!\d)"  # bank and carrier service numbers (95588, 95533)
)
# Thousands separators only in groups of three, so "验证码384756,5分钟" stays two numbers.
_NUM = r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?"
_MONEY_RE = re.compile(
    rf"[¥￥$]\s*{_NUM}\s*(?:万|千|百|亿)?(?:元|块)?"
    rf"|{_NUM}\s*(?:万|千|百|亿)?\s*(?:元|块钱|块|人民币|RMB|rmb)"
)
_NUMBER_RE = re.compile(_NUM)
_SPACE_RE = re.compile(r"\s+")


@dataclass(frozen=True)
class NormalizerConfig:
    """What the normaliser does; stored with every trained model so prediction matches."""

    fold_width: bool = True
    to_simplified: bool = False
    type_entities: bool = True
    lowercase: bool = False

    def to_dict(self) -> dict[str, bool]:
        return asdict(self)


class SmsNormalizer:
    """Normalise SMS text into the form the model sees.

    Example:
        >>> n = SmsNormalizer()
        >>> n("【XX银行】您尾号DIGIT的卡入账５００元，详询95588或 http://t.cn/abc")
        '【[ANON]银行】您尾号[NUM]的卡入账[MONEY],详询[PHONE]或 [URL]'
        >>> n("加微信 abc_12345 领取")
        '加微信 [ID] 领取'
    """

    def __init__(self, config: NormalizerConfig | None = None, **options: bool) -> None:
        self.config = config or NormalizerConfig(**options)

    @cached_property
    def _opencc(self):  # loaded lazily: OpenCC reads its dictionaries from disk
        import opencc

        return opencc.OpenCC("t2s")

    def __call__(self, text: str) -> str:
        cfg = self.config
        if cfg.fold_width:
            # NFKC folds full-width ASCII (ＡＢＣ１２３) and compatibility forms (①, ﹩) to
            # their plain forms, which fraudsters use to dodge keyword filters.
            text = unicodedata.normalize("NFKC", text)
        if cfg.to_simplified:
            text = self._opencc.convert(text)
        if cfg.type_entities:
            text = _PLACEHOLDER_RE.sub(_placeholder_tokens, text)
            text = _X_MASK_RE.sub(ANON, text)
            text = _URL_RE.sub(URL, text)
            text = _ACCOUNT_RE.sub(lambda m: m.group(1) + ACCOUNT, text)
            text = _PHONE_RE.sub(PHONE, text)
            text = _MONEY_RE.sub(MONEY, text)
            text = _NUMBER_RE.sub(NUM, text)
        if cfg.lowercase:
            text = _lower_outside_tokens(text)
        return _SPACE_RE.sub(" ", text).strip()

    def batch(self, texts: list[str]) -> list[str]:
        return [self(t) for t in texts]


def _placeholder_tokens(match: re.Match[str]) -> str:
    return "".join(_PLACEHOLDER_TOKEN[p] for p in _PLACEHOLDER_PART_RE.findall(match.group(0)))


def _lower_outside_tokens(text: str) -> str:
    parts = re.split(r"(\[[A-Z]+\])", text)
    return "".join(p if p in TYPED_TOKENS else p.lower() for p in parts)


def split_typed_tokens(text: str) -> list[str]:
    """Split text into typed tokens and the plain runs between them (for augmentation).

    Example:
        >>> split_typed_tokens("打[NUM]元")
        ['打', '[NUM]', '元']
    """
    return [p for p in re.split(r"(\[(?:URL|PHONE|ID|MONEY|NUM|ANON)\])", text) if p]
