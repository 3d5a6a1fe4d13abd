"""TextCNN (Kim, 2014): the classic from-scratch baseline for Chinese text classification.

Written as a Hugging Face ``PreTrainedModel`` so that it saves, loads and trains exactly
like the transformer encoders (``save_pretrained``, ``AutoModelForSequenceClassification``
after ``import tunewise.models``), and the one training loop needs no special case.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    PretrainedConfig,
    PreTrainedModel,
)
from transformers.modeling_outputs import SequenceClassifierOutput


class TextCNNConfig(PretrainedConfig):
    """Configuration of :class:`TextCNNForSequenceClassification`.

    Example:
        >>> cfg = TextCNNConfig(vocab_size=100, num_labels=3)
        >>> TextCNNForSequenceClassification(cfg).num_parameters() > 0
        True
    """

    model_type = "tunewise-textcnn"

    def __init__(
        self,
        vocab_size: int = 8000,
        embedding_dim: int = 128,
        num_filters: int = 128,
        kernel_sizes: tuple[int, ...] | list[int] = (2, 3, 4, 5),
        dropout: float = 0.5,
        pad_token_id: int = 0,
        **kwargs,
    ) -> None:
        self.vocab_size = vocab_size
        self.embedding_dim = embedding_dim
        self.num_filters = num_filters
        self.kernel_sizes = list(kernel_sizes)
        self.dropout = dropout
        super().__init__(pad_token_id=pad_token_id, **kwargs)

    @property
    def hidden_size(self) -> int:
        """Width of the pooled feature vector the head sees (all filters concatenated)."""
        return self.num_filters * len(self.kernel_sizes)


class TextCNNForSequenceClassification(PreTrainedModel):
    """Embeddings -> parallel 1-D convolutions -> max-over-time pooling -> dropout -> head."""

    config_class = TextCNNConfig
    base_model_prefix = "textcnn"
    main_input_name = "input_ids"

    def __init__(self, config: TextCNNConfig) -> None:
        super().__init__(config)
        self.embeddings = nn.Embedding(
            config.vocab_size, config.embedding_dim, padding_idx=config.pad_token_id
        )
        self.convs = nn.ModuleList(
            nn.Conv1d(config.embedding_dim, config.num_filters, k, padding=k // 2)
            for k in config.kernel_sizes
        )
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.1)
            if module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()
        elif isinstance(module, (nn.Conv1d, nn.Linear)):
            nn.init.kaiming_uniform_(module.weight, nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embeddings = value

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **_: object,  # token_type_ids etc. from BERT-style tokenizers are not used
    ) -> SequenceClassifierOutput:
        x = self.embeddings(input_ids)  # (batch, seq, emb)
        if attention_mask is not None:
            x = x * attention_mask.unsqueeze(-1).to(x.dtype)
        x = x.transpose(1, 2)  # Conv1d wants (batch, channels, seq)
        pooled = []
        for conv in self.convs:
            h = torch.relu(conv(x))
            if attention_mask is not None:
                # padding must never win the max-pool
                mask = attention_mask[:, : h.size(2)]
                if mask.size(1) < h.size(2):
                    mask = nn.functional.pad(mask, (0, h.size(2) - mask.size(1)))
                h = h.masked_fill(mask.unsqueeze(1) == 0, -1e4)
            pooled.append(h.max(dim=2).values)
        features = self.dropout(torch.cat(pooled, dim=1))
        logits = self.classifier(features)
        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(logits, labels)
        return SequenceClassifierOutput(loss=loss, logits=logits)


AutoConfig.register(TextCNNConfig.model_type, TextCNNConfig)
AutoModelForSequenceClassification.register(TextCNNConfig, TextCNNForSequenceClassification)
