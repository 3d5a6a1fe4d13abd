"""A new user's first commands (issue 20): argument errors before any heavy import, input
columns passed through by `predict`, and `train --recipe finetune` with the bundled encoder."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tunewise.cli import app
from tunewise.pretrained import suited_recipe

BAD = Path(__file__).parent / "bad_inputs"

# runs the command line in a fresh interpreter and reports whether torch, transformers and the
# recipe models (pydantic, validated only once the arguments are known to be right) got imported
_PROBE = """
import sys
from tunewise.cli import run
sys.argv = ["tunewise", *sys.argv[1:]]
try:
    run()
except SystemExit as e:
    heavy = ("torch", "transformers", "tunewise.recipes.schema")
    print("exit", e.code, *(name in sys.modules for name in heavy), file=sys.stderr)
"""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--data", "nonexistent.csv", "--recipe", "scratch", "--out", "{tmp}/o"], "no such file"),
        (
            ["train", "--data", str(BAD / "no_label_column.csv"), "--recipe", "scratch", "--out", "{tmp}/o"],
            "no label column",
        ),
        (
            ["train", "--data", str(BAD / "bom_utf8.csv"), "--recipe", "scrach", "--out", "{tmp}/o"],
            "no recipe 'scrach'",
        ),
        (["predict", "--model", "nonexistent", "--text", "你好"], "not a model directory"),
        (["evaluate", "--model", "nonexistent", "--data", "nonexistent.csv"], "not a model directory"),
    ],
)
def test_argument_errors_come_before_torch_is_imported(tmp_path: Path, args: list[str], message: str) -> None:
    """Speed is measured in bench/cli_startup.py; here, the cause: nothing heavy is loaded."""
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    done = subprocess.run([sys.executable, "-c", _PROBE, *args], capture_output=True, text=True, timeout=120)
    assert message in done.stderr, done.stderr
    assert "exit 2 False False False" in done.stderr, done.stderr


def test_predict_passes_every_input_column_through(tmp_path: Path, scratch_model) -> None:
    _, model = scratch_model
    data = tmp_path / "in.csv"
    data.write_text(
        "id,text,label,channel\n"
        "a1,您的快递已到驿站，请凭取件码取件,normal,sms\n"
        "a2,   ,normal,sms\n"  # skipped (empty): the ids show which row is missing
        "a3,我是公安局民警，你涉嫌洗钱,police,app\n",
        encoding="utf-8",
    )
    runner = CliRunner()
    for suffix in ("csv", "jsonl"):
        out = tmp_path / f"p.{suffix}"
        result = runner.invoke(
            app, ["predict", "--model", str(model), "--input", str(data), "--output", str(out)]
        )
        assert result.exit_code == 0, result.output
        if suffix == "csv":
            with out.open(encoding="utf-8-sig") as f:
                rows = list(csv.DictReader(f))
            header = list(rows[0])
            # the text, the input's other columns (its true label renamed), then the prediction
            assert header[:4] == ["text", "id", "input_label", "channel"] and header[4] == "label"
        else:
            rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
            assert (
                list(rows[0])[:4] == ["text", "id", "input_label", "channel"] and "probabilities" in rows[0]
            )
        assert [r["id"] for r in rows] == ["a1", "a3"]
        assert [r["input_label"] for r in rows] == ["normal", "police"]
        assert [r["channel"] for r in rows] == ["sms", "app"]


def test_finetune_with_the_bundled_encoder_becomes_finetune_small(tmp_path: Path) -> None:
    assert suited_recipe("finetune", None)[0] == "finetune-small"
    assert suited_recipe("finetune", "tunewise-mini-zh")[0] == "finetune-small"
    assert suited_recipe("finetune-dapt", None)[0] == "finetune-small-dapt"
    assert suited_recipe("finetune", "bert-base-chinese") == ("finetune", None)
    assert suited_recipe("scratch", None) == ("scratch", None)
    recipe_file = tmp_path / "finetune.yaml"  # a file is used as it is
    assert suited_recipe(str(recipe_file), None) == (str(recipe_file), None)
    # the command says so, with the way to keep `finetune` (here it then stops on the data)
    data = str(BAD / "no_label_column.csv")
    result = CliRunner().invoke(
        app, ["train", "--data", data, "--recipe", "finetune", "--out", str(tmp_path / "o")]
    )
    text = " ".join(result.output.split())
    assert "using recipe 'finetune-small' instead of 'finetune'" in text
    assert "tunewise recipes show finetune > finetune.yaml" in text


def test_help_shows_flags_without_a_value_and_whole_descriptions() -> None:
    runner = CliRunner()
    train = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "100"}).output
    assert "--resume " in train and "<bool>" not in train  # an on/off flag takes no value
    assert "--epochs <int>" in train  # a valued option says what value
    top = runner.invoke(app, ["evaluate", "--help"], env={"COLUMNS": "100"}).output
    # the docstring's line breaks are not kept: the description is re-wrapped as one paragraph
    assert "+ PNG, and each --test-data set" in " ".join(top.split())
    demo = " ".join(runner.invoke(app, ["demo", "--help"]).output.split())
    assert "keep the best all-labels run as the final model" in demo and "trains the final" not in demo


def test_the_quick_start_installs_the_cpu_build_and_says_what_it_downloads() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    start = readme.index("## Quick start")
    first_block = readme[start : readme.index("```", readme.index("```bash", start) + 7)]
    commands = [line for line in first_block.splitlines() if line.startswith(".venv/bin/")]
    # torch first, pinned, from the CPU index: `pip install -e .` alone would pull the CUDA build
    assert (
        commands[0]
        == '.venv/bin/pip install "torch==2.13.0" --index-url https://download.pytorch.org/whl/cpu'
    )
    assert commands[1].startswith('.venv/bin/pip install -e ".[dev]"')
    assert "192 MB download" in first_block and "NVIDIA GPU" in first_block and "3 GB" in first_block
