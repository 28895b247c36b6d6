"""``multi-label-classification``: any number of labels per text (sigmoid head, binary
cross-entropy), with a decision threshold per label.

A label cell holds a list (JSONL, Parquet, datasets), a JSON list as text (``["PER", "LOC"]``)
or labels joined by ``label_delimiter`` (``PER|LOC``); an empty cell or list means no label.
Thresholds are tuned per label for F1 on the validation data after training (or fixed with
``threshold: 0.5``) and saved with the model; exports ship them in ``task.json``.

>>> import pandas as pd
>>> task = create_task("multi-label-classification")
>>> data = task.data.read(pd.DataFrame({"text": ["a", "b", "c"], "label": ["x|y", "", "y"]}))
>>> task.labels, data.targets.tolist()
(('x', 'y'), [[1, 1], [0, 0], [0, 1]])
>>> task.evaluation.predictions(np.array([[3.0, -3.0]]))[0]["labels"]
['x']
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tfsft.data.checks import class_counts
from tfsft.data.examples import (
    TextExamples,
    TextRows,
    normalize_label,
    refuse_missing_value_marker,
    sort_labels,
)
from tfsft.errors import ConfigError, DataError
from tfsft.tasks.base import create_task, option, register_task
from tfsft.tasks.roles import EvaluationRole, HubHead, OutputCheck
from tfsft.tasks.sentence import (
    LabelColumnData,
    LabelListOptions,
    LabelListTask,
    SentenceModeling,
    SentenceServing,
)

if TYPE_CHECKING:  # pragma: no cover
    import keras
    import tensorflow as tf

    from tfsft.data.readers import Table
    from tfsft.tokenization import WordPieceTokenizer

__all__ = ["MultiLabelOptions", "MultiLabelTask", "create_task"]


@dataclass
class MultiLabelOptions(LabelListOptions):
    label_column: str = option("label", help="column holding the labels of a text", read=True)
    validation_label_column: str | None = option(
        None, help="label column of the validation file, when it differs", validation=True)
    label_delimiter: str = option("|", help="separator of labels in a text cell ('PER|LOC'); "
                                            "cells holding JSON lists need none", read=True)
    threshold: float | str = option("tune", help="'tune' (per label, best F1 on the validation "
                                                 "data) or a probability such as 0.5")

    def validate(self) -> None:
        super().validate()
        if self.threshold != "tune" and not (isinstance(self.threshold, (int, float))
                                             and 0 < float(self.threshold) < 1):
            raise ConfigError(f"threshold must be 'tune' or a probability in (0, 1), "
                              f"got {self.threshold!r}")
        if not self.label_delimiter:
            raise ConfigError("label_delimiter must not be empty")


logger = logging.getLogger(__name__)
#: Separators that, inside a label name, suggest --label-delimiter names the wrong one.
OTHER_DELIMITERS = ("|", ";", ",", "/")


def _warn_about_label_set(found: set[str], rows: Sequence[Sequence[str]], delimiter: str,
                          source: str) -> None:
    """Warn about label sets that read like a mistake: names holding another delimiter (the
    cell was not split), or a label every row carries (it tells nothing)."""
    for other in OTHER_DELIMITERS:
        joined = sorted(label for label in found if other != delimiter and other in label)
        if joined and len(joined) * 2 >= len(found):
            logger.warning("%s: labels such as %r hold %r: if that separates labels, pass "
                           "--label-delimiter %r (now %r)", source, joined[0], other, other,
                           delimiter)
            return
    everywhere = sorted(set.intersection(*(set(labels) for labels in rows))) if rows else []
    if everywhere and len(rows) > 1:
        logger.warning("%s: every row carries the label(s) %s; they tell the model nothing",
                       source, everywhere)


class MultiLabelData(LabelColumnData):
    """A label-list column; the training data's labels become the label list."""

    unordered_targets = True

    task: MultiLabelTask

    def target_reader(self, table: Table, role: str):
        column = self.label_column(role)
        known = None if role == "train" else set(self.task.known_labels())
        delimiter = self.task.options.label_delimiter

        def read(row: dict[str, Any], where: str) -> Any:
            labels = parse_labels(row.get(column), delimiter, table.source, where, column)
            if known is not None:
                unknown = sorted(set(labels) - known)
                if unknown:
                    raise DataError(table.source, where, f"label(s) {unknown} were not seen in "
                                    f"training; the model knows {sorted(known)}",
                                    "fix the labels, or train a model that includes them")
            return labels

        return read

    def make_examples(self, rows: TextRows, table: Table, role: str) -> TextExamples:
        task = self.task
        if role == "train":
            found = {label for labels in rows.targets for label in labels}
            if len(found) < 1:
                raise DataError(table.source, None, "no row has a label",
                                "check --label-column and --label-delimiter")
            task.learn_labels(found)
            _warn_about_label_set(found, rows.targets, task.options.label_delimiter,
                                  table.source)
        targets = None
        if role != "unlabelled":
            index = {label: i for i, label in enumerate(task.known_labels())}
            targets = np.zeros((len(rows.texts), len(index)), dtype=np.int32)
            for row, labels in enumerate(rows.targets):
                targets[row, [index[label] for label in labels]] = 1
        return TextExamples(rows.texts, rows.text_pairs, targets, tuple(task.labels or ()),
                            source=table.source, locations=rows.locations)

    def chunk_summary(self, rows: TextRows, chunk: Table) -> list[str]:
        return sorted({label for labels in rows.targets for label in labels})

    def merge_chunks(self, summaries: Sequence[list[str]], source: str) -> None:
        found = {label for labels in summaries for label in labels}
        if not found:
            raise DataError(source, None, "no row has a label",
                            "check --label-column and --label-delimiter")
        self.task.learn_labels(found)

    def target_summary(self, examples: TextExamples) -> dict[str, Any] | None:
        if examples.targets is None:
            return None
        summary = class_counts(examples.target_names, examples.targets.sum(axis=0),
                               kind="labels")
        summary["rows_without_labels"] = int((examples.targets.sum(axis=1) == 0).sum())
        return summary

    def target_record(self, target: Any) -> dict[str, Any]:
        return {"labels": [label for label, on in zip(self.task.labels, target, strict=True)
                           if on]}

    def record_options(self) -> dict[str, Any]:
        return {**super().record_options(), "label_column": "labels",
                "validation_label_column": None}

    def encode_targets(self, examples: TextExamples) -> dict[str, np.ndarray]:
        return {"target": examples.targets.astype(np.float32)}


