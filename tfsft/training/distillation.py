"""``tfsft distill``: a smaller student trained on a finished run's outputs.

The student is a shallower copy of the teacher (``student_layers``: evenly spaced layers,
initialised from the teacher, see :mod:`tfsft.models.student`) or another checkpoint with the
teacher's vocabulary (``student``). It trains like the teacher did (the same data, task options
and recipe from the teacher's ``config.yaml``; any of them may be changed) on a mix of the labels
and the teacher's outputs (:class:`tfsft.models.distiller.Distiller`). Text without labels
(``unlabelled``) joins the training data, learning from the teacher's outputs alone. The result
is an ordinary run folder (evaluate, predict and every export work on it) with
``distillation.json``: the teacher, the settings, and the student's size and quality against the
teacher's.

>>> settings = DistillationSettings(teacher="runs/sst2", student_layers=3)
>>> result = distill(settings, {"output_dir": "runs/sst2-l3"})           # doctest: +SKIP
>>> record = json.loads(Path("runs/sst2-l3/distillation.json").read_text())  # doctest: +SKIP
>>> record["student"]["layers"], record["teacher"]["layers"]               # doctest: +SKIP
(3, 6)
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tfsft.config import TrainConfig, load_yaml_options
from tfsft.errors import ConfigError, DataError, TfsftError
from tfsft.io_utils import atomic_write_json, file_sha256
from tfsft.runs import MODEL_FILE, TOKENIZER_DIR, TrainedRun

logger = logging.getLogger(__name__)

DISTILLATION_FILE = "distillation.json"


@dataclass
class DistillationSettings:
    """What to distil from where: the teacher run, the student (``student_layers`` or a
    ``student`` checkpoint), unlabelled text, the temperature ``T`` and ``alpha``, the weight of
    the teacher's outputs in the loss (``1 - alpha`` for the labels)."""

    teacher: str | Path
    student_layers: int | None = None
    student: str | None = None
    unlabelled: str | None = None
    temperature: float = 2.0
    alpha: float = 0.5

    def check(self, student_named: bool = False) -> None:
        """Errors for settings that cannot work; ``student_named``: the caller builds the
        student (``tfsft prune``), so neither ``student_layers`` nor ``student`` is given."""
        if student_named:
            if self.student_layers is not None or self.student is not None:
                raise ConfigError("the pruned model is the student: leave out --student-layers "
                                  "and --student")
        elif (self.student_layers is None) == (self.student is None):
            raise ConfigError("name the student: --student-layers N (a shallower copy of the "
                              "teacher) or --student CHECKPOINT (one of the two)")
        if self.student_layers is not None and self.student_layers < 1:
            raise ConfigError(f"--student-layers must be at least 1, got {self.student_layers}")
        if not (self.temperature > 0 and math.isfinite(self.temperature)):
            raise ConfigError(f"--temperature must be a number above 0, got {self.temperature}")
        if not 0 <= self.alpha <= 1:
            raise ConfigError(f"--alpha is the weight of the teacher's outputs in the loss, "
                              f"between 0 and 1; got {self.alpha}")

    def record(self) -> dict[str, Any]:
        return {"teacher": str(self.teacher), "student_layers": self.student_layers,
                "student": self.student, "unlabelled": self.unlabelled,
                "temperature": self.temperature, "alpha": self.alpha}


StudentBuilder = Callable[[TrainedRun, Any, "str | None"], Any]


def distill(settings: DistillationSettings, overrides: dict[str, Any],
            startup_seconds: float | None = None, student_builder: StudentBuilder | None = None,
            report_file: str = DISTILLATION_FILE,
            report_extra: Callable[[], dict[str, Any]] | None = None) -> Any:
    """Train the student of ``settings`` with the teacher's options changed by ``overrides``
    (``output_dir`` is required); returns the :class:`~tfsft.training.trainer.TrainResult`.

    ``student_builder(teacher run, task, dtype)`` makes the student instead of ``settings``
    (``tfsft prune``); the report goes to ``report_file`` in the student's folder, with
    ``report_extra()`` added."""
    from tfsft.training.trainer import train

    settings.check(student_named=student_builder is not None)
    teacher = TrainedRun(settings.teacher)
    kind = teacher.task.modeling.soft_targets
    if kind is None:
        raise ConfigError(f"{settings.teacher} is a {teacher.task.name} run, whose outputs a "
                          "student cannot learn from; distil text or multi-label "
                          "classification, regression, token classification or question "
                          "answering runs")
    config = teacher_config(teacher, overrides, settings)
    _check_student(settings, teacher, config)
    if Path(config.output_dir).resolve() == teacher.run_dir.resolve():
        raise ConfigError(f"--output-dir {config.output_dir} is the teacher's run folder; name "
                          "a new folder for the student")
    if settings.unlabelled is not None and not Path(settings.unlabelled).is_file():
        raise ConfigError(f"--unlabelled {settings.unlabelled}: no such file")
    plan = Distillation(settings, teacher, kind, student_builder)
    result = train(config, distillation=plan, startup_seconds=startup_seconds)
    record = plan.report(result)
    if report_extra is not None:
        record.update(report_extra())
    atomic_write_json(Path(config.output_dir) / report_file, record)
    return result


