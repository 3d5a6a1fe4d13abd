"""LoRA adapters (the ``peft`` library) as a fine-tuning strategy.

A recipe with ``model.lora`` keeps every pretrained weight frozen and trains low-rank updates
of the chosen linear layers, the new head (and a pooler the checkpoint lacked) and the
embedding rows of tokens tunewise added to the vocabulary. The adapters are injected into
the Hugging Face model itself (``peft.inject_adapter_in_model``), so module names, freeze
plans, layer groups and checkpoints work as for full fine-tuning; the freeze alias
``adapters`` names the LoRA and trainable-token parameters.

After training, the run directory holds both forms:

- ``adapter/``: the adapters in peft's own format (``adapter_config.json`` and
  ``adapter_model.safetensors``, a few hundred KB), loadable onto the base encoder with
  ``peft.PeftModel.from_pretrained`` or :func:`load_adapter`;
- ``model.safetensors``: the plain model with the adapters merged in, which predict,
  evaluate, export and serve use like any other run.

Example:
    >>> from tunewise.recipes import load_recipe
    >>> load_recipe("finetune-lora").model.lora.target_modules
    ['query', 'value']
"""

from __future__ import annotations

import json
from pathlib import Path

from torch import nn

from tunewise.errors import ModelError
from tunewise.recipes.schema import LoraSpec

ADAPTER_DIR = "adapter"
ADAPTER_NAME = "default"
#: parameter-name globs of what LoRA trains besides the head (the ``adapters`` freeze alias)
ADAPTER_PATTERNS = ["*.lora_A", "*.lora_B", "*.trainable_tokens_delta"]


def add_lora(model: nn.Module, spec: LoraSpec, new_token_ids: list[int]) -> str:
    """Inject ``spec``'s adapters into ``model`` in place; returns a note for the run log.

    ``new_token_ids``: rows of the input embeddings that were added for this run (random,
    so trained when ``spec.train_new_tokens``).

    Example:
        >>> add_lora(model, LoraSpec(), [])  # doctest: +SKIP
        'LoRA r=8, alpha 16 on 8 layers (query, value): 65,536 adapter parameters'
    """
    from peft import LoraConfig, inject_adapter_in_model

    targets = _matching_linears(model, spec.target_modules)
    if not targets:
        linears = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear)})
        raise ModelError(
            f"lora.target_modules {spec.target_modules} match no linear layer of "
            f"{type(model).__name__}; its linear layers end in {linears}"
        )
    config = LoraConfig(
        r=spec.r,
        lora_alpha=spec.alpha,
        lora_dropout=spec.dropout,
        # full names, not the suffixes: a suffix such as ``dense`` would also reach the head
        # or a new pooler, which train in full (peft cannot load LoRA inside those)
        target_modules=targets,
        # new rows are random: always carried by the adapters (so the saved adapters rebuild
        # the model exactly), trained only with ``train_new_tokens``
        trainable_token_indices=_token_rows(model, new_token_ids),
    )
    inject_adapter_in_model(config, model, adapter_name=ADAPTER_NAME)
    model.tunewise_lora_config = config  # what save_adapter writes beside the weights
    model.tunewise_lora_trains_tokens = spec.train_new_tokens
    count = sum(p.numel() for n, p in model.named_parameters() if _is_adapter(n))
    tokens = f" and {len(new_token_ids)} new token rows" if new_token_ids and spec.train_new_tokens else ""
    return (
        f"LoRA r={spec.r}, alpha {spec.alpha:g} on {len(targets)} layers "
        f"({', '.join(spec.target_modules)}){tokens}: {count:,} adapter parameters"
    )


def _matching_linears(model: nn.Module, targets: list[str]) -> list[str]:
    """Linear layers whose name is, or ends in ``.`` +, a target (peft's suffix rule); the
    head and modules the checkpoint lacked (a new pooler) are never targets: they train in
    full."""
    from tunewise.models.heads import head_module_names

    heads = tuple(head_module_names(model) + list(getattr(model, "tunewise_new_modules", [])))
    return [
        name
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear)
        and not name.startswith(heads)
        and any(name == t or name.endswith("." + t) for t in targets)
    ]


def _token_rows(model: nn.Module, ids: list[int]) -> dict[str, list[int]] | None:
    if not ids:
        return None
    embeddings = model.get_input_embeddings()
    name = next(n for n, m in model.named_modules() if m is embeddings)
    return {name.rsplit(".", 1)[-1]: list(ids)}


def _is_adapter(name: str) -> bool:
    from tunewise.training.freeze import matches_module

    return any(matches_module(name, p) for p in ADAPTER_PATTERNS)


