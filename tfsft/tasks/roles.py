"""The four roles of a task: data, modeling, evaluation and serving.

A :class:`~tfsft.tasks.base.Task` holds one object per role (``task.data``, ``task.modeling``,
``task.evaluation``, ``task.serving``), made from its ``Data``, ``Modeling``, ``Evaluation``
and ``Serving`` classes. Each role is a :class:`typing.Protocol` that a task's role class
subclasses explicitly, inheriting the defaults written here; the trainer, the run folder, the
command line and the exporters call a task only through these roles. A role reads and writes
what the task learned (its label list, say) on ``self.task``; state lives on the task, which
saves it in the run folder's ``task.json``.

- :class:`DataRole` — files to checked :class:`Examples`, examples to model features
  (:class:`~tfsft.data.pipeline.EncodedData`), the validation split, the data check's summaries.
- :class:`ModelingRole` — build, load and compile the Keras model; which metric to monitor.
- :class:`EvaluationRole` — the model's outputs, the metrics and reports, prediction records.
- :class:`ServingRole` — the exported graphs' inputs and outputs and how each is verified.

>>> from tfsft.tasks import create_task
>>> task = create_task("regression", {"target_columns": ["score"]})
>>> isinstance(task.data, DataRole), task.evaluation.headline_metric
(True, 'pearson')
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from tfsft.errors import ConfigError, DataError

if TYPE_CHECKING:  # pragma: no cover
    import keras
    import tensorflow as tf

    from tfsft.data.pipeline import EncodedData
    from tfsft.data.readers import Table
    from tfsft.tasks.base import Task
    from tfsft.tokenization import WordPieceTokenizer


@runtime_checkable
class Examples(Protocol):
    """Checked examples of a task (what :meth:`DataRole.read` returns), as the rest of tfsft
    sees them: their count, a subset in a given order, where they came from and what was
    skipped, and for the data check each example's main text (and second text), and target
    (``None`` when unlabelled). Anything else about them is the task's own business."""

    source: str
    skipped: dict[str, int]

    @property
    def texts(self) -> Sequence[str]: ...

    @property
    def text_pairs(self) -> Sequence[str] | None: ...

    @property
    def targets(self) -> Any: ...

    def __len__(self) -> int: ...

    def subset(self, indices: Sequence[int] | np.ndarray) -> Examples: ...


@dataclass(frozen=True)
class OutputCheck:
    """How an exported output is compared with the Keras model's.

    ``kind``: ``"scores"`` (max |Δ| <= ``tolerance`` for fp32 artifacts), ``"argmax"`` (also the
    share of equal argmaxes over the last axis), ``"decisions"`` (also the share of equal
    ``value > threshold`` decisions; ``threshold`` per column), ``"equal"`` (per-example values
    such as answer strings: the share of differing values is at most ``tolerance`` for fp32
    artifacts, the share of equal ones at least ``min_agreement`` for quantized ones).
    ``per_token`` outputs are compared on real tokens only (the attention mask). A quantized
    artifact passes when its agreement is >= ``min_agreement`` (``argmax``/``decisions``) or,
    for ``scores``, when its Pearson correlation with the reference is >= ``min_correlation``.
    """

    kind: str = "scores"
    tolerance: float = 1e-4
    min_agreement: float = 0.98
    min_correlation: float = 0.99
    threshold: tuple[float, ...] | None = None
    per_token: bool = False


class _Role(Protocol):
    def __init__(self, task: Task) -> None:
        self.task = task


