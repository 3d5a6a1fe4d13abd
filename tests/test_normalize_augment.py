"""The normaliser (typed tokens, width folding, OpenCC) and training-time augmentation."""

from __future__ import annotations

import random

import pytest

from tunewise.data.augment import TextAugmenter
from tunewise.data.normalize import TYPED_TOKENS, SmsNormalizer, split_typed_tokens

norm = SmsNormalizer()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("点击 https://u.10010.cn/qAE9U 立即参与", "点击 [URL] 立即参与"),
        ("访问www.abc-bank.com/login验证", "访问[URL]验证"),
        ("登录 icbc-safe.top 解冻", "登录 [URL] 解冻"),
        ("请拨打13812345678或+86 138 1234 5678", "请拨打[PHONE]或[PHONE]"),
        ("致电010-12345678或400-123-4567或95588", "致电[PHONE]或[PHONE]或[PHONE]"),
        ("加QQ:123456789或微信 abc_12345", "加QQ:[ID]或微信 [ID]"),
        ("转账5000元，手续费￥30，共1,234.50元", "转账[MONEY],手续费[MONEY],共[MONEY]"),
        ("验证码384756，5分钟内有效", "验证码[NUM],[NUM]分钟内有效"),
        ("ＡＢＣ１２３全角", "ABC[NUM]全角"),
    ],
)
def test_real_entities_become_typed_tokens(raw: str, expected: str) -> None:
    assert norm(raw) == expected


def test_placeholders_map_to_the_same_tokens_as_real_entities() -> None:
    # masked data (normal class) and real data (fraud class) must look the same to a model
    assert norm("尾号DIGIT的卡") == norm("尾号4821的卡") == "尾号[NUM]的卡"
    assert norm("点击URL") == norm("点击http://t.cn/x") == "点击[URL]"
    assert norm("拨打CELLPHONE") == norm("拨打13912345678") == "拨打[PHONE]"
    assert norm("NAME先生在PLACE") == norm("XXX先生在xxxx") == "[ANON]先生在[ANON]"
    assert norm("PLACENAME您好") == "[ANON][ANON]您好"


def test_plain_words_that_contain_placeholder_letters_survive() -> None:
    assert norm("download APP now") == "download APP now"
    assert norm("Named Places") == "Named Places"


def test_traditional_to_simplified_is_optional() -> None:
    assert norm("詐騙銀行") == "詐騙銀行"
    assert SmsNormalizer(to_simplified=True)("詐騙銀行") == "诈骗银行"


def test_normaliser_is_idempotent() -> None:
    text = "【招商银行】尾号DIGIT卡入账５００元 http://x.cn 详询95555"
    once = norm(text)
    assert norm(once) == once


def test_split_typed_tokens() -> None:
    assert split_typed_tokens("打[NUM]元[URL]") == ["打", "[NUM]", "元", "[URL]"]


def test_augmentation_is_seeded_and_keeps_typed_tokens() -> None:
    text = "您的账户[NUM]存在风险请点击[URL]验证身份否则将被冻结并影响征信记录"
    strong = TextAugmenter("strong")
    outs = {strong(text, random.Random(i)) for i in range(50)}
    assert len(outs) > 20  # it really perturbs
    assert strong(text, random.Random(7)) == strong(text, random.Random(7))
    for out in outs:
        for token in ("[NUM]", "[URL]"):
            assert token in out or token.translate({c: c + 0xFEE0 for c in range(0x21, 0x7F)}) not in out
        pieces = split_typed_tokens(out)
        assert all(p in TYPED_TOKENS or "[" not in p or "]" not in p for p in pieces)


def test_strength_controls_how_much_changes() -> None:
    text = "这是一条用来测试增强强度的比较长的短信内容，包含很多汉字。" * 2

    def changed(strength: str) -> float:
        aug = TextAugmenter(strength)
        return sum(aug(text, random.Random(i)) != text for i in range(200)) / 200

    assert changed("none") == 0
    assert 0 < changed("mild") < changed("strong")
    with pytest.raises(ValueError, match="strength"):
        TextAugmenter("extreme")  # type: ignore[arg-type]