def adapter_patterns(model: nn.Module) -> list[str]:
    """The ``adapters`` freeze alias: the globs of ``ADAPTER_PATTERNS`` that name parameters of
    ``model`` (no trainable-token rows when no token was added, or with ``train_new_tokens:
    false``: the rows are then carried by the adapters but stay frozen)."""
    names = [n for n, _ in model.named_parameters()]
    patterns = ADAPTER_PATTERNS
    if not getattr(model, "tunewise_lora_trains_tokens", True):
        patterns = [p for p in patterns if "trainable_tokens" not in p]
    from tunewise.training.freeze import matches_module

    return [p for p in patterns if any(matches_module(n, p) for n in names)]


def has_lora(model: nn.Module) -> bool:
    """Whether ``model`` carries injected LoRA adapters."""
    return hasattr(model, "tunewise_lora_config")


def save_adapter(model: nn.Module, directory: str | Path, base: str, trainable_modules: list[str]) -> Path:
    """Write the adapters in peft's format to ``directory``: ``adapter_config.json`` (with
    ``base`` as ``base_model_name_or_path``) and ``adapter_model.safetensors``, the LoRA
    weights plus ``trainable_modules`` (the head, a new pooler) as peft's ``modules_to_save``.

    Example:
        >>> save_adapter(model, "runs/lora/adapter", "tunewise-mini-zh", ["classifier"])  # doctest: +SKIP
    """
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    from tunewise.training.checkpoint import write_json_atomic

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = model.tunewise_lora_config
    state = get_peft_model_state_dict(model, adapter_name=ADAPTER_NAME, save_embedding_layers=False)
    own = model.state_dict()
    for module in trainable_modules:
        state.update({k: v for k, v in own.items() if k.startswith(module + ".")})
    # peft's key layout for a PeftModel wrapping this model
    tensors = {f"base_model.model.{k}": v.detach().contiguous().cpu() for k, v in state.items()}
    tmp = directory / "adapter_model.safetensors.tmp"
    save_file(tensors, str(tmp), metadata={"format": "pt"})
    tmp.replace(directory / "adapter_model.safetensors")
    raw = config.to_dict()
    raw.update(
        base_model_name_or_path=base,
        task_type="SEQ_CLS",
        modules_to_save=list(trainable_modules),
        peft_type="LORA",
    )
    raw = {k: (sorted(v) if isinstance(v, set) else v) for k, v in raw.items()}
    write_json_atomic(directory / "adapter_config.json", raw)
    return directory


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold the adapters into the weights they adapt and remove them, in place: the model is a
    plain Hugging Face model again (same outputs), as export and serving need.

    Example:
        >>> merge_lora(model)  # doctest: +SKIP
    """
    from peft.tuners.lora import LoraLayer
    from peft.utils.other import TrainableTokensWrapper

    done: list[str] = []
    for name, module in list(model.named_modules()):
        if any(name.startswith(d + ".") for d in done):
            continue  # inside a wrapper already unloaded
        if isinstance(module, TrainableTokensWrapper):
            plain = module.unload_and_optionally_merge_module(merge=True, safe_merge=True, adapter_names=None)
        elif isinstance(module, LoraLayer):
            module.merge(safe_merge=True)
            plain = module.get_base_layer()
        else:
            continue
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, plain)
        done.append(name)
    for attr in (
        "tunewise_lora_config",
        "tunewise_lora_trains_tokens",
        "peft_config",
        "_hf_peft_config_loaded",
    ):
        if attr in vars(model):
            delattr(model, attr)
    return model


def load_adapter(model_dir: str | Path, base: str | None = None):
    """The trained adapters of a LoRA run as a ``peft.PeftModel`` on its base encoder, for
    continuing training or swapping adapters (prediction needs none of this: the directory's
    ``model.safetensors`` already has them merged in).

    ``base``: the encoder the run started from, when its recorded path no longer exists.

    Example:
        >>> peft_model = load_adapter("runs/lora")  # doctest: +SKIP
        >>> plain = peft_model.merge_and_unload()  # doctest: +SKIP
    """
    from peft import PeftModel

    from tunewise.models.build import _model_class, load_meta, load_pretrained_config
    from tunewise.models.heads import apply_head
    from tunewise.models.tokenization import quiet_transformers
    from tunewise.recipes.schema import HeadSpec

    model_dir = Path(model_dir)
    adapter = model_dir / ADAPTER_DIR
    if not (adapter / "adapter_config.json").is_file():
        raise ModelError(f"{model_dir}: no LoRA adapters ({ADAPTER_DIR}/adapter_config.json); not a LoRA run")
    config = json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8"))
    base = base or config["base_model_name_or_path"]
    info = load_meta(model_dir)  # labels, and the tokenizer with the rows the run added
    hf_config, _ = load_pretrained_config(base, info.labels)
    with quiet_transformers():
        model = _model_class(hf_config).from_pretrained(base, config=hf_config)
    apply_head(model, HeadSpec(**info.meta.get("head", {})), len(info.labels))
    if len(info.tokenizer) != model.get_input_embeddings().num_embeddings:
        with quiet_transformers():
            model.resize_token_embeddings(len(info.tokenizer))
    return PeftModel.from_pretrained(model, str(adapter), is_trainable=False)
