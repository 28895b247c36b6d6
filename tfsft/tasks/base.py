"""The Task API: everything that differs between fine-tuning tasks, behind one small class.

A task owns its options (columns, label options), how rows become checked examples, how
examples become features and targets, its model with loss and metrics, its metrics and report
files, its prediction records, its serving outputs and how each output is verified after export.
The trainer, the CLI, the run folder and the exporters only ever call these methods, so a new
task is one module (a :class:`Task` subclass decorated with :func:`register_task`) plus its test.

>>> sorted(task_names())  # doctest: +NORMALIZE_WHITESPACE
['causal-lm', 'multi-label-classification', 'question-answering', 'regression',
 'text-classification', 'token-classification']
>>> options_class("regression").__name__
'RegressionOptions'

Task modules import TensorFlow only inside their methods: ``tfsft --help`` lists the tasks and
their options without loading TensorFlow.
"""

from __future__ import annotations

import dataclasses
import importlib
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from tfsft.errors import ConfigError, DataError

if TYPE_CHECKING:  # pragma: no cover
    import keras
    import tensorflow as tf

    from tfsft.data.pipeline import EncodedData
    from tfsft.data.readers import Table
    from tfsft.tasks.commands import TaskCommand
    from tfsft.tokenization import WordPieceTokenizer

# Built-in tasks, imported on first use (``module:Class``); register_task adds more.
_REGISTRY: dict[str, str | type[Task]] = {
    "text-classification": "tfsft.tasks.text_classification.task:TextClassificationTask",
    "multi-label-classification": "tfsft.tasks.multi_label.task:MultiLabelTask",
    "regression": "tfsft.tasks.regression.task:RegressionTask",
    "token-classification": "tfsft.tasks.token_classification.task:TokenClassificationTask",
    "question-answering": "tfsft.tasks.question_answering.task:QuestionAnsweringTask",
    "causal-lm": "tfsft.tasks.causal_lm.task:CausalLMTask",
}
# Options classes of the built-in tasks, importable without TensorFlow (for the CLI).
_OPTIONS: dict[str, str] = {
    "text-classification": "tfsft.tasks.text_classification.task:TextClassificationOptions",
    "multi-label-classification": "tfsft.tasks.multi_label.task:MultiLabelOptions",
    "regression": "tfsft.tasks.regression.task:RegressionOptions",
    "token-classification": "tfsft.tasks.token_classification.task:TokenClassificationOptions",
    "question-answering": "tfsft.tasks.question_answering.task:QuestionAnsweringOptions",
    "causal-lm": "tfsft.tasks.causal_lm.task:CausalLMOptions",
}


#: The task of ``tfsft train`` (and of a run folder that names none) when none is given.
DEFAULT_TASK = "text-classification"
#: Entry-point group through which other installed distributions add tasks: the entry point's
#: name is the task name, its value the task class (``"my_package.task:MyTask"``).
ENTRY_POINT_GROUP = "tfsft.tasks"
_discovered = False


def _discover_entry_points() -> None:
    """Add the tasks other distributions declare in :data:`ENTRY_POINT_GROUP` (once; a
    built-in or registered name wins). Their modules load only when the task is used."""
    global _discovered
    if _discovered:
        return
    _discovered = True
    from importlib.metadata import entry_points

    for entry in entry_points(group=ENTRY_POINT_GROUP):
        if entry.name not in _REGISTRY:
            _REGISTRY[entry.name] = entry.value
            _OPTIONS[entry.name] = f"{entry.value}.Options"


def register_task(cls: type[Task]) -> type[Task]:
    """Class decorator: make ``cls`` available as ``--task cls.name``.

    >>> @register_task
    ... class EchoTask(Task):
    ...     name = "echo-doc-example"
    ...     Options = TaskOptions
    >>> task_class("echo-doc-example") is EchoTask
    True
    >>> unregister_task("echo-doc-example")
    """
    if not getattr(cls, "name", None):
        raise TypeError(f"{cls.__name__} needs a class attribute `name`")
    _REGISTRY[cls.name] = cls
    _OPTIONS[cls.name] = f"{cls.Options.__module__}:{cls.Options.__qualname__}"
    return cls


def unregister_task(name: str) -> None:
    _REGISTRY.pop(name, None)
    _OPTIONS.pop(name, None)


def task_names() -> list[str]:
    """The names of the built-in, registered and installed (entry-point) tasks."""
    _discover_entry_points()
    return list(_REGISTRY)


