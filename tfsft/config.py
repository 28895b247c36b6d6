"""Training options as one dataclass, loadable from YAML and overridable from the command line.

Options every task shares are fields of :class:`TrainConfig`; the task's own options (columns,
label options, pooling, ...) are in ``task_options``, checked against the task's options class.
In YAML they may sit at the top level or in a section named after the task::

    task: regression
    train: tweets.tsv
    regression:
      text_column: text
      target_columns: [score]

>>> config = TrainConfig.from_dict({"train": "train.csv", "model": "minilm-l6",
...                                 "output_dir": "runs/a", "epochs": 2, "text_column": "review"})
>>> config.epochs, config.batch_size, config.task_options["text_column"]
(2, 16, 'review')
"""

from __future__ import annotations

import codecs
import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tfsft.choices import LR_DECAYS, PRECISIONS, STRATEGIES
from tfsft.data.shards.manifest import shard_defaults
from tfsft.errors import ConfigError
from tfsft.option_types import coerce
from tfsft.tasks.base import (
    DEFAULT_TASK,
    create_task,
    make_options,
    option_fields,
    options_class,
    task_class,
    task_names,
)

REQUIRED = ("train", "model", "output_dir")
DATA_FIELDS = ("train", "validation", "task_options")


@dataclass
class TrainConfig:
    """Everything a training run needs; saved as ``config.yaml`` in the run folder."""

    train: str
    model: str
    output_dir: str
    task: str = DEFAULT_TASK
    task_options: dict[str, Any] = field(default_factory=dict)
    validation: str | None = None
    validation_fraction: float = 0.1
    max_train_rows: int | None = None
    max_validation_rows: int | None = None
    file_format: str | None = None
    encoding: str = "utf-8"
    delimiter: str | None = None  # CSV/TSV: the format's own (, or tab)
    quoting: bool = True
    epochs: int = 3
    batch_size: int = 16
    learning_rate: float | None = None  # the task's default (5e-5; NER 1e-4; LoRA 5e-4)
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    lr_schedule: str | None = None  # the task's default (linear; causal-lm LoRA cosine)
    clipnorm: float | None = 1.0
    gradient_accumulation_steps: int = 1  # batches whose mean gradient makes one update
    max_length: int | None = None  # the task's default (128; question answering 384)
    dropout: float = 0.1
    seed: int = 42
    precision: str = "auto"
    strategy: str = "auto"  # see tfsft.training.distribution
    jit_compile: bool = False  # XLA, batches padded to length buckets
    early_stopping_patience: int | None = 2
    reduce_lr_on_plateau: bool = False
    monitor: str | None = None  # the task's default (val_loss)
    backup_every_steps: int | None = 200
    tensorboard: bool = True
    overwrite: bool = False
    augment: int = 0  # edited copies of each training example (tfsft.data.augmentation)
    augment_methods: str | None = None  # all, when augment is on
    augment_alpha: float | None = None  # 0.1, when augment is on

    def __post_init__(self) -> None:
        self.validate()

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str | None = None) -> TrainConfig:
        """Options from a mapping: shared options, plus the task's own at the top level, in a
        section named after the task, or under ``task_options``. ``source`` (a config file)
        heads the errors."""
        where = f"{source}: " if source else ""
        dashed = sorted(str(k) for k in values if str(k).startswith("-"))
        if dashed:
            plain = ", ".join(k.lstrip("-").replace("-", "_") for k in dashed)
            raise ConfigError(f"{where}option name(s) {dashed} start with a dash; in a config "
                              f"file write them without dashes: {plain}")
        spelled: dict[str, str] = {}
        for key in values:
            name = key.replace("-", "_") if key not in task_names() else key
            if name in spelled:
                raise ConfigError(f"{where}the option {name} is given twice (as "
                                  f"{spelled[name]} and {key}); keep one")
            spelled[name] = key
        values = {k.replace("-", "_") if k not in task_names() else k: v
                  for k, v in values.items()}
        for name in ("train", "validation", "model", "output_dir"):
            if values.get(name) is not None and not isinstance(values[name], (str, Path)):
                raise ConfigError(f"{where}{name} must be one path (a string), not "
                                  f"{values[name]!r}")
        shards = shard_defaults(values.get("train"))
        task = values.get("task") or shards.get("task", DEFAULT_TASK)
        values["task"] = task
        if values.get("model") is None and shards.get("model"):
            values["model"] = shards["model"]  # the checkpoint whose tokenizer made the shards
        if task not in task_names():
            raise ConfigError(f"{where}unknown task {task!r}; the tasks are "
                              f"{', '.join(task_names())}")
        task_values = dict(values.pop("task_options", None) or {})
        section = values.pop(task, None)
        if section is not None:
            if not isinstance(section, dict):
                raise ConfigError(f"{where}the {task!r} section must be a mapping of options")
            task_values.update(section)
        task_fields = {f.name for f, _ in option_fields(options_class(task))}
        for name in [k for k in values if k in task_fields and k not in cls.field_names()]:
            task_values[name] = values.pop(name)
        unknown = sorted(set(values) - set(cls.field_names()))
        if unknown:
            raise ConfigError(f"{where}unknown option(s) {unknown}; known options are "
                              f"{', '.join(cls.field_names())} and the options of task {task!r}: "
                              f"{', '.join(sorted(task_fields))}")
        missing = [name for name in REQUIRED if values.get(name) is None]
        train = values.get("train")
        if missing == ["model"] and isinstance(train, (str, Path)) and not Path(train).exists():
            # a shard folder would name the model: the missing --train is the first mistake
            raise ConfigError(f"--train {train}: file or folder not found; check the path")
        if missing:
            flags = ", ".join("--" + m.replace("_", "-") for m in missing)
            them = "it" if len(missing) == 1 else "them"
            raise ConfigError(f"{where}missing required option(s) {flags}"
                              + ("" if source else f"; pass {them}, or set {them} in --config "
                                 "FILE"))
        try:
            config = cls(**values, task_options=task_values)
            config.validate()
        except ConfigError as exc:
            if source and not str(exc).startswith(where):
                raise ConfigError(f"{where}{exc}") from None
            raise
        return config

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
        """Options from a YAML file, then ``overrides`` (non-None values win)."""
        values = load_yaml_options(path)
        values.update({k: v for k, v in (overrides or {}).items() if v is not None})
        return cls.from_dict(values, source=str(path))

    def _max_length_limit(self) -> int:
        return task_class(self.task).Data.max_length_limit if self.task in task_names() else 512

    def validate(self) -> None:
        hints = typing.get_type_hints(type(self))
        for name in self.field_names():
            if name not in DATA_FIELDS:  # data may also be a DataFrame or a dataset
                setattr(self, name, coerce(getattr(self, name), hints[name], name))
        shards = shard_defaults(self.train)
        if shards.get("task") == self.task:  # pre-tokenized data: its options are the defaults
            self.task_options = {**shards["task_options"], **(self.task_options or {})}
            if self.max_length is None:
                self.max_length = shards["max_length"]
        if self.task not in task_names():
            raise ConfigError(f"task must be one of {task_names()}")
        if self.max_length is None:
            self.max_length = task_class(self.task).Data.default_max_length
        # Every task option, defaults filled in: the saved config.yaml names them all.
        options = make_options(options_class(self.task), self.task_options,
                               source=f"task {self.task!r}")
        self.task_options = options.to_dict()
        task = create_task(self.task, options)
        defaults = task.modeling.optimization_defaults()
        for name, value in defaults.items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        checks = [
            (self.epochs >= 1, "epochs must be >= 1"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (self.learning_rate > 0, "learning_rate must be > 0"),
            (8 <= self.max_length <= self._max_length_limit(),
             f"max_length must be between 8 and {self._max_length_limit()}"),
            (self.gradient_accumulation_steps >= 1, "gradient_accumulation_steps must be >= 1"),
            (0 <= self.warmup_ratio < 1, "warmup_ratio must be in [0, 1)"),
            (self.lr_schedule in LR_DECAYS, f"lr_schedule must be one of {LR_DECAYS}"),
            (self.precision in PRECISIONS, f"precision must be one of {PRECISIONS}"),
            (self.strategy in STRATEGIES, f"strategy must be one of {STRATEGIES}"),
            (0 < self.validation_fraction < 1, "validation_fraction must be in (0, 1)"),
            (self.weight_decay >= 0, "weight_decay must be >= 0"),
            (0 <= self.dropout < 1, "dropout must be in [0, 1)"),
            (self.seed >= 0, "seed must be >= 0"),
            (self.clipnorm is None or self.clipnorm > 0, "clipnorm must be > 0 (or null: off)"),
            (self.backup_every_steps is None or self.backup_every_steps >= 1,
             "backup_every_steps must be >= 1 (or null: off)"),
            (self.early_stopping_patience is None or self.early_stopping_patience >= 0,
             "early_stopping_patience must be >= 0 (or null: off)"),
            (self.max_train_rows is None or self.max_train_rows >= 1,
             "max_train_rows must be >= 1"),
            (self.max_validation_rows is None or self.max_validation_rows >= 1,
             "max_validation_rows must be >= 1"),
            (0 <= self.augment <= 32, "augment must be from 0 (off) to 32 copies"),
            (self.augment_alpha is None or 0 < self.augment_alpha <= 0.5,
             "augment_alpha must be in (0, 0.5]"),
            (self.augment or (self.augment_methods is None and self.augment_alpha is None),
             "augment_methods and augment_alpha shape --augment N: pass --augment with them, "
             "or leave them out"),
            (not (self.reduce_lr_on_plateau and self.lr_schedule != "constant"),
             "reduce_lr_on_plateau needs lr_schedule constant (a decaying schedule already "
             "sets the learning rate at every step)"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        task.data.check_max_length(self.max_length)
        if self.delimiter is not None:
            self.delimiter = parse_delimiter(self.delimiter)
        from tfsft.data.augmentation import parse_methods

        if self.augment_methods is not None:
            self.augment_methods = ",".join(parse_methods(self.augment_methods))
        try:
            codecs.lookup(self.encoding)
        except LookupError:
            raise ConfigError(f"encoding {self.encoding!r} is not a known text encoding (e.g. "
                              "utf-8, latin-1, cp1252)") from None

    def to_dict(self) -> dict[str, Any]:
        """Shared options, then the task's options in a section named after the task."""
        values = dataclasses.asdict(self)
        values[self.task] = values.pop("task_options")
        return values

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def option_changes(saved: dict[str, Any], now: dict[str, Any],
                   ignored: tuple[str, ...] = ("output_dir", "overwrite")) -> str:
    """The options that differ between two :meth:`TrainConfig.to_dict` records (the task's
    section read as options of their own), as ``"name: saved -> now"``; empty when none.

    >>> option_changes({"task": "t", "epochs": 3, "t": {"pooling": "mean"}},
    ...                {"task": "t", "epochs": 2, "t": {"pooling": "cls"}})
    "epochs: 3 -> 2; pooling: 'mean' -> 'cls'"
    """
    def flat(record: dict[str, Any]) -> dict[str, Any]:
        task = record.get("task")
        section = record.get(task) if isinstance(task, str) else None
        options = {k: v for k, v in record.items() if k != task}
        return {**options, **(section if isinstance(section, dict) else {})}

    before, after = flat(saved), flat(now)
    differ = [f"{k}: {before.get(k)!r} -> {after.get(k)!r}"
              for k in sorted(set(before) | set(after))
              if k not in ignored and before.get(k) != after.get(k)]
    return "; ".join(differ[:4]) + ("; ..." if len(differ) > 4 else "")


def parse_delimiter(value: str) -> str:
    r"""One delimiter character; ``\t`` (as typed in a shell) and ``tab`` mean a tab.

    >>> parse_delimiter(r"\t") == "\t", parse_delimiter(";")
    (True, ';')
    """
    value = {"\\t": "\t", "tab": "\t", "TAB": "\t"}.get(value, value)
    if len(value) != 1 or value in "\"\r\n" or value.isalnum():
        raise ConfigError(f"delimiter must be one character such as ; or | or \\t, got {value!r}")
    return value


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (YAML keeps the last,
    silently)."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base`: keys given here win
                continue
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    f"while reading the mapping that starts at line {node.start_mark.line + 1}",
                    None, f"the key {key!r} is given twice (lines {seen[key] + 1} and "
                    f"{key_node.start_mark.line + 1})", key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def _yaml_problem(path: Path, exc: yaml.YAMLError) -> str:
    """One line for a YAML error: where, what, and where the construct it is in started.

    >>> try:
    ...     yaml.safe_load("epochs: 1\\ntrain: [unclosed\\n")
    ... except yaml.YAMLError as exc:
    ...     print(_yaml_problem(Path("bad.yaml"), exc))
    bad.yaml, line 3, column 1: invalid YAML: expected ',' or ']', but got '<stream end>' \
(while parsing a flow sequence that starts at line 2, column 8); check the brackets and quotes \
there (quote a value that holds ': ', ' #', '[' or '{')
    """
    mark = getattr(exc, "problem_mark", None)
    where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    context, start = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if context and start:
        problem += f" ({context} that starts at line {start.line + 1}, column {start.column + 1})"
    if "given twice" in problem:  # see _UniqueKeyLoader
        return f"{path}{where}: invalid YAML: {problem}; keep one"
    return (f"{path}{where}: invalid YAML: {problem}; check the brackets and quotes there "
            "(quote a value that holds ': ', ' #', '[' or '{')")


def load_yaml_options(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping of options; errors name the file and line."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: config file not found")
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder; --config takes a YAML file of option: value "
                          "lines")
    if not path.is_file():
        raise ConfigError(f"{path}: is a pipe or a device, which can be read only once; tfsft "
                          "reads its config file more than once: save it to a file first")
    try:
        values = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader) or {}
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: byte {exc.start} is not UTF-8; save the config file as "
                          "UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(_yaml_problem(path, exc)) from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping of option: value")
    odd = [key for key in values if not isinstance(key, str)]
    if odd:
        raise ConfigError(f"{path}: the key(s) {odd} are not option names (YAML reads "
                          "1 as a number and on/off/yes/no as true/false); write option names "
                          "such as epochs, or quote the key")
    return values
