"""Training options as one dataclass, loadable from YAML and overridable from the command line.

>>> config = TrainConfig.from_dict({"train": "train.csv", "model": "minilm-l6",
...                                 "output_dir": "runs/a", "epochs": 2})
>>> config.epochs, config.batch_size
(2, 16)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tfsft.errors import ConfigError
from tfsft.models.text_classifier import POOLINGS
from tfsft.training.precision import PRECISIONS
from tfsft.training.schedules import DECAYS

TASKS = ("text-classification",)


@dataclass
class TrainConfig:
    """Everything a training run needs; saved as ``config.yaml`` in the run folder."""

    train: str
    model: str
    output_dir: str
    task: str = "text-classification"
    validation: str | None = None
    validation_fraction: float = 0.1
    text_column: str = "text"
    text_pair_column: str | None = None
    label_column: str = "label"
    validation_text_column: str | None = None
    validation_text_pair_column: str | None = None
    validation_label_column: str | None = None
    exclude_labels: list[str] = field(default_factory=list)
    max_train_rows: int | None = None
    max_validation_rows: int | None = None
    file_format: str | None = None
    encoding: str = "utf-8"
    epochs: int = 3
    batch_size: int = 16
    learning_rate: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    lr_schedule: str = "linear"
    clipnorm: float | None = 1.0
    max_length: int = 128
    pooling: str = "mean"
    dropout: float = 0.1
    seed: int = 42
    precision: str = "auto"
    class_weight: str | dict[str, float] | None = None
    early_stopping_patience: int | None = 2
    reduce_lr_on_plateau: bool = False
    monitor: str = "val_loss"
    backup_every_steps: int | None = 200
    tensorboard: bool = True
    overwrite: bool = False

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "options") -> TrainConfig:
        values = {k.replace("-", "_"): v for k, v in values.items()}
        unknown = sorted(set(values) - set(cls.field_names()))
        if unknown:
            raise ConfigError(f"{source}: unknown option(s) {unknown}; "
                              f"known options are {', '.join(cls.field_names())}")
        missing = [name for name in ("train", "model", "output_dir") if values.get(name) is None]
        if missing:
            flags = ", ".join("--" + m.replace("_", "-") for m in missing)
            raise ConfigError(f"{source}: missing required option(s) {flags}")
        config = cls(**values)
        config.validate()
        return config

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
        """Options from a YAML file, then ``overrides`` (non-None values win)."""
        values = load_yaml_options(path)
        values.update({k: v for k, v in (overrides or {}).items() if v is not None})
        return cls.from_dict(values, source=str(path))

    def validate(self) -> None:
        checks = [
            (self.task in TASKS, f"task must be one of {TASKS}"),
            (self.epochs >= 1, "epochs must be >= 1"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (self.learning_rate > 0, "learning_rate must be > 0"),
            (8 <= self.max_length <= 512, "max_length must be between 8 and 512"),
            (0 <= self.warmup_ratio < 1, "warmup_ratio must be in [0, 1)"),
            (self.lr_schedule in DECAYS, f"lr_schedule must be one of {DECAYS}"),
            (self.pooling in POOLINGS, f"pooling must be one of {POOLINGS}"),
            (self.precision in PRECISIONS, f"precision must be one of {PRECISIONS}"),
            (0 < self.validation_fraction < 1, "validation_fraction must be in (0, 1)"),
            (not (self.reduce_lr_on_plateau and self.lr_schedule != "constant"),
             "reduce_lr_on_plateau needs lr_schedule: constant (a decaying schedule already "
             "sets the learning rate at every step)"),
            (self.class_weight is None or isinstance(self.class_weight, dict)
             or self.class_weight == "balanced",
             "class_weight must be 'balanced' or a mapping label -> weight"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def load_yaml_options(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping of options; errors name the file and line."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: config file not found")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: invalid YAML ({exc})") from exc
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping of option: value")
    return values