def _load(reference: str) -> Any:
    """The object named ``module:attribute`` (``attribute`` may be dotted: ``Class.Options``)."""
    module, _, attribute = reference.partition(":")
    try:
        value: Any = importlib.import_module(module)
        for name in attribute.split("."):
            value = getattr(value, name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot load {reference} ({exc}); reinstall the package that "
                          "provides it") from exc
    return value


def task_class(name: str) -> type[Task]:
    """The task class registered as ``name``."""
    _discover_entry_points()
    if name not in _REGISTRY:
        raise ConfigError(f"unknown task {name!r}; the tasks are {', '.join(_REGISTRY)}")
    entry = _REGISTRY[name]
    if isinstance(entry, str):
        loaded = _load(entry)
        if not (isinstance(loaded, type) and issubclass(loaded, Task)) or loaded.name != name:
            raise ConfigError(f"task {name!r} points to {entry}, which is not a Task subclass "
                              f"named {name!r}; fix the package that provides it")
        entry = _REGISTRY[name] = loaded
    return entry


def options_class(name: str) -> type[TaskOptions]:
    """The options dataclass of task ``name`` (imports no TensorFlow for built-in tasks)."""
    _discover_entry_points()
    if name not in _OPTIONS:
        raise ConfigError(f"unknown task {name!r}; the tasks are {', '.join(_REGISTRY)}")
    return _load(_OPTIONS[name])


def create_task(name: str, options: dict[str, Any] | TaskOptions | None = None,
                state: dict[str, Any] | None = None) -> Task:
    """An instance of task ``name`` with ``options`` (a dict is checked against its fields)."""
    cls = task_class(name)
    if not isinstance(options, TaskOptions):
        options = make_options(cls.Options, options or {}, source=f"task {name!r}")
    task = cls(options)
    if state:
        task.load_state(state)
    return task


def option(default: Any = None, help: str = "", choices: Sequence[Any] | None = None,
           validation: bool = False, read: bool = False, **kwargs: Any) -> Any:
    """A task option field: ``help`` for ``--help``; ``read=True`` also offers it to
    ``tfsft evaluate/predict/export`` (column names); ``validation=True`` marks the column
    option used for the validation file."""
    metadata = {"help": help, "choices": choices, "read": read, "validation": validation}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default),
                                 metadata=metadata, **kwargs)
    return dataclasses.field(default=default, metadata=metadata, **kwargs)


