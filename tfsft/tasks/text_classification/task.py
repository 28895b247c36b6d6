"""``text-classification``: one label per text or text pair (softmax head, cross-entropy).

Data: a text column (and optionally a second text column for pairs) and a label column; labels
are strings or integers (``2``, ``2.0`` and ``"2"`` are the same label).

>>> import pandas as pd
>>> task = create_task("text-classification", {"label_column": "stars"})
>>> data = task.data.read(pd.DataFrame({"text": ["great", "awful", "fine"],
...                                "stars": ["pos", "neg", "pos"]}))
>>> task.labels, data.label_ids.tolist()
(('neg', 'pos'), [1, 0, 1])
>>> task.evaluation.predictions(np.array([[0.0, 2.0]]))[0]["label"]
'pos'
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tfsft.choices import SAMPLINGS
from tfsft.data.checks import class_counts
from tfsft.data.examples import TextRows, normalize_label, sort_labels
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
from tfsft.tasks.text_classification.examples import (
    TextClassificationData,
    classification_examples,
    label_reader,
    stratified_split,
)

if TYPE_CHECKING:  # pragma: no cover
    import keras
    import tensorflow as tf

    from tfsft.data.pipeline import EncodedData
    from tfsft.data.readers import Table
    from tfsft.tokenization import WordPieceTokenizer

__all__ = ["TextClassificationOptions", "TextClassificationTask", "create_task"]

logger = logging.getLogger(__name__)
#: From this many training rows, a different label in every row is refused.
UNIQUE_LABELS_ROWS = 20


@dataclass
class TextClassificationOptions(LabelListOptions):
    label_column: str = option("label", help="column holding the label", read=True)
    validation_label_column: str | None = option(
        None, help="label column of the validation file, when it differs", validation=True)
    exclude_labels: list[str] = option([], help="skip rows with these labels (counted)",
                                       read=True)
    class_weight: str | dict[str, float] | None = option(
        None, help="'balanced' or JSON like '{\"pos\": 2.0}': loss weight per label")
    sampling: str = option("none", choices=SAMPLINGS,
                           help="class-balanced training epochs: oversample (every label as "
                                "often as the largest, its rows repeated) or undersample (as "
                                "often as the smallest, rows drawn anew each epoch)")
    decision_threshold: float | str | None = option(
        None, help="two labels only: 'tune' (the threshold on the positive label's probability "
                   "with the best F1 on the validation data) or a probability such as 0.3; "
                   "default: the more probable label")
    positive_label: str | None = option(
        None, help="the label a decision threshold is for (default: the rarer training label)")

    def validate(self) -> None:
        super().validate()
        threshold = self.decision_threshold
        if not (threshold is None or threshold == "tune" or (
                isinstance(threshold, (int, float)) and 0 < float(threshold) < 1)):
            raise ConfigError(f"decision_threshold must be 'tune' or a probability in (0, 1), "
                              f"got {threshold!r}")
        if self.positive_label is not None:
            if threshold is None:
                raise ConfigError("positive_label names the label of a decision threshold; "
                                  "pass --decision-threshold tune (or a probability) with it")
            self.positive_label = normalize_label(self.positive_label)
        if self.sampling != "none" and self.class_weight is not None:
            raise ConfigError(f"--sampling {self.sampling} already balances the labels in every "
                              "epoch; with --class-weight too, the rarer labels would count "
                              "twice over: choose one")
        if not (self.class_weight is None or isinstance(self.class_weight, dict)
                or self.class_weight == "balanced"):
            raise ConfigError(f"class_weight must be 'balanced' or a mapping label -> weight such "
                              f"as '{{\"pos\": 2.0}}', got {self.class_weight!r}")
        if isinstance(self.class_weight, dict):  # labels are strings ("1" for a YAML key 1)
            self.class_weight = {str(k): v for k, v in self.class_weight.items()}
        self.exclude_labels = [str(x) for x in self.exclude_labels]


class ClassificationData(LabelColumnData):
    """A label column; the training data's labels become the label list."""

    task: TextClassificationTask

    def skipped_row(self, role: str):
        excluded = {str(x) for x in self.task.options.exclude_labels}
        if not excluded:
            return None
        column = self.label_column(role)
        return lambda row: normalize_label(row.get(column)) in excluded

    def target_reader(self, table: Table, role: str):
        known = None if role == "train" else self.task.known_labels()
        return label_reader(table.source, self.label_column(role), known,
                            self.task.options.exclude_labels)

    def make_examples(self, rows: TextRows, table: Table, role: str) -> TextClassificationData:
        labels = None if role == "train" else (self.task.labels or ())
        examples = classification_examples(rows, table.source, labels,
                                           self.task.options.exclude_labels,
                                           labelled=role != "unlabelled", chunk=role == "chunk")
        if role == "train":
            self._check_label_set(examples, table)
            self.task.labels = examples.labels
            self.task.choose_positive(np.bincount(examples.label_ids,
                                                  minlength=len(examples.labels)), table.source)
        return examples

    def _check_label_set(self, examples: TextClassificationData, table: Table) -> None:
        column = self.label_column("train")
        present = {normalize_label(row.get(column)) for row in table.rows}
        self._refuse_bad_label_set(examples.labels, present, table.source)
        if len(examples) >= UNIQUE_LABELS_ROWS and len(examples.labels) == len(examples):
            raise DataError(table.source, None, f"column {column!r} holds a different label "
                            f"in every one of the {len(examples)} training rows, so no class "
                            "has two examples to learn from", "check --label-column and "
                            "--text-column (are they swapped?)")

    def _refuse_bad_label_set(self, labels: tuple[str, ...], present: set[str | None],
                              source: str) -> None:
        """A classifier needs 2 labels; every ``--exclude-labels`` entry must occur in
        ``present`` (the labels of the training rows, excluded ones included)."""
        column = self.label_column("train")
        if len(labels) < 2:
            raise DataError(source, None, f"every training row has the label "
                            f"{labels[0]!r} (column {column!r}): a classifier needs "
                            "at least 2 classes", "check --label-column, or add rows of the "
                            "other classes")
        never = sorted({str(x) for x in self.task.options.exclude_labels} - present)
        if never:
            raise DataError(source, None, f"--exclude-labels {never} never occur in "
                            f"column {column!r}; the labels are "
                            f"{', '.join(map(repr, sort_labels(present - {None})))}",
                            "fix the spelling, or leave them out")

    def chunk_summary(self, rows: TextRows, chunk: Table) -> dict[str, Any]:
        column = self.label_column("train")
        excluded = {str(x) for x in self.task.options.exclude_labels}
        present = {normalize_label(row.get(column)) for row in chunk.rows} & excluded
        return {"counts": dict(Counter(rows.targets)), "excluded_present": sorted(present)}

    def merge_chunks(self, summaries: Sequence[dict[str, Any]], source: str) -> None:
        counts: Counter[str] = Counter()
        present: set[str | None] = set()
        for summary in summaries:
            counts.update(summary["counts"])
            present.update(summary["excluded_present"])
        if not counts:
            excluded = sorted({str(x) for x in self.task.options.exclude_labels})
            raise DataError(source, None, f"no rows are left after skipping labels {excluded}",
                            "check --exclude-labels")
        labels = sort_labels(set(counts))
        self._refuse_bad_label_set(labels, present | set(counts), source)
        if self.task.options.sampling != "none":
            raise ConfigError(f"--sampling {self.task.options.sampling} works on training data "
                              "held in memory, not on data read in chunks (tfsft preprocess); "
                              "use --class-weight balanced or --loss focal instead")
        self.task.labels = labels
        self.task.train_label_counts = np.array([counts[label] for label in labels], np.int64)
        self.task.choose_positive(self.task.train_label_counts, source)

    def target_summary(self, examples: TextClassificationData) -> dict[str, Any] | None:
        if examples.label_ids is None:
            return None
        return class_counts(examples.labels, np.bincount(examples.label_ids,
                                                         minlength=len(examples.labels)))

    def target_record(self, target: Any) -> dict[str, Any]:
        return {"label": self.task.labels[int(target)]}

    def record_options(self) -> dict[str, Any]:
        return {**super().record_options(), "label_column": "label",
                "validation_label_column": None, "exclude_labels": []}

    def split(self, examples: TextClassificationData, fraction: float, seed: int):
        return stratified_split(examples, fraction, seed)

    def sample_weights(self, examples: TextClassificationData) -> np.ndarray | None:
        weights = class_weights(self.task.options.class_weight, examples,
                                self.task.train_label_counts)
        return None if weights is None else weights[examples.label_ids]

    def encode(self, tokenizer: WordPieceTokenizer, examples: TextClassificationData,
               max_length: int, training: bool = False) -> EncodedData:
        encoded = super().encode(tokenizer, examples, max_length, training)
        sampling = self.task.options.sampling
        if training and sampling != "none" and examples.label_ids is not None:
            encoded.balance = (sampling, np.asarray(examples.label_ids))
        return encoded


