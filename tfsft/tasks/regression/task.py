"""``regression``: one or more numeric targets per text or text pair (linear head, MSE/Huber).

Targets are standardized with the training data's mean and standard deviation (recorded in
``task.json``); predictions, metrics and every export are in the original units.

>>> import pandas as pd
>>> task = create_task("regression", {"target_columns": ["score"]})
>>> data = task.data.read(pd.DataFrame({"text": ["great", "awful", "fine"], "score": [3, -2, 1]}))
>>> data.targets[:, 0].tolist(), round(task.mean[0], 3)
([3.0, -2.0, 1.0], 0.667)
>>> task.evaluation.predictions(np.array([[0.0]]))[0]["score"] == round(task.mean[0], 6)
True
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tfsft.data.examples import TextExamples, TextRows
from tfsft.errors import ConfigError, DataError
from tfsft.tasks.base import create_task, option, register_task
from tfsft.tasks.roles import EvaluationRole, HubHead, OutputCheck
from tfsft.tasks.sentence import (
    SentenceData,
    SentenceModeling,
    SentenceOptions,
    SentenceServing,
    SentenceTask,
)

logger = logging.getLogger(__name__)

if TYPE_CHECKING:  # pragma: no cover
    import keras
    import tensorflow as tf

    from tfsft.data.readers import Table

__all__ = ["RegressionOptions", "RegressionTask", "create_task"]

LOSSES = ("mse", "huber")


@dataclass
class RegressionOptions(SentenceOptions):
    target_columns: list[str] = option(["label"], help="column(s) holding the numeric target(s)",
                                       read=True)
    validation_target_columns: list[str] | None = option(
        None, help="target column(s) of the validation file, when they differ", validation=True)
    loss: str = option("mse", choices=LOSSES, help="mean squared error, or Huber")
    huber_delta: float = option(1.0, help="Huber loss delta, in standard deviations")
    standardize: bool = option(True, help="train on targets scaled to mean 0 and standard "
                                          "deviation 1 (undone in predictions and exports)")

    def validate(self) -> None:
        super().validate()
        if not self.target_columns:
            raise ConfigError("target_columns needs at least one column")
        if (self.validation_target_columns is not None
                and len(self.validation_target_columns) != len(self.target_columns)):
            raise ConfigError("validation_target_columns must name as many columns as "
                              "target_columns")
        if self.huber_delta <= 0:
            raise ConfigError("huber_delta must be > 0")


class RegressionData(SentenceData):
    """Numeric target columns; the training data's mean and std standardize them."""

    task: RegressionTask

    def target_columns(self, role: str) -> list[str]:
        options = self.task.options
        if role == "validation" and options.validation_target_columns:
            return list(options.validation_target_columns)
        return list(options.target_columns)

    def target_option_names(self) -> list[str]:
        return ["target_columns"]

    def target_reader(self, table: Table, role: str):
        columns = self.target_columns(role)
        names = self.task.target_names
        if role != "train" and names and len(columns) != len(names):
            raise ConfigError(f"the model predicts {len(names)} target(s) ({', '.join(names)}); "
                              f"--target-columns names {len(columns)} ({', '.join(columns)}): "
                              f"name one column of {table.source} for each, in that order")

        def read(row: dict[str, Any], where: str) -> list[float]:
            return [_number(row.get(column), table.source, where, column) for column in columns]

        return read

    def augment(self, examples: TextExamples, augmenter: Any, copies: int,
                rng: Any) -> tuple[TextExamples, list[dict[str, Any]]]:
        raise ConfigError("--augment copies each row's label to its edited copies; a "
                          "regression target (a score) changes with the words (deleting "
                          "\"not\" or swapping in a neighbour such as \"bad\" for \"good\"), so "
                          "no augmentation method applies; leave out --augment")

    def make_examples(self, rows: TextRows, table: Table, role: str) -> TextExamples:
        names = self.task.target_names
        targets = None
        if role != "unlabelled":
            targets = np.asarray(rows.targets, dtype=np.float64).reshape(-1, len(names))
        if role == "train":
            self._learn_statistics(len(targets), targets.mean(axis=0), targets.std(axis=0),
                                   table.source)
        if targets is not None:
            warn_outliers(targets, names, table.source, rows.locations)
        return TextExamples(rows.texts, rows.text_pairs, targets, names,
                            source=table.source, locations=rows.locations)

    def _learn_statistics(self, count: int, mean: np.ndarray, spread: np.ndarray,
                          source: str) -> None:
        """The standardization of the targets from their training count, mean and std."""
        task = self.task
        if count < 2:
            raise DataError(source, None, "regression needs at least 2 training rows",
                            "add rows")
        if task.options.standardize and np.any(spread == 0):
            constant = [n for n, s in zip(task.target_names, spread, strict=True) if s == 0]
            raise DataError(source, None, f"target(s) {constant} have the same value in "
                            "every training row", "check the target column")
        task.mean = [float(x) for x in mean]
        task.std = [float(x) for x in spread]
        if not task.options.standardize:
            task.mean, task.std = [0.0] * len(task.target_names), [1.0] * len(task.target_names)

    def chunk_summary(self, rows: TextRows, chunk: Table) -> dict[str, Any]:
        targets = np.asarray(rows.targets, dtype=np.float64).reshape(
            -1, len(self.task.target_names))
        mean = targets.mean(axis=0)
        return {"count": len(targets), "mean": mean,
                "squares": ((targets - mean) ** 2).sum(axis=0)}

    def merge_chunks(self, summaries: Sequence[dict[str, Any]], source: str) -> None:
        """Pooled mean and std of the chunks (Chan et al.'s parallel update)."""
        count, mean = 0, np.zeros(len(self.task.target_names))
        squares = np.zeros(len(self.task.target_names))
        for summary in summaries:
            n = summary["count"]
            if not n:
                continue
            delta = summary["mean"] - mean
            total = count + n
            mean = mean + delta * n / total
            squares = squares + summary["squares"] + delta ** 2 * count * n / total
            count = total
        spread = np.sqrt(squares / max(count, 1))
        self._learn_statistics(count, mean, np.where(spread < 1e-12 * (1 + np.abs(mean)), 0.0,
                                                     spread), source)

    def target_summary(self, examples: TextExamples) -> dict[str, Any] | None:
        if examples.targets is None:
            return None
        values = {}
        for name, column in zip(self.task.target_names, examples.targets.T, strict=True):
            values[name] = {"min": float(column.min()), "mean": float(column.mean()),
                            "std": float(column.std()), "max": float(column.max())}
        return {"kind": "values", "values": values}

    def target_record(self, target: Any) -> dict[str, Any]:
        return {name: float(value)
                for name, value in zip(self.task.target_names, target, strict=True)}

    def record_options(self) -> dict[str, Any]:
        return {**super().record_options(), "target_columns": list(self.task.target_names),
                "validation_target_columns": None}

    def encode_targets(self, examples: TextExamples) -> dict[str, np.ndarray]:
        scaled = (examples.targets - np.asarray(self.task.mean)) / np.asarray(self.task.std)
        return {"target": scaled.astype(np.float32)}