@dataclass
class TaskOptions:
    """Base class of a task's options (a dataclass; each field is a CLI flag and a YAML key)."""

    def validate(self) -> None:
        """Raise :class:`ConfigError` for invalid values (choices are checked already)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def option_fields(cls: type[TaskOptions]) -> list[tuple[dataclasses.Field, Any]]:
    """The fields of an options class with their resolved type hints."""
    hints = typing.get_type_hints(cls)
    return [(f, hints[f.name]) for f in dataclasses.fields(cls)]


def make_options(cls: type[TaskOptions], values: dict[str, Any],
                 source: str = "options") -> TaskOptions:
    values = {k.replace("-", "_"): v for k, v in values.items()}
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ConfigError(f"{source}: unknown option(s) {unknown}; this task's options are "
                          f"{', '.join(names)}")
    options = cls(**values)
    from tfsft.option_types import coerce_fields

    coerce_fields(options, prefix=f"{source}: " if source != "options" else "")
    for field, _ in option_fields(cls):
        choices = field.metadata.get("choices")
        value = getattr(options, field.name)
        if choices and value is not None and value not in choices:
            raise ConfigError(f"{source}: {field.name} must be one of {list(choices)}, "
                              f"got {value!r}")
    options.validate()
    return options


@dataclass(frozen=True)
class OutputCheck:
    """How an exported output is compared with the Keras model's.

    ``kind``: ``"scores"`` (max |Δ| <= ``tolerance`` for fp32 artifacts), ``"argmax"`` (also the
    share of equal argmaxes over the last axis), ``"decisions"`` (also the share of equal
    ``value > threshold`` decisions; ``threshold`` per column), ``"equal"`` (per-example values
    such as answer strings: the share of differing values is at most ``tolerance`` for fp32
    artifacts, the share of equal ones at least ``min_agreement`` for quantized ones).
    ``per_token`` outputs are
    compared on real tokens only (the attention mask). A quantized artifact passes when its
    agreement is >= ``min_agreement`` (``argmax``/``decisions``) or, for ``scores``, when its
    Pearson correlation with the reference is >= ``min_correlation``.
    """

    kind: str = "scores"
    tolerance: float = 1e-4
    min_agreement: float = 0.98
    min_correlation: float = 0.99
    threshold: tuple[float, ...] | None = None
    per_token: bool = False


class Task:
    """Base class of fine-tuning tasks. Subclasses set ``name`` and ``Options`` and implement
    the methods below (the sentence-level tasks share :class:`tfsft.tasks.sentence.SentenceTask`).

    State learned from the training data (label list, target statistics, thresholds) lives in
    the instance and is saved in the run folder's ``task.json`` by :meth:`state_dict`.
    """

    name: ClassVar[str] = ""
    Options: ClassVar[type[TaskOptions]] = TaskOptions
    # Validation metric direction, by Keras metric name (without ``val_``): True = higher is better.
    metric_directions: ClassVar[dict[str, bool]] = {"loss": False}
    default_monitor: ClassVar[str] = "val_loss"
    # The metric printed first in reports and used as the "quality" column of export reports.
    headline_metric: ClassVar[str] = "loss"
    # Files evaluate() writes into an output folder (the run folder, for --overwrite's check).
    report_files: ClassVar[tuple[str, ...]] = ("metrics.json",)
    #: What happens to an example longer than max_length (for the data check's warning).
    long_example_treatment: ClassVar[str] = "truncated"
    #: Options that change only the model or what is done with its outputs, never the encoded
    #: data: a run may change them when it trains on data preprocessed with other values.
    model_options: ClassVar[tuple[str, ...]] = ()
    #: Whether :meth:`model_outputs` is :meth:`outputs_from_logits` of the model's outputs,
    #: so that the trainer reuses those of its validation pass inside ``fit``.
    outputs_from_validation: ClassVar[bool] = True
    #: Raw-text inputs ``tfsft predict`` takes as flags, by input name with their help
    #: (question answering: ``--question Q --context C``); empty: texts are arguments.
    input_flags: ClassVar[dict[str, str]] = {}
    #: ``--max-length`` when none is given, and the longest one accepted.
    default_max_length: ClassVar[int] = 128
    max_length_limit: ClassVar[int] = 512

    def __init__(self, options: TaskOptions):
        self.options = options
        self.tokenizer: WordPieceTokenizer | None = None
        self.max_length: int | None = None

    @classmethod
    def commands(cls) -> Sequence[TaskCommand]:
        """Subcommands this task adds to ``tfsft`` (see :mod:`tfsft.tasks.commands`), such as
        causal-lm's ``generate``; default none. Import nothing heavy here: ``tfsft --help``
        calls it."""
        return ()

    def bind(self, tokenizer: WordPieceTokenizer, max_length: int) -> None:
        """The tokenizer and length the task's model uses (set by the trainer and the run)."""
        self.tokenizer, self.max_length = tokenizer, max_length

    def load_tokenizer(self, folder: Path, max_length: int) -> Any:
        """The tokenizer of a checkpoint or run folder (default: WordPiece, ``vocab.txt``)."""
        from tfsft.tokenization import WordPieceTokenizer

        return WordPieceTokenizer.from_pretrained(folder, max_length=max_length)

    # -- state ------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """What the task learned from the training data, as JSON-able values."""
        return {}

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (from a run folder's ``task.json``)."""

    def with_options(self, **changes: Any) -> Task:
        """A copy of this task (same state) with some options changed."""
        options = make_options(type(self.options), {**self.options.to_dict(), **changes},
                               source=f"task {self.name!r}")
        task = type(self)(options)
        task.load_state(self.state_dict())
        task.tokenizer, task.max_length = self.tokenizer, self.max_length
        return task

    # -- data -------------------------------------------------------------------------------
    def read(self, source: Any, role: str = "train", labelled: bool = True,
             max_rows: int | None = None, file_format: str | None = None,
             encoding: str = "utf-8", delimiter: str | None = None, quoting: bool = True) -> Any:
        """Checked examples from a file, DataFrame or dataset. ``role`` is ``train`` (learns the
        task state, e.g. the label list), ``validation`` (validation column names, known state),
        ``eval`` (known state) or ``chunk`` (known state; a part of a larger training file,
        which may hold no rows after skipping). ``file_format``, ``encoding``, ``delimiter`` and ``quoting``
        are passed on to :func:`tfsft.data.readers.read_table`."""
        raise NotImplementedError

    def target_summary(self, examples: Any) -> dict[str, Any] | None:
        """The targets of ``examples`` for the data check: ``{"kind": "classes"|"labels"|"tags",
        "counts": {name: n}, "imbalance_ratio": r}`` (see :func:`tfsft.data.checks.class_counts`)
        or ``{"kind": "values", "values": {name: {"min", "mean", "std", "max"}}}``; None for
        unlabelled examples."""
        return None

    def token_length_report(self, tokenizer: Any, examples: Any,
                            max_length: int) -> tuple[dict[str, Any], np.ndarray]:
        """Tokens per example before truncation, for the data check: the report (``median``,
        ``p95``, ``max``, ``over_max_length``, ``over_max_length_share``,
        ``unknown_word_share``) and the lengths (see :func:`tfsft.data.checks.token_lengths`)."""
        from tfsft.data.checks import token_lengths

        return token_lengths(tokenizer, examples.texts, examples.text_pairs, max_length)

    def learn_chunk(self, chunk: Table) -> Any:
        """What one chunk of the training data tells about the task state, for data read in
        chunks (``tfsft preprocess``); :meth:`merge_chunks` combines the summaries of all chunks
        into the state that :meth:`read` with ``role="train"`` learns from the whole data.
        Default: the state learned from the chunk alone."""
        self.read(chunk, role="train")
        return self.state_dict()

    def refuse_chunked_file(self, path: Path, file_format: str | None) -> None:
        """Raise :class:`DataError` when ``path`` is a file this task reads as one document
        (not rows), which cannot be read in chunks; default: every format has rows."""

    def merge_chunks(self, summaries: Sequence[Any], source: str) -> None:
        """Set the task state from the :meth:`learn_chunk` summaries of every chunk of
        ``source``, with the checks that need the whole training data. Default: every chunk
        must have learned the same state."""
        if not summaries:
            raise DataError(source, None, "there are no data rows", "add rows")
        first = summaries[0]
        if any(summary != first for summary in summaries[1:]):
            raise ConfigError(f"task {self.name!r} learns a different state from different "
                              f"parts of {source}, and cannot combine them; train from the "
                              "file itself (tfsft train --train FILE)")
        self.load_state(first)

    def split(self, examples: Any, fraction: float, seed: int) -> tuple[Any, Any]:
        """A seeded validation split of the training examples."""
        raise NotImplementedError

    def example_records(self, examples: Any) -> list[dict[str, Any]]:
        """Examples as JSON-able dicts that :meth:`read_records` reads back."""
        raise NotImplementedError

    def read_records(self, path: Path) -> Any:
        """Examples from a JSONL file written from :meth:`example_records`."""
        raise NotImplementedError

    def encode(self, tokenizer: WordPieceTokenizer, examples: Any, max_length: int,
               training: bool = False) -> EncodedData:
        """Features and targets; ``training`` adds sample weights where the task has them."""
        raise NotImplementedError

    def encoding_notes(self) -> dict[str, Any]:
        """What the last :meth:`encode` call did that the user should know (e.g. sentences
        cut into windows), for ``run.json``; default nothing."""
        return {}

    # -- model ------------------------------------------------------------------------------
    def build_model(self, checkpoint: Path, dropout: float, dtype: str | None) -> keras.Model:
        raise NotImplementedError

    def load_model(self, path: Path) -> keras.Model:
        """The model a run saved at ``path`` (``model.keras``), uncompiled. A task whose model
        has classes of its own imports them first (so Keras finds them by their registered
        names), then calls this."""
        import keras

        import tfsft.models  # noqa: F401  (registers the shared layers)

        return keras.saving.load_model(path, compile=False)

    def compile(self, model: keras.Model, optimizer: Any) -> None:
        """Compile ``model`` with the task's loss and metrics."""
        raise NotImplementedError

    def monitor(self, name: str | None) -> tuple[str, str]:
        """The metric to monitor (default :attr:`default_monitor`) and ``"min"``/``"max"``."""
        name = name or self.default_monitor
        base = name.removeprefix("val_")
        if base not in self.metric_directions:
            known = ", ".join(f"val_{m}" for m in self.metric_directions)
            raise ConfigError(f"--monitor {name!r} is not a metric of task {self.name!r}; "
                              f"choose one of {known}")
        return name, "max" if self.metric_directions[base] else "min"

    def model_outputs(self, model: keras.Model, encoded: EncodedData, batch_size: int = 64,
                      verbose: int | str = 0) -> Any:
        """The raw outputs of ``model`` for ``encoded`` examples, in input order, in the form
        :meth:`evaluate` and :meth:`predictions` take: :meth:`outputs_from_logits` of the
        model's outputs per row (see ``predict_logits``)."""
        from tfsft.data.pipeline import predict_logits

        logits = predict_logits(model, encoded, batch_size=batch_size, verbose=verbose)
        return self.outputs_from_logits(logits, encoded)

    def outputs_from_logits(self, logits: Any, encoded: EncodedData) -> Any:
        """:meth:`model_outputs` from the model's outputs on ``encoded`` rows in input order
        (one array row per row, or one array per row for per-token models). The trainer passes
        the outputs of its last validation pass here instead of predicting again when
        :attr:`outputs_from_validation` is set (default: ``logits`` as they are)."""
        return logits

    # -- after fit, metrics, predictions ----------------------------------------------------
    def after_fit(self, validation: Any, outputs: np.ndarray) -> None:
        """Learn what needs the trained model (e.g. decision thresholds) from validation data."""

    def evaluate(self, examples: Any, outputs: np.ndarray,
                 output_dir: str | Path | None = None, prefix: str = "") -> dict[str, Any]:
        """Metrics of raw model ``outputs`` on labelled ``examples``; with ``output_dir``, also
        ``metrics.json`` and the task's report files."""
        raise NotImplementedError

    def headline(self, metrics: dict[str, Any]) -> dict[str, Any]:
        """The few metrics the CLI prints after training."""
        return {k: v for k, v in metrics.items() if not isinstance(v, (dict, list))}

    def predictions(self, outputs: np.ndarray) -> list[dict[str, Any]]:
        """One JSON-able record per example from raw model ``outputs``."""
        raise NotImplementedError

    def texts(self, examples: Any) -> dict[str, list[str]]:
        """The raw-text inputs of ``examples`` by serving input name (``text``, ...)."""
        raise NotImplementedError

    def examples_from_texts(self, texts: dict[str, Sequence[str]]) -> Any:
        """Unlabelled examples from raw texts by input name (for ``predict``)."""
        raise NotImplementedError

    # -- export -----------------------------------------------------------------------------
    def text_inputs(self) -> tuple[str, ...]:
        """Names of the raw-string inputs of the serving signature."""
        raise NotImplementedError

    def export_outputs(self, raw: tf.Tensor) -> dict[str, tf.Tensor]:
        """The token-id signature's outputs (every format) from the model's raw output."""
        raise NotImplementedError

    def serving_outputs(self, raw: tf.Tensor, inputs: dict[str, tf.Tensor],
                        tokenizer: WordPieceTokenizer, max_length: int) -> dict[str, tf.Tensor]:
        """The raw-text ``serving_default`` outputs (a superset of :meth:`export_outputs`);
        ``inputs`` are the raw string tensors by input name (for outputs that point into the
        text, such as character offsets)."""
        return self.export_outputs(raw)

    # Whether the raw-text TFLite model has its own outputs (lite_text_outputs): for tasks whose
    # serving outputs need ops LiteRT lacks (ragged ops, Unicode offsets).
    lite_text_signature: ClassVar[bool] = False

    def lite_text_outputs(self, raw: tf.Tensor, inputs: dict[str, tf.Tensor],
                          tokenizer: WordPieceTokenizer, max_length: int) -> dict[str, tf.Tensor]:
        """Outputs of the raw-text TFLite model when :attr:`lite_text_signature` is set."""
        return self.export_outputs(raw)

    # ``module:function`` that exports runs of this task instead of the encoder exporters
    # (called as ``export(run, base, formats, quantize, allow_mismatch, data, max_examples)``).
    exporter: ClassVar[str | None] = None

    # Whether export writes a raw-text TFLite model, and why not where it does not.
    lite_text_model: ClassVar[bool] = True
    lite_text_reason: ClassVar[str] = ""

    def output_checks(self) -> dict[str, OutputCheck]:
        """How each of :meth:`export_outputs` (and of :meth:`decode_exported`) is compared in
        export verification."""
        raise NotImplementedError

    def decode_exported(self, batch: dict[str, Any],
                        outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Per-example values decoded from a token-id artifact's :meth:`export_outputs` on a
        verification ``batch`` (``text_inputs`` and token ids), compared as the serving
        signature's outputs of the same names (e.g. answers); default none."""
        return {}

    def sidecar_files(self) -> dict[str, Path]:
        """Files shipped beside the TFLite and ONNX models (name -> source path)."""
        return {}

    def export_quality(self, examples: Any, outputs: dict[str, np.ndarray]) -> float | None:
        """:attr:`headline_metric` of exported ``outputs`` on labelled held-out examples."""
        return None

    def record_options(self) -> dict[str, Any]:
        """Options that read the run folder's example records (``heldout.jsonl``) back."""
        return {}

    def labels_for_sidecar(self) -> list[str]:
        """One name per output column, written as ``labels.txt`` next to exported models."""
        return []