class ClassificationModeling(SentenceModeling):
    """:class:`TextClassifier` (softmax head), sparse categorical cross-entropy."""

    task: TextClassificationTask
    metric_directions = {"loss": False, "accuracy": True}
    model_options = ("pooling", "loss", "focal_gamma")  # a run on shards may change them
    soft_targets = "classes"

    def build(self, checkpoint: Path, dropout: float, dtype: str | None) -> keras.Model:
        from tfsft.tasks.text_classification.model import TextClassifier

        return TextClassifier.from_pretrained(checkpoint, num_classes=self.task.num_outputs,
                                              pooling=self.task.options.pooling,
                                              dropout=dropout, dtype=dtype)

    def load(self, path: Path) -> keras.Model:
        import tfsft.tasks.text_classification.model  # noqa: F401  (registers the model's classes)

        return super().load(path)

    def compile(self, model: keras.Model, optimizer: Any) -> None:
        import keras

        options = self.task.options
        loss = (sparse_focal_loss(options.gamma) if options.loss == "focal"
                else keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.compile(optimizer=optimizer, loss=loss,
                      metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])


class ClassificationEvaluation(EvaluationRole):
    """Accuracy, macro F1, ROC AUC, the classification report and confusion matrix."""

    task: TextClassificationTask
    headline_metric = "accuracy"
    report_files = ("metrics.json", "classification_report.txt", "confusion_matrix.png")

    def evaluate(self, examples: TextClassificationData, outputs: np.ndarray,
                 output_dir: str | Path | None = None, prefix: str = "") -> dict[str, Any]:
        from scipy.special import softmax

        from tfsft.evaluation.metrics import classification_metrics
        from tfsft.evaluation.reports import write_evaluation

        if examples.label_ids is None:
            raise ConfigError("evaluation needs labelled data (--label-column)")
        probabilities = softmax(outputs, axis=-1)
        task = self.task
        decided = task.decide(probabilities)
        extra = {} if task.decision_threshold is None else {"decision_threshold": {
            "label": task.labels[task.positive_id], "threshold": task.decision_threshold}}
        if output_dir is None:
            return {**classification_metrics(examples.label_ids, probabilities, task.labels,
                                             decided), **extra}
        return write_evaluation(output_dir, examples.label_ids, probabilities, task.labels,
                                prefix=prefix, predicted=decided, extra=extra)

    def after_fit(self, validation: TextClassificationData, outputs: np.ndarray) -> None:
        from scipy.special import softmax

        from tfsft.evaluation.metrics import tune_thresholds

        task = self.task
        if task.options.decision_threshold == "tune" and validation.label_ids is not None:
            positive = task.positive_id
            truth = (np.asarray(validation.label_ids) == positive).astype(np.int32)[:, None]
            if not truth.any():
                logger.warning("--decision-threshold tune: the validation data has no row of "
                               "%r, so the threshold stays 0.5 (untuned)",
                               task.labels[positive])
                return
            probability = softmax(outputs, axis=-1)[:, positive][:, None]
            task.decision_threshold = tune_thresholds(truth, probability)[0]
            task.threshold_tuned = True

    def headline(self, metrics: dict[str, Any]) -> dict[str, Any]:
        keys = ("examples", "accuracy", "f1_macro", "precision_macro", "recall_macro", "roc_auc")
        return {k: metrics[k] for k in keys}

    def predictions(self, outputs: np.ndarray) -> list[dict[str, Any]]:
        from scipy.special import softmax

        labels = self.task.labels
        probabilities = softmax(np.asarray(outputs, np.float64), axis=-1)
        records = []
        for row, chosen in zip(probabilities, self.task.decide(probabilities), strict=True):
            records.append({
                "label": labels[chosen], "score": float(row[chosen]),
                "probabilities": {label: float(p) for label, p in
                                  zip(labels, row, strict=True)}})
        return records