@runtime_checkable
class DataRole(_Role, Protocol):
    """Reading, splitting and encoding: used by the trainer, ``tfsft preprocess``, the data
    check and the run folder."""

    #: What happens to an example longer than max_length (for the data check's warning).
    long_example_treatment: ClassVar[str] = "truncated"
    #: ``--max-length`` when none is given, and the longest one accepted.
    default_max_length: ClassVar[int] = 128
    max_length_limit: ClassVar[int] = 512

    def load_tokenizer(self, folder: Path, max_length: int) -> Any:
        """The tokenizer of a checkpoint or run folder (default: WordPiece, ``vocab.txt``)."""
        from tfsft.tokenization import WordPieceTokenizer

        return WordPieceTokenizer.from_pretrained(folder, max_length=max_length)

    def read(self, source: Any, role: str = "train", labelled: bool = True,
             max_rows: int | None = None, file_format: str | None = None,
             encoding: str = "utf-8", delimiter: str | None = None,
             quoting: bool = True) -> Examples:
        """Checked examples from a file, DataFrame or dataset. ``role`` is ``train`` (learns the
        task state, e.g. the label list), ``validation`` (validation column names, known state),
        ``eval`` (known state) or ``chunk`` (known state; a part of a larger training file,
        which may hold no rows after skipping). ``file_format``, ``encoding``, ``delimiter`` and
        ``quoting`` are passed on to :func:`tfsft.data.readers.read_table`."""
        raise NotImplementedError

    def check_max_length(self, max_length: int) -> None:
        """Refuse a ``max_length`` the task's options cannot work with, before any data is
        read (default: any within the limits)."""

    def reads_text_lines(self, path: str, encoding: str = "utf-8") -> bool:
        """Whether ``tfsft predict --input path`` reads one text a line (a ``.txt`` file)
        rather than through :meth:`read`."""
        from tfsft.data.readers import TEXT_LINE_SUFFIXES

        return path.lower().endswith(TEXT_LINE_SUFFIXES)

    def split(self, examples: Any, fraction: float, seed: int) -> tuple[Any, Any]:
        """A seeded validation split of the training examples."""
        raise NotImplementedError

    def augment(self, examples: Any, augmenter: Any, copies: int,
                rng: Any) -> tuple[Any, list[dict[str, Any]]]:
        """The training ``examples`` followed by up to ``copies`` edited copies of each
        (:class:`tfsft.data.augmentation.Augmenter`), and a record of each generated example
        (its source, method and fields); default: the task takes no augmentation."""
        from tfsft.errors import ConfigError

        raise ConfigError(f"--augment is not available for {self.task.name} (it edits the "
                          "words of texts whose labels survive such edits: text and multi-"
                          "label classification, token classification)")

    def encode(self, tokenizer: Any, examples: Any, max_length: int,
               training: bool = False) -> EncodedData:
        """Features and targets; ``training`` adds sample weights where the task has them."""
        raise NotImplementedError

    def encoding_notes(self) -> dict[str, Any]:
        """What the last :meth:`encode` call did that the user should know (e.g. sentences
        cut into windows), for ``run.json``; default nothing."""
        return {}

    def example_records(self, examples: Any) -> list[dict[str, Any]]:
        """Examples as JSON-able dicts that :meth:`read_records` reads back."""
        raise NotImplementedError

    def read_records(self, path: Path) -> Examples:
        """Examples from a JSONL file written from :meth:`example_records`."""
        raise NotImplementedError

    def record_options(self) -> dict[str, Any]:
        """Options that read example records (``heldout.jsonl``) back: their column names."""
        return {}

    def texts(self, examples: Any) -> dict[str, list[str]]:
        """The raw-text inputs of ``examples`` by serving input name (``text``, ...)."""
        raise NotImplementedError

    def examples_from_texts(self, texts: dict[str, Sequence[str]]) -> Examples:
        """Unlabelled examples from raw texts by input name (for ``predict``)."""
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
        raise NotImplementedError

    def without_blank_texts(self, table: Table, role: str) -> tuple[Table, list[str]]:
        """``table`` without the rows whose text is empty or whitespace, and where those rows
        were: ``tfsft data inspect`` counts them where :meth:`read` stops at the first. Default:
        the table as it is."""
        return table, []

    def learn_chunk(self, chunk: Table) -> Any:
        """What one chunk of the training data tells about the task state, for data read in
        chunks (``tfsft preprocess``); :meth:`merge_chunks` combines the summaries of all chunks
        into the state that :meth:`read` with ``role="train"`` learns from the whole data.
        Default: the state learned from the chunk alone."""
        self.read(chunk, role="train")
        return self.task.state_dict()

    def merge_chunks(self, summaries: Sequence[Any], source: str) -> None:
        """Set the task state from the :meth:`learn_chunk` summaries of every chunk of
        ``source``, with the checks that need the whole training data. Default: every chunk
        must have learned the same state."""
        if not summaries:
            raise DataError(source, None, "there are no data rows", "add rows")
        first = summaries[0]
        if any(summary != first for summary in summaries[1:]):
            raise ConfigError(f"task {self.task.name!r} learns a different state from different "
                              f"parts of {source}, and cannot combine them; train from the "
                              "file itself (tfsft train --train FILE)")
        self.task.load_state(first)

    def refuse_chunked_file(self, path: Path, file_format: str | None) -> None:
        """Raise :class:`DataError` when ``path`` is a file this task reads as one document
        (not rows), which cannot be read in chunks; default: every format has rows."""


