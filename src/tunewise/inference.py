"""Prediction with a trained model directory: normalise exactly as in training, batch by
length, and handle texts longer than the model's limit.

Over-long texts are truncated to the first ``max_length`` tokens by default, exactly as
training scored its dev split, so a model's reported figures are what it delivers. Averaging
overlapping windows (``long_text="window"``) is available but measured worse: a model that
only ever saw message openings misreads their middles (scratch TextCNN on
telecom_fraud_5, 128 tokens: dev macro-F1 0.980 truncated vs 0.908 windowed).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from tunewise.calibration import load_calibration, softmax
from tunewise.data.normalize import SmsNormalizer
from tunewise.errors import TunewiseError
from tunewise.model_dir import ONNX_FILE, has_weights, onnx_path
from tunewise.models.build import LoadedModel, ModelError, ModelMeta, load_meta, load_trained
from tunewise.models.tokenization import quiet_transformers
from tunewise.threshold import load_threshold, no_normal_class_message, resolve_normal_label
from tunewise.training.distributed import process_index, sum_across_processes, world_size

LongText = Literal["window", "truncate"]
DEFAULT_LONG_TEXT: LongText = "truncate"  # as training scores dev; see the module docstring


@dataclass(frozen=True)
class Prediction:
    """The result for one text."""

    text: str
    label: str
    probabilities: dict[str, float]
    tokens: int
    handling: str  # "full", "windows:N" (averaged) or "truncated"
    fraud_score: float | None = None  # 1 - P(normal), when the labels have a normal class
    flagged: bool | None = None  # fraud_score >= the model's threshold, when it has one

    def to_dict(self) -> dict:
        d = {
            "text": self.text,
            "label": self.label,
            "probabilities": self.probabilities,
            "tokens": self.tokens,
            "long_text": self.handling,
        }
        if self.fraud_score is not None:
            d["fraud_score"] = self.fraud_score
        if self.flagged is not None:
            d["flagged"] = self.flagged
        return d


@dataclass
class Encoded:
    """Texts turned into model inputs: ``pieces[j]`` belongs to text ``owners[j]``."""

    texts: list[str]
    tokens: list[int]
    pieces: list[list[int]] = field(default_factory=list)
    owners: list[int] = field(default_factory=list)
    handling: list[str] = field(default_factory=list)


def special_token_frame(tokenizer) -> tuple[list[int], list[int]]:
    """The ids a tokenizer puts before and after a text (``[CLS]`` … ``[SEP]`` for BERT).

    Found by tokenizing a probe with and without special tokens, which works for every
    tokenizer family (transformers 5 tokenizers no longer expose
    ``build_inputs_with_special_tokens``).
    """
    probe = "中文 probe"
    framed = tokenizer(probe, add_special_tokens=True)["input_ids"]
    body = tokenizer(probe, add_special_tokens=False)["input_ids"]
    for i in range(len(framed) - len(body) + 1):
        if framed[i : i + len(body)] == body:
            return framed[:i], framed[i + len(body) :]
    raise ValueError(f"cannot locate the text inside {type(tokenizer).__name__}'s special tokens")


Backend = Literal["auto", "torch", "onnx"]


class TorchScorer:
    """Logits from a PyTorch model (CPU or GPU)."""

    name = "torch"

    def __init__(self, model: torch.nn.Module, device: str | None = None) -> None:
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device).eval()

    @torch.no_grad()
    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        logits = self.model(
            input_ids=torch.from_numpy(input_ids).to(self.device),
            attention_mask=torch.from_numpy(attention_mask).to(self.device),
        ).logits
        return logits.float().cpu().numpy()


class OnnxScorer:
    """Logits from an ONNX export, run by ONNX Runtime on the CPU."""

    name = "onnx"

    def __init__(self, path: str | Path, threads: int | None = None, spin: bool = True) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        if not spin:
            # ORT's worker threads busy-wait after each run by default: right for batch jobs,
            # but in a server they take the cores the HTTP side needs (BENCHMARKS.md)
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.path = Path(path)
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        return self.session.run(["logits"], {"input_ids": input_ids, "attention_mask": attention_mask})[0]


def _choose_backend(directory: Path, backend: Backend) -> str:
    weights = has_weights(directory)
    has_onnx = onnx_path(directory).is_file()
    if backend == "auto":
        return "torch" if weights else "onnx" if has_onnx else "torch"
    if backend == "onnx" and not has_onnx:
        raise ModelError(
            f"{directory}: no {ONNX_FILE}; make one with `tunewise export --model DIR --out DIR`"
        )
    return backend


class Predictor:
    """Classify texts with a model saved by ``tunewise train`` or exported by ``tunewise export``.

    ``backend``: ``torch`` (the weights), ``onnx`` (``model.onnx``, or ``model.int8.onnx``
    with ``quantized=True``), or ``auto`` (the weights when present). Either way the texts
    are normalised exactly as in training and scored in length-sorted batches.
    ``spin=False`` stops ONNX Runtime's threads busy-waiting between calls (``serve`` does
    this: its HTTP side shares the cores). ``distributed=True`` (``predict`` under
    ``accelerate launch``): each length-sorted batch is scored by one of the launched
    processes and the logits are shared, so every process gets every result, bit for bit
    what one process would compute; every process must then be given the same texts.

    Example:
        >>> p = Predictor("runs/finetune")  # doctest: +SKIP
        >>> p.predict(["【工商银行】您的账户存在风险，请点击链接验证"])[0].label  # doctest: +SKIP
        '冒充客服服务'
    """

    def __init__(
        self,
        model_dir: str | Path | LoadedModel,
        *,
        batch_size: int = 64,
        long_text: LongText = DEFAULT_LONG_TEXT,
        device: str | None = None,
        backend: Backend = "auto",
        quantized: bool = False,
        threads: int | None = None,
        spin: bool = True,
        threshold: float | None = None,
        normal_label: str | None = None,
        calibrated: bool = True,
        distributed: bool = False,
    ) -> None:
        self.distributed = distributed
        if long_text not in ("window", "truncate"):
            raise TunewiseError(f"long_text must be 'window' or 'truncate', got {long_text!r}")
        if isinstance(model_dir, LoadedModel):
            if backend == "onnx":
                raise ModelError("backend 'onnx' needs an exported directory, not a loaded PyTorch model")
            info: LoadedModel | ModelMeta = model_dir
            self.scorer: TorchScorer | OnnxScorer = TorchScorer(model_dir.model, device)
        else:
            directory = Path(model_dir)
            chosen = _choose_backend(directory, backend)
            if chosen == "onnx":
                info = load_meta(directory)
                file = onnx_path(directory, quantized)
                if not file.is_file():
                    raise ModelError(f"{file}: not found; export with `tunewise export --quantize` for int8")
                self.scorer = OnnxScorer(file, threads, spin)
            else:
                if quantized:
                    raise ModelError("quantized (int8) scoring needs the onnx backend: --backend onnx")
                info = load_trained(directory)
                self.scorer = TorchScorer(info.model, device)
        self.loaded = info
        self.backend = self.scorer.name
        # temperature scaling fitted on dev after training (calibration.json); 1.0 without one
        self.calibration = None
        where = model_dir.directory if isinstance(model_dir, LoadedModel) else model_dir
        if calibrated and where is not None:
            try:
                self.calibration = load_calibration(where)
            except ValueError as e:
                raise ModelError(str(e)) from None
        self.temperature = self.calibration.temperature if self.calibration else 1.0
        # the fraud-score threshold: given, or chosen earlier by `tunewise threshold`
        stored = None if isinstance(model_dir, LoadedModel) else load_threshold(model_dir)
        recorded = dict(info.meta)
        if stored is not None and stored.normal_label and not recorded.get("normal_label"):
            recorded["normal_label"] = stored.normal_label  # named when the threshold was chosen
        try:
            self.normal_label = resolve_normal_label(info.labels, normal_label, recorded)
        except ValueError as e:
            raise ModelError(str(e)) from None
        self.threshold_choice = stored
        self.threshold = threshold if threshold is not None else (stored.threshold if stored else None)
        if self.threshold is not None and self.normal_label is None:
            raise ModelError(
                "a fraud-score threshold needs a normal class: " + no_normal_class_message(info.labels)
            )
        self.tokenizer = info.tokenizer
        self.labels = info.labels
        self.normalizer = SmsNormalizer(info.normalizer)
        self.batch_size = batch_size
        self.long_text = long_text
        self.prefix, self.suffix = special_token_frame(self.tokenizer)
        self.window = max(8, info.max_length - len(self.prefix) - len(self.suffix))

    @property
    def model(self) -> torch.nn.Module:
        """The PyTorch model (torch backend only)."""
        if not isinstance(self.scorer, TorchScorer):
            raise AttributeError("the onnx backend has no PyTorch model")
        return self.scorer.model

    def _pieces(self, ids: list[int]) -> list[list[int]]:
        if len(ids) <= self.window:
            return [ids]
        if self.long_text == "truncate":
            return [ids[: self.window]]
        stride = self.window // 2  # windows overlap by half so no phrase is cut in every window
        starts = list(range(0, len(ids) - self.window + 1, stride))
        if starts[-1] + self.window < len(ids):
            starts.append(len(ids) - self.window)
        return [ids[s : s + self.window] for s in starts]

    def encode(self, texts: list[str]) -> Encoded:
        """Normalise and tokenize ``texts`` and cut long ones into model-sized pieces."""
        normalized = self.normalizer.batch(texts)
        with quiet_transformers():  # over-long texts are expected here: truncated or windowed below
            ids_per_text = self.tokenizer(normalized, add_special_tokens=False, truncation=False)["input_ids"]
        encoded = Encoded(texts=list(texts), tokens=[len(ids) for ids in ids_per_text])
        for i, ids in enumerate(ids_per_text):
            parts = self._pieces(ids)
            encoded.owners.extend([i] * len(parts))
            encoded.pieces.extend(parts)
            if len(ids) <= self.window:
                encoded.handling.append("full")
            elif self.long_text == "truncate":
                encoded.handling.append("truncated")
            else:
                encoded.handling.append(f"windows:{len(parts)}")
        return encoded

    def piece_logits(
        self, texts: list[str] | Encoded, progress: Callable[[int], None] | None = None
    ) -> tuple[np.ndarray, Encoded]:
        """Raw logits ``(pieces, labels)`` — one row per model-sized piece (one per text when
        truncating) — before temperature and softmax, and the encoding.

        ``progress`` is called with the number of pieces scored after each batch.
        """
        encoded = texts if isinstance(texts, Encoded) else self.encode(texts)
        pieces = encoded.pieces
        # length-sorted batches: little padding, so short messages cost little
        order = sorted(range(len(pieces)), key=lambda j: len(pieces[j]))
        logits = np.zeros((len(pieces), len(self.labels)), dtype=np.float64)
        pad = self.tokenizer.pad_token_id or 0
        rank, processes = (process_index(), world_size()) if self.distributed else (0, 1)
        for k, start in enumerate(range(0, len(order), self.batch_size)):
            if k % processes != rank:
                continue  # another process's batch: the same batches, dealt round-robin
            idx = order[start : start + self.batch_size]
            batch = [self.prefix + pieces[j] + self.suffix for j in idx]
            width = max(len(b) for b in batch)
            input_ids = np.full((len(batch), width), pad, dtype=np.int64)
            mask = np.zeros((len(batch), width), dtype=np.int64)
            for row, ids in enumerate(batch):
                input_ids[row, : len(ids)] = ids
                mask[row, : len(ids)] = 1
            logits[idx] = self.scorer(input_ids, mask).astype(np.float64)
            if progress is not None:
                progress(len(idx))
        if processes > 1:
            # each row was scored by exactly one process, the rest hold zeros: the sum is exact
            logits = sum_across_processes(logits)
        return logits, encoded

    def predict_proba(
        self, texts: list[str] | Encoded, progress: Callable[[int], None] | None = None
    ) -> tuple[np.ndarray, Encoded]:
        """Class probabilities ``(n, labels)`` — calibrated by the model's temperature — and the
        encoding (token counts, handling).

        ``progress`` is called with the number of pieces scored after each batch.
        """
        logits, encoded = self.piece_logits(texts, progress)
        return self.combine(logits, encoded), encoded

    def combine(self, logits: np.ndarray, encoded: Encoded, temperature: float | None = None) -> np.ndarray:
        """Per-text probabilities from per-piece logits: softmax at ``temperature`` (default:
        the model's calibrated one), the windows of one text averaged."""
        piece_probs = softmax(logits, self.temperature if temperature is None else temperature)
        n = len(encoded.texts)
        probs = np.zeros((n, len(self.labels)))
        counts = np.zeros(n)
        np.add.at(probs, encoded.owners, piece_probs)
        np.add.at(counts, encoded.owners, 1)
        probs /= np.maximum(counts, 1)[:, None]  # windows of one text: mean probability
        return probs

    def scores(
        self, texts: list[str], progress: Callable[[int], None] | None = None
    ) -> tuple[np.ndarray, np.ndarray, dict]:
        """What ``evaluate`` reports: calibrated probabilities, the uncalibrated ones (temperature
        1), and how over-long texts were handled.

        Example:
            >>> probs, raw, handling = Predictor("runs/sms").scores(["您好"])  # doctest: +SKIP
            >>> handling  # doctest: +SKIP
            {'long_text': 'truncate', 'long_texts': 0}
        """
        logits, encoded = self.piece_logits(texts, progress)
        handling = {"long_text": self.long_text, "long_texts": sum(h != "full" for h in encoded.handling)}
        return self.combine(logits, encoded), self.combine(logits, encoded, 1.0), handling

    def predict(
        self, texts: list[str] | Encoded, progress: Callable[[int], None] | None = None
    ) -> list[Prediction]:
        probs, encoded = self.predict_proba(texts, progress)
        normal = self.labels.index(self.normal_label) if self.normal_label is not None else None
        results = []
        for text, p, n, h in zip(encoded.texts, probs, encoded.tokens, encoded.handling, strict=True):
            score = None if normal is None else float(1.0 - p[normal])
            results.append(
                Prediction(
                    text=text,
                    label=self.labels[int(p.argmax())],
                    probabilities={lab: float(x) for lab, x in zip(self.labels, p, strict=True)},
                    tokens=n,
                    handling=h,
                    fraud_score=score,
                    flagged=None if self.threshold is None or score is None else score >= self.threshold,
                )
            )
        return results

    def predict_stream(self, texts: Iterable[str], chunk_size: int = 4096) -> Iterator[Prediction]:
        """Predictions for an iterable of any length, in input order, holding at most
        ``chunk_size`` texts at a time (each chunk is length-sorted into batches).

        Example:
            >>> p = Predictor("runs/demo/model")  # doctest: +SKIP
            >>> lines = (line.rstrip("\\n") for line in open("sms.txt"))  # doctest: +SKIP
            >>> for prediction in p.predict_stream(lines): ...  # doctest: +SKIP
        """
        chunk: list[str] = []
        for text in texts:
            chunk.append(text)
            if len(chunk) >= chunk_size:
                yield from self.predict(chunk)
                chunk = []
        if chunk:
            yield from self.predict(chunk)