def _check_student(settings: DistillationSettings, teacher: TrainedRun,
                   config: TrainConfig) -> None:
    """Errors for a student that cannot learn from ``teacher``, before any data is read."""
    from tfsft.models.checkpoints import resolve_checkpoint
    from tfsft.models.student import evenly_spaced_layers, transformer_layers

    if settings.student_layers is not None:
        evenly_spaced_layers(transformer_layers(teacher.model), settings.student_layers)
    if settings.student is not None:
        try:
            tokenizer = teacher.task.data.load_tokenizer(resolve_checkpoint(settings.student),
                                                         config.max_length)
        except TfsftError as exc:
            raise ConfigError(f"--student {settings.student}: its tokenizer cannot be read as "
                              f"the teacher's ({exc}); a student must read the teacher's token "
                              "ids: choose a BERT checkpoint of the teacher's family, or "
                              "--student-layers N") from None
        _same_vocabulary(tokenizer, teacher, settings.student)


def _same_vocabulary(tokenizer: Any, teacher: TrainedRun, student: Any) -> None:
    theirs = teacher.tokenizer
    if (tokenizer.vocabulary != theirs.vocabulary
            or getattr(tokenizer, "lowercase", None) != getattr(theirs, "lowercase", None)):
        raise ConfigError(f"the student {student} has another vocabulary than the teacher "
                          f"({teacher.run_dir / TOKENIZER_DIR}); a student must read the same "
                          "token ids: choose a checkpoint of the teacher's family, or "
                          "--student-layers N")


def teacher_config(teacher: TrainedRun, overrides: dict[str, Any],
                   settings: DistillationSettings) -> TrainConfig:
    """The teacher's training options (its ``config.yaml``) with ``overrides`` (``None``
    values keep the teacher's; ``no_early_stopping=True`` turns it off); the student's
    checkpoint where one is named."""
    path = teacher.run_dir / "config.yaml"
    if not path.exists():
        raise ConfigError(f"{path} is missing: the teacher's options (data, columns, recipe) "
                          "are unknown; restore the run folder, or train the teacher again")
    fixed = {name: overrides[name] for name in ("task", "model") if overrides.get(name)}
    if fixed:
        raise ConfigError(f"{', '.join('--' + n for n in fixed)} cannot be changed: the "
                          "student learns the teacher's task; name its checkpoint with --student")
    values = {k: v for k, v in overrides.items() if v is not None}
    no_early_stopping = values.pop("no_early_stopping", False)
    if settings.student is not None:
        values["model"] = settings.student
    saved = load_yaml_options(path)
    try:  # the teacher's own options passed these checks when it trained
        TrainConfig.from_dict(dict(saved), source=str(path))
    except ConfigError as exc:
        raise ConfigError(f"{exc} (the teacher's options: was the file edited? restore the run "
                          "folder, or train the teacher again)") from None
    # the checks name the flags: what fails now comes from the flags given
    config = TrainConfig.from_dict({**saved, **values})
    if no_early_stopping:
        config.early_stopping_patience = None
    if isinstance(config.train, str) and not Path(config.train).exists():
        raise ConfigError(f"the teacher was trained on {config.train}, which is not there "
                          "(moved, or a path relative to another folder); pass --train FILE "
                          "(and --validation FILE)")
    return config


