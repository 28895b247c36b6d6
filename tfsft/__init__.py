"""tfsft: fine-tune BERT-style encoders with Keras/TensorFlow and ship them to production.

Names are imported on first use, so ``import tfsft`` (and ``tfsft --help``) does not load
TensorFlow until a model, tokenizer or pipeline is needed.

>>> import tfsft
>>> sorted(name for name in tfsft.__all__ if name[0].isupper())[:3]
['CheckpointError', 'ConfigError', 'DataError']
"""

import os as _os
from importlib import import_module as _import_module

_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"

_EXPORTS = {
    "TrainConfig": "tfsft.config",
    "TextClassificationData": "tfsft.tasks.text_classification.examples",
    "TextExamples": "tfsft.data.examples",
    "read_text_classification": "tfsft.tasks.text_classification.examples",
    "encode": "tfsft.data.pipeline",
    "make_dataset": "tfsft.data.pipeline",
    "predict_logits": "tfsft.data.pipeline",
    "CheckpointError": "tfsft.errors",
    "ConfigError": "tfsft.errors",
    "DataError": "tfsft.errors",
    "TfsftError": "tfsft.errors",
    "TextClassifier": "tfsft.tasks.text_classification.model",
    "TextModel": "tfsft.models.text_model",
    "TrainedRun": "tfsft.runs",
    "Task": "tfsft.tasks.base",
    "create_task": "tfsft.tasks.base",
    "register_task": "tfsft.tasks.base",
    "task_names": "tfsft.tasks.base",
    "WordPieceTokenizer": "tfsft.tokenization",
    "adamw": "tfsft.optimization.optimizers",
    "WarmupDecay": "tfsft.optimization.schedules",
    "train": "tfsft.training.trainer",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(_import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'tfsft' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
