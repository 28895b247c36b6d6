"""Readers, checked examples and tf.data pipelines (imported on first use)."""

from importlib import import_module

_EXPORTS = {
    "TextExamples": "tfsft.data.examples", "TextRows": "tfsft.data.examples",
    "read_text_rows": "tfsft.data.examples", "split_examples": "tfsft.data.examples",
    "EncodedData": "tfsft.data.pipeline", "encode": "tfsft.data.pipeline",
    "make_dataset": "tfsft.data.pipeline", "predict_logits": "tfsft.data.pipeline",
    "Table": "tfsft.data.readers", "read_table": "tfsft.data.readers",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'tfsft.data' has no attribute {name!r}")
