"""tfsft: fine-tune BERT-style encoders with Keras/TensorFlow and ship them to production.

>>> import tfsft
>>> sorted(name for name in tfsft.__all__ if name[0].isupper())[:3]
['CheckpointError', 'ConfigError', 'DataError']
"""

import os as _os

_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tfsft.config import TrainConfig  # noqa: E402
from tfsft.data.examples import TextClassificationData, read_text_classification  # noqa: E402
from tfsft.data.pipeline import encode, make_dataset, predict_logits  # noqa: E402
from tfsft.errors import CheckpointError, ConfigError, DataError, TfsftError  # noqa: E402
from tfsft.models.text_classifier import TextClassifier  # noqa: E402
from tfsft.runs import TrainedRun  # noqa: E402
from tfsft.tokenization import WordPieceTokenizer  # noqa: E402
from tfsft.training.optimizers import adamw  # noqa: E402
from tfsft.training.schedules import WarmupDecay  # noqa: E402
from tfsft.training.trainer import train  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "CheckpointError", "ConfigError", "DataError", "TextClassificationData", "TextClassifier",
    "TfsftError", "TrainConfig", "TrainedRun", "WarmupDecay", "WordPieceTokenizer", "adamw",
    "encode", "make_dataset", "predict_logits", "read_text_classification", "train",
]
