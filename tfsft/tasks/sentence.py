"""What every sentence-level task shares: a text (or text pair) in, one row of outputs out.

Text classification, multi-label classification and regression read the same text columns,
tokenize the same way, put a pooled dense head on the backbone and serve raw strings; they
differ in their targets, loss, metrics and output post-processing. A task subclasses
:class:`SentenceTask` and :class:`SentenceData` (implementing the target hooks
``target_columns``, ``target_reader``, ``make_examples``, ``target_record`` and
``chunk_summary``), and writes its own evaluation role and the export outputs of a
:class:`SentenceServing`; :class:`SentenceModeling` builds the pooled model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tfsft.choices import CLASSIFICATION_LOSSES, POOLINGS
from tfsft.data.examples import TextExamples, TextRows, read_text_rows, split_examples
from tfsft.errors import ConfigError
from tfsft.tasks.base import Task, TaskOptions, option
from tfsft.tasks.roles import DataRole, ModelingRole, ServingRole

if TYPE_CHECKING:  # pragma: no cover
    import keras
    import tensorflow as tf

    from tfsft.data.pipeline import EncodedData
    from tfsft.data.readers import Table
    from tfsft.tokenization import WordPieceTokenizer


@dataclass
class SentenceOptions(TaskOptions):
    """Text columns and the pooled head, shared by the sentence-level tasks."""

    text_column: str = option("text", help="column holding the text", read=True)
    text_pair_column: str | None = option(
        None, help="column holding the second text, for sentence pairs", read=True)
    validation_text_column: str | None = option(
        None, help="text column of the validation file, when it differs", validation=True)
    validation_text_pair_column: str | None = option(
        None, help="second-text column of the validation file, when it differs",
        validation=True)
    pooling: str = option("mean", choices=POOLINGS,
                          help="sentence vector: masked mean of the last layer, [CLS], or "
                               "BERT's tanh pooler")
    normalize: str = option(
        "none", help="text normalization before tokenizing, the same in training, predict and "
                     "the SavedModel: comma-separated steps from mojibake, html, nfkc, urls, "
                     "emails, handles, numbers, whitespace; 'default' (mojibake,html,nfkc,"
                     "whitespace) or 'none'")

    def validate(self) -> None:
        """Check the normalization steps, written back in their canonical form."""
        from tfsft.text_normalization import parse_steps

        self.normalize = ",".join(parse_steps(self.normalize)) or "none"


@dataclass
class LabelListOptions(SentenceOptions):
    """The loss options shared by the classification tasks."""

    loss: str = option("cross-entropy", choices=CLASSIFICATION_LOSSES,
                       help="cross-entropy, or focal: examples the model already gets right "
                            "weigh less (for imbalanced labels; see --focal-gamma)")
    focal_gamma: float | None = option(
        None, help="focal loss's focusing exponent (default 2; 0 is cross-entropy)")

    def validate(self) -> None:
        super().validate()
        if self.focal_gamma == 2.0 and self.loss != "focal":
            self.focal_gamma = None  # the default that earlier run folders saved: not a choice
        if self.focal_gamma is not None and self.loss != "focal":
            raise ConfigError("focal_gamma is the exponent of --loss focal; pass --loss focal "
                              "with it, or leave it out")
        if self.focal_gamma is not None and not (
                isinstance(self.focal_gamma, (int, float)) and 0 <= self.focal_gamma <= 10):
            raise ConfigError(f"focal_gamma must be a number from 0 to 10, got "
                              f"{self.focal_gamma!r}")

    @property
    def gamma(self) -> float:
        """The focal exponent in use (2 unless given)."""
        return 2.0 if self.focal_gamma is None else float(self.focal_gamma)


class SentenceData(DataRole):
    """Text columns to checked :class:`TextExamples`; the target hooks are the subclass's."""

    task: SentenceTask
    #: Whether a row's target is a set (multi-label), whose order does not count when rows
    #: are compared (``tfsft data clean``).
    unordered_targets = False

    def load_tokenizer(self, folder: Path, max_length: int) -> WordPieceTokenizer:
        """The WordPiece tokenizer, applying the ``normalize`` steps before word pieces."""
        from tfsft.text_normalization import parse_steps

        tokenizer = super().load_tokenizer(folder, max_length)
        tokenizer.normalization = parse_steps(self.task.options.normalize)
        return tokenizer

    # -- target hooks (subclasses) ----------------------------------------------------------
    def target_columns(self, role: str) -> list[str]:
        """Columns holding the target(s) for data of ``role``."""
        raise NotImplementedError

    def target_option_names(self) -> list[str]:
        """The options naming the target columns (for the error that lists the flags)."""
        return []

    def target_reader(self, table: Table, role: str) -> Callable[[dict[str, Any], str], Any]:
        """``f(row, where)``: the row's target, or :data:`~tfsft.data.examples.SKIP`."""
        raise NotImplementedError

    def make_examples(self, rows: TextRows, table: Table, role: str) -> TextExamples:
        """Examples from checked rows; ``role == "train"`` learns the task state."""
        raise NotImplementedError

    def target_record(self, target: Any) -> dict[str, Any]:
        """A target as JSON-able fields of an example record."""
        raise NotImplementedError

    def chunk_summary(self, rows: TextRows, chunk: Table) -> Any:
        """What the checked rows of one chunk of training data tell about the task state
        (see :meth:`~tfsft.tasks.roles.DataRole.learn_chunk`)."""
        raise NotImplementedError

    def encode_targets(self, examples: TextExamples) -> dict[str, np.ndarray]:
        """Targets fed to ``fit`` (e.g. standardized); default: the examples' targets."""
        return {"target": examples.targets}

    def sample_weights(self, examples: TextExamples) -> np.ndarray | None:
        """Per-example loss weights for training (e.g. class weights); default none."""
        return None

    # -- the data role ----------------------------------------------------------------------
    def record_options(self) -> dict[str, Any]:
        """Options that read example records back (columns named as in the records)."""
        return {"text_column": "text",
                "text_pair_column": "text_pair" if self.task.text_pair else None,
                "validation_text_column": None, "validation_text_pair_column": None}

    def columns(self, role: str) -> tuple[str, str | None]:
        options = self.task.options
        if role == "validation":
            return (options.validation_text_column or options.text_column,
                    options.validation_text_pair_column or options.text_pair_column)
        return options.text_column, options.text_pair_column

    def read(self, source: Any, role: str = "train", labelled: bool = True,
             max_rows: int | None = None, file_format: str | None = None,
             encoding: str = "utf-8", delimiter: str | None = None,
             quoting: bool = True) -> TextExamples:
        from tfsft.data.readers import Table, read_table

        if role != "train" and self.task.text_pair and self.task.options.text_pair_column is None:
            raise ConfigError("this model takes text pairs: pass --text-pair-column")
        table = source if isinstance(source, Table) else read_table(
            source, file_format, encoding, delimiter, quoting)
        text_column, pair_column = self.columns(role)
        target_columns = self.target_columns(role) if labelled else []
        reader = self.target_reader(table, role) if labelled else None
        rows = read_text_rows(table, text_column, pair_column, target_columns, reader, max_rows,
                              flags=self._column_flags(role))
        return self.make_examples(rows, table, role if labelled else "unlabelled")

    def skipped_row(self, role: str) -> Callable[[dict[str, Any]], bool] | None:
        """A predicate for the rows the target reader skips on purpose (excluded labels), left
        to it by :meth:`without_blank_texts`; default none."""
        return None

    def without_blank_texts(self, table: Table, role: str) -> tuple[Table, list[str]]:
        from tfsft.data.checks import without_blank_texts

        return without_blank_texts(table, [c for c in self.columns(role) if c],
                                   self.skipped_row(role))

    def learn_chunk(self, chunk: Table) -> Any:
        text_column, pair_column = self.columns("train")
        rows = read_text_rows(chunk, text_column, pair_column, self.target_columns("train"),
                              self.target_reader(chunk, "train"), flags=self._column_flags())
        return self.chunk_summary(rows, chunk)

    def _column_flags(self, role: str = "train") -> str:
        """The flags that name this role's columns: a validation file has its own."""
        names = ["text_column", "text_pair_column", *self.target_option_names()]
        if role == "validation":
            names = [f"validation_{name}" for name in names
                     if hasattr(self.task.options, f"validation_{name}")]
        return " / ".join("--" + name.replace("_", "-") for name in names)

    def split(self, examples: TextExamples, fraction: float,
              seed: int) -> tuple[TextExamples, TextExamples]:
        return split_examples(examples, fraction, seed)

    def augment(self, examples: TextExamples, augmenter: Any, copies: int,
                rng: Any) -> tuple[TextExamples, list[dict[str, Any]]]:
        if examples.text_pairs is not None:
            raise ConfigError("--augment edits one text's words; for text pairs the relation "
                              "between the two texts (the label) may not survive the edits")
        sources, texts, methods = [], [], []
        for index, text in enumerate(examples.texts):
            for method, words, _ in augmenter.copies(text.split(), copies, rng):
                sources.append(index)
                texts.append(" ".join(words))
                methods.append(method)
        count = len(examples)
        where = list(examples.locations) or [f"row {i + 1}" for i in range(count)]
        grown = examples.subset(np.concatenate([np.arange(count), sources]).astype(np.int64))
        grown.texts = list(examples.texts) + texts
        grown.locations = where + [f"{where[s]} (augmented: {m})"
                                   for s, m in zip(sources, methods, strict=True)]
        generated = self.example_records(grown.subset(np.arange(count, len(grown))))
        records = [{"source": where[s], "method": m, **record}
                   for s, m, record in zip(sources, methods, generated, strict=True)]
        return grown, records

    def example_records(self, examples: TextExamples) -> list[dict[str, Any]]:
        records = []
        for i, text in enumerate(examples.texts):
            record: dict[str, Any] = {"text": text}
            if examples.text_pairs is not None:
                record["text_pair"] = examples.text_pairs[i]
            if examples.targets is not None:
                record.update(self.target_record(examples.targets[i]))
            records.append(record)
        return records

    def read_records(self, path: Path) -> TextExamples:
        return self.task.with_options(**self.record_options()).data.read(path, role="eval")

    def encode(self, tokenizer: WordPieceTokenizer, examples: TextExamples, max_length: int,
               training: bool = False) -> EncodedData:
        from tfsft.data.pipeline import encode_texts

        encoded = encode_texts(tokenizer, examples.texts, examples.text_pairs, max_length)
        if examples.targets is not None:
            encoded.targets = self.encode_targets(examples)
            if training:
                encoded.sample_weights = self.sample_weights(examples)
        return encoded

    def token_length_report(self, tokenizer: WordPieceTokenizer, examples: TextExamples,
                            max_length: int) -> tuple[dict[str, Any], np.ndarray]:
        from tfsft.data.checks import token_lengths

        return token_lengths(tokenizer, examples.texts, examples.text_pairs, max_length)

    def texts(self, examples: TextExamples) -> dict[str, list[str]]:
        texts = {"text": list(examples.texts)}
        if examples.text_pairs is not None:
            texts["text_pair"] = list(examples.text_pairs)
        return texts

    def examples_from_texts(self, texts: dict[str, Sequence[str]]) -> TextExamples:
        if self.task.text_pair and "text_pair" not in texts:
            raise ConfigError("this model takes text pairs: pass the second texts too")
        if not self.task.text_pair and "text_pair" in texts:
            raise ConfigError("this model takes single texts, not pairs")
        pairs = texts.get("text_pair")
        if pairs is not None and len(pairs) != len(texts["text"]):
            raise ConfigError(f"{len(texts['text'])} texts but {len(pairs)} second texts: "
                              "every text needs its pair")
        return TextExamples(list(texts["text"]), None if pairs is None else list(pairs), None,
                            tuple(self.task.serving.labels()))