class RegressionModeling(SentenceModeling):
    """A linear head; mean squared error or Huber loss on the standardized targets."""

    task: RegressionTask
    soft_targets = "values"  # the standardized targets

    def compile(self, model: keras.Model, optimizer: Any) -> None:
        import keras

        options = self.task.options
        loss = (keras.losses.MeanSquaredError() if options.loss == "mse"
                else keras.losses.Huber(delta=options.huber_delta))
        model.compile(optimizer=optimizer, loss=loss)


class RegressionEvaluation(EvaluationRole):
    """Pearson, Spearman, MAE, RMSE and R² in the targets' units, with a scatter plot."""

    task: RegressionTask
    headline_metric = "pearson"
    report_files = ("metrics.json", "regression_report.txt", "scatter.png")

    def evaluate(self, examples: TextExamples, outputs: np.ndarray,
                 output_dir: str | Path | None = None, prefix: str = "") -> dict[str, Any]:
        from tfsft.evaluation.metrics import regression_metrics

        if examples.targets is None:
            raise ConfigError("evaluation needs the target column(s) (--target-columns)")
        names = self.task.target_names
        predicted = self.task.destandardize(outputs)
        metrics = regression_metrics(examples.targets, predicted, names)
        if output_dir is not None:
            from tfsft.evaluation.reports import write_regression_report

            write_regression_report(output_dir, metrics, examples.targets, predicted, names,
                                    prefix=prefix)
        return metrics

    def headline(self, metrics: dict[str, Any]) -> dict[str, Any]:
        return {k: metrics[k] for k in ("examples", "pearson", "spearman", "mae", "rmse", "r2")}

    def predictions(self, outputs: np.ndarray) -> list[dict[str, Any]]:
        return [{name: round(float(value), 6) for name, value in
                 zip(self.task.target_names, row, strict=True)}
                for row in self.task.destandardize(outputs)]


class RegressionServing(SentenceServing):
    """Predictions in the targets' units (the standardization undone in the graph)."""

    task: RegressionTask

    def export_outputs(self, raw: tf.Tensor) -> dict[str, tf.Tensor]:
        import tensorflow as tf

        std = tf.constant(self.task.std, tf.float32)
        mean = tf.constant(self.task.mean, tf.float32)
        return {"predictions": raw * std + mean}

    def hub_head(self) -> HubHead:
        return HubHead("sequence-classification", tuple(self.task.target_names), "regression",
                       scale=tuple(map(float, self.task.std)),
                       shift=tuple(map(float, self.task.mean)))

    def output_checks(self) -> dict[str, OutputCheck]:
        # Same relative precision as 1e-4 on standardized values, in the targets' units.
        # Quantized artifacts: Pearson with the Keras model's predictions >= 0.995.
        return {"predictions": OutputCheck(kind="scores", min_correlation=0.995,
                                           tolerance=1e-4 * max(1.0, *self.task.std))}

    def export_quality(self, examples: TextExamples,
                       outputs: dict[str, np.ndarray]) -> float | None:
        if examples.targets is None:
            return None
        truth, predicted = examples.targets[:, 0], outputs["predictions"][:, 0]
        if len(truth) < 2 or np.std(truth) == 0 or np.std(predicted) == 0:
            return None
        return float(np.corrcoef(truth, predicted)[0, 1])

    def labels(self) -> list[str]:
        return list(self.task.target_names)


