"""tunewise: fine-tune or train from scratch, measured on the same data, then ship it."""

__version__ = "0.1.0"
