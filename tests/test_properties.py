"""Property-based tests (hypothesis): the normaliser, the loaders and tokenisation hold for
any input, not only for the messages we thought of."""

from __future__ import annotations

import csv
import io
import re
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tunewise.data.loading import MAX_TEXT_CHARS, load_data
from tunewise.data.normalize import CONTROL_CHARS, NormalizerConfig, SmsNormalizer
from tunewise.errors import TunewiseError

# SMS-like text: Chinese, digits, Latin, the punctuation and symbols SMS use, full-width
# forms, links and numbers; plus anything else Unicode has, control characters included
sms_alphabet = st.sampled_from(
    list("您好转账银行卡号码验证请点击链接领取补贴退款客服公安局警官中奖手续费元万")
    + list("0123456789０１２３abcXYZｘ:/.-_@#%*+=?&【】[]（）()，。！？、：；“”‘’ \t\n")
    + ["http://", "https://t.cn/", "www.", "95588", "138", "[NUM]", "DIGIT", "xxx", "***", "¥", "$"]
)
sms_text = st.lists(sms_alphabet, max_size=60).map("".join)
any_text = st.one_of(sms_text, st.text(max_size=200))
CONFIGS = [
    NormalizerConfig(),
    NormalizerConfig(to_simplified=True, lowercase=True),
    NormalizerConfig.from_dict({}),
]


@pytest.mark.parametrize("config", CONFIGS, ids=["default", "simplified-lower", "legacy"])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=any_text)
def test_the_normaliser_is_idempotent_total_and_bounded(config: NormalizerConfig, text: str) -> None:
    normalize = SmsNormalizer(config)
    once = normalize(text)
    assert isinstance(once, str)
    assert normalize(once) == once  # normalising twice changes nothing
    # typed tokens ([NUM], [URL_BRAND]...) make a text longer, but boundedly so
    assert len(once) <= 12 * len(text) + 12
    assert not any(ord(c) < 32 and c not in "\t\n\r" for c in once)


@settings(max_examples=150, deadline=None)
@given(data=st.binary(max_size=400))
def test_any_bytes_either_load_or_give_a_tunewise_error(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "data.csv"
        path.write_bytes(data)
        try:
            result = load_data(path)
        except TunewiseError as e:
            assert "data.csv" in str(e)  # the error names the file
            return
        for example in result.examples:  # what loads is usable
            assert example.text.strip() and example.label
        for problem in result.problems:
            assert problem.source.endswith("data.csv") and problem.line >= 1


row = st.tuples(st.text(min_size=1, max_size=80), st.sampled_from(["normal", "fraud", "诈骗"]))


@settings(max_examples=150, deadline=None)
@given(rows=st.lists(row, min_size=1, max_size=20))
def test_a_csv_written_by_a_csv_writer_reads_back_row_for_row(rows: list[tuple[str, str]]) -> None:
    """Each row is either read back (its text stripped) or a problem: none is dropped unseen."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["text", "label"])
    writer.writerows(rows)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "rows.csv"
        path.write_text(buffer.getvalue(), encoding="utf-8")
        result = load_data(path)
    assert len(result.examples) + len(result.problems) == len(rows)
    usable = [
        t.strip() for t, _ in rows if CONTROL_CHARS.sub("", t).strip() and len(t.strip()) <= MAX_TEXT_CHARS
    ]
    assert [e.text for e in result.examples] == usable
    assert [e.label for e in result.examples] == [
        lab for t, lab in rows if CONTROL_CHARS.sub("", t).strip() and len(t.strip()) <= MAX_TEXT_CHARS
    ]


@pytest.fixture(scope="module")
def bundled_tokenizer():
    from transformers import AutoTokenizer

    from tunewise.pretrained import resolve_pretrained

    return AutoTokenizer.from_pretrained(resolve_pretrained("tunewise-mini-zh"))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=any_text)
def test_tokenisation_of_any_normalised_text_stays_in_the_vocabulary(bundled_tokenizer, text: str) -> None:
    normalized = SmsNormalizer()(text)
    encoded = bundled_tokenizer(normalized, truncation=True, max_length=64)
    ids = encoded["input_ids"]
    assert 2 <= len(ids) <= 64  # [CLS] ... [SEP], never longer than asked
    assert all(0 <= i < len(bundled_tokenizer) for i in ids)
    if re.search(r"[\u4e00-\u9fff0-9A-Za-z]", normalized):
        # a text with a Chinese character, a digit or a Latin letter is never tokenised to
        # nothing (one of only combining marks or private-use characters may be: BERT's
        # tokenizer drops those)
        assert len(ids) > 2
