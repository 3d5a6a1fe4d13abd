"""Hostile and broken input, from the corpus in ``tests/bad_inputs/``: every file gives a clear
error naming the file (and line), or a counted, reported skip. Never a traceback, never a
silently dropped row. The commands run in process (Typer's runner), as a user runs them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tunewise.cli import app
from tunewise.data.loading import load_data
from tunewise.errors import TunewiseError

from .conftest import make_messages, write_csv

BAD = Path(__file__).parent / "bad_inputs"
runner = CliRunner()


def _invoke(*args: str):
    result = runner.invoke(app, [str(a) for a in args])
    # a user-facing error is one line from tunewise, never a Python traceback
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    return result


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("empty.csv", "empty.csv: file is empty"),
        ("header_only.csv", "header_only.csv: no usable labelled rows"),
        ("no_label_column.csv", "no_label_column.csv:1: no label column"),
        ("duplicate_columns.csv", "duplicate_columns.csv:1: the header names column 'text' 2 times"),
    ],
)
def test_unusable_files_stop_training_with_one_line(tmp_path: Path, name: str, message: str) -> None:
    result = _invoke("train", "--data", BAD / name, "--recipe", "scratch", "--out", tmp_path / "out")
    assert result.exit_code == 2
    assert message in " ".join(result.output.split()), result.output
    assert not (tmp_path / "out" / "checkpoints").exists()  # stopped before any training


def test_a_recipe_with_wrong_types_names_every_bad_field(tmp_path: Path) -> None:
    recipe = BAD / "recipe_wrong_types.yaml"
    result = _invoke("train", "--data", BAD / "bom_utf8.csv", "--recipe", recipe, "--out", tmp_path / "o")
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert "recipe_wrong_types.yaml" in text
    for field in ("model.max_length", "optimizer.lr", "batch_size"):
        assert field in text, (field, text)


@pytest.mark.parametrize(
    ("name", "kept", "skipped"),
    [
        # a stray quote costs its own row only: the rows after it are read again
        (
            "malformed_quoting.csv",
            1,
            ["malformed_quoting.csv:2: unparseable row", "malformed_quoting.csv:4:"],
        ),
        (
            "short_rows.csv",
            1,
            ["short_rows.csv:2: expected 2 fields, found 1", "short_rows.csv:3: expected 2"],
        ),
        ("empty_texts.csv", 1, ["empty_texts.csv:2: empty text", "empty_texts.csv:3: empty text"]),
        ("nul_bytes.csv", 2, []),  # the NULs go, the messages stay
        ("bom_utf8.csv", 2, []),
        ("bom_utf16.csv", 2, []),
    ],
)
def test_broken_rows_are_counted_with_file_and_line(name: str, kept: int, skipped: list[str]) -> None:
    result = load_data(BAD / name)
    assert len(result.examples) == kept
    problems = [str(p) for p in result.problems]
    assert len(problems) == len(skipped), problems
    for want, got in zip(skipped, problems, strict=True):
        assert want in got
    assert all("\x00" not in e.text or e.text.replace("\x00", "") for e in result.examples)
    assert all(not e.text.startswith("\ufeff") for e in result.examples)


def test_a_folder_of_mixed_encodings_reads_each_file_in_its_own(tmp_path: Path) -> None:
    result = load_data(BAD / "mixed_encodings")
    texts = {e.text for e in result.examples}
    assert {"您好，明天开会", "您的账户异常请立即转账", "恭喜中獎請匯款手續費"} <= texts
    encodings = {Path(f).name: enc for f, enc in result.encodings.items()}
    assert encodings["b_gb18030.csv"] == "gb18030" and encodings["c_big5.csv"] == "big5"
    # the file no SMS encoding reads is used, but the report says so, by name
    from tunewise.data.prepare import prepare_data

    prepared = prepare_data(BAD / "mixed_encodings", fractions=(1.0, 0.0, 0.0), audit=False)
    notes = " ".join(prepared.report.notes)
    assert "d_latin1_broken.csv: read as" in notes and "neither UTF-8 nor a Chinese encoding" in notes


def test_a_megabyte_on_one_line_is_a_reported_skip(tmp_path: Path) -> None:
    data = tmp_path / "huge_line.csv"
    data.write_text("text,label\n" + "诈" * 1_000_000 + ",fraud\n您好，明天开会,normal\n", encoding="utf-8")
    result = load_data(data)
    assert [e.text for e in result.examples] == ["您好，明天开会"]
    assert len(result.problems) == 1 and "huge_line.csv:2: a field over" in str(result.problems[0])


def test_predict_reports_skipped_rows_and_writes_the_rest(tmp_path: Path, scratch_model) -> None:
    _, model = scratch_model
    out = tmp_path / "p.csv"
    result = _invoke("predict", "--model", model, "--input", BAD / "malformed_quoting.csv", "--output", out)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "skipped" in text and "malformed_quoting.csv:2" in text and "2 rows skipped" in text
    assert len(out.read_text(encoding="utf-8-sig").splitlines()) == 1 + 1


def test_labels_training_never_saw_are_a_clear_error_at_evaluation(tmp_path: Path, scratch_model) -> None:
    _, model = scratch_model
    result = _invoke("evaluate", "--model", model, "--data", BAD / "unknown_label.csv")
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert "lottery" in text and "unknown_label.csv" in text, text


def _broken_copy(model: Path, tmp_path: Path, how: str) -> Path:
    copy = tmp_path / f"model-{how}"
    shutil.copytree(model, copy, ignore=shutil.ignore_patterns("checkpoints", "logs"))
    weights = copy / "model.safetensors"
    if how == "missing":
        (copy / "vocab.txt").unlink()
    elif how == "truncated":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif how == "altered":
        data = bytearray(weights.read_bytes())
        data[-5] ^= 0x01  # one bit of one weight
        weights.write_bytes(bytes(data))
    elif how == "labels":
        labels = json.loads((copy / "labels.json").read_text(encoding="utf-8"))
        labels["labels"] = list(reversed(labels["labels"]))
        (copy / "labels.json").write_text(json.dumps(labels), encoding="utf-8")
    elif how == "config":
        (copy / "config.json").write_text('{"architectures": ["Bert', encoding="utf-8")
    return copy


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("missing", "vocab.txt is missing"),
        ("truncated", "model.safetensors"),
        ("altered", "model.safetensors: changed since training"),
        ("labels", "labels.json: changed since training"),
        ("config", "config.json: not valid JSON"),
    ],
)
def test_a_damaged_model_directory_is_named_before_it_is_used(
    tmp_path: Path, scratch_model, how: str, message: str
) -> None:
    _, model = scratch_model
    broken = _broken_copy(model, tmp_path, how)
    result = _invoke("predict", "--model", broken, "--text", "您好")
    assert result.exit_code == 2
    assert message in " ".join(result.output.split()).replace(" \n", ""), result.output
    from tunewise.inference import Predictor

    with pytest.raises(TunewiseError):
        Predictor(broken)


def test_truncated_weights_are_caught_without_a_manifest(tmp_path: Path, scratch_model) -> None:
    """A plain Hugging Face directory has no manifest: the safetensors header still shows the cut."""
    _, model = scratch_model
    broken = _broken_copy(model, tmp_path, "truncated")
    (broken / "manifest.json").unlink()
    result = _invoke("predict", "--model", broken, "--text", "您好")
    assert result.exit_code == 2
    assert "truncated" in result.output


def test_a_checkpoint_that_ships_code_is_refused_and_its_code_never_runs(tmp_path: Path) -> None:
    """`trust_remote_code` stays off unless asked: a checkpoint whose config points at its own
    Python module is a clear error, and that module is never imported."""
    ckpt = tmp_path / "custom-ckpt"
    ckpt.mkdir()
    marker = tmp_path / "code-ran"
    (ckpt / "config.json").write_text(
        json.dumps({"model_type": "evil-bert", "auto_map": {"AutoConfig": "evil.EvilConfig"}}),
        encoding="utf-8",
    )
    (ckpt / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n", encoding="utf-8")
    result = _invoke(
        "train",
        "--data",
        write_csv(tmp_path / "sms.csv", make_messages(10)),
        "--recipe",
        "finetune",
        "--pretrained",
        ckpt,
        "--out",
        tmp_path / "out",
    )
    assert result.exit_code == 2
    assert "--trust-remote-code" in " ".join(result.output.split())
    assert not marker.exists()
