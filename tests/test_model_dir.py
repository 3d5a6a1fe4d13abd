"""The saved model directory has one owner: its file names, and atomic writes of its files."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from safetensors.torch import load_file
from transformers import BertConfig, BertForSequenceClassification

import tunewise
from tunewise import model_dir
from tunewise.errors import ModelError
from tunewise.models.build import load_meta

FILE_NAMES = {
    value for name, value in vars(model_dir).items() if name.endswith("_FILE") and isinstance(value, str)
}


def _tiny(seed: int) -> BertForSequenceClassification:
    import torch

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=30, hidden_size=8, num_hidden_layers=1, num_attention_heads=1, intermediate_size=8
    )
    return BertForSequenceClassification(config)


def _string_literals(tree: ast.AST) -> list[tuple[int, str]]:
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]


def test_no_module_but_model_dir_spells_the_file_names() -> None:
    # checkpoints are their own format (training/checkpoint.py owns their file names)
    allowed = {"model_dir.py", "checkpoint.py"}
    found = []
    for path in Path(tunewise.__file__).parent.rglob("*.py"):
        if path.name in allowed:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        found += [
            f"{path.name}:{line} {value!r}" for line, value in _string_literals(tree) if value in FILE_NAMES
        ]
    assert not found, f"use the constants of tunewise.model_dir: {found}"


def test_meta_round_trip_and_a_corrupt_meta_file_names_itself(tmp_path: Path) -> None:
    assert model_dir.read_meta(tmp_path) == {}  # a plain Hugging Face directory
    model_dir.write_meta(tmp_path, {"max_length": 64, "labels": ["正常", "诈骗"]})
    assert model_dir.read_meta(tmp_path) == {"max_length": 64, "labels": ["正常", "诈骗"]}
    (tmp_path / model_dir.META_FILE).write_text('{"max_length": 6', encoding="utf-8")
    with pytest.raises(ModelError, match=r"tunewise\.json: not valid JSON"):
        model_dir.read_meta(tmp_path)
    (tmp_path / model_dir.META_FILE).write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(ModelError, match="expected a JSON object"):
        model_dir.read_meta(tmp_path)
    with pytest.raises(ModelError, match="not a model directory"):
        load_meta(tmp_path)  # no config.json


def test_save_weights_replaces_whole_files_and_a_failed_save_keeps_the_old_ones(tmp_path: Path) -> None:
    first, second = _tiny(0), _tiny(1)
    model_dir.save_weights(first, tmp_path)
    old = load_file(str(tmp_path / model_dir.WEIGHTS_FILE))
    assert model_dir.has_config(tmp_path) and model_dir.has_weights(tmp_path)

    class DiesMidSave(BertForSequenceClassification):
        def save_pretrained(self, directory, **kwargs):  # the weights are written, then the process "dies"
            super().save_pretrained(directory, **kwargs)
            raise OSError("No space left on device")

    dying = DiesMidSave(second.config)
    dying.load_state_dict(second.state_dict())
    with pytest.raises(OSError, match="No space left"):
        model_dir.save_weights(dying, tmp_path)
    kept = load_file(str(tmp_path / model_dir.WEIGHTS_FILE))
    assert all((kept[k] == old[k]).all() for k in old)  # the finished model is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == [model_dir.CONFIG_FILE, model_dir.WEIGHTS_FILE]

    model_dir.save_weights(second, tmp_path)
    new = load_file(str(tmp_path / model_dir.WEIGHTS_FILE))
    assert any(not (new[k] == old[k]).all() for k in old)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left behind
