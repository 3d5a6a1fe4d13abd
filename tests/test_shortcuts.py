"""The shortcut audit: surface features alone, cross-validated on the training split."""

from __future__ import annotations

import json
import random

import pytest

from tunewise.data.prepare import prepare_data
from tunewise.data.shortcuts import audit_shortcuts, surface_features

from .conftest import SHARED_DATA, needs_shared_data, write_csv


def _form_only(n: int = 60) -> tuple[list[str], list[str]]:
    """Classes that differ only in form: a header, digits and a link vs none."""
    rng = random.Random(0)
    words = list("今天明天我们你们大家工作生活学习消息时间地方事情问题朋友")
    texts, labels = [], []
    for i in range(n):
        body = "".join(rng.choice(words) for _ in range(rng.randint(8, 30)))
        if i % 2:
            texts.append(f"【通知】{body}{rng.randint(1000, 9999)} http://a{i}.cn")
            labels.append("normal")
        else:
            texts.append(body + "。")
            labels.append("fraud")
    return texts, labels


def _content_only(n: int = 80) -> tuple[list[str], list[str]]:
    """Classes told apart by one content word; headers, links and lengths are random."""
    rng = random.Random(1)
    words = list("今天明天我们你们大家工作生活学习消息时间地方事情问题朋友")
    texts, labels = [], []
    for i in range(n):
        label = "fraud" if i % 2 else "normal"
        body = "".join(rng.choice(words) for _ in range(rng.randint(8, 30)))
        text = body + ("转账" if label == "fraud" else "吃饭") + body[::-1]
        if rng.random() < 0.5:
            text = "【通知】" + text
        if rng.random() < 0.5:
            text += f" http://b{i}.cn"
        texts.append(text)
        labels.append(label)
    return texts, labels


def test_classes_that_differ_in_form_are_flagged():
    texts, labels = _form_only()
    audit = audit_shortcuts(texts, texts, labels)
    assert audit is not None and audit.macro_f1 > 0.95 and audit.warning
    assert audit.marker_rates["normal"]["header"] == 1.0 and audit.marker_rates["fraud"]["header"] == 0.0
    assert any(
        "header_start" in f or "token:[URL" in f or "first=【" in f for f in audit.top_features["normal"]
    )
    assert "warning" in audit.lines()[0]


def test_classes_that_differ_in_content_pass():
    texts, labels = _content_only()
    audit = audit_shortcuts(texts, texts, labels)
    assert audit is not None and audit.macro_f1 < 0.7 and not audit.warning
    assert not audit.separated


def test_too_little_data_skips_the_audit():
    assert audit_shortcuts(["a", "b"], ["a", "b"], ["x", "y"]) is None
    features = surface_features("尾号DIGIT 加微信", "尾号[NUM] 加微信")
    assert features["placeholder"] == 1.0 and features["token:[NUM]"] == 1.0


def test_the_audit_is_in_the_data_report(tmp_path):
    texts, labels = _form_only(80)
    path = write_csv(tmp_path / "form.csv", list(zip(texts, labels, strict=True)))
    report = prepare_data(path).report
    saved = report.to_dict()["shortcut_audit"]
    assert saved["warning"] and saved["n"] == sum(report.counts["train"].values())
    json.dumps(saved)  # serialisable as data_report.json


@needs_shared_data
def test_telecom_fraud_5_is_flagged():
    audit = prepare_data(SHARED_DATA).report.shortcuts
    assert audit is not None and audit.warning
    assert "0" in audit.separated  # its normal class is told apart by form alone
    assert audit.marker_rates["0"]["placeholder"] > 0.5 > audit.marker_rates["冒充客服服务"]["placeholder"]


def test_surface_features_ignore_the_words():
    a = surface_features("【银行】今天转账", "【银行】今天转账")
    b = surface_features("【银行】今天吃饭", "【银行】今天吃饭")
    assert {k: v for k, v in a.items() if not k.startswith("last=")} == {
        k: v for k, v in b.items() if not k.startswith("last=")
    }


@pytest.mark.parametrize("n", [40])
def test_audit_is_reproducible(n):
    texts, labels = _content_only(n)
    assert audit_shortcuts(texts, texts, labels).to_dict() == audit_shortcuts(texts, texts, labels).to_dict()
