"""``tunewise export``: a trained model directory to ONNX, checked against PyTorch.

The exported directory is self-sufficient for inference: ``model.onnx`` (dynamic batch and
sequence axes), optionally ``model.int8.onnx`` (dynamic int8 quantisation by ONNX Runtime),
and the tokenizer, ``config.json`` and ``tunewise.json`` of the source, so the normaliser,
labels and length limit travel with it. By default the graph uses ONNX Runtime's fused
transformer operators (Attention, SkipLayerNormalization, BiasGelu), which score faster on
CPU; ``optimize=False`` keeps standard ONNX operators for other runtimes. ``export.json``
records the parity check: the largest class-probability difference between ONNX Runtime
and PyTorch on sample inputs (fp32 must stay within 1e-4 or the export fails), and with an
eval file the macro-F1 of PyTorch, ONNX fp32 and int8.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from tunewise.errors import ExportError
from tunewise.faults import fault_point
from tunewise.model_dir import EXPORT_FILE, INT8_FILE, MANIFEST_FILE, ONNX_FILE, read_meta
from tunewise.models.build import load_trained
from tunewise.tracks import track_of
from tunewise.training.checkpoint import write_json_atomic

FP32_TOLERANCE = 1e-4
OPSET = 18
QUANTIZED_OPS = ["MatMul"]

# Parity probes when no eval file is given: short, long, obfuscated, mixed-script, empty-ish.
PROBE_TEXTS = [
    "【工商银行】您尾号6621卡11月27日工资收入8,650.00元。",
    "您的ETC已失效，请点击 etc-renzheng点cn 重新认证，逾期注销。",
    "妈，我到学校了。",
    "加/微/信 jia wei xin dk-8866，无抵押贷款当天到账，不看征信，详询客服经理。" * 3,
    "Your code is 4917.",
    "好",
]


class _Logits(torch.nn.Module):
    """The classifier as ONNX sees it: (input_ids, attention_mask) -> logits."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits


