"""The SMS normaliser: one function applied identically at training and prediction time.

Why typed tokens: published SMS corpora mask private data with placeholders (``DIGIT``,
``URL``, ``NAME``, ``CELLPHONE``, ``xxx``) in some classes but leave real numbers and links
in others. A model then learns "placeholder means normal" and fails on real messages.
Mapping both the placeholders *and* the real things they stand for to the same typed
token removes that shortcut and also shrinks the vocabulary of unbounded strings (every
phone number is different; ``[PHONE]`` is one token).

``NAME`` and ``PLACE`` placeholders have no detectable real counterpart (that needs NER),
so they map to ``[ANON]``, the same token as the ``xxx`` masks that *all* classes use.

Links keep their *kind* (``url_kinds``, on for new models): what separates a phishing link
from a real one is rarely the path and often the host — a brand's name inside a domain that
is not the brand's (``icbc-safe.top``), a bare IP address, an uncommon TLD, a shortener that
hides the destination. Each becomes its own token (``[URL_BRAND]``, ``[URL_IP]``,
``[URL_ODD]``, ``[URL_SHORT]``); any other link is ``[URL]``. Measured in ``BENCHMARKS.md``
("Typed link kinds").
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import asdict, dataclass
from functools import cached_property

from tunewise.data.encoding import CONTROL_CHARS

URL, PHONE, ACCOUNT, MONEY, NUM, ANON = "[URL]", "[PHONE]", "[ID]", "[MONEY]", "[NUM]", "[ANON]"
URL_BRAND, URL_IP, URL_ODD, URL_SHORT = "[URL_BRAND]", "[URL_IP]", "[URL_ODD]", "[URL_SHORT]"
URL_KINDS: tuple[str, ...] = (URL_BRAND, URL_IP, URL_ODD, URL_SHORT)
TYPED_TOKENS: tuple[str, ...] = (URL, PHONE, ACCOUNT, MONEY, NUM, ANON, *URL_KINDS)
_TYPED_TOKEN_RE = re.compile(r"(\[(?:URL(?:_BRAND|_IP|_ODD|_SHORT)?|PHONE|ID|MONEY|NUM|ANON)\])")

# A brand's name inside a host that is not under one of the brand's own domains is the mark
# of a lookalike link. Names of 4+ characters also match as a prefix ("10086jf", "icbcvip").
BRAND_DOMAINS: dict[str, tuple[str, ...]] = {
    "icbc": ("icbc.com.cn", "icbc.com"),
    "ccb": ("ccb.com", "ccb.cn"),
    "boc": ("boc.cn", "bankofchina.com"),
    "bankofchina": ("bankofchina.com", "boc.cn"),
    "abchina": ("abchina.com",),
    "cmb": ("cmbchina.com",),
    "cmbchina": ("cmbchina.com",),
    "bankcomm": ("bankcomm.com",),
    "psbc": ("psbc.com",),
    "spdb": ("spdb.com.cn",),
    "citicbank": ("citicbank.com",),
    "cebbank": ("cebbank.com",),
    "pingan": ("pingan.com", "pingan.cn"),
    "unionpay": ("unionpay.com", "95516.com"),
    "95516": ("95516.com", "unionpay.com"),
    "95588": ("icbc.com.cn",),
    "95533": ("ccb.com",),
    "alipay": ("alipay.com", "alipay.cn"),
    "taobao": ("taobao.com", "tb.cn"),
    "tmall": ("tmall.com",),
    "jd": ("jd.com", "3.cn", "jdl.com", "jd.hk"),
    "weixin": ("weixin.qq.com", "qq.com"),
    "wechat": ("wechat.com", "qq.com"),
    "qq": ("qq.com",),
    "10086": ("10086.cn", "chinamobile.com"),
    "chinamobile": ("chinamobile.com", "10086.cn"),
    "10010": ("10010.com", "10010.cn", "chinaunicom.cn"),
    "chinaunicom": ("chinaunicom.cn", "10010.com"),
    "189": ("189.cn",),
    "chinatelecom": ("chinatelecom.com.cn", "189.cn"),
    "etc": ("gov.cn",),
    "shebao": ("gov.cn",),
    "12333": ("gov.cn",),
    "yibao": ("gov.cn", "nhsa.gov.cn"),
    "chinatax": ("chinatax.gov.cn",),
    "tax": ("gov.cn",),
    "customs": ("customs.gov.cn",),
    "haiguan": ("customs.gov.cn",),
    "12306": ("12306.cn",),
    "12123": ("122.gov.cn",),
    "sf": ("sf-express.com", "sf.com"),
    "ems": ("ems.com.cn", "11183.com.cn"),
    "chinapost": ("chinapost.com.cn",),
    "meituan": ("meituan.com", "dpurl.cn"),
    "pinduoduo": ("pinduoduo.com", "yangkeduo.com"),
    "douyin": ("douyin.com",),
    "kuaishou": ("kuaishou.com",),
    "apple": ("apple.com", "apple.com.cn", "icloud.com"),
    "icloud": ("icloud.com", "apple.com"),
    "paypal": ("paypal.com",),
    "amazon": ("amazon.com", "amazon.cn", "amazon.co.uk"),
    "usps": ("usps.com",),
    "dhl": ("dhl.com", "dhl.de"),
    "fedex": ("fedex.com",),
    "ups": ("ups.com",),
    "walmart": ("walmart.com",),
    "netflix": ("netflix.com",),
    "chase": ("chase.com",),
    "hsbc": ("hsbc.com", "hsbc.com.cn", "hsbc.com.hk"),
    "steam": ("steampowered.com", "steamcommunity.com"),
}
# Link shorteners that hide the destination (brands' own, such as u.10086.cn or m.tb.cn, are
# under the brand's domain and stay [URL]).
_SHORTENER_LIST = """bit.ly t.cn url.cn w.url.cn dwz.cn tinyurl.com goo.gl is.gd ow.ly suo.im t.co
rebrand.ly cutt.ly s.id rb.gy v.gd shorturl.at tiny.cc reurl.cc"""
SHORTENERS = frozenset(_SHORTENER_LIST.split())
# TLDs that are cheap, lightly policed and far more common in phishing than in real notices.
_ODD_TLD_LIST = """top vip xyz cc icu shop club site live online ink wang link win bid loan work fun
ltd pro asia biz tk ml ga cf gq buzz rest cyou sbs bond cfd help support click life store mobi"""
ODD_TLDS = frozenset(_ODD_TLD_LIST.split())
_COMMON_TLD_LIST = "com cn net org info me io co hk tw uk us de jp sg ly gl gd to app gov edu"
_COMMON_TLDS = frozenset(_COMMON_TLD_LIST.split())
_IP_HOST_RE = re.compile(r"^\d{1,3}(?:\.\d{1,3}){3}$")

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
# Corpora that mask digits with x ("x月x日", "xxx元", an 11-x phone number): a masked number is a
# number, so it gets the same token as a real one (otherwise "x" itself becomes a class signal).
_UNITS = (
    "月|日|号|年|折|%|％|个|平|天|分|点|米|楼|岁|期|次|人|名|小时|周|套|件|张|秒|万|瓶|盒|份|位|款|斤|"
    "克|台|辆|间|室|厅|卫|层|栋|条|支|种|项|倍|成|届|季|级|班|课|节|G|M|K"
)
_X_RUN = r"(?<![A-Za-z0-9])[xX]+(?:[.:：\-][xX]+)*"
_MASKED_MONEY_RE = re.compile(_X_RUN + r"\s*(?:万|千|百|亿)?\s*(?:元|块钱|块)")
_MASKED_NUMBER_RE = re.compile(_X_RUN + rf"(?=\s*(?:{_UNITS}))")
_MASKED_PHONE_RE = re.compile(r"(?<![A-Za-z0-9])[xX]{7,}(?![A-Za-z0-9])")
_MASKED_CODE_RE = re.compile(  # "尾号xxxx", "验证码：xxxxxx"
    r"(尾号|编号|卡号|账号|验证码|单号|取件码|密码|工号|房号|订单号)(\s*[:：]?\s*)[xX]+(?![A-Za-z])"
)

_TLDS = "|".join(
    sorted(
        _COMMON_TLDS | ODD_TLDS,
        key=len,
        reverse=True,
    )
)
_URL_RE = re.compile(
    r"(?:https?|ftp)\s*[:：]\s*/*[^\s\u4e00-\u9fff，。！？；、】）]*"
    r"|www\s*\.\s*[A-Za-z0-9-]+(?:\s*\.\s*[A-Za-z0-9-]+)+[^\s\u4e00-\u9fff，。！？；、】）]*"
    r"|(?<![\d.])\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?/[^\s\u4e00-\u9fff，。！？；、】）]*"  # 47.96.12.8/a
    # a bare domain; its edges are "not a domain character", not \b: Chinese counts as a word
    # character, so \b would miss a domain glued to the text (登录icbc-safe.top)
    # and its TLD in lower case, as hosts are written: "Thanks.Live well" is not a link
    rf"|(?<![A-Za-z0-9.-])[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.(?-i:{_TLDS})(?![A-Za-z0-9-])"
    r"(?:/[^\s\u4e00-\u9fff，。！？；、】）]*)?",
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
# control characters other than whitespace (NUL, bell, DEL, C1): corruption, never content


@dataclass(frozen=True)
class NormalizerConfig:
    """What the normaliser does; stored with every trained model so prediction matches."""

    fold_width: bool = True
    to_simplified: bool = False
    type_entities: bool = True
    lowercase: bool = False
    # links typed by kind ([URL_BRAND], [URL_IP], [URL_ODD], [URL_SHORT]); models saved before
    # this option existed load with it off (``from_dict``), so they see what they trained on
    url_kinds: bool = True
    # x-masked numbers ("x月x日", "xxx元") typed as numbers, money and phones, not [ANON]
    masked_numbers: bool = True

    def to_dict(self) -> dict[str, bool]:
        return asdict(self)

    @classmethod
    def from_dict(cls, stored: dict) -> NormalizerConfig:
        """The configuration a model was saved with; options it predates are off.

        Example:
            >>> NormalizerConfig.from_dict({"fold_width": True}).url_kinds
            False
        """
        return cls(**{"url_kinds": False, "masked_numbers": False, **stored})


class SmsNormalizer:
    """Normalise SMS text into the form the model sees.

    Example:
        >>> n = SmsNormalizer()
        >>> n("【XX银行】您尾号DIGIT的卡入账５００元，详询95588或 http://t.cn/abc")
        '【[ANON]银行】您尾号[NUM]的卡入账[MONEY],详询[PHONE]或 [URL_SHORT]'
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
        text = CONTROL_CHARS.sub("", text)  # NUL, bell, DEL, C1: corruption, never content
        if cfg.fold_width:
            # NFKC folds full-width ASCII (ＡＢＣ１２３) and compatibility forms (①, ﹩) to
            # their plain forms, which fraudsters use to dodge keyword filters.
            text = unicodedata.normalize("NFKC", text)
        if cfg.to_simplified:
            text = self._opencc.convert(text)
        if cfg.type_entities:
            text = _PLACEHOLDER_RE.sub(_placeholder_tokens, text)
            if cfg.masked_numbers:
                text = _MASKED_MONEY_RE.sub(MONEY, text)
                text = _MASKED_NUMBER_RE.sub(NUM, text)
                text = _MASKED_PHONE_RE.sub(PHONE, text)
                text = _MASKED_CODE_RE.sub(lambda m: m.group(1) + m.group(2) + NUM, text)
            text = _X_MASK_RE.sub(ANON, text)
            text = _URL_RE.sub(_url_token if cfg.url_kinds else URL, text)
            text = _ACCOUNT_RE.sub(lambda m: m.group(1) + ACCOUNT, text)
            text = _PHONE_RE.sub(PHONE, text)
            text = _MONEY_RE.sub(MONEY, text)
            text = _NUMBER_RE.sub(NUM, text)
        if cfg.lowercase:
            text = _lower_outside_tokens(text)
        return _SPACE_RE.sub(" ", text).strip()

    def batch(self, texts: list[str]) -> list[str]:
        return [self(t) for t in texts]


