"""Loaders: every encoding, every format, folders, broken rows, label maps, real data."""

from __future__ import annotations

import codecs
import json
from pathlib import Path

import pytest

from tunewise.data.encoding import EncodingError, decode_bytes, read_text
from tunewise.data.loading import DataError, LabelMap, load_data, load_file

from .conftest import SHARED_DATA, needs_shared_data

ROWS = [("您的快递已到驿站，请取件", "normal"), ("我是公安局民警，请转账到安全账户", "fraud")]
CSV_TEXT = "content,label\n" + "".join(f"{t},{lab}\n" for t, lab in ROWS)


@pytest.mark.parametrize(
    ("encoding", "expected"),
    [
        ("utf-8", "utf-8"),
        ("utf-8-sig", "utf-8-sig"),
        ("gb18030", "gb18030"),
        ("gbk", "gb18030"),
        ("utf-16", "utf-16"),
        # no byte-order mark: recognised by the NUL bytes of its ASCII (header, commas)
        ("utf-16-le", "utf-16-le"),
        ("utf-16-be", "utf-16-be"),
    ],
)
def test_every_encoding_reads_the_same_rows(tmp_path: Path, encoding: str, expected: str) -> None:
    path = tmp_path / "sms.csv"
    path.write_bytes(CSV_TEXT.encode(encoding))
    result = load_file(path)
    assert [(e.text, e.label) for e in result.examples] == ROWS
    assert result.encodings[str(path)] == expected
    assert not result.problems


@pytest.mark.parametrize(
    ("text", "encoding"),
    [
        ("诈骗短信", "gb18030"),  # statistical detectors call these 4 characters Big5
        ("您好，您的快递已到", "gb18030"),  # ... and these Korean (cp949)
        ("【工商银行】您尾号1234的卡消费500.00元", "gb18030"),
        ("詐騙簡訊請勿點擊連結", "big5"),
        ("香港郵政：您的包裹待派送", "big5"),
    ],
)
def test_short_chinese_files_are_not_misdetected(text: str, encoding: str) -> None:
    assert decode_bytes(text.encode(encoding)) == (text, encoding)


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be"])
def test_an_ascii_only_utf16_file_without_a_bom_is_not_read_as_utf8(tmp_path: Path, encoding: str) -> None:
    # every byte of it is valid UTF-8, so a UTF-8-first reader sees "t\x00e\x00x\x00t"
    path = tmp_path / "sms.csv"
    path.write_bytes("text,label\nWin a prize: bit.ly/x,fraud\nSee you at 6,normal\n".encode(encoding))
    result = load_file(path)
    assert [e.text for e in result.examples] == ["Win a prize: bit.ly/x", "See you at 6"]


def test_undecodable_bytes_name_the_file() -> None:
    with pytest.raises(EncodingError, match="bad.csv"):
        decode_bytes(b"\x81\xff\xfe\x00" * 3 + bytes(range(128, 256)), source="bad.csv")


def test_utf8_bom_is_stripped(tmp_path: Path) -> None:
    path = tmp_path / "bom.csv"
    path.write_bytes(codecs.BOM_UTF8 + CSV_TEXT.encode())
    assert read_text(path).text.startswith("content")


def test_tsv_jsonl_and_label_tab_text(tmp_path: Path) -> None:
    (tmp_path / "a.tsv").write_text(
        "label\ttext\n" + "".join(f"{lab}\t{t}\n" for t, lab in ROWS), encoding="utf-8"
    )
    (tmp_path / "b.jsonl").write_text(
        "".join(json.dumps({"短信": t, "类别": lab}, ensure_ascii=False) + "\n" for t, lab in ROWS),
        encoding="utf-8",
    )
    (tmp_path / "c.txt").write_text("".join(f"{lab}\t{t}\n" for t, lab in ROWS), encoding="utf-8")
    for name, fmt in (("a.tsv", "tsv"), ("b.jsonl", "jsonl"), ("c.txt", "label-tab-text")):
        result = load_file(tmp_path / name)
        assert [(e.text, e.label) for e in result.examples] == ROWS, name
        assert result.formats[str(tmp_path / name)] == fmt
    folder = load_data(tmp_path)
    assert len(folder.examples) == 6
    assert folder.examples[0].where.endswith("a.tsv:2")