class MultiLabelModeling(SentenceModeling):
    """One sigmoid output per label, binary cross-entropy."""

    task: MultiLabelTask
    metric_directions = {"loss": False, "label_accuracy": True}
    model_options = ("pooling", "loss", "focal_gamma")  # a run on shards may change them
    soft_targets = "labels"

    def compile(self, model: keras.Model, optimizer: Any) -> None:
        import keras

        options = self.task.options
        loss = (keras.losses.BinaryFocalCrossentropy(gamma=options.gamma,
                                                     from_logits=True)
                if options.loss == "focal" else keras.losses.BinaryCrossentropy(from_logits=True))
        model.compile(optimizer=optimizer, loss=loss,
                      metrics=[keras.metrics.BinaryAccuracy(threshold=0.0,
                                                            name="label_accuracy")])


class MultiLabelEvaluation(EvaluationRole):
    """Thresholds tuned after training; micro/macro F1, subset accuracy, Hamming loss."""

    task: MultiLabelTask
    headline_metric = "f1_micro"
    report_files = ("metrics.json", "classification_report.txt")

    def after_fit(self, validation: TextExamples, outputs: np.ndarray) -> None:
        if self.task.options.threshold == "tune":
            from tfsft.evaluation.metrics import tune_thresholds

            self.task.thresholds = tune_thresholds(validation.targets, sigmoid(outputs))

    def evaluate(self, examples: TextExamples, outputs: np.ndarray,
                 output_dir: str | Path | None = None, prefix: str = "") -> dict[str, Any]:
        from tfsft.evaluation.metrics import multilabel_metrics

        if examples.targets is None:
            raise ConfigError("evaluation needs labelled data (--label-column)")
        task = self.task
        metrics = multilabel_metrics(examples.targets, sigmoid(outputs), task.thresholds,
                                     task.labels)
        if output_dir is not None:
            from tfsft.evaluation.reports import write_multilabel_report

            write_multilabel_report(output_dir, metrics, examples.targets, sigmoid(outputs),
                                    task.thresholds, task.labels, prefix=prefix)
        return metrics

    def headline(self, metrics: dict[str, Any]) -> dict[str, Any]:
        keys = ("examples", "f1_micro", "f1_macro", "precision_micro", "recall_micro",
                "subset_accuracy", "hamming_loss")
        return {k: metrics[k] for k in keys}

    def predictions(self, outputs: np.ndarray) -> list[dict[str, Any]]:
        labels, thresholds = self.task.labels, self.task.thresholds
        records = []
        for row in sigmoid(np.asarray(outputs, np.float64)):
            records.append({
                "labels": [label for label, p, t in zip(labels, row, thresholds, strict=True)
                           if p > t],
                "probabilities": {label: float(p) for label, p in
                                  zip(labels, row, strict=True)}})
        return records