def has_mask(text: str) -> bool:
    """Whether raw text carries a corpus's masking placeholder (``DIGIT``, ``URL``, ``xxx``, ``***``…).

    Example:
        >>> has_mask("尾号DIGIT的卡"), has_mask("尾号4821的卡")
        (True, False)
    """
    return bool(_PLACEHOLDER_RE.search(text) or _X_MASK_RE.search(text))


def url_kind(url: str) -> str:
    """The typed token for one link, by what its host says about it (see the module docstring).

    Example:
        >>> [url_kind(u) for u in ("icbc-safe.top", "http://47.96.12.8/a", "etc-rz.vip/x",
        ...                        "bit.ly/claim-now", "https://u.10086.cn/qAE9U", "www.icbc.com.cn")]
        ['[URL_BRAND]', '[URL_IP]', '[URL_BRAND]', '[URL_SHORT]', '[URL]', '[URL]']
    """
    host = re.sub(r"^\s*(?:https?|ftp)\s*[:：]\s*/*", "", url.strip(), flags=re.IGNORECASE)
    host = re.split(r"[/?#\s]", host, maxsplit=1)[0].split(":")[0].lower().strip(".")
    host = re.sub(r"\s*\.\s*", ".", host)
    if host.startswith("www."):
        host = host[4:]
    if _IP_HOST_RE.match(host):
        return URL_IP
    parts = [p for p in re.split(r"[.\-_]", host) if p]
    for brand, domains in BRAND_DOMAINS.items():
        named = any(p == brand or (len(brand) >= 4 and p.startswith(brand)) for p in parts[:-1])
        if named and not any(host == d or host.endswith("." + d) for d in domains):
            return URL_BRAND
    if host.rsplit(".", 1)[-1] in ODD_TLDS:
        return URL_ODD
    if host in SHORTENERS:
        return URL_SHORT
    return URL


def _url_token(match: re.Match[str]) -> str:
    return url_kind(match.group(0))


def _placeholder_tokens(match: re.Match[str]) -> str:
    return "".join(_PLACEHOLDER_TOKEN[p] for p in _PLACEHOLDER_PART_RE.findall(match.group(0)))


def _lower_outside_tokens(text: str) -> str:
    parts = _TYPED_TOKEN_RE.split(text)
    return "".join(p if p in TYPED_TOKENS else p.lower() for p in parts)


def split_typed_tokens(text: str) -> list[str]:
    """Split text into typed tokens and the plain runs between them (for augmentation).

    Example:
        >>> split_typed_tokens("打[NUM]元")
        ['打', '[NUM]', '元']
    """
    return [p for p in _TYPED_TOKEN_RE.split(text) if p]