@runtime_checkable
class ModelingRole(_Role, Protocol):
    """The Keras model: built by the trainer, loaded by the run folder."""

    #: Validation metric direction, by Keras metric name (without ``val_``): True = higher is
    #: better.
    metric_directions: ClassVar[dict[str, bool]] = {"loss": False}
    default_monitor: ClassVar[str] = "val_loss"
    #: Options that change only the model or what is done with its outputs, never the encoded
    #: data: a run may change them when it trains on data preprocessed with other values.
    model_options: ClassVar[tuple[str, ...]] = ()
    #: The fewest rows a training batch (on each replica) may hold: 2 for a loss that compares
    #: the rows of a batch with each other (in-batch negatives).
    min_batch_size: ClassVar[int] = 1
    #: What the model's raw outputs are, for a student learning from them (``tfsft distill``;
    #: see :mod:`tfsft.models.distiller`): ``classes``, ``labels``, ``positions`` or ``values``;
    #: ``None``: the task's runs cannot be distilled.
    soft_targets: ClassVar[str | None] = None

    def optimization_defaults(self) -> dict[str, Any]:
        """The training options a run of this task gets when it does not set them (the
        learning rate and its schedule; see ``TrainConfig``)."""
        return {"learning_rate": 5e-5, "lr_schedule": "linear"}

    def build(self, checkpoint: Path, dropout: float, dtype: str | None) -> keras.Model:
        """A model on the pretrained ``checkpoint``, taking ``token_ids``, ``segment_ids`` and
        ``padding_mask``."""
        raise NotImplementedError

    def output_count(self) -> int | None:
        """How many values the model gives per text (per token, for token tasks) with the
        task's state: a saved model must have as many (None: the task does not say)."""
        count = getattr(self.task, "num_outputs", None)
        return int(count) if isinstance(count, int) else None

    def load(self, path: Path) -> keras.Model:
        """The model a run saved at ``path`` (``model.keras``), uncompiled. A task whose model
        has classes of its own imports them first (so Keras finds them by their registered
        names), then calls this."""
        import keras

        import tfsft.models  # noqa: F401  (registers the shared layers)
        import tfsft.models.pruning  # noqa: F401  (and the pruned backbone)

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
            raise ConfigError(f"--monitor {name!r} is not a metric of task {self.task.name!r}; "
                              f"choose one of {known}")
        return name, "max" if self.metric_directions[base] else "min"