class ClassificationServing(SentenceServing):
    """Probabilities and logits; the raw-text signature adds the label and its id."""

    task: TextClassificationTask
    #: quantized artifacts: argmax agreement >= 99 % and accuracy within half a point
    max_quality_loss = 0.005

    def export_outputs(self, raw: tf.Tensor) -> dict[str, tf.Tensor]:
        import tensorflow as tf

        return {"probabilities": tf.nn.softmax(raw, axis=-1), "logits": raw}

    def hub_head(self) -> HubHead:
        return HubHead("sequence-classification", tuple(self.task.labels),
                       "single_label_classification")

    def serving_outputs(self, raw: tf.Tensor, inputs: dict[str, tf.Tensor],
                        tokenizer: WordPieceTokenizer, max_length: int) -> dict[str, tf.Tensor]:
        import tensorflow as tf

        task = self.task
        label_id = tf.argmax(raw, axis=-1)
        if task.decision_threshold is not None:  # the positive label above its threshold
            positive = task.positive_id
            above = tf.nn.softmax(raw, axis=-1)[:, positive] > task.decision_threshold
            label_id = tf.where(above, tf.constant(positive, tf.int64),
                                tf.constant(1 - positive, tf.int64))
        return {"label": tf.gather(tf.constant(list(task.labels)), label_id),
                "label_id": label_id, **self.export_outputs(raw)}

    def output_checks(self) -> dict[str, OutputCheck]:
        checks = {"logits": OutputCheck(kind="argmax", min_agreement=0.99)}
        task = self.task
        if task.decision_threshold is not None:  # the decisions served: above the threshold
            per_label = [1.0 - task.decision_threshold] * 2
            per_label[task.positive_id] = task.decision_threshold
            checks["probabilities"] = OutputCheck(kind="decisions", min_agreement=0.99,
                                                  threshold=tuple(per_label))
        return checks

    def export_quality(self, examples: TextClassificationData,
                       outputs: dict[str, np.ndarray]) -> float | None:
        from scipy.special import softmax

        if examples.label_ids is None:
            return None
        decided = self.task.decide(softmax(np.asarray(outputs["logits"], np.float64), axis=-1))
        return float(np.mean(decided == examples.label_ids))

    def labels(self) -> list[str]:
        return list(self.task.labels or [])


