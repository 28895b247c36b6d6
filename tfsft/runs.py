"""A finished training run folder: load its model, tokenizer and labels; predict and evaluate.

Layout of a run folder::

    config.yaml        the options the run was trained with
    labels.json        label list, task, max_length, whether the model takes text pairs
    tokenizer/         vocab.txt + tokenizer_config.json
    model.keras        the trained model (keras.saving.load_model)
    metrics.json, classification_report.txt, confusion_matrix.png   validation results
    training_curves.png, history.csv, logs/ (TensorBoard), checkpoints/best.weights.h5
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import keras
import numpy as np

from tfsft.data.examples import TextClassificationData, read_text_classification
from tfsft.data.pipeline import encode, predict_logits
from tfsft.errors import ConfigError, TfsftError
from tfsft.evaluation.metrics import softmax
from tfsft.evaluation.reports import write_evaluation
from tfsft.tokenization import WordPieceTokenizer

MODEL_FILE = "model.keras"
HELDOUT_FILE = "heldout.jsonl"  # validation examples, for checking exports
CALIBRATION_FILE = "calibration.jsonl"  # a sample of training texts, for int8 calibration
LABELS_FILE = "labels.json"
TOKENIZER_DIR = "tokenizer"


class TrainedRun:
    """A run folder written by :func:`tfsft.training.trainer.train`.

    >>> run = TrainedRun("runs/sst2")                      # doctest: +SKIP
    >>> run.predict(["a gripping, beautiful film"])[0]["label"]  # doctest: +SKIP
    '1'
    """

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        for name in (MODEL_FILE, LABELS_FILE, TOKENIZER_DIR):
            if not (self.run_dir / name).exists():
                raise ConfigError(
                    f"{self.run_dir}: {name} is missing; this is not a finished tfsft run folder "
                    "(train one with `tfsft train ... --output-dir DIR`)"
                )
        info = json.loads((self.run_dir / LABELS_FILE).read_text(encoding="utf-8"))
        self.labels: tuple[str, ...] = tuple(info["labels"])
        self.task: str = info.get("task", "text-classification")
        self.max_length: int = int(info["max_length"])
        self.text_pair: bool = bool(info.get("text_pair", False))
        self.tokenizer = WordPieceTokenizer.from_pretrained(self.run_dir / TOKENIZER_DIR,
                                                            max_length=self.max_length)

    @cached_property
    def model(self) -> keras.Model:
        import tfsft.models  # noqa: F401  (registers the custom layers)

        return keras.saving.load_model(self.run_dir / MODEL_FILE, compile=False)

    def read(self, source: Any, text_column: str = "text", label_column: str | None = "label",
             text_pair_column: str | None = None, **options: Any) -> TextClassificationData:
        """Read data with this run's label list (unknown labels are errors)."""
        if self.text_pair and text_pair_column is None:
            raise ConfigError("this model takes text pairs: pass --text-pair-column")
        return read_text_classification(source, text_column=text_column,
                                         label_column=label_column,
                                         text_pair_column=text_pair_column,
                                         labels=self.labels, **options)

    def saved_examples(self, name: str = HELDOUT_FILE,
                       fallback: TextClassificationData | None = None) -> TextClassificationData:
        """Examples saved with the run (``heldout.jsonl`` or ``calibration.jsonl``).

        Runs without them re-read the data named in ``config.yaml`` when it is still there.
        """
        path = self.run_dir / name
        if path.exists():
            return self.read(path, text_pair_column="text_pair" if self.text_pair else None)
        from tfsft.config import TrainConfig
        from tfsft.training.trainer import CALIBRATION_EXAMPLES, load_training_data

        try:
            config = TrainConfig.from_yaml(self.run_dir / "config.yaml")
            train_data, validation_data = load_training_data(config)
        except TfsftError as exc:
            if fallback is not None:
                return fallback
            raise ConfigError(f"{self.run_dir} holds no {name} and its training data cannot "
                              f"be read ({exc}); pass held-out data (--data FILE)") from exc
        if name == HELDOUT_FILE:
            return validation_data
        sample = np.random.default_rng(0).permutation(len(train_data))[:CALIBRATION_EXAMPLES]
        return train_data.subset(np.sort(sample))

    def logits(self, data: TextClassificationData, batch_size: int = 64,
               verbose: int | str = "auto") -> np.ndarray:
        encoded = encode(self.tokenizer, data, self.max_length)
        return predict_logits(self.model, encoded, batch_size=batch_size, verbose=verbose)

    def predict(self, texts: Sequence[str], text_pairs: Sequence[str] | None = None,
                batch_size: int = 64, verbose: int | str = 0) -> list[dict[str, Any]]:
        """One ``{"label", "score", "probabilities"}`` dict per text."""
        if self.text_pair and text_pairs is None:
            raise ConfigError("this model takes text pairs: pass text_pairs")
        data = TextClassificationData(list(texts), None if text_pairs is None else list(text_pairs),
                                      None, self.labels)
        probabilities = softmax(self.logits(data, batch_size, verbose))
        return [prediction_record(p, self.labels) for p in probabilities]

    def evaluate(self, data: TextClassificationData, output_dir: str | Path | None = None,
                 batch_size: int = 64, verbose: int | str = "auto") -> dict[str, Any]:
        """Metrics on labelled ``data``; with ``output_dir``, also the report files."""
        if data.label_ids is None:
            raise ConfigError("evaluation needs labelled data (--label-column)")
        probabilities = softmax(self.logits(data, batch_size, verbose))
        if output_dir is None:
            from tfsft.evaluation.metrics import classification_metrics

            return classification_metrics(data.label_ids, probabilities, self.labels)
        return write_evaluation(output_dir, data.label_ids, probabilities, self.labels)


def prediction_record(probabilities: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
    best = int(np.argmax(probabilities))
    return {
        "label": labels[best],
        "score": float(probabilities[best]),
        "probabilities": {label: float(p) for label, p in zip(labels, probabilities, strict=True)},
    }