class LabelColumnData(SentenceData):
    """Targets read from one label column (``label_column``, or ``validation_label_column``
    for the validation file): the classification tasks."""

    def label_column(self, role: str) -> str:
        options = self.task.options
        if role == "validation":
            return options.validation_label_column or options.label_column
        return options.label_column

    def target_columns(self, role: str) -> list[str]:
        return [self.label_column(role)]

    def target_option_names(self) -> list[str]:
        return ["label_column"]


class SentenceModeling(ModelingRole):
    """A pooled dense head with :meth:`SentenceTask.num_outputs` outputs on the backbone."""

    task: SentenceTask
    model_options = ("pooling",)

    def build(self, checkpoint: Path, dropout: float, dtype: str | None) -> keras.Model:
        from tfsft.models.text_model import TextModel

        return TextModel.from_pretrained(checkpoint, num_outputs=self.task.num_outputs,
                                         pooling=self.task.options.pooling, dropout=dropout,
                                         dtype=dtype)


class SentenceServing(ServingRole):
    """Raw ``text`` (and ``text_pair``) in; the subclass writes the outputs."""

    task: SentenceTask

    def text_inputs(self) -> tuple[str, ...]:
        return ("text", "text_pair") if self.task.text_pair else ("text",)

    def tokenize(self, tokenizer: WordPieceTokenizer, inputs: dict[str, tf.Tensor],
                 max_length: int) -> dict[str, tf.Tensor]:
        return tokenizer.encode(inputs["text"], inputs.get("text_pair"), max_length)