class Distillation:
    """What the trainer asks of a distillation (``train(config, distillation=...)``): the
    teacher's task state, the student model, and the training rows with the teacher's
    outputs."""

    def __init__(self, settings: DistillationSettings, teacher: TrainedRun, kind: str,
                 student_builder: StudentBuilder | None = None):
        self.settings = settings
        self.teacher = teacher
        self.kind = kind
        self.student_builder = student_builder
        self.kept_layers: list[int] | None = None
        self.student_size: dict[str, Any] = {}
        self.unlabelled_rows = 0
        self.teacher_metrics: dict[str, Any] = {}
        self.validation_rows = 0

    def prepare_task(self, task: Any, checkpoint: Path, tokenizer: Any,
                     max_length: int) -> None:
        """Give the student's ``task`` the teacher's state (labels, target scaling), so that
        their outputs mean the same; refuse a tokenizer other than the teacher's."""
        state = self.teacher.task.state_dict()
        learned = task.state_dict()
        for name in ("labels", "text_pair"):
            if name in state and learned.get(name) != state[name]:
                raise ConfigError(f"the training data gives {name} {learned.get(name)!r}; the "
                                  f"teacher learned {state[name]!r}: train the student on data "
                                  "of the teacher's labels")
        task.load_state(state)
        _same_vocabulary(tokenizer, self.teacher, checkpoint)
        if max_length != self.teacher.max_length:
            raise ConfigError(f"--max-length {max_length} differs from the teacher's "
                              f"{self.teacher.max_length}; leave it out")

    def score_teacher(self, validation: Any, encoded: Any) -> None:
        """The teacher's metrics on the student's validation examples (the same rows), for
        the report."""
        evaluation = self.teacher.task.evaluation
        outputs = evaluation.outputs(self.teacher.model, encoded)
        self.teacher_metrics = evaluation.evaluate(validation, outputs)
        self.validation_rows = len(validation)

    def training_rows(self, task: Any, tokenizer: Any, encoded: Any, max_length: int) -> Any:
        """``encoded`` training rows, then those of the unlabelled text, with the teacher's
        outputs and the labelled flag as targets."""
        from tfsft.data.pipeline import predict_logits

        if self.settings.unlabelled is not None:
            examples = read_unlabelled(task, str(self.settings.unlabelled))
            self.unlabelled_rows = len(examples)
            logger.info("Distillation: %d unlabelled examples from %s", len(examples),
                        self.settings.unlabelled)
            extra = task.data.encode(tokenizer, examples, max_length)
            encoded = with_unlabelled(encoded, extra)
        logger.info("Distillation: the teacher's outputs for %d training rows", len(encoded))
        outputs = predict_logits(self.teacher.model, encoded, verbose=1)
        labelled = np.zeros(len(encoded), np.float32)
        labelled[:len(encoded) - (0 if self.settings.unlabelled is None else len(extra))] = 1
        return with_teacher_outputs(encoded, outputs, labelled)

    def student_model(self, task: Any, checkpoint: Path, dropout: float,
                      dtype: str | None) -> Any:
        """The student before training: a shallower copy of the teacher, or the task's model
        on the student checkpoint."""
        from tfsft.models.distiller import Distiller
        from tfsft.models.student import shallower_copy

        if self.student_builder is not None:
            student = self.student_builder(self.teacher, task, dtype)
        elif self.settings.student_layers is not None:
            student, kept = shallower_copy(self.teacher.model, self.settings.student_layers,
                                           dtype)
            self.kept_layers = [index + 1 for index in kept]  # counted from 1, as people do
            logger.info("Distillation: the student keeps layers %s (counting from 1) of the "
                        "teacher's %d", ", ".join(map(str, self.kept_layers)),
                        self.teacher.model.backbone.num_layers)
        else:
            student = task.modeling.build(checkpoint, dropout=dropout, dtype=dtype)
        # its shape for the report (training changes the weights, not the shape)
        self.student_size = {"layers": _layers(student),
                             "parameters": int(student.count_params())}
        return Distiller(student, self.kind, self.settings.temperature, self.settings.alpha)

    def report(self, result: Any) -> dict[str, Any]:
        """``distillation.json``: the settings, the sizes and the quality of both."""
        headline = self.teacher.task.evaluation.headline_metric
        unlabelled = self.settings.unlabelled
        return {
            "settings": self.settings.record(),
            "kind": self.kind,
            "validation_examples": self.validation_rows,  # both scored on the same examples
            "teacher": {"run": str(self.teacher.run_dir),
                        "layers": _layers(self.teacher.model),
                        "parameters": int(self.teacher.model.count_params()),
                        "file_bytes": (self.teacher.run_dir / MODEL_FILE).stat().st_size,
                        headline: self.teacher_metrics.get(headline)},
            "student": {"checkpoint": self.settings.student,
                        "layers": self.student_size["layers"],
                        "kept_teacher_layers": self.kept_layers,
                        "parameters": self.student_size["parameters"],
                        "file_bytes": (Path(result.run_dir) / MODEL_FILE).stat().st_size,
                        headline: result.metrics.get(headline)},
            "unlabelled_rows": self.unlabelled_rows,
            "unlabelled_sha256": file_sha256(unlabelled) if unlabelled else None,
        }