def test_broken_rows_are_reported_with_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.csv"
    path.write_text(
        "content,label\n"
        "正常的短信,normal\n"
        "多了一列,normal,extra\n"
        ",normal\n"
        "没有标签,\n"
        '"带引号的\n多行短信",fraud\n'
        "最后一行,fraud\n",
        encoding="utf-8",
    )
    result = load_file(path)
    assert [e.text for e in result.examples] == ["正常的短信", "带引号的\n多行短信", "最后一行"]
    assert result.examples[2].line == 8  # the multi-line quote spans lines 6-7
    problems = {p.line: p.reason for p in result.problems}
    assert problems == {3: "expected 2 fields, found 3", 4: "empty text", 5: "missing label"}
    assert str(result.problems[0]).startswith(f"{path}:3:")


def test_bad_json_line_and_absurdly_long_text(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text(
        '{"text": "好的", "label": "a"}\n{"text": oops}\n'
        + json.dumps({"text": "长" * 30_000, "label": "a"})
        + "\n",
        encoding="utf-8",
    )
    result = load_file(path)
    assert len(result.examples) == 1
    reasons = {p.line: p.reason for p in result.problems}
    assert reasons[2].startswith("invalid JSON")
    assert "30,000 characters" in reasons[3]


def test_missing_columns_say_what_was_found(tmp_path: Path) -> None:
    path = tmp_path / "cols.csv"
    path.write_text("foo,bar\n1,2\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"cols.csv:1: no text column.*\['foo', 'bar'\].*--text-column"):
        load_file(path)
    assert load_file(path, text_column="foo", label_column="bar").examples[0].text == "1"
    with pytest.raises(DataError, match="no such file"):
        load_data(tmp_path / "nope.csv")


def test_label_map_combines_sources_and_reports_unknown_labels(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("content,label\n你好,0\n转账,1\n", encoding="utf-8")
    (tmp_path / "b.csv").write_text("content,label\n取件,ham\n中奖,spam\n别的,other\n", encoding="utf-8")
    mapping = tmp_path / "labels.yaml"
    mapping.write_text(
        "'a.csv': {'0': normal, '1': fraud}\n'b.csv': {ham: normal, spam: fraud}\n", encoding="utf-8"
    )
    result = load_data(tmp_path, label_map=mapping)
    assert sorted((e.text, e.label) for e in result.examples) == [
        ("中奖", "fraud"),
        ("你好", "normal"),
        ("取件", "normal"),
        ("转账", "fraud"),
    ]
    assert [str(p) for p in result.problems] == [
        f"{tmp_path / 'b.csv'}:4: label 'other' is not in the label map"
    ]
    assert LabelMap({"*": {"x": None}}).lookup("f.csv", "x") == (True, None)


def test_unlabelled_input_for_prediction(tmp_path: Path) -> None:
    path = tmp_path / "in.txt"
    path.write_text("第一条短信\n\n第二条短信\n", encoding="utf-8")
    result = load_data(path, require_labels=False)
    assert [(e.text, e.label, e.line) for e in result.examples] == [
        ("第一条短信", None, 1),
        ("第二条短信", None, 3),
    ]


@needs_shared_data
def test_real_telecom_folder_loads_as_published() -> None:
    result = load_data(SHARED_DATA)
    assert not result.problems
    assert set(result.encodings.values()) == {"utf-8", "gb18030"}  # label04 is GB18030
    counts: dict[str, int] = {}
    for e in result.examples:
        counts[e.label] = counts.get(e.label, 0) + 1
    assert counts == {
        "0": 6215,
        "冒充公检法及政府机关类": 801,
        "贷款、代办信用卡类": 800,
        "冒充客服服务": 801,
        "冒充领导、熟人类": 801,
    }
