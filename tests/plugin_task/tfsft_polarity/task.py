"""``polarity``: is a text positive? One sigmoid output, binary cross-entropy.

The whole task in one module, on tfsft's public task API: the shared sentence-level roles
(:mod:`tfsft.tasks.sentence`) read the text columns, tokenize and build the pooled model; this
task adds its target (``label_column`` equal to ``positive_label`` or not) to the data role, its
loss to the modeling role, its metrics and predictions (evaluation role) and its export outputs
(serving role). ``pyproject.toml`` beside this package registers
it in the ``tfsft.tasks`` entry-point group, so ``tfsft train --task polarity`` finds it once the
distribution is installed.

>>> import pandas as pd
>>> task = PolarityTask(PolarityOptions(positive_label="pos"))
>>> task.data.read(pd.DataFrame({"text": ["great", "awful"], "label": ["pos", "neg"]})).targets
array([[1.],
       [0.]], dtype=float32)
>>> task.evaluation.predictions(np.array([[2.0]]))
[{'label': 'pos', 'score': 0.880797}]
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tfsft.data.examples import TextExamples, TextRows
from tfsft.errors import ConfigError, DataError
from tfsft.io_utils import atomic_write_json
from tfsft.tasks.base import option
from tfsft.tasks.roles import EvaluationRole, OutputCheck
from tfsft.tasks.sentence import (
    SentenceData,
    SentenceModeling,
    SentenceOptions,
    SentenceServing,
    SentenceTask,
)

if TYPE_CHECKING:  # pragma: no cover
    import keras
    import tensorflow as tf

    from tfsft.data.readers import Table


@dataclass
class PolarityOptions(SentenceOptions):
    label_column: str = option("label", help="column holding the label", read=True)
    positive_label: str = option("pos", help="the label value that means positive")
    negative_name: str = option("neg", help="the label predictions give non-positive texts")


class PolarityData(SentenceData):
    """The label column, read as positive (1.0) or not (0.0)."""

    task: PolarityTask

    def target_columns(self, role: str) -> list[str]:
        return [self.task.options.label_column]

    def target_option_names(self) -> list[str]:
        return ["label_column"]

    def target_reader(self, table: Table, role: str):
        column, positive = self.task.options.label_column, self.task.options.positive_label

        def read(row: dict[str, Any], where: str) -> float:
            value = row.get(column)
            if value is None or not str(value).strip():
                raise DataError(table.source, where, f"the label (column {column!r}) is empty",
                                "give every row a label")
            return 1.0 if str(value).strip() == positive else 0.0

        return read

    def make_examples(self, rows: TextRows, table: Table, role: str) -> TextExamples:
        targets = None
        if role != "unlabelled":
            targets = np.asarray(rows.targets, np.float32).reshape(-1, 1)
        if role == "train" and len(set(targets[:, 0].tolist())) < 2:
            raise ConfigError(f"{table.source}: every training row is "
                              f"{'' if targets[0, 0] else 'not '}"
                              f"{self.task.options.positive_label!r}; "
                              "polarity needs both kinds of rows")
        return TextExamples(rows.texts, rows.text_pairs, targets,
                            (self.task.options.positive_label,),
                            source=table.source, locations=rows.locations)

    def chunk_summary(self, rows: TextRows, chunk: Table) -> dict[str, Any]:
        return self.task.state_dict()

    def target_record(self, target: Any) -> dict[str, Any]:
        options = self.task.options
        return {"label": options.positive_label if target[0] else options.negative_name}

    def record_options(self) -> dict[str, Any]:
        return {**super().record_options(), "label_column": "label"}


class PolarityModeling(SentenceModeling):
    """One logit, binary cross-entropy."""

    metric_directions = {"loss": False, "accuracy": True}
    default_monitor = "val_accuracy"

    def compile(self, model: keras.Model, optimizer: Any) -> None:
        import keras

        model.compile(optimizer=optimizer,
                      loss=keras.losses.BinaryCrossentropy(from_logits=True),
                      metrics=[keras.metrics.BinaryAccuracy(name="accuracy", threshold=0.0)])


class PolarityEvaluation(EvaluationRole):
    """Accuracy and the share of positive texts."""

    task: PolarityTask
    headline_metric = "accuracy"

    def evaluate(self, examples: TextExamples, outputs: np.ndarray,
                 output_dir: str | Path | None = None, prefix: str = "") -> dict[str, Any]:
        if examples.targets is None:
            raise ConfigError("evaluation needs the label column (--label-column)")
        predicted = np.asarray(outputs)[:, 0] > 0
        truth = examples.targets[:, 0] > 0.5
        metrics = {"examples": len(truth), "accuracy": float(np.mean(predicted == truth)),
                   "positive_share": float(np.mean(truth))}
        if output_dir is not None:
            atomic_write_json(Path(output_dir) / f"{prefix}metrics.json", metrics)
        return metrics

    def predictions(self, outputs: np.ndarray) -> list[dict[str, Any]]:
        options = self.task.options
        scores = 1 / (1 + np.exp(-np.asarray(outputs, np.float64)[:, 0]))
        return [{"label": options.positive_label if p > 0.5 else options.negative_name,
                 "score": round(float(p), 6)} for p in scores]


class PolarityServing(SentenceServing):
    """The probability of positive."""

    task: PolarityTask

    def export_outputs(self, raw: tf.Tensor) -> dict[str, tf.Tensor]:
        import tensorflow as tf

        return {"probability": tf.sigmoid(raw)}

    def output_checks(self) -> dict[str, OutputCheck]:
        # fp32 artifacts: probabilities within 1e-4. Quantized ones: the same decisions on at
        # least 95 % of texts (one sigmoid output puts borderline texts right at 0.5, where
        # int8 rounding flips some; two-logit classification compares argmaxes at 98 %).
        return {"probability": OutputCheck(kind="decisions", threshold=(0.5,),
                                           min_agreement=0.95)}

    def export_quality(self, examples: TextExamples,
                       outputs: dict[str, np.ndarray]) -> float | None:
        if examples.targets is None:
            return None
        return float(np.mean((outputs["probability"][:, 0] > 0.5)
                             == (examples.targets[:, 0] > 0.5)))

    def labels(self) -> list[str]:
        return [self.task.options.positive_label]


class PolarityTask(SentenceTask):
    name = "polarity"
    Options = PolarityOptions
    Data = PolarityData
    Modeling = PolarityModeling
    Evaluation = PolarityEvaluation
    Serving = PolarityServing

    @property
    def num_outputs(self) -> int:
        return 1
