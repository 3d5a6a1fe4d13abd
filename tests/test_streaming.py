"""Streaming: files of any size are read and scored in constant memory, with the same rows
and problems as the whole-file loader."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tunewise.cli import app
from tunewise.data.loading import (
    SNIFF_BYTES,
    DataError,
    Example,
    load_file,
    stream_data,
    stream_file,
)
from tunewise.inference import Predictor

BROKEN_CSV = (
    "content,label\n正常的短信,normal\n多了一列,normal,extra\n,normal\n"
    '"带引号的\n多行短信",fraud\n最后一行,fraud\n'
)


def _items(rows):
    return [(r.line, r.text, r.label) if isinstance(r, Example) else (r.line, r.reason) for r in rows]


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gb18030", "utf-16"])
@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("a.csv", BROKEN_CSV),
        ("a.tsv", "text\tlabel\n好的\tx\n\tx\n第二条\ty\n"),
        ("a.jsonl", '{"text": "好的", "label": "a"}\n{"text": oops}\n\n{"msg": "第三条"}\n'),
        ("a.txt", "fraud\t加微信领红包\n没有标签的一行\n\nnormal\t快递到了\n"),
    ],
)
def test_stream_gives_the_rows_and_problems_the_loader_gives(tmp_path, encoding, name, content):
    path = tmp_path / name
    path.write_bytes(content.encode(encoding))
    whole = load_file(path, require_labels=False)
    streamed = list(stream_file(path, require_labels=False))
    expected = sorted(_items(whole.examples) + _items(whole.problems), key=lambda x: x[0])
    assert _items(streamed) == expected


def test_a_large_gb18030_file_is_streamed_across_the_sniffed_block(tmp_path):
    path = tmp_path / "big.csv"
    rows = [f"第{i}条短信：您的快递已到驿站，取件码{i % 9973}" for i in range(60_000)]
    path.write_bytes(("text\n" + "\n".join(rows) + "\n").encode("gb18030"))
    assert path.stat().st_size > 2 * SNIFF_BYTES
    streamed = stream_file(path)
    assert next(streamed).text == rows[0]  # available before the file is read through
    rest = [r.text for r in streamed]
    assert rest == rows[1:]


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-8"])
def test_a_large_file_is_sniffed_whatever_character_the_first_mib_ends_in(tmp_path, encoding):
    # 上 is U+4E0A: in UTF-16-LE its first byte is a newline byte, and the first MiB of a
    # UTF-16 file may end between the two bytes of a character
    rows = [f"第{i}条：上{'个' * (i % 7)}月账单已出" for i in range(50_000)]
    path = tmp_path / "big.csv"
    path.write_bytes(("text\n" + "\n".join(rows) + "\n").encode(encoding))
    assert path.stat().st_size > SNIFF_BYTES
    assert [r.text for r in stream_file(path)] == rows


def test_a_file_that_changes_encoding_after_the_first_mib_is_a_clear_error(tmp_path):
    path = tmp_path / "mixed.txt"
    head = ("好的短信内容\n" * (SNIFF_BYTES // 18 + 10)).encode("utf-8")
    path.write_bytes(head + "后面是GBK\n".encode("gbk"))
    with pytest.raises(DataError, match="not utf-8 throughout"):
        list(stream_file(path))


def test_stream_data_reads_a_folder_in_name_order(tmp_path):
    (tmp_path / "b.txt").write_text("第二个文件\n", encoding="utf-8")
    (tmp_path / "a.csv").write_text("text\n第一个文件\n", encoding="gbk")
    assert [r.text for r in stream_data(tmp_path)] == ["第一个文件", "第二个文件"]


@pytest.fixture(scope="module")
def model_dir(scratch_model) -> Path:
    return scratch_model[1]


def test_predict_stream_holds_one_chunk_at_a_time(model_dir):
    predictor = Predictor(model_dir)
    pulled = 0

    def endless():
        nonlocal pulled
        while True:
            pulled += 1
            yield f"第{pulled}条：您的验证码是{pulled % 10000}"

    stream = predictor.predict_stream(endless(), chunk_size=500)
    first = next(stream)
    assert first.text == "第1条：您的验证码是1" and pulled == 500  # not the whole (endless) input
    for _ in range(600):
        next(stream)
    assert pulled == 1000
    same = predictor.predict([f"第{i}条：您的验证码是{i % 10000}" for i in range(1, 11)])
    again = list(predictor.predict_stream((p.text for p in same), chunk_size=3))
    for a, b in zip(again, same, strict=True):  # chunking does not change a prediction
        assert a.label == b.label
        assert all(abs(a.probabilities[k] - b.probabilities[k]) < 1e-6 for k in a.probabilities)


def test_cli_predict_streams_a_file_and_reports_skipped_rows(model_dir, tmp_path):
    source = tmp_path / "in.jsonl"
    lines = [json.dumps({"text": f"第{i}条 加微信领红包"}, ensure_ascii=False) for i in range(2500)]
    lines.insert(10, "{broken")
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out.csv"
    result = CliRunner().invoke(
        app, ["predict", "--model", str(model_dir), "--input", str(source), "--output", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "wrote 2,500 predictions" in result.stderr and "1 rows skipped" in result.stderr
    assert f"{source}:11: invalid JSON" in result.stderr
    with out.open(encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f))
    assert (
        len(rows) == 2500
        and rows[0]["text"] == "第0条 加微信领红包"
        and rows[-1]["text"] == "第2499条 加微信领红包"
    )
    assert not (tmp_path / "out.csv.part").exists()

    empty = tmp_path / "empty.csv"
    empty.write_text("text\n\n", encoding="utf-8")
    result = CliRunner().invoke(
        app,
        ["predict", "--model", str(model_dir), "--input", str(empty), "--output", str(tmp_path / "o.csv")],
    )
    assert result.exit_code == 2 and "no texts to classify" in result.stderr
    assert not (tmp_path / "o.csv").exists() and not (tmp_path / "o.csv.part").exists()
