"""Models: pretrained encoders, the same architectures at random init, and TextCNN."""

from tunewise.models.build import (
    BuiltModel,
    LoadedModel,
    ModelError,
    build_model,
    load_trained,
)
from tunewise.models.heads import MLPHead, head_module_names
from tunewise.models.textcnn import TextCNNConfig, TextCNNForSequenceClassification

__all__ = [
    "BuiltModel",
    "LoadedModel",
    "MLPHead",
    "ModelError",
    "TextCNNConfig",
    "TextCNNForSequenceClassification",
    "build_model",
    "head_module_names",
    "load_trained",
]