@runtime_checkable
class EvaluationRole(_Role, Protocol):
    """From the model's outputs to metrics, reports and prediction records."""

    #: The metric printed first in reports and used as the "quality" column of export reports.
    headline_metric: ClassVar[str] = "loss"
    #: Files :meth:`evaluate` writes into an output folder (so ``--overwrite`` knows them).
    report_files: ClassVar[tuple[str, ...]] = ("metrics.json",)
    #: Whether :meth:`outputs` is :meth:`outputs_from_logits` of the model's outputs, so that
    #: the trainer reuses those of its validation pass inside ``fit``.
    outputs_from_validation: ClassVar[bool] = True

    def outputs(self, model: keras.Model, encoded: EncodedData, batch_size: int = 64,
                verbose: int | str = 0) -> Any:
        """The raw outputs of ``model`` for ``encoded`` examples, in input order, in the form
        :meth:`evaluate` and :meth:`predictions` take: :meth:`outputs_from_logits` of the
        model's outputs per row (see ``predict_logits``)."""
        from tfsft.data.pipeline import predict_logits

        logits = predict_logits(model, encoded, batch_size=batch_size, verbose=verbose)
        return self.outputs_from_logits(logits, encoded)

    def outputs_from_logits(self, logits: Any, encoded: EncodedData) -> Any:
        """:meth:`outputs` from the model's outputs on ``encoded`` rows in input order (one
        array row per row, or one array per row for per-token models); default: ``logits``."""
        return logits

    def after_fit(self, validation: Any, outputs: Any) -> None:
        """Learn what needs the trained model (e.g. decision thresholds) from validation data."""

    def evaluate(self, examples: Any, outputs: Any, output_dir: str | Path | None = None,
                 prefix: str = "") -> dict[str, Any]:
        """Metrics of raw model ``outputs`` on labelled ``examples``; with ``output_dir``, also
        ``metrics.json`` and the task's report files."""
        raise NotImplementedError

    def headline(self, metrics: dict[str, Any]) -> dict[str, Any]:
        """The few metrics the command line prints after training."""
        return {k: v for k, v in metrics.items() if not isinstance(v, (dict, list))}

    def predictions(self, outputs: Any) -> list[dict[str, Any]]:
        """One JSON-able record per example from raw model ``outputs``."""
        raise NotImplementedError


@dataclass(frozen=True)
class HubHead:
    """How a run's output head maps onto a Hugging Face ``transformers`` BERT class, for
    ``tfsft export --format hf``.

    ``kind``: ``sequence-classification``, ``token-classification``, ``question-answering``
    or ``feature-extraction`` (a sentence-transformers folder). ``labels``: ``id2label``.
    ``problem_type``: ``transformers``' name (``multi_label_classification``, ``regression``).
    ``scale`` and ``shift`` are folded into the classifier, so that the Hugging Face logits
    are ``raw * scale + shift`` of the Keras model's raw outputs (a regression's target units).
    ``normalize``: the served vectors are unit length (sentence embeddings).
    """

    kind: str
    labels: tuple[str, ...] = ()
    problem_type: str | None = None
    scale: tuple[float, ...] | None = None
    shift: tuple[float, ...] | None = None
    normalize: bool = False