@register_task
class RegressionTask(SentenceTask):
    name = "regression"
    Options = RegressionOptions
    Data = RegressionData
    Modeling = RegressionModeling
    Evaluation = RegressionEvaluation
    Serving = RegressionServing

    def __init__(self, options: RegressionOptions):
        super().__init__(options)
        self.target_names: tuple[str, ...] = tuple(options.target_columns)
        self.mean: list[float] = [0.0] * len(self.target_names)
        self.std: list[float] = [1.0] * len(self.target_names)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "target_names": list(self.target_names),
                "mean": self.mean, "std": self.std}

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        if "mean" in state:
            self.target_names = tuple(state["target_names"])
            self.mean, self.std = list(state["mean"]), list(state["std"])

    @property
    def num_outputs(self) -> int:
        return len(self.target_names)

    def destandardize(self, outputs: np.ndarray) -> np.ndarray:
        """Model outputs in the targets' units."""
        return np.asarray(outputs, np.float64) * np.asarray(self.std) + np.asarray(self.mean)


#: A target this many robust standard deviations (1.4826 × MAD) from the median is an outlier.
OUTLIER_DEVIATIONS = 20.0


def outliers(column: np.ndarray) -> np.ndarray:
    """Indices of the values in ``column`` more than :data:`OUTLIER_DEVIATIONS` robust standard
    deviations from its median: 1.4826 × the median absolute deviation, or where most values
    are equal (it is 0), 1.2533 × the mean absolute deviation (none when all are equal).

    >>> outliers(np.array([1.0, 2.0, 2.5, 3.0, 1e6])).tolist(), outliers(np.r_[[0.0] * 59, 5000])
    ([4], array([59]))
    """
    median = np.median(column)
    deviations = np.abs(column - median)
    spread = 1.4826 * np.median(deviations)
    if spread == 0:
        spread = 1.2533 * float(np.mean(deviations))
    if spread == 0:
        return np.array([], dtype=np.int64)
    return np.flatnonzero(np.abs(column - median) > OUTLIER_DEVIATIONS * spread)


def warn_outliers(targets: np.ndarray, names: Sequence[str], source: str,
                  locations: Sequence[str]) -> None:
    """Warn of targets far from the rest (a typo such as 1e6 among values in -3..3, a unit
    mix-up): one such value dominates the mean squared error and the standardization."""
    for index, name in enumerate(names):
        far = outliers(targets[:, index])
        if len(far):
            first = far[0]
            where = locations[first] if len(locations) > first else f"row {first + 1}"
            logger.warning("%s: %d target(s) in column %r lie more than %g robust standard "
                           "deviations from the median %g, the first at %s (%g); check them "
                           "for typos or mixed units, as they dominate the squared error",
                           source, len(far), name, OUTLIER_DEVIATIONS,
                           float(np.median(targets[:, index])), where,
                           float(targets[first, index]))


def _number(value: Any, source: str, where: str, column: str) -> float:
    """A finite float from a cell, or a clear error naming the row."""
    if isinstance(value, bool):  # JSON true/false or a Parquet boolean column: a class
        raise DataError(source, where, f"the target (column {column!r}) is {str(value).lower()}, "
                        "a yes/no value rather than a score",
                        "train --task classification on yes/no labels, or store the scores as "
                        "numbers such as 1 and 0")
    if isinstance(value, str):
        value = value.strip()
        if not value:
            raise DataError(source, where, f"the target (column {column!r}) is empty",
                            "give every row a number, or remove the row")
    if value is None:
        raise DataError(source, where, f"the target (column {column!r}) is missing",
                        "give every row a number, or remove the row")
    try:
        if isinstance(value, str) and "_" in value:  # Python reads "1_000"; a table does not
            raise ValueError(value)
        number = float(value)
    except (TypeError, ValueError):
        raise DataError(source, where, f"the target (column {column!r}) is {value!r}, not a "
                        "number", "store numbers such as 3.5 or -1") from None
    if not math.isfinite(number):
        raise DataError(source, where, f"the target (column {column!r}) is {value!r}",
                        "use finite numbers")
    if abs(number) > LARGEST_TARGET:
        raise DataError(source, where, f"the target (column {column!r}) is {value!r}, too "
                        f"large to train on (beyond ±{LARGEST_TARGET:g}: its square or its "
                        "float32 value overflows)", "rescale the column (e.g. to thousands or "
                        "millions, or its logarithm)")
    return number


#: Targets beyond this magnitude overflow float32 training or their squared deviations.
LARGEST_TARGET = 1e30
