"""Freezing, the fastai way: ``freeze``, ``unfreeze``, ``freeze_to`` over layer groups.

The policy (what to freeze when) lives in recipes; this module only knows how. Module
patterns are globs over module names; ``head``, ``backbone`` and ``last_block`` (the top
block of an image network: ResNet's ``layer4``) and ``adapters`` (the LoRA weights of a
``model.lora`` recipe, ``tunewise.models.lora``) are aliases, ``all`` matches everything.
"""

from __future__ import annotations

import fnmatch

from torch import nn

from tunewise.errors import FreezeError
from tunewise.models.heads import head_module_names

# Where the stack of transformer blocks lives in the common encoder families.
_BLOCK_PATHS = ("encoder.layer", "encoder.layers", "transformer.layer", "layers", "layer")


def matches_module(param_name: str, pattern: str) -> bool:
    """Whether a parameter lies in a module the glob ``pattern`` names (the module itself or
    anything under it).

    Example:
        >>> matches_module("bert.encoder.layer.0.attention.self.query.lora_A.default.weight", "*.lora_A")
        True
    """
    return fnmatch.fnmatchcase(param_name, pattern) or fnmatch.fnmatchcase(param_name, pattern + ".*")


def expand_patterns(model: nn.Module, patterns: list[str] | str) -> list[str]:
    """Turn aliases into module patterns: ``head``, ``backbone``, ``last_block``, ``all``."""
    if isinstance(patterns, str):
        patterns = [patterns]
    out: list[str] = []
    for p in patterns:
        if p == "all":
            out.append("*")
        elif p == "head":
            # modules the checkpoint did not provide (e.g. a pooler) are new, like the head
            out.extend(head_module_names(model) + list(getattr(model, "tunewise_new_modules", [])))
        elif p == "adapters":
            from tunewise.models.lora import adapter_patterns, has_lora

            if not has_lora(model):
                raise FreezeError("'adapters' names LoRA weights; this model has none (add model.lora)")
            out.extend(adapter_patterns(model))
        elif p == "last_block":
            blocks = getattr(model, "tunewise_last_block", None)
            if not blocks:
                raise FreezeError(
                    f"'last_block' is known for the image architectures only; name the modules of "
                    f"{type(model).__name__} instead"
                )
            out.extend(blocks)
        elif p == "backbone":
            heads = head_module_names(model)
            out.extend(n for n, m in model.named_children() if n not in heads and _has_params(m))
        else:
            out.append(p)
    return out


def _has_params(module: nn.Module) -> bool:
    return any(True for _ in module.parameters())


def set_trainable(model: nn.Module, patterns: list[str] | str, trainable: bool) -> int:
    """Set ``requires_grad`` on every parameter under the matching modules.

    Returns the number of parameter tensors matched. A pattern that matches nothing is an
    error, listing the top-level modules, so a typo cannot silently train the wrong layers.

    Example:
        >>> m = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2)); m.classifier = nn.Linear(2, 2)
        >>> set_trainable(m, ["0"], False)
        2
    """
    expanded = expand_patterns(model, patterns)
    matched = 0
    for pattern in expanded:
        hits = [p for name, p in model.named_parameters() if matches_module(name, pattern)]
        if not hits:
            top = [n for n, m in model.named_children() if _has_params(m)]
            raise FreezeError(
                f"module pattern {pattern!r} matches no parameters; top-level modules are {top} "
                "(patterns are globs over dotted module names, e.g. 'bert.encoder.layer.1[01]')"
            )
        for p in hits:
            p.requires_grad_(trainable)
        matched += len(hits)
    return matched


def freeze(model: nn.Module, patterns: list[str] | str = "all") -> int:
    """Stop gradients for the matching modules (default: the whole model)."""
    return set_trainable(model, patterns, False)


def unfreeze(model: nn.Module, patterns: list[str] | str = "all") -> int:
    """Let gradients flow again for the matching modules (default: the whole model)."""
    return set_trainable(model, patterns, True)