@register_task
class TextClassificationTask(LabelListTask):
    name = "text-classification"
    Options = TextClassificationOptions
    Data = ClassificationData
    Modeling = ClassificationModeling
    Evaluation = ClassificationEvaluation
    Serving = ClassificationServing

    def __init__(self, options: TextClassificationOptions):
        super().__init__(options)
        # Label counts of the whole training data when it was read in chunks (merge_chunks):
        # class_weight="balanced" then weighs every chunk by them.
        self.train_label_counts: np.ndarray | None = None
        # A decision threshold on the probability of label ``positive_id`` (two labels);
        # None: the most probable label.
        self.decision_threshold: float | None = None
        self.threshold_tuned = False  # tuned on validation data (else given, or untuned 0.5)
        self.positive_id: int = 1

    def choose_positive(self, counts: np.ndarray, source: str) -> None:
        """The label a decision threshold is for (``positive_label``, else the rarer one) and
        the threshold until it is tuned; refused for other than two labels."""
        options = self.options
        if options.decision_threshold is None:
            self.decision_threshold = None
            return
        labels = self.known_labels()
        if len(labels) != 2:
            raise DataError(source, None, f"a decision threshold needs two labels; the data "
                            f"has {len(labels)} ({', '.join(labels[:6])})", "leave out "
                            "--decision-threshold, or use class weights or focal loss")
        if options.positive_label is not None:
            if options.positive_label not in labels:
                raise ConfigError(f"--positive-label {options.positive_label!r} is not a label "
                                  f"of the training data ({', '.join(labels)})")
            self.positive_id = labels.index(options.positive_label)
        else:
            self.positive_id = 0 if counts[0] < counts[1] else 1
        threshold = options.decision_threshold
        self.decision_threshold = 0.5 if threshold == "tune" else float(threshold)

    def decide(self, probabilities: np.ndarray) -> np.ndarray:
        """The decided label id of each row of ``probabilities``."""
        probabilities = np.asarray(probabilities)
        if self.decision_threshold is None:
            return probabilities.argmax(axis=-1)
        above = probabilities[:, self.positive_id] > self.decision_threshold
        return np.where(above, self.positive_id, 1 - self.positive_id)

    def state_dict(self) -> dict[str, Any]:
        state = {**super().state_dict(), "labels": list(self.labels or [])}
        if self.train_label_counts is not None:
            state["label_counts"] = self.train_label_counts.tolist()
        if self.decision_threshold is not None:
            state["decision_threshold"] = self.decision_threshold
            state["positive_label"] = self.known_labels()[self.positive_id]
            state["decision_threshold_tuned"] = self.threshold_tuned
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        if state.get("labels"):
            self.labels = tuple(state["labels"])
        if state.get("label_counts"):
            self.train_label_counts = np.asarray(state["label_counts"], np.int64)
        if state.get("decision_threshold") is not None:
            self.decision_threshold = float(state["decision_threshold"])
            self.positive_id = self.known_labels().index(state["positive_label"])
            self.threshold_tuned = bool(state.get("decision_threshold_tuned"))