class MultiLabelServing(SentenceServing):
    """Probabilities and logits; the raw-text signature adds the decisions and label names."""

    task: MultiLabelTask
    #: quantized artifacts: >= 99 % equal decisions and micro-F1 within half a point
    max_quality_loss = 0.005

    def _logit_thresholds(self) -> list[float]:
        return [math.log(t / (1 - t)) for t in self.task.thresholds]

    def export_outputs(self, raw: tf.Tensor) -> dict[str, tf.Tensor]:
        import tensorflow as tf

        return {"probabilities": tf.sigmoid(raw), "logits": raw}

    def hub_head(self) -> HubHead:
        return HubHead("sequence-classification", tuple(self.task.labels),
                       "multi_label_classification")

    def serving_outputs(self, raw: tf.Tensor, inputs: dict[str, tf.Tensor],
                        tokenizer: WordPieceTokenizer, max_length: int) -> dict[str, tf.Tensor]:
        import tensorflow as tf

        chosen = raw > tf.constant(self._logit_thresholds(), tf.float32)
        # [batch, labels]: the label's name where chosen, else "". Built with a gather only:
        # LiteRT has no string BroadcastTo, ZerosLike or Select.
        decisions = tf.cast(chosen, tf.int32)
        count = len(self.task.labels)
        names = tf.constant([""] * count + list(self.task.labels))
        return {"decisions": decisions,
                "labels": tf.gather(names, decisions * count + tf.range(count)),
                **self.export_outputs(raw)}

    def output_checks(self) -> dict[str, OutputCheck]:
        return {"logits": OutputCheck(kind="decisions", min_agreement=0.99,
                                      threshold=tuple(self._logit_thresholds()))}

    def export_quality(self, examples: TextExamples,
                       outputs: dict[str, np.ndarray]) -> float | None:
        from sklearn.metrics import f1_score

        if examples.targets is None:
            return None
        decided = outputs["logits"] > np.asarray(self._logit_thresholds())
        return float(f1_score(examples.targets, decided.astype(np.int32), average="micro",
                              zero_division=0))

    def labels(self) -> list[str]:
        return list(self.task.labels or [])


@register_task
class MultiLabelTask(LabelListTask):
    name = "multi-label-classification"
    Options = MultiLabelOptions
    Data = MultiLabelData
    Modeling = MultiLabelModeling
    Evaluation = MultiLabelEvaluation
    Serving = MultiLabelServing

    def __init__(self, options: MultiLabelOptions):
        super().__init__(options)
        self.thresholds: list[float] = []
        self._fixed_threshold = 0.5 if options.threshold == "tune" else float(options.threshold)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "labels": list(self.labels or []),
                "thresholds": self.thresholds}

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        if state.get("labels"):
            self.labels = tuple(state["labels"])
            self.thresholds = [float(t) for t in state.get("thresholds") or
                               [self._fixed_threshold] * len(self.labels)]

    def learn_labels(self, found: set[str]) -> None:
        """The label list from the labels of the training data, each at the fixed threshold
        (tuned after training with ``threshold: tune``)."""
        self.labels = sort_labels(found)
        self.thresholds = [self._fixed_threshold] * len(self.labels)



def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(logits, np.float64)))


def parse_labels(value: Any, delimiter: str, source: str, where: str,
                 column: str) -> list[str]:
    """The labels in one cell: a list, a JSON list as text, or text joined by ``delimiter``.

    >>> parse_labels('["b", "a"]', "|", "f", "line 2", "labels")
    ['b', 'a']
    >>> parse_labels("a | b", "|", "f", "line 3", "labels"), parse_labels("", "|", "f", "", "l")
    (['a', 'b'], [])
    """
    if value is None or (isinstance(value, float) and value != value):
        raise DataError(source, where, f"the labels (column {column!r}) are missing",
                        "write an empty list [] (or leave the cell empty) for a text "
                        "without labels")
    if hasattr(value, "tolist") and not isinstance(value, str):  # numpy arrays from Parquet
        value = value.tolist()
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                raise DataError(source, where, f"the labels (column {column!r}) look like a "
                                f"JSON list but are not valid JSON ({exc.msg})",
                                'write them as ["A", "B"] or A|B') from None
        else:
            value = [part for part in (p.strip() for p in text.split(delimiter)) if part]
    if not isinstance(value, (list, tuple)):
        value = [value]
    labels = []
    for item in value:
        if isinstance(item, (list, tuple, dict)):
            raise DataError(source, where, f"the labels (column {column!r}) hold a nested "
                            f"{type(item).__name__} ({item!r:.40})",
                            'write one flat list, such as ["A", "B"]')
        label = normalize_label(item)
        refuse_missing_value_marker(label, source, where, column)
        if label is None:
            raise DataError(source, where, f"the labels (column {column!r}) hold an empty label",
                            "remove it")
        labels.append(label)
    if len(set(labels)) != len(labels):
        raise DataError(source, where, f"the labels (column {column!r}) repeat a label: "
                        f"{labels}", "list each label once")
    return labels
