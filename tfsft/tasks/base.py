"""The Task API: everything that differs between fine-tuning tasks, behind one small class.

A task owns its options (columns, label options) and the state it learns from the training
data, and hands the rest to four roles (:mod:`tfsft.tasks.roles`): data (rows to checked
examples to features), modeling (the Keras model, its loss and metrics), evaluation (outputs,
metrics, reports, predictions) and serving (the exported graphs and their checks). The trainer,
the CLI, the run folder and the exporters only ever call these, so a new task is one package
(a :class:`Task` subclass decorated with :func:`register_task`, or an entry point) plus its
test.

>>> built_in = [name for name in task_names() if _OPTIONS[name].startswith("tfsft.tasks.")]
>>> sorted(built_in)  # doctest: +NORMALIZE_WHITESPACE
['causal-lm', 'multi-label-classification', 'question-answering', 'regression',
 'sentence-embedding', 'text-classification', 'token-classification']
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
from typing import TYPE_CHECKING, Any, ClassVar

from tfsft.errors import ConfigError
from tfsft.tasks.roles import DataRole, EvaluationRole, ModelingRole, ServingRole

if TYPE_CHECKING:  # pragma: no cover
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
    "sentence-embedding": "tfsft.tasks.sentence_embedding.task:SentenceEmbeddingTask",
}
# Options classes of the built-in tasks, importable without TensorFlow (for the CLI).
_OPTIONS: dict[str, str] = {
    "text-classification": "tfsft.tasks.text_classification.task:TextClassificationOptions",
    "multi-label-classification": "tfsft.tasks.multi_label.task:MultiLabelOptions",
    "regression": "tfsft.tasks.regression.task:RegressionOptions",
    "token-classification": "tfsft.tasks.token_classification.task:TokenClassificationOptions",
    "question-answering": "tfsft.tasks.question_answering.task:QuestionAnsweringOptions",
    "causal-lm": "tfsft.tasks.causal_lm.task:CausalLMOptions",
    "sentence-embedding": "tfsft.tasks.sentence_embedding.task:SentenceEmbeddingOptions",
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


class Task:
    """Base class of fine-tuning tasks: a name, options, the state learned from the training
    data, and one object per role (:mod:`tfsft.tasks.roles`) made from the class attributes
    ``Data``, ``Modeling``, ``Evaluation`` and ``Serving``.

    State learned from the training data (label list, target statistics, thresholds) lives in
    the instance and is saved in the run folder's ``task.json`` by :meth:`state_dict`; the
    roles read it from their ``task``.
    """

    name: ClassVar[str] = ""
    Options: ClassVar[type[TaskOptions]] = TaskOptions
    Data: ClassVar[type[DataRole]] = DataRole
    Modeling: ClassVar[type[ModelingRole]] = ModelingRole
    Evaluation: ClassVar[type[EvaluationRole]] = EvaluationRole
    Serving: ClassVar[type[ServingRole]] = ServingRole

    def __init__(self, options: TaskOptions):
        self.options = options
        self.tokenizer: WordPieceTokenizer | None = None
        self.max_length: int | None = None
        self.data = self.Data(self)
        self.modeling = self.Modeling(self)
        self.evaluation = self.Evaluation(self)
        self.serving = self.Serving(self)

    @classmethod
    def commands(cls) -> Sequence[TaskCommand]:
        """Subcommands this task adds to ``tfsft`` (see :mod:`tfsft.tasks.commands`), such as
        causal-lm's ``generate``; default none. Import nothing heavy here: ``tfsft --help``
        calls it."""
        return ()

    def bind(self, tokenizer: WordPieceTokenizer, max_length: int) -> None:
        """The tokenizer and length the task's model uses (set by the trainer and the run)."""
        self.tokenizer, self.max_length = tokenizer, max_length

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
