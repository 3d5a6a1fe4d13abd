"""The normaliser (typed tokens, width folding, OpenCC) and training-time augmentation."""

from __future__ import annotations

import random

import pytest

from tunewise.data.augment import TextAugmenter
from tunewise.data.normalize import TYPED_TOKENS, SmsNormalizer, split_typed_tokens
from tunewise.errors import RecipeError

norm = SmsNormalizer()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("点击 https://u.10010.cn/qAE9U 立即参与", "点击 [URL] 立即参与"),
        ("访问www.abc-bank.com/login验证", "访问[URL]验证"),
        ("登录 icbc-safe.top 解冻", "登录 [URL_BRAND] 解冻"),
        ("登录icbc-safe.top解冻", "登录[URL_BRAND]解冻"),  # a domain glued to Chinese text
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
    assert norm("点击URL") == norm("点击http://example.cn/x") == "点击[URL]"
    assert norm("拨打CELLPHONE") == norm("拨打13912345678") == "拨打[PHONE]"
    assert norm("NAME先生在PLACE") == norm("XXX先生在xxxx") == "[ANON]先生在[ANON]"
    assert norm("PLACENAME您好") == "[ANON][ANON]您好"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("【工商银行】请登录 icbc-safe.top 重新验证", "[URL_BRAND]"),  # a brand outside its domain
        ("访问 cmbchina.com.fengkong.top 解冻", "[URL_BRAND]"),  # the brand's domain as a subdomain
        ("ETC认证失效 http://etc-renzheng.cc/a", "[URL_BRAND]"),
        ("积分兑换 10086jf.vip", "[URL_BRAND]"),
        ("打开 http://47.96.12.8:8080/app 下载", "[URL_IP]"),
        ("打开47.96.12.8/a下载", "[URL_IP]"),
        ("注册送88 www.bet365-vip.xyz", "[URL_ODD]"),
        ("Click http://bit.ly/claim-now to claim", "[URL_SHORT]"),
        ("详见 t.cn/A6xYz", "[URL_SHORT]"),
        # real brands' own domains and shorteners stay plain links
        ("【中国移动】点击 http://dx.10086.cn/ABcd12 领取", "[URL]"),
        ("【招商银行】详见 cmbchina.com/card", "[URL]"),
        ("【淘宝】领券 m.tb.cn/h.5QwErT", "[URL]"),
        ("查询 https://www.chinatax.gov.cn", "[URL]"),
    ],
)
def test_links_keep_their_kind(raw: str, expected: str) -> None:
    tokens = [t for t in split_typed_tokens(norm(raw)) if t.startswith("[URL")]
    assert tokens == [expected]
    assert SmsNormalizer(url_kinds=False)(raw).count("[URL]") == 1  # the option off: one kind


@pytest.mark.parametrize(
    ("masked", "real"),
    [
        ("x月x日起报名", "3月8日起报名"),
        ("仅需xx.x元", "仅需29.9元"),
        ("直降xxx万", "直降120万"),
        ("热线xxxxxxxxxxx", "热线13812345678"),
        ("您尾号xxxx的卡", "您尾号4821的卡"),
        ("年化x.x-x.x%", "年化3.5%"),
    ],
)
def test_x_masked_numbers_look_like_real_numbers(masked: str, real: str) -> None:
    """Corpora that mask digits with x: the mask must not become a class signal of its own."""
    assert norm(masked) == norm(real)


def test_x_masks_that_are_not_numbers_stay_anonymous() -> None:
    assert norm("XXX先生您好") == "[ANON]先生您好"
    assert norm("fix the box x2") == "fix the box x[NUM]"


def test_text_that_only_looks_like_a_domain_is_left_alone() -> None:
    assert norm("Thanks.Live well") == "Thanks.Live well"
    assert norm("打5.5折") == "打[NUM]折"


def test_models_saved_before_link_kinds_keep_plain_links() -> None:
    from tunewise.data.normalize import NormalizerConfig

    old = SmsNormalizer(NormalizerConfig.from_dict({"fold_width": True, "type_entities": True}))
    assert old("登录 icbc-safe.top") == "登录 [URL]"
    assert old("仅需xxx元") == "仅需[ANON]元"
    assert NormalizerConfig.from_dict(NormalizerConfig().to_dict()) == NormalizerConfig()


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
    with pytest.raises(RecipeError, match="strength"):
        TextAugmenter("extreme")  # type: ignore[arg-type]