class SentenceTask(Task):
    """Base of the sentence-level tasks (see the module docstring): learns whether the model
    takes text pairs."""

    Options = SentenceOptions
    Data = SentenceData
    Modeling = SentenceModeling
    Serving = SentenceServing

    def __init__(self, options: SentenceOptions):
        super().__init__(options)
        self.text_pair = options.text_pair_column is not None

    def state_dict(self) -> dict[str, Any]:
        return {"text_pair": self.text_pair}

    def load_state(self, state: dict[str, Any]) -> None:
        self.text_pair = bool(state.get("text_pair", self.text_pair))

    @property
    def num_outputs(self) -> int:
        """Outputs of the model's head (labels, targets)."""
        raise NotImplementedError


class LabelListTask(SentenceTask):
    """A sentence task whose outputs are a label list learned from the training data (one
    output per label); subclasses save ``labels`` in their state."""

    def __init__(self, options: SentenceOptions):
        super().__init__(options)
        self.labels: tuple[str, ...] | None = None

    def known_labels(self) -> tuple[str, ...]:
        """The label list learned from the training data (an error before it is read)."""
        if self.labels is None:
            raise ConfigError("the label list is not known yet: read the training data first")
        return self.labels

    @property
    def num_outputs(self) -> int:
        return len(self.known_labels())