def layer_groups(model: nn.Module) -> list[list[str]]:
    """Module names grouped from input to output: embeddings, each block, …, head.

    For transformer encoders: ``[embeddings], [block 0], …, [last block + pooler], [head]``.
    Otherwise each top-level module with parameters is a group (TextCNN: embeddings,
    convs, classifier).

    Example:
        >>> from tunewise.models import TextCNNConfig, TextCNNForSequenceClassification
        >>> layer_groups(TextCNNForSequenceClassification(TextCNNConfig(vocab_size=50)))
        [['embeddings'], ['convs'], ['classifier']]
    """
    heads = head_module_names(model)
    prefix = getattr(model, "base_model_prefix", "")
    base = getattr(model, prefix, None) if prefix else None
    if isinstance(base, nn.Module) and base is not model:
        for path in _BLOCK_PATHS:
            blocks = base.get_submodule(path) if _has_submodule(base, path) else None
            if isinstance(blocks, nn.ModuleList) and len(blocks) > 0:
                block_root = path.split(".")[0]
                before, after = [], []
                seen_blocks = False
                for name, child in base.named_children():
                    if not _has_params(child):
                        continue
                    if name == block_root:
                        seen_blocks = True
                    elif seen_blocks:
                        after.append(f"{prefix}.{name}")
                    else:
                        before.append(f"{prefix}.{name}")
                groups = [[n] for n in before]
                names = [f"{prefix}.{path}.{i}" for i in range(len(blocks))]
                groups.extend([n] for n in names[:-1])
                groups.append([names[-1], *after])  # the pooler travels with the top block
                extra = [
                    n for n, m in model.named_children() if n not in heads and n != prefix and _has_params(m)
                ]
                if extra:
                    groups[-1].extend(extra)
                groups.append(heads)
                return groups
    groups = [[n] for n, m in model.named_children() if n not in heads and _has_params(m)]
    groups.append(heads)
    return groups


def _has_submodule(module: nn.Module, path: str) -> bool:
    try:
        module.get_submodule(path)
        return True
    except AttributeError:
        return False


def freeze_to(model: nn.Module, n: int) -> None:
    """Freeze layer groups ``[:n]`` and unfreeze the rest (fastai semantics; n may be < 0).

    Example:
        >>> from tunewise.models import TextCNNConfig, TextCNNForSequenceClassification
        >>> m = TextCNNForSequenceClassification(TextCNNConfig(vocab_size=50))
        >>> freeze_to(m, -1)  # only the head trains
        >>> [n for n, p in m.named_parameters() if p.requires_grad]
        ['classifier.weight', 'classifier.bias']
    """
    groups = layer_groups(model)
    if not -len(groups) <= n <= len(groups):
        raise FreezeError(f"freeze_to({n}): the model has {len(groups)} layer groups")
    cut = n % len(groups) if n < 0 else n
    for i, group in enumerate(groups):
        set_trainable(model, group, i >= cut)


def first_n_children(model: nn.Module, n: int) -> list[str]:
    """Names of the first ``n`` children that have parameters, counting every child as the
    note does (``for i, child in enumerate(model.children()): if i < n``).

    Example:
        >>> m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.Linear(4, 2))
        >>> first_n_children(m, 3)  # the ReLU counts, and has nothing to freeze
        ['0', '2']
    """
    children = list(model.named_children())
    if n > len(children):
        raise FreezeError(
            f"first_n_children: {n} requested but {type(model).__name__} has {len(children)} children "
            f"({', '.join(name for name, _ in children)})"
        )
    return [name for name, child in children[:n] if _has_params(child)]


def first_n_groups(model: nn.Module, n: int) -> list[str]:
    """Module names of the first ``n`` layer groups (for ``freeze: first_n_groups``)."""
    groups = layer_groups(model)
    if n > len(groups):
        raise FreezeError(f"first_n_groups: {n} requested but the model has {len(groups)} layer groups")
    return [name for g in groups[:n] for name in g]


def set_frozen_batchnorm_eval(model: nn.Module) -> None:
    """Keep BatchNorm layers whose parameters are frozen in eval mode.

    A frozen BatchNorm in train mode still updates its running statistics from the new
    data, silently changing the pretrained network; call this after every ``model.train()``.
    """
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            params = list(module.parameters(recurse=False))
            if params and not any(p.requires_grad for p in params):
                module.eval()


def unfreeze_batchnorm(model: nn.Module) -> None:
    """Keep every BatchNorm layer trainable even inside frozen blocks (fastai's ``train_bn``):
    the new data's statistics differ from the pretraining data's, and BN adapts cheaply."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            for p in module.parameters(recurse=False):
                p.requires_grad_(True)


def trainable_summary(model: nn.Module) -> tuple[int, int]:
    """``(trainable, total)`` parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total
