"""`tunewise export`: real ONNX export, real ONNX Runtime, parity with PyTorch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from typer.testing import CliRunner

from tunewise.cli import app
from tunewise.export import FP32_TOLERANCE, ExportError, export_onnx
from tunewise.inference import Predictor
from tunewise.models.build import ModelError

from .conftest import make_messages


def assert_same_predictions(a: list, b: list) -> None:
    """Probabilities within the fp32 tolerance; labels equal except on a near-tie, which
    another summation order (backend, thread count) may legitimately swap."""
    for pa, pb in zip(a, b, strict=True):
        for label in pa.probabilities:
            assert abs(pa.probabilities[label] - pb.probabilities[label]) <= FP32_TOLERANCE, label
        if pa.label != pb.label:
            top_two = sorted(pa.probabilities.values())[-2:]
            assert top_two[1] - top_two[0] <= 2 * FP32_TOLERANCE, (pa, pb)


@pytest.fixture(scope="module")
def data(bert_model: tuple[Path, Path]) -> Path:
    return bert_model[0]


@pytest.fixture(scope="module")
def bert_dir(bert_model: tuple[Path, Path]) -> Path:
    return bert_model[1]


@pytest.fixture(scope="module")
def textcnn_model(scratch_model) -> Path:
    return scratch_model[1]


@pytest.mark.parametrize("which", ["bert_dir", "textcnn_model"])
def test_export_matches_pytorch_with_dynamic_axes(which, request, tmp_path, data):
    model_dir = request.getfixturevalue(which)
    out = tmp_path / "onnx"
    report = export_onnx(model_dir, out, quantize=True, eval_data=data)
    assert report["fp32"]["max_prob_diff"] <= FP32_TOLERANCE
    assert (out / "model.onnx").is_file() and (out / "model.int8.onnx").is_file()
    assert not list(out.glob("*.safetensors"))  # an export carries no PyTorch weights
    assert json.loads((out / "export.json").read_text()) == report
    ev = report["eval"]
    assert ev["pytorch"] == pytest.approx(ev["onnx_fp32"], abs=1e-9)
    assert ev["int8_macro_f1_change"] == pytest.approx(ev["onnx_int8"] - ev["onnx_fp32"])
    assert "test split" in ev["selection"]  # the model's own held-out split, as evaluate does
    if which == "bert_dir":  # fused for ONNX Runtime by default, and still within parity
        ops = {(n.domain, n.op_type) for n in onnx.load(str(out / "model.onnx")).graph.node}
        assert report["ort_fusions"]["attention"] >= 2  # one per layer
        assert {("com.microsoft", "Attention"), ("com.microsoft", "SkipLayerNormalization")} <= ops

    # dynamic axes: any batch size and sequence length run in ONNX Runtime
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    for batch, seq in ((1, 3), (7, 50)):
        ids = np.random.default_rng(0).integers(5, 50, (batch, seq), dtype=np.int64)
        (logits,) = session.run(["logits"], {"input_ids": ids, "attention_mask": np.ones_like(ids)})
        assert logits.shape == (batch, len(Predictor(out).labels))

    # the export is a model directory of its own: labels, normaliser and windows come along
    torch_side = Predictor(model_dir, long_text="window")
    onnx_side = Predictor(out, long_text="window")
    assert onnx_side.backend == "onnx" and torch_side.backend == "torch"
    if (model_dir / "calibration.json").is_file():  # trained by tunewise: calibrated, and so is the export
        assert onnx_side.temperature == torch_side.temperature != 1.0
    texts = [t for t, _ in make_messages(5, seed=3)] + ["很长的短信" * 200]
    a, b = torch_side.predict(texts), onnx_side.predict(texts)
    assert_same_predictions(a, b)
    assert [p.handling for p in a] == [p.handling for p in b] and b[-1].handling.startswith("windows:")
    int8 = Predictor(out, quantized=True).predict(texts)
    assert all(abs(sum(p.probabilities.values()) - 1) < 1e-6 for p in int8)
    # what `serve` uses: no busy-waiting ORT threads; same long-text handling as `b`
    calm = Predictor(out, spin=False, long_text="window")
    options = calm.scorer.session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert_same_predictions(calm.predict(texts), b)


def test_cli_export_and_predict_with_each_backend(bert_dir, tmp_path):
    bert_model = bert_dir
    out = tmp_path / "cli-onnx"
    runner = CliRunner()
    result = runner.invoke(
        app, ["export", "--model", str(bert_model), "--out", str(out), "--quantize", "--no-optimize"]
    )
    assert result.exit_code == 0, result.output
    assert "fp32 parity: largest probability difference" in result.stderr
    # --no-optimize: standard ONNX operators only, for runtimes other than ONNX Runtime
    assert json.loads((out / "export.json").read_text())["ort_fusions"] == "off"
    assert {n.domain for n in onnx.load(str(out / "model.onnx")).graph.node} <= {"", "ai.onnx"}
    text = "您的ETC已失效，请点击链接重新认证"
    labels = {}
    for backend, extra in (("torch", []), ("onnx", []), ("onnx", ["--quantized"])):
        model = bert_model if backend == "torch" else out
        result = runner.invoke(
            app, ["predict", "--model", str(model), "--text", text, "--backend", backend, *extra]
        )
        assert result.exit_code == 0, result.output
        labels[(backend, bool(extra))] = json.loads(result.stdout)["label"]
    assert labels[("torch", False)] == labels[("onnx", False)]


def test_export_errors_are_clear(bert_dir, tmp_path):
    bert_model = bert_dir
    with pytest.raises(ExportError, match="new directory"):
        export_onnx(bert_model, bert_model)
    with pytest.raises(ModelError, match="no model.onnx"):
        Predictor(bert_model, backend="onnx")
    with pytest.raises(ModelError, match="needs the onnx backend"):
        Predictor(bert_model, quantized=True)
    with pytest.raises(ModelError, match="not a model directory"):
        export_onnx(tmp_path, tmp_path / "out")
    result = CliRunner().invoke(
        app, ["predict", "--model", str(bert_model), "--text", "x", "--backend", "gpu"]
    )
    assert result.exit_code == 2 and "--backend must be" in result.stderr