def sparse_focal_loss(gamma: float):
    """Focal loss (Lin et al., 2017) on integer labels and logits: cross-entropy scaled by
    ``(1 - p)**gamma`` of the true label's probability ``p``, so examples the model already
    gets right weigh less (``gamma=0`` is cross-entropy).

    >>> logits, labels = np.array([[2.0, 0.0], [0.0, 2.0]]), np.array([0, 0])
    >>> [round(float(x), 4) for x in sparse_focal_loss(2.0)(labels, logits)]
    [0.0018, 1.6501]
    """
    from keras import ops

    def focal_loss(labels, logits):
        labels = ops.cast(ops.reshape(labels, (-1,)), "int32")
        log_probabilities = ops.log_softmax(ops.cast(logits, "float32"), axis=-1)
        log_p = ops.take_along_axis(log_probabilities, labels[:, None], axis=-1)[:, 0]
        return -ops.power(1.0 - ops.exp(log_p), gamma) * log_p

    return focal_loss


def class_weights(class_weight: str | dict[str, float] | None, data: TextClassificationData,
                  counts: np.ndarray | None = None) -> np.ndarray | None:
    """Loss weight per label id from ``"balanced"`` (scikit-learn's: rows / (labels present *
    rows of the label), by ``counts`` per label id or else the counts in ``data``) or a
    label -> weight map (unnamed labels weigh 1).

    >>> data = TextClassificationData(["a"] * 4, None, np.array([0, 0, 0, 1]), ("neg", "pos"))
    >>> class_weights("balanced", data).round(3).tolist(), class_weights({"pos": 3}, data).tolist()
    ([0.667, 2.0], [1.0, 3.0])
    >>> class_weights("balanced", data, counts=np.array([1, 1])).tolist()
    [1.0, 1.0]
    """
    if class_weight is None:
        return None
    if class_weight == "balanced":
        if counts is None:
            counts = np.bincount(data.label_ids, minlength=len(data.labels))
        present = counts > 0
        weights = np.zeros(len(data.labels))
        weights[present] = counts.sum() / (present.sum() * counts[present])
        return weights
    weights = {str(k): float(v) for k, v in class_weight.items()}
    unknown = sorted(set(weights) - set(data.labels))
    if unknown:
        raise ConfigError(f"class_weight names labels {unknown} that the training data lacks; "
                          f"the labels are {list(data.labels)}")
    return np.array([weights.get(label, 1.0) for label in data.labels])