@runtime_checkable
class ServingRole(_Role, Protocol):
    """The exported graphs: their raw-text inputs, their outputs, and how each output is
    checked against the Keras model after export."""

    #: Raw-text inputs ``tfsft predict`` takes as flags, by input name with their help
    #: (question answering: ``--question Q --context C``); empty: texts are arguments.
    input_flags: ClassVar[dict[str, str]] = {}
    #: Whether the raw-text TFLite model has outputs of its own (:meth:`lite_text_outputs`),
    #: for tasks whose serving outputs need ops LiteRT lacks (ragged ops, Unicode offsets).
    lite_text_signature: ClassVar[bool] = False
    #: Why export writes no raw-text TFLite model at all (its ops are beyond LiteRT even with
    #: :meth:`lite_text_outputs`); empty: it writes one.
    no_lite_text_model: ClassVar[str] = ""
    #: The most :meth:`export_quality` a quantized artifact may lose against the Keras model
    #: on the same held-out examples (e.g. 0.01: one point of recall@1); ``None``: not gated.
    max_quality_loss: ClassVar[float | None] = None

    def text_inputs(self) -> tuple[str, ...]:
        """Names of the raw-string inputs of the serving signature."""
        raise NotImplementedError

    def tokenize(self, tokenizer: WordPieceTokenizer, inputs: dict[str, tf.Tensor],
                 max_length: int) -> dict[str, tf.Tensor]:
        """Token-id features of raw-string ``inputs`` (in the exported graph)."""
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

    def lite_text_outputs(self, raw: tf.Tensor, inputs: dict[str, tf.Tensor],
                          tokenizer: WordPieceTokenizer, max_length: int) -> dict[str, tf.Tensor]:
        """Outputs of the raw-text TFLite model when :attr:`lite_text_signature` is set."""
        return self.export_outputs(raw)

    def output_checks(self) -> dict[str, OutputCheck]:
        """How each of :meth:`export_outputs` (and of :meth:`decode_exported`) is compared in
        export verification."""
        raise NotImplementedError

    def decode_exported(self, batch: dict[str, Any],
                        outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Per-example values a client decodes from a token-id artifact's
        :meth:`export_outputs` on a verification ``batch`` (``text_inputs`` and token ids),
        compared with the serving signature's outputs of the same names (question answering:
        the answers); default none."""
        return {}

    def export_quality(self, examples: Any, outputs: dict[str, np.ndarray]) -> float | None:
        """The evaluation's headline metric of exported ``outputs`` on labelled examples
        (quantized artifacts are gated on it with :attr:`max_quality_loss`)."""
        return None

    def labels(self) -> list[str]:
        """One name per output column, written as ``labels.txt`` next to exported models."""
        return []

    def sidecar_files(self) -> dict[str, Path]:
        """More files shipped beside the exported models (name -> source path); default none."""
        return {}

    def hub_head(self) -> HubHead | None:
        """The Hugging Face class the model maps onto (``tfsft export --format hf``); ``None``:
        it has no ``transformers`` equivalent."""
        return None


@runtime_checkable
class GenerativeServing(ServingRole, Protocol):
    """The serving role of a task whose model generates text token by token (causal-lm).

    Such runs export as a SavedModel that runs the decode loop in the graph (``generate``,
    ``sample`` and ``logits`` signatures) and as the forward graph (token ids -> next-token
    logits) in ONNX and TFLite, around which an app runs the loop (see
    :mod:`exporters.generative`); the encoder members above are not used.
    """

    def export_model(self, model: keras.Model) -> keras.Model:
        """A float32 copy of the trained ``model`` ready to export (adapters merged)."""
        raise NotImplementedError

    def generation_module(self, model: keras.Model, tokenizer: Any,
                          max_length: int) -> tf.Module:
        """A ``tf.Module`` whose ``generate``, ``sample`` and ``logits`` tf.functions are the
        SavedModel's signatures; ``max_length`` bounds the new tokens."""
        raise NotImplementedError

    def frozen_forward(self, model: keras.Model) -> Any:
        """The forward pass ``(input_ids, attention_mask) -> [logits]`` as a concrete function
        whose weights are constants (what the ONNX and TFLite converters read)."""
        raise NotImplementedError

    def prompt_ids(self, examples: Any, count: int) -> list[list[int]]:
        """Token ids of the prompts of the first ``count`` examples (to check generation)."""
        raise NotImplementedError

    def sequence_ids(self, examples: Any, count: int) -> list[list[int]]:
        """Token ids of the whole first ``count`` examples (to check the forward graph)."""
        raise NotImplementedError

    def completions(self, model: keras.Model, tokenizer: Any, prompts: Sequence[Sequence[int]],
                    new_tokens: int, max_length: int) -> list[str]:
        """Greedy completions of ``prompts`` by the trained model, as ``tfsft generate``
        gives them: the reference the exported generation loop must equal."""
        raise NotImplementedError

    def check_checkpoint_formats(self, model: keras.Model, tokenizer_folder: Path,
                                 formats: Sequence[str]) -> None:
        """Refuse, before any work, the checkpoint formats of ``formats`` (``hf``: a Hugging
        Face folder; ``gguf``: llama.cpp's file) that ``model`` cannot be written as."""
        raise NotImplementedError

    def write_hub_folder(self, model: keras.Model, tokenizer_folder: Path,
                         base_checkpoint: str | None, folder: Path) -> Path:
        """``model`` as a Hugging Face checkpoint folder (config, weights, the tokenizer files
        of ``tokenizer_folder``); ``base_checkpoint``: the checkpoint it was tuned from."""
        raise NotImplementedError

    def write_gguf(self, hub_folder: Path, folder: Path, variant: str,
                   name: str) -> tuple[Path, str]:
        """The GGUF file of a folder :meth:`write_hub_folder` wrote, its weights in
        ``variant`` (fp32, fp16, int8-dynamic, int4), written into ``folder``: the file and a
        line saying what it holds."""
        raise NotImplementedError

    def read_checkpoint(self, path: Path) -> keras.Model:
        """A model with ``next_token_logits`` read back from a folder or GGUF file written
        above, the way a user's runtime reads it (to compare with the run's model)."""
        raise NotImplementedError
