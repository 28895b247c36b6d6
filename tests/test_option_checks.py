"""Options of the wrong type or range get one clear error, from YAML and Python alike; a
diverging run stops at its first NaN step."""

from __future__ import annotations

import json

import numpy as np
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


# -- commands and the Python API refuse what they would get wrong ---------------------------

@pytest.fixture(scope="module")
def run(trained_run):
    from tfsft.runs import TrainedRun

    return TrainedRun(trained_run.run_dir)


def test_predict_refuses_one_string(run):
    with pytest.raises(ConfigError, match="predict takes a list of texts, not one string"):
        run.predict("a great film")


def test_evaluate_refuses_examples_with_other_labels(run):
    from tfsft.tasks.text_classification.examples import TextClassificationData

    flipped = TextClassificationData(["good", "bad"], None, np.array([0, 1], np.int32),
                                     tuple(reversed(run.labels)))
    with pytest.raises(ConfigError, match="are not this run's"):
        run.evaluate(flipped)


@pytest.mark.parametrize("kwargs, message", [
    ({"formats": "savedmodel", "quantize": "int8"},
     "--quantize makes TFLite, ONNX and \\(causal-lm\\) GGUF variants"),
    ({"formats": "gguf"}, "--format gguf is for causal-lm runs"),
    ({"formats": "savedmodel,pdf"}, "unknown format\\(s\\) \\['pdf'\\]"),
    ({"max_examples": 0}, "max_examples must be >= 1"),
])
def test_export_checks_its_arguments(run, tmp_path, kwargs, message):
    from exporters import export

    with pytest.raises(ConfigError, match=message):
        export(run, tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("content, message", [
    (None, "file not found"),
    ("folder", "is a folder, not a text file"),
    (b"caf\xe9\n", "line 1, column 4: bytes b'\\xe9' are not valid utf-8"),
    ("good\n\u200b\u200b\n", "line 2: the text holds only invisible"),
])
def test_predict_input_files_are_checked(run, tmp_path, capsys, content, message):
    from tfsft.cli import main as cli

    path = tmp_path / "texts.txt"
    if content == "folder":
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content, encoding="utf-8")
    assert cli(["predict", str(run.run_dir), "--input", str(path)]) == 2
    assert message in capsys.readouterr().err


def test_predict_refuses_blank_text_arguments(run, capsys):
    from tfsft.cli import main as cli

    assert cli(["predict", str(run.run_dir), "fine", "   "]) == 2
    assert "text argument 2 ('   ') is empty or only whitespace" in capsys.readouterr().err


def test_predict_skips_and_counts_blank_lines(run, tmp_path, capsys):
    from tfsft.cli import main as cli

    path = tmp_path / "texts.txt"
    path.write_text("good\n\n\nbad\n")
    assert cli(["predict", str(run.run_dir), "--input", str(path)]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2


def test_numpy_numbers_are_accepted():
    config = TrainConfig.from_dict({**BASE, "batch_size": np.int64(8), "dropout": np.float32(0.2)})
    assert config.batch_size == 8 and type(config.batch_size) is int


def test_a_task_file_with_another_number_of_labels_than_the_model_is_refused(trained_run,
                                                                              tmp_path):
    import shutil

    from tfsft.runs import TrainedRun

    copy = tmp_path / "run"
    shutil.copytree(trained_run.run_dir, copy)
    record = json.loads((copy / "task.json").read_text())
    record["state"]["labels"] = [*record["state"]["labels"], "extra"]
    (copy / "task.json").write_text(json.dumps(record))
    with pytest.raises(ConfigError, match="task.json: it names 3 outputs .labels or targets. "
                                          "but the saved model gives 2"):
        TrainedRun(copy).predict(["a great film"])