@contextmanager
def _quiet_exporters() -> Iterator[None]:
    """Hide the exporter's and quantiser's expected chatter (missing torchvision ops, axis
    renaming, "consider pre-processing"); errors still raise, and the parity check reports."""
    loggers = [logging.getLogger(), logging.getLogger("torch.onnx")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.onnx")
            warnings.filterwarnings("ignore", category=FutureWarning)
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _export_graph(model: torch.nn.Module, path: Path, max_length: int) -> None:
    wrapper = _Logits(model).eval()
    example = torch.randint(5, 100, (2, min(16, max_length)), dtype=torch.long)
    mask = torch.ones_like(example)
    batch = torch.export.Dim("batch", min=1, max=65536)
    seq = torch.export.Dim("sequence", min=1, max=max_length)
    with torch.no_grad(), _quiet_exporters():
        program = torch.onnx.export(
            wrapper,
            (example, mask),
            input_names=["input_ids", "attention_mask"],
            output_names=["logits"],
            dynamic_shapes={"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}},
            opset_version=OPSET,
            dynamo=True,
            verbose=False,
        )
    program.save(str(path))


def _fuse_for_ort(path: Path) -> dict[str, int]:
    """Rewrite ``path`` in place with ONNX Runtime's fused transformer operators.

    onnxscript's ``optimize_for_ort`` knows the graphs torch's exporter writes (ORT's older
    ``onnxruntime.transformers`` optimizer does not find their attention). Returns how many
    of each fusion applied; the caller checks parity with PyTorch afterwards, as for any export.
    """
    import onnx_ir as ir
    import onnxscript.optimizer
    from onnxscript.rewriter.ort_fusions import optimize_for_ort

    model = ir.load(str(path))
    onnxscript.optimizer.optimize(model)
    model, counts = optimize_for_ort(model)
    fused = path.with_suffix(".fused.tmp")
    try:
        ir.save(model, str(fused))
        fused.replace(path)  # the plain graph stays in place unless the fused one is complete
    finally:
        fused.unlink(missing_ok=True)
    return {name: int(n) for name, n in counts.items() if n}


def _copy_side_files(source: Path, out: Path) -> None:
    """Everything but weights and training state: tokenizer, config, tunewise.json, labels."""
    for f in source.iterdir():
        # not the manifest: it lists the weights, which an export does not carry
        if (
            f.is_file()
            and f.suffix not in (".safetensors", ".bin", ".pt", ".onnx")
            and f.name != MANIFEST_FILE
        ):
            shutil.copy2(f, out / f.name)


def _eval_macro_f1(predictors: dict, data: str | Path, model_dir: Path, **columns) -> dict[str, float]:
    from tunewise.evaluation import select_examples
    from tunewise.metrics import classification_metrics

    any_predictor = next(iter(predictors.values()))
    chosen = select_examples(any_predictor, data, "auto", model_dir=model_dir, **columns)
    scores = {}
    for name, predictor in predictors.items():
        probs, _ = predictor.predict_proba(chosen.texts)
        scores[name] = classification_metrics(chosen.label_ids, probs.argmax(1).tolist(), predictor.labels)[
            "macro_f1"
        ]
    scores["rows"] = len(chosen.texts)
    scores["selection"] = chosen.note
    return scores


def _quantize_int8(fp32: Path, int8: Path) -> None:
    """Dynamic int8 quantisation of the MatMul weights of ``fp32`` into ``int8``."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # The quantiser re-runs ONNX shape inference and rewrites Gemm as MatMul with the weight
    # transposed in place; ONNX Runtime before 1.32 left the exporter's shape annotations
    # (value_info) of the old layout behind, and shape inference then failed ("inferred
    # shape and existing shape differ"). The annotations are optional: drop them.
    model = onnx.load(str(fp32))
    del model.graph.value_info[:]
    # MatMul weights only: quantising the embedding tables (Gather) too cost 0.52
    # macro-F1 points on the telecom test split for no speed gain (BENCHMARKS.md)
    with _quiet_exporters():
        quantize_dynamic(
            model,
            str(int8),
            weight_type=QuantType.QInt8,
            op_types_to_quantize=QUANTIZED_OPS,
            # fused operators are outside ONNX shape inference: their outputs are float
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )


def export_onnx(
    model_dir: str | Path,
    out: str | Path,
    *,
    quantize: bool = False,
    optimize: bool = True,
    eval_data: str | Path | None = None,
    probe_texts: list[str] | None = None,
    label_map: str | Path | None = None,
    text_column: str | None = None,
    label_column: str | None = None,
) -> dict:
    """Export ``model_dir`` to ONNX in ``out``, check parity, optionally quantise to int8.

    ``optimize`` fuses the graph for ONNX Runtime (see the module docstring); the parity
    check applies to the file written either way. Returns (and writes as ``export.json``)
    the parity figures.

    Example:
        >>> report = export_onnx("runs/demo/model", "runs/demo/onnx", quantize=True)  # doctest: +SKIP
        >>> report["fp32"]["max_prob_diff"] <= 1e-4  # doctest: +SKIP
        True
    """
    model_dir, out = Path(model_dir), Path(out)
    if out.resolve() == model_dir.resolve():
        raise ExportError("--out must be a new directory, not the model directory itself")
    image = track_of(read_meta(model_dir)) == "image"
    if image and quantize:
        raise ExportError(
            "int8 quantisation is for the text models' MatMul weights; an image CNN is exported in fp32"
        )
    # everything is written into a staging folder beside `out` and moved in when complete:
    # an export killed half-way leaves no truncated model.onnx under `out`
    for stale in out.parent.glob(f".{out.name}.export-*"):
        shutil.rmtree(stale, ignore_errors=True)  # left by an export that was killed
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.export-"))
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(stage, 0o777 & ~mask)  # mkdtemp's folder is private; an export is meant to be shared
    try:
        if image:
            report = export_image_onnx(
                model_dir, stage, eval_data=eval_data, label_map=label_map, path_column=text_column
            )
        else:
            report = _export_text(
                model_dir,
                stage,
                quantize=quantize,
                optimize=optimize,
                eval_data=eval_data,
                probe_texts=probe_texts,
                label_map=label_map,
                text_column=text_column,
                label_column=label_column,
            )
    except ExportError:
        if (stage / EXPORT_FILE).is_file():  # a finished graph that failed its parity check
            _publish(stage, out)
        else:
            shutil.rmtree(stage, ignore_errors=True)
        raise
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    _publish(stage, out)
    return report


def _publish(stage: Path, out: Path) -> None:
    """Move a finished export from ``stage`` into ``out``: the whole folder in one rename when
    ``out`` is new, else file by file (each rename atomic), ``export.json`` last."""
    if not out.exists():
        os.rename(stage, out)
        return
    out.mkdir(parents=True, exist_ok=True)
    for name in sorted(os.listdir(stage), key=lambda n: n == EXPORT_FILE):
        os.replace(stage / name, out / name)
    shutil.rmtree(stage, ignore_errors=True)


def _export_text(
    model_dir: Path,
    out: Path,
    *,
    quantize: bool,
    optimize: bool,
    eval_data: str | Path | None,
    probe_texts: list[str] | None,
    label_map: str | Path | None,
    text_column: str | None,
    label_column: str | None,
) -> dict:
    """``export_onnx`` for a text model, into ``out`` (the staging folder)."""
    from tunewise.inference import Predictor

    loaded = load_trained(model_dir)
    out.mkdir(parents=True, exist_ok=True)
    _copy_side_files(model_dir, out)
    started = time.perf_counter()
    try:
        _export_graph(loaded.model, out / ONNX_FILE, loaded.max_length)
        fault_point("export.write")
    except Exception as exc:  # the exporter's own errors are long; keep the cause visible
        raise ExportError(f"{model_dir}: ONNX export failed: {type(exc).__name__}: {exc}") from exc
    fusions: dict[str, int] | str = "off"
    if optimize:
        try:
            fusions = _fuse_for_ort(out / ONNX_FILE)
        except Exception as exc:  # a graph the rewriter cannot handle: ship the plain one
            fusions = f"failed, standard operators kept ({type(exc).__name__}: {exc})"
    report: dict = {
        "source": str(model_dir),
        "opset": OPSET,
        "onnx": ONNX_FILE,
        "onnx_bytes": (out / ONNX_FILE).stat().st_size,
        "ort_fusions": fusions,
        "export_seconds": round(time.perf_counter() - started, 2),
    }

    texts = probe_texts or PROBE_TEXTS
    torch_predictor = Predictor(loaded, backend="torch")
    reference, _ = torch_predictor.predict_proba(texts)
    predictors = {"pytorch": torch_predictor, "onnx_fp32": Predictor(out, backend="onnx")}
    diff = float(np.abs(predictors["onnx_fp32"].predict_proba(texts)[0] - reference).max())
    report["fp32"] = {"max_prob_diff": diff, "probe_texts": len(texts), "tolerance": FP32_TOLERANCE}
    if diff > FP32_TOLERANCE:
        write_json_atomic(out / EXPORT_FILE, report)
        raise ExportError(
            f"ONNX fp32 probabilities differ from PyTorch by {diff:.2e} (> {FP32_TOLERANCE:g}); "
            f"details in {out / EXPORT_FILE}"
        )
    if quantize:
        _quantize_int8(out / ONNX_FILE, out / INT8_FILE)
        predictors["onnx_int8"] = Predictor(out, backend="onnx", quantized=True)
        int8_diff = float(np.abs(predictors["onnx_int8"].predict_proba(texts)[0] - reference).max())
        report["int8"] = {
            "file": INT8_FILE,
            "quantized_ops": QUANTIZED_OPS,
            "bytes": (out / INT8_FILE).stat().st_size,
            "max_prob_diff": int8_diff,
        }
    if eval_data is not None:
        columns = {"label_map": label_map, "text_column": text_column, "label_column": label_column}
        scores = _eval_macro_f1(predictors, eval_data, model_dir, **columns)
        report["eval"] = {"data": str(eval_data), **scores}
        if quantize:
            report["eval"]["int8_macro_f1_change"] = scores["onnx_int8"] - scores["onnx_fp32"]
    write_json_atomic(out / EXPORT_FILE, report)
    return report


def probe_images(size: int, n: int = 6) -> list:
    """Deterministic parity probes for an image model: noise, gradients and flat colours, in
    sizes other than the network's, so resizing and cropping are exercised too.

    Example:
        >>> [im.size for im in probe_images(32, 3)]
        [(32, 32), (69, 27), (10, 64)]
    """
    from PIL import Image

    rng = np.random.default_rng(0)
    shapes = [(size, size), (size + 37, size // 2 + 11), (max(8, size // 3), size * 2)]
    probes = []
    for i in range(n):
        w, h = shapes[i % len(shapes)]
        if i % 3 == 0:
            pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        elif i % 3 == 1:
            ramp = np.linspace(0, 255, w, dtype=np.float64)[None, :, None]
            pixels = np.broadcast_to(ramp * rng.random(3), (h, w, 3)).astype(np.uint8)
        else:
            pixels = np.full((h, w, 3), rng.integers(0, 256, 3), dtype=np.uint8)
        probes.append(Image.fromarray(pixels))
    return probes


def export_image_onnx(
    model_dir: Path,
    out: Path,
    *,
    eval_data: str | Path | None = None,
    label_map: str | Path | None = None,
    path_column: str | None = None,
) -> dict:
    """``export_onnx`` for an image model: ``x`` (batch, 3, size, size) -> ``logits``, the
    batch axis dynamic, checked against PyTorch on probe images (and on ``eval_data``).

    Example:
        >>> report = export_image_onnx(Path("runs/ants"), Path("runs/ants-onnx"))  # doctest: +SKIP
        >>> report["fp32"]["max_prob_diff"] < 1e-4  # doctest: +SKIP
        True
    """
    from tunewise.tracks.image import ImagePredictor, load_image_model

    model, inputs, _ = load_image_model(model_dir)
    out.mkdir(parents=True, exist_ok=True)
    _copy_side_files(model_dir, out)
    started = time.perf_counter()
    example = torch.zeros(2, 3, inputs.size, inputs.size)
    try:
        with torch.no_grad(), _quiet_exporters():
            program = torch.onnx.export(
                model.eval(),
                (example,),
                input_names=["x"],
                output_names=["logits"],
                dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1, max=65536)}},
                opset_version=OPSET,
                dynamo=True,
                verbose=False,
            )
        program.save(str(out / ONNX_FILE))
        fault_point("export.write")
    except Exception as exc:
        raise ExportError(f"{model_dir}: ONNX export failed: {type(exc).__name__}: {exc}") from exc
    report: dict = {
        "source": str(model_dir),
        "track": "image",
        "opset": OPSET,
        "onnx": ONNX_FILE,
        "onnx_bytes": (out / ONNX_FILE).stat().st_size,
        "input": {"name": "x", "shape": ["batch", 3, inputs.size, inputs.size]},
        "export_seconds": round(time.perf_counter() - started, 2),
    }
    predictors = {
        # on the CPU, as ONNX Runtime runs: a GPU's TF32 convolutions differ by more than 1e-4
        "pytorch": ImagePredictor(model_dir, backend="torch", device="cpu"),
        "onnx_fp32": ImagePredictor(out, backend="onnx"),
    }
    probes = probe_images(inputs.size)
    reference, _ = predictors["pytorch"].predict_proba(probes)
    diff = float(np.abs(predictors["onnx_fp32"].predict_proba(probes)[0] - reference).max())
    report["fp32"] = {"max_prob_diff": diff, "probe_images": len(probes), "tolerance": FP32_TOLERANCE}
    if diff > FP32_TOLERANCE:
        write_json_atomic(out / EXPORT_FILE, report)
        raise ExportError(
            f"ONNX fp32 probabilities differ from PyTorch by {diff:.2e} (> {FP32_TOLERANCE:g}); "
            f"details in {out / EXPORT_FILE}"
        )
    if eval_data is not None:
        scores = _eval_macro_f1(
            predictors, eval_data, model_dir, label_map=label_map, text_column=path_column
        )
        report["eval"] = {"data": str(eval_data), **scores}
    write_json_atomic(out / EXPORT_FILE, report)
    return report
