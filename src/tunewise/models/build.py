"""Build a classifier as a recipe asks (pretrained, same architecture at random, TextCNN),
and load a trained one back.

Every model is a Hugging Face ``PreTrainedModel`` with a sequence-classification head and
a BERT-compatible tokenizer, so one training loop and one saving format serve them all.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import transformers
from safetensors.torch import load_file
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    BertTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from tunewise.data.normalize import NormalizerConfig
from tunewise.errors import ModelError
from tunewise.model_dir import WEIGHTS_FILE, has_config, has_weights, read_meta, require_model_dir
from tunewise.models.heads import apply_head, head_module_names
from tunewise.models.textcnn import TextCNNConfig, TextCNNForSequenceClassification
from tunewise.models.tokenization import ensure_typed_tokens, quiet_transformers, train_bert_vocab
from tunewise.pretrained import resolve_pretrained
from tunewise.recipes.schema import HeadSpec, ModelSpec


@dataclass
class BuiltModel:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    source: str  # what the weights came from: a hub id, a directory, or "random"
    notes: list[str]


def _is_local(name: str) -> bool:
    return Path(name).expanduser().is_dir()


def _bert_vocab_only(name: str) -> bool:
    """True when a checkpoint ships a BERT ``vocab.txt`` but no byte-level BPE files."""
    if _is_local(name):
        d = Path(name).expanduser()
        return (d / "vocab.txt").is_file() and not (d / "merges.txt").is_file()
    # Hub ids cannot be inspected offline; the hfl/* Chinese RoBERTa-wwm family is the case.
    lowered = name.lower()
    return "chinese" in lowered and "roberta" in lowered


def load_pretrained_config(
    name: str, labels: list[str], trust_remote_code: bool = False
) -> tuple[transformers.PretrainedConfig, list[str]]:
    """Load a checkpoint's config set up for ``labels``, fixing the RoBERTa-wwm pitfall.

    Chinese "RoBERTa-wwm" checkpoints (hfl/chinese-roberta-wwm-ext and friends) are BERT
    models trained with RoBERTa's recipe: BERT vocabulary, BERT weight names. Loaded with
    RoBERTa classes they come out with random weights and a tokenizer that fails. We detect
    a RoBERTa config with a BERT vocabulary and load with BERT classes instead, saying so.
    """
    notes: list[str] = []
    if _is_local(name) and not has_config(Path(name).expanduser()):
        raise ModelError(
            f"cannot load pretrained model {name!r}: the directory has no config.json "
            "(expected a Hugging Face save_pretrained layout)"
        )
    try:
        config = AutoConfig.from_pretrained(name, trust_remote_code=trust_remote_code)
    except OSError as err:
        hint = (
            "no such local directory and the hub could not be reached"
            if not _is_local(name)
            else "the directory has no config.json"
        )
        raise ModelError(f"cannot load pretrained model {name!r}: {hint} ({err})") from err
    except ValueError as err:  # unknown model_type, or custom code needed
        raise ModelError(
            f"cannot load pretrained model {name!r}: {err}. If the checkpoint needs its own "
            "code and you trust it, pass --trust-remote-code."
        ) from err
    if config.model_type in ("roberta", "xlm-roberta") and _bert_vocab_only(name):
        notes.append(
            f"{name}: config says model_type '{config.model_type}' but the checkpoint has a BERT "
            "vocab.txt; this is a Chinese RoBERTa-wwm checkpoint, which must be loaded with BERT "
            "classes (loading it as RoBERTa gives random weights). Loading with BertConfig."
        )
        data = config.to_dict()
        data.pop("model_type", None)
        config = BertConfig.from_dict(data)
    config.num_labels = len(labels)
    config.id2label = dict(enumerate(labels))
    config.label2id = {lab: i for i, lab in enumerate(labels)}
    return config, notes


def load_pretrained_tokenizer(
    name: str, config: transformers.PretrainedConfig, trust_remote_code: bool = False
) -> PreTrainedTokenizerBase:
    try:
        if isinstance(config, BertConfig) and _bert_vocab_only(name):
            return BertTokenizer.from_pretrained(name)
        return AutoTokenizer.from_pretrained(name, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        raise ModelError(f"cannot load the tokenizer of {name!r}: {err}") from err


def _model_class(config: transformers.PretrainedConfig):
    if isinstance(config, BertConfig):
        return BertForSequenceClassification
    return AutoModelForSequenceClassification


def build_model(
    spec: ModelSpec,
    labels: list[str],
    *,
    pretrained: str | None,
    train_texts: list[str] | None = None,
    trust_remote_code: bool = False,
) -> BuiltModel:
    """Build the model a recipe's ``model`` section describes, for ``labels``.

    Example:
        >>> from tunewise.recipes import load_recipe
        >>> built = build_model(load_recipe("scratch").model, ["normal", "fraud"],
        ...                     pretrained=None, train_texts=["您好"] * 20)  # doctest: +SKIP
    """
    if spec.architecture == "textcnn":
        return _build_textcnn(spec, labels, pretrained and resolve_pretrained(pretrained), train_texts)
    pretrained = resolve_pretrained(pretrained)  # None -> the bundled encoder, when installed
    if pretrained is None:
        raise ModelError(
            "this recipe needs --pretrained NAME_OR_DIR (a hub id such as bert-base-chinese, "
            "or a local directory in Hugging Face layout)"
        )
    config, notes = load_pretrained_config(pretrained, labels, trust_remote_code)
    tokenizer = load_pretrained_tokenizer(pretrained, config, trust_remote_code)
    cls = _model_class(config)
    if spec.init == "pretrained":
        model, info = _quiet(
            lambda: cls.from_pretrained(
                pretrained,
                config=config,
                trust_remote_code=trust_remote_code,
                output_loading_info=True,
            )
        )
        notes.extend(_check_loading(pretrained, model, info))
        notes.extend(_weights_format_notes(pretrained))
        source = pretrained
    else:
        model = AutoModelForSequenceClassification.from_config(config, trust_remote_code=trust_remote_code)
        source = "random"
    _check_vocab_fits(pretrained, tokenizer, model)
    added = ensure_typed_tokens(tokenizer)
    if added:
        with quiet_transformers():  # its note on initialising new rows is ours to give, below
            model.resize_token_embeddings(len(tokenizer))
        notes.append(f"added {added} typed tokens ([URL], [PHONE], …) to the vocabulary")
    apply_head(model, spec.head, len(labels))
    if spec.lora is not None:
        from tunewise.models.lora import add_lora

        new_rows = list(range(len(tokenizer) - added, len(tokenizer)))
        notes.append(add_lora(model, spec.lora, new_rows))
    return BuiltModel(model, tokenizer, source, notes)


def _build_textcnn(
    spec: ModelSpec, labels: list[str], pretrained: str | None, train_texts: list[str] | None
) -> BuiltModel:
    notes = []
    if pretrained is not None:
        config, _ = load_pretrained_config(pretrained, labels)
        tokenizer = load_pretrained_tokenizer(pretrained, config)
        ensure_typed_tokens(tokenizer)
        notes.append(f"TextCNN uses the tokenizer of {pretrained} (weights are random)")
    else:
        if not train_texts:
            raise ModelError(
                "TextCNN without --pretrained builds its vocabulary from training texts; none given"
            )
        tokenizer = train_bert_vocab(train_texts, vocab_size=spec.textcnn.vocab_size)
        notes.append(f"built a {len(tokenizer):,}-token vocabulary from the training texts")
    cnn = spec.textcnn
    config = TextCNNConfig(
        vocab_size=len(tokenizer),
        embedding_dim=cnn.embedding_dim,
        num_filters=cnn.num_filters,
        kernel_sizes=cnn.kernel_sizes,
        dropout=cnn.dropout,
        pad_token_id=tokenizer.pad_token_id or 0,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={lab: i for i, lab in enumerate(labels)},
    )
    model = TextCNNForSequenceClassification(config)
    apply_head(model, spec.head, len(labels))
    return BuiltModel(model, tokenizer, "random", notes)


def _quiet(fn):
    # transformers reports the new head as "newly initialized"; that is expected here, and
    # _check_loading reports what actually matters.
    with quiet_transformers():
        return fn()


def _check_loading(name: str, model: PreTrainedModel, info: dict) -> list[str]:
    """Refuse a checkpoint whose backbone weights did not load; return notes.

    A missing *pooler* is expected from checkpoints pretrained with masked-LM only (ours,
    RoBERTa-style ones): it starts random, so it is marked as new and trains with the head.
    """
    heads = tuple(head_module_names(model))
    missing = [k for k in info.get("missing_keys", []) if not k.startswith(heads)]
    poolers = sorted({k.rsplit(".", 2)[0] for k in missing if ".pooler." in k})
    missing = [k for k in missing if ".pooler." not in k]
    if missing:
        raise ModelError(
            f"{name}: {len(missing)} backbone weights are missing from the checkpoint and would "
            f"be random (e.g. {missing[:3]}). The checkpoint does not match its config's "
            "architecture; if it is a Chinese RoBERTa-wwm model, load it as BERT."
        )
    if not poolers:
        return []
    model.tunewise_new_modules = poolers  # read by the "head" alias of freeze plans
    return [f"{name} has no pretrained pooler ({', '.join(poolers)}): it trains with the head"]


def _weights_format_notes(name: str) -> list[str]:
    """Say so when a local checkpoint's weights are a pickle (``pytorch_model.bin``, as many
    older Chinese checkpoints such as hfl/rbt3 ship) rather than safetensors."""
    if not _is_local(name):
        return []
    d = Path(name).expanduser()
    if any(d.glob("*.safetensors")) or not any(d.glob("pytorch_model*.bin")):
        return []
    return [
        f"{name}: weights read from pytorch_model.bin with torch.load(weights_only=True), which "
        "accepts tensors only and runs no code; the trained model is saved as safetensors"
    ]


def _check_vocab_fits(name: str, tokenizer: PreTrainedTokenizerBase, model: PreTrainedModel) -> None:
    rows = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > rows:
        raise ModelError(
            f"{name}: tokenizer has {len(tokenizer):,} tokens but the model's embedding matrix has "
            f"{rows:,} rows: tokenizer and model do not belong together. Use the tokenizer "
            "saved with this checkpoint."
        )


@dataclass
class LoadedModel:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    labels: list[str]
    normalizer: NormalizerConfig
    max_length: int
    meta: dict
    directory: Path | None = None  # where it was loaded from (its calibration lives there)


@dataclass
class ModelMeta:
    """What inference needs besides the weights: tokenizer, labels, normaliser, length."""

    tokenizer: PreTrainedTokenizerBase
    labels: list[str]
    normalizer: NormalizerConfig
    max_length: int
    meta: dict


def load_meta(directory: str | Path) -> ModelMeta:
    """Tokenizer, labels (from ``config.json``), normaliser and length limit of a model
    directory, without loading its weights (an ONNX export has none).

    Example:
        >>> load_meta("runs/finetune").labels  # doctest: +SKIP
        ['fraud', 'normal']
    """
    directory = require_model_dir(directory)
    meta = read_meta(directory)
    if meta.get("track", "text") != "text":
        raise ModelError(
            f"{directory} is an {meta['track']} model; this needs a text model "
            "(an image model is used with evaluate, predict --image, export and serve)"
        )
    tokenizer = AutoTokenizer.from_pretrained(str(directory))
    config = AutoConfig.from_pretrained(str(directory))
    labels = [config.id2label[i] for i in range(config.num_labels)]
    max_length = int(meta.get("max_length") or getattr(tokenizer, "model_max_length", 512) or 512)
    max_length = min(max_length, getattr(config, "max_position_embeddings", max_length) or max_length)
    return ModelMeta(
        tokenizer, labels, NormalizerConfig.from_dict(meta.get("normalizer", {})), max_length, meta
    )


def load_trained(directory: str | Path) -> LoadedModel:
    """Load a model directory written by ``tunewise train`` (or any HF classifier directory).

    Example:
        >>> m = load_trained("runs/finetune")  # doctest: +SKIP
        >>> m.labels  # doctest: +SKIP
        ['normal', 'fraud']
    """
    directory = Path(directory)
    info = load_meta(directory)
    head = HeadSpec(**info.meta.get("head", {}))
    weights = directory / WEIGHTS_FILE
    if not has_weights(directory):
        raise ModelError(
            f"{directory}: no model weights ({WEIGHTS_FILE}); an ONNX export is used with backend 'onnx'"
        )
    if head.type == "linear":
        model = _quiet(lambda: AutoModelForSequenceClassification.from_pretrained(str(directory)))
    else:
        config = AutoConfig.from_pretrained(str(directory))
        model = AutoModelForSequenceClassification.from_config(config)
        apply_head(model, head, config.num_labels)
        if not weights.is_file():
            raise ModelError(f"{directory}: no {WEIGHTS_FILE}")
        model.load_state_dict(load_file(str(weights)), strict=True)
    model.eval()
    return LoadedModel(
        model=model,
        tokenizer=info.tokenizer,
        labels=info.labels,
        normalizer=info.normalizer,
        max_length=info.max_length,
        meta=info.meta,
        directory=directory,
    )
