"""Options of the wrong type or range get one clear error, from YAML and Python alike; a
diverging run stops at its first NaN step."""

from __future__ import annotations

import pytest

from tfsft.config import TrainConfig
from tfsft.errors import ConfigError

BASE = {"train": "train.csv", "model": "minilm-l6", "output_dir": "runs/x"}


@pytest.mark.parametrize("key, value, expected", [
    ("learning_rate", "5e-5", 5e-5),  # PyYAML reads 5e-5 as text
    ("batch_size", "16", 16),
    ("epochs", 2.0, 2),
    ("clipnorm", None, None),
    ("exclude_labels", "neg", ["neg"]),  # a scalar where a list is expected
    ("target_columns", "score", ["score"]),
])
def test_unambiguous_values_are_converted(key, value, expected):
    task = "regression" if key == "target_columns" else "text-classification"
    config = TrainConfig.from_dict({**BASE, "task": task, key: value})
    got = config.task_options[key] if key in config.task_options else getattr(config, key)
    assert got == expected


@pytest.mark.parametrize("key, value, message", [
    ("epochs", "one", "epochs must be a whole number, got 'one'"),
    ("epochs", 1.5, "epochs must be a whole number, got 1.5"),
    ("epochs", 0, "epochs must be >= 1"),
    ("epochs", True, "epochs must be a whole number, got True"),
    ("batch_size", [16], "batch_size must be a whole number"),
    ("learning_rate", "fast", "learning_rate must be a number, got 'fast'"),
    ("learning_rate", float("inf"), "learning_rate must be a finite number"),
    ("learning_rate", float("nan"), "learning_rate must be a finite number"),
    ("learning_rate", -1e-5, "learning_rate must be > 0"),
    ("dropout", 1.5, "dropout must be in \\[0, 1\\)"),
    ("seed", -1, "seed must be >= 0"),
    ("clipnorm", -1.0, "clipnorm must be > 0"),
    ("backup_every_steps", 0, "backup_every_steps must be >= 1"),
    ("weight_decay", -0.1, "weight_decay must be >= 0"),
    ("max_train_rows", 0, "max_train_rows must be >= 1"),
    ("early_stopping_patience", -2, "early_stopping_patience must be >= 0"),
    ("max_length", 4, "max_length must be between 8 and 512"),
    ("warmup_ratio", 1.0, "warmup_ratio must be in \\[0, 1\\)"),
    ("tensorboard", "maybe", "tensorboard must be true or false, got 'maybe'"),
    ("encoding", "utf-9", "encoding 'utf-9' is not a known text encoding"),
    ("precision", "float8", "precision must be one of"),
    ("lr_schedule", "zigzag", "lr_schedule must be one of"),
    ("pooling", "max", "pooling must be one of"),
    ("exclude_labels", {"a": 1}, "exclude_labels must be a list"),
    ("text_column", ["a", "b"], "text_column must be a text"),
])
def test_bad_values_name_the_option(key, value, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig.from_dict({**BASE, key: value})


def test_yaml_values_are_checked_with_the_file_named(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("train: t.csv\nmodel: minilm-l6\noutput_dir: r\nlearning_rate: 5e-5\n"
                    "epochs: two\n")
    with pytest.raises(ConfigError, match="epochs must be a whole number, got 'two'"):
        TrainConfig.from_yaml(path)
    path.write_text("train: t.csv\nmodel: minilm-l6\noutput_dir: r\nlearning_rate: 5e-5\n")
    assert TrainConfig.from_yaml(path).learning_rate == 5e-5


def test_a_diverging_run_stops_at_the_first_nan_step(tiny_checkpoint, sentiment_csv, tmp_path):
    from tfsft.training.callbacks import TrainingDiverged
    from tfsft.training.trainer import train

    from .conftest import tiny_config

    config = tiny_config(tiny_checkpoint, sentiment_csv, tmp_path / "run", learning_rate=1e30,
                         clipnorm=None, warmup_ratio=0.0, backup_every_steps=1)
    with pytest.raises(TrainingDiverged, match="loss became nan at epoch 1.*learning rate"):
        train(config)
    assert not (tmp_path / "run" / "checkpoints" / "best.weights.h5").exists()