def read_unlabelled(task: Any, path: str) -> Any:
    """The unlabelled texts of ``path`` for ``task``: one a line of a ``.txt`` file
    (single-text tasks), else rows with the task's text columns."""
    from tfsft.data.readers import read_text_lines

    inputs = task.serving.text_inputs()
    lines = task.data.reads_text_lines(path)
    if lines and len(inputs) > 1:
        raise DataError(path, None, f"a {task.name} teacher reads {' and '.join(inputs)} "
                        "for each example, which a .txt file (one text a line) cannot "
                        "hold", "give a CSV/TSV/JSONL file with the teacher's columns")
    columns = ", ".join(repr(v) for k, v in task.options.to_dict().items()
                        if k.endswith("_column") and v and not k.startswith("validation")
                        and "label" not in k and "target" not in k)
    try:
        if lines:
            examples = task.data.examples_from_texts({inputs[0]: read_text_lines(path)[0]})
        else:
            examples = task.data.read(path, role="eval", labelled=False)
    except DataError as exc:  # the fix in the teacher's flags, which distill does not take
        raise DataError(exc.source, exc.where, exc.problem,
                        "--unlabelled is read as the teacher read its data (text columns "
                        f"{columns or 'as in its files'}, UTF-8, the format from the "
                        "extension): write the file so" + (
                            ", or give a .txt file with one text a line"
                            if len(inputs) == 1 else "")) from None
    if not len(examples):
        raise DataError(path, None, "holds no texts", "give one text a line (.txt) or rows "
                        "with the teacher's text column(s)")
    return examples


def with_unlabelled(encoded: Any, extra: Any) -> Any:
    """The rows of ``encoded`` followed by those of ``extra`` (without targets), whose task
    targets are placeholders (ignored: the rows are not labelled)."""
    from tfsft.data.pipeline import EncodedData, RaggedRows, TokenAligned

    if encoded.extra_features or extra.extra_features:
        raise ConfigError("--unlabelled is not available for this task: its rows carry "
                          "features of their own")
    if encoded.balance is not None:
        raise ConfigError("--unlabelled adds rows without labels, which --sampling cannot "
                          "balance; leave out one of them")
    targets = {}
    for name, value in (encoded.targets or {}).items():
        if isinstance(value, RaggedRows):
            raise ConfigError("--unlabelled is not available for this task")
        if isinstance(value, TokenAligned):
            filler = np.full((len(extra.token_ids), *value.values.shape[1:]), value.pad_value,
                             value.values.dtype)
            targets[name] = TokenAligned(np.concatenate([value.values, filler]), value.pad_value)
        else:
            filler = np.zeros((len(extra), *value.shape[1:]), value.dtype)
            targets[name] = np.concatenate([value, filler])
    weights = None
    if encoded.sample_weights is not None:
        weights = np.concatenate([encoded.sample_weights,
                                  np.ones(len(extra), encoded.sample_weights.dtype)])
    groups = None
    if encoded.batch_groups is not None and extra.batch_groups is not None:
        offset = encoded.batch_groups.max(initial=-1) + 1  # the texts of both stay apart
        groups = np.concatenate([encoded.batch_groups, extra.batch_groups + offset])
    return EncodedData(np.concatenate([encoded.token_ids, extra.token_ids]),
                       np.concatenate([encoded.segment_ids, extra.segment_ids]),
                       np.concatenate([encoded.lengths, extra.lengths]), targets, weights,
                       batch_groups=groups)


def with_teacher_outputs(encoded: Any, outputs: Any, labelled: np.ndarray) -> Any:
    """``encoded`` with the teacher's ``outputs`` (per row, or per token: one array per row)
    and the ``labelled`` flags as targets."""
    from tfsft.data.pipeline import TokenAligned
    from tfsft.models.distiller import LABELLED_TARGET, TEACHER_TARGET

    if isinstance(outputs, list):
        teacher: Any = TokenAligned(np.concatenate(outputs).astype(np.float32), 0.0)
    else:
        teacher = np.asarray(outputs, np.float32)
    targets = dict(encoded.targets or {})
    targets.update({TEACHER_TARGET: teacher, LABELLED_TARGET: labelled})
    return dataclasses.replace(encoded, targets=targets)


def _layers(model: Any) -> int | None:
    return getattr(getattr(model, "backbone", None), "num_layers", None)


