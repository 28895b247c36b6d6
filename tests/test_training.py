"""Training runs end to end on a tiny model: outputs, repeatability, CLI, SavedModel export."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import zipfile

import h5py
import keras
import numpy as np
import pytest

from tfsft.cli import main as cli
from tfsft.errors import ConfigError
from tfsft.runs import TrainedRun
from tfsft.tokenization import unpad
from tfsft.training.trainer import train

from .conftest import sentiment_rows, tiny_config, write_csv

RUN_FILES = ["config.yaml", "task.json", "tokenizer/vocab.txt", "model.keras", "metrics.json",
             "classification_report.txt", "confusion_matrix.png", "training_curves.png",
             "history.csv", "run.json", "checkpoints/best.weights.h5"]


def test_training_learns_and_writes_the_run_folder(trained_run):
    run_dir = trained_run.run_dir
    for name in RUN_FILES:
        assert (run_dir / name).exists(), name
    assert (run_dir / "logs").is_dir()  # TensorBoard
    assert not (run_dir / "backup").exists()  # removed once training finished
    assert trained_run.metrics["accuracy"] >= 0.9
    assert trained_run.summary["train_examples"] == 460 and trained_run.summary["epochs_run"] >= 1
    task = json.loads((run_dir / "task.json").read_text())
    assert task["task"] == "text-classification" and task["state"]["labels"] == ["neg", "pos"]
    for png in ("confusion_matrix.png", "training_curves.png"):
        assert (run_dir / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {"accuracy", "f1_macro", "f1_weighted", "per_class", "roc_auc"} <= set(metrics)
    # The best checkpoint holds the model's weights without the optimizer's moments.
    best = run_dir / "checkpoints/best.weights.h5"
    with h5py.File(best) as saved:
        assert set(saved) == {"layers", "vars"}  # no "optimizer" group
    model = keras.saving.load_model(run_dir / "model.keras")
    model.load_weights(best)
    # model.keras holds the network alone: uncompiled, no optimizer moments (a third the size)
    assert not model.compiled
    with zipfile.ZipFile(run_dir / "model.keras") as archive, archive.open(
            "model.weights.h5") as weights, h5py.File(weights) as saved:
        assert "optimizer" not in saved


def test_run_json_says_where_the_time_went(trained_run):
    summary = trained_run.summary
    seconds = summary["seconds"]
    assert set(seconds) == {"process_start_to_train", "before_fit", "first_steps",
                            "steady_steps", "validation", "other_in_fit", "after_fit", "total"}
    parts = [seconds[k] for k in ("before_fit", "first_steps", "steady_steps", "validation",
                                  "after_fit")]
    assert all(value > 0 for value in parts) and seconds["other_in_fit"] >= 0
    assert seconds["process_start_to_train"] is None  # the command line passes its start-up
    # the parts of fit add up to fit's time, and the whole run is their sum and more
    fit = seconds["first_steps"] + seconds["steady_steps"] + seconds["validation"] + seconds[
        "other_in_fit"]
    assert fit == pytest.approx(summary["fit_seconds"], abs=0.01)
    assert seconds["total"] >= sum(parts)
    from tfsft.training.trainer import seconds_since_process_start

    assert 0 < seconds_since_process_start() < 24 * 3600  # Linux: read from /proc
    assert 0 < summary["steady_cpu_per_wall"] <= 64


def test_validation_pass_logs_what_evaluate_gives_and_keeps_the_best_epochs_outputs(
        trained_run, tmp_path):
    from tfsft.data.pipeline import make_dataset, predict_logits
    from tfsft.optimization.optimizers import adamw
    from tfsft.training.validation import ValidationPass

    run = TrainedRun(trained_run.run_dir)
    examples = run.task.data.read(write_csv(tmp_path / "dev.csv", sentiment_rows(40, seed=9)),
                             role="validation")
    encoded = run.task.data.encode(run.tokenizer, examples, 16)
    model = run.model
    model.compile(optimizer=adamw(1e-3))  # TextClassifier: cross-entropy and accuracy
    stopping = keras.callbacks.EarlyStopping(monitor="val_loss", patience=5,
                                             restore_best_weights=True)
    validation = ValidationPass(encoded, batch_size=8, restorer=stopping)
    for callback in (validation, stopping):
        callback.set_model(model)
    stopping.on_train_begin()
    logs = {}
    validation.on_epoch_end(0, logs)
    stopping.on_epoch_end(0, logs)
    expected = model.evaluate(make_dataset(encoded, 8), return_dict=True, verbose=0)
    assert logs["val_loss"] == pytest.approx(expected["loss"], rel=1e-5)
    assert logs["val_accuracy"] == pytest.approx(expected["accuracy"])
    best = predict_logits(model, encoded, verbose=0)
    np.testing.assert_allclose(validation.final_outputs(), best, atol=1e-5)
    # a worse second epoch: early stopping restores the first, whose outputs are kept
    head = model.get_layer("logits")
    head.kernel.assign(-head.kernel)
    logs = {}
    validation.on_epoch_end(1, logs)
    stopping.on_epoch_end(1, logs)
    assert logs["val_loss"] > expected["loss"] and stopping.best_epoch == 0
    np.testing.assert_allclose(validation.final_outputs(), best, atol=1e-5)


def test_best_weights_checkpoint_restores_the_best_epoch_from_its_file(trained_run, tmp_path,
                                                                        capsys):
    from tfsft.training.callbacks import BestWeightsCheckpoint

    model = TrainedRun(trained_run.run_dir).model
    best = [w.copy() for w in model.get_weights()]
    head = model.get_layer("logits")
    for restore in (True, False):
        model.set_weights(best)
        checkpoint = BestWeightsCheckpoint(tmp_path / f"{restore}.weights.h5", restore=restore)
        checkpoint.set_model(model)
        checkpoint.on_epoch_end(0, {"val_loss": 0.5})
        head.kernel.assign(head.kernel * 3)  # a worse epoch
        checkpoint.on_epoch_end(1, {"val_loss": 0.9})
        checkpoint.on_train_end()
        restored = all(np.array_equal(a, b) for a, b in zip(model.get_weights(), best,
                                                             strict=True))
        assert restored == restore and checkpoint.best_epoch == 0
    assert capsys.readouterr().out.count("Restoring model weights") == 1
    # the best epoch last: nothing to restore, the file is not read
    checkpoint = BestWeightsCheckpoint(tmp_path / "last.weights.h5", restore=True)
    checkpoint.set_model(model)
    checkpoint.on_epoch_end(0, {"val_loss": 0.9})
    checkpoint.on_epoch_end(1, {"val_loss": 0.5})
    (tmp_path / "last.weights.h5").unlink()
    checkpoint.on_train_end()
    assert checkpoint.best_epoch == 1


def test_after_first_step_runs_work_on_a_thread_and_raises_its_errors():
    import threading

    from tfsft.training.callbacks import AfterFirstStep

    ran = []
    background = AfterFirstStep(lambda: ran.append(threading.current_thread().name))
    background.on_train_batch_end(0)
    background.finish()
    assert ran == ["tfsft-after-first-step"]
    failing = AfterFirstStep(lambda: 1 / 0)
    failing.on_train_batch_end(0)
    with pytest.raises(ZeroDivisionError):
        failing.on_train_end()
    inline = AfterFirstStep(lambda: ran.append(threading.current_thread().name))
    inline.finish()  # no step ran: done here
    assert ran[-1] == threading.current_thread().name


def test_reloaded_run_predicts_like_the_trained_model(trained_run):
    run = TrainedRun(trained_run.run_dir)
    predictions = run.predict(["the film was superb", "a boring and tedious plot"])
    assert [p["label"] for p in predictions] == ["pos", "neg"]
    assert set(predictions[0]["probabilities"]) == {"neg", "pos"}
    assert predictions[0]["score"] == max(predictions[0]["probabilities"].values())


@pytest.mark.parametrize("precision", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_run_learns_and_saves_a_float32_model(tiny_checkpoint, tmp_path,
                                                              precision):
    train_file = write_csv(tmp_path / "train.csv", sentiment_rows(512, seed=1))
    result = train(tiny_config(tiny_checkpoint, train_file, tmp_path / "run", precision=precision))
    assert result.summary["precision"] == precision
    assert result.metrics["accuracy"] >= 0.9
    run = TrainedRun(result.run_dir)
    assert run.model.backbone.compute_dtype == "float32"
    reloaded = keras.saving.load_model(result.run_dir / "model.keras")
    assert reloaded.backbone.compute_dtype == "float32" and not reloaded.compiled
    assert [p["label"] for p in run.predict(["the film was superb", "a boring plot"])] == [
        "pos", "neg"]


def test_same_seed_same_weights(tiny_checkpoint, tmp_path):
    train_file = write_csv(tmp_path / "train.csv", sentiment_rows(96, seed=2))
    weights = []
    for name in ("a", "b"):
        config = tiny_config(tiny_checkpoint, train_file, tmp_path / name, epochs=1,
                             class_weight="balanced", early_stopping_patience=None)
        train(config)
        model = keras.saving.load_model(tmp_path / name / "model.keras", compile=False)
        weights.append(model.get_weights())
    for first, second in zip(*weights, strict=True):
        np.testing.assert_array_equal(first, second)


def test_finished_run_is_not_overwritten_by_accident(trained_run, tiny_checkpoint):
    config = tiny_config(tiny_checkpoint, "unused.csv", trained_run.run_dir)
    with pytest.raises(ConfigError, match="already holds a finished run"):
        train(config)


def test_cli_evaluate_and_predict(trained_run, tmp_path, capsys):
    data = write_csv(tmp_path / "eval.tsv", [], header=("review", "y"))
    data.write_text("review\ty\n" + "".join(f"{t}\t{y}\n" for t, y in sentiment_rows(40, seed=5)))
    assert cli(["evaluate", str(trained_run.run_dir), "--data", str(data), "--text-column",
                "review", "--label-column", "y", "--output-dir", str(tmp_path / "eval")]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["examples"] == 40 and metrics["accuracy"] >= 0.85
    assert (tmp_path / "eval" / "confusion_matrix.png").exists()

    texts = tmp_path / "texts.txt"
    texts.write_text("really dull\n\nsuperb and moving\n")
    assert cli(["predict", str(trained_run.run_dir), "quite awful", "--input", str(texts)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["label"] for line in lines] == ["neg", "neg", "pos"]
    assert [line.get("line") for line in lines] == [None, 1, 3]  # the blank line 2 is skipped


def test_cli_reports_bad_data_without_a_traceback(trained_run, tmp_path, capsys):
    data = tmp_path / "eval.csv"
    data.write_text("text,label\nfine,pos\nok,neutral\n")
    assert cli(["evaluate", str(trained_run.run_dir), "--data", str(data)]) == 2
    error = capsys.readouterr().err
    assert f"{data}, line 3: label 'neutral' was not seen in training" in error


SERVE_SCRIPT = textwrap.dedent("""
    import json, sys
    import tensorflow as tf
    import tensorflow_text  # registers the tokenizer ops
    from tensorflow_serving.apis import predict_pb2
    loaded = tf.saved_model.load(sys.argv[1])
    texts = json.loads(sys.argv[2])
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "tiny"
    request.model_spec.signature_name = "serving_default"
    request.inputs["text"].CopyFrom(tf.make_tensor_proto(texts, dtype=tf.string))
    inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
    out = loaded.signatures["serving_default"](**{k: tf.constant(v) for k, v in inputs.items()})
    ids = loaded.signatures["tokenize"](text=tf.constant(texts))
    print(json.dumps({"labels": [x.decode() for x in out["label"].numpy()],
                      "probabilities": out["probabilities"].numpy().tolist(),
                      "input_ids": ids["input_ids"].numpy().tolist()}))
""")


def test_export_savedmodel_serves_raw_text_in_a_fresh_process(trained_run, tmp_path, capsys):
    base = tmp_path / "saved_models" / "tiny"
    assert cli(["export", str(trained_run.run_dir), "--format", "savedmodel",
                "--output", str(base)]) == 0
    assert cli(["export", str(trained_run.run_dir), "--output", str(base)]) == 0
    assert sorted(p.name for p in base.iterdir() if p.name.isdigit()) == ["1", "2"]  # never overwrite
    assert (base / "1" / "assets" / "labels.txt").read_text().split() == ["neg", "pos"]
    texts = ["the acting was brilliant", "a clumsy , weak story", "fun"]
    served = subprocess.run([sys.executable, "-c", SERVE_SCRIPT, str(base / "2"), json.dumps(texts)],
                            capture_output=True, text=True, timeout=300, check=True)
    result = json.loads(served.stdout.strip().splitlines()[-1])
    run = TrainedRun(trained_run.run_dir)
    expected = run.predict(texts)
    assert result["labels"] == [p["label"] for p in expected]
    for row, prediction in zip(result["probabilities"], expected, strict=True):
        np.testing.assert_allclose(row, [prediction["probabilities"][k] for k in run.labels],
                                   atol=1e-5)
    encoded = unpad(run.tokenizer.encode(texts, max_length=run.max_length))
    pad = run.tokenizer.pad_id
    assert [[i for i in row if i != pad] for row in result["input_ids"]] == encoded


def test_jit_compiled_run_learns_with_bucketed_batches(tiny_checkpoint, tmp_path):
    train_file = write_csv(tmp_path / "train.csv", sentiment_rows(512, seed=1))
    result = train(tiny_config(tiny_checkpoint, train_file, tmp_path / "run", jit_compile=True))
    assert result.summary["jit_compile"] is True
    assert result.metrics["accuracy"] >= 0.9
    assert TrainedRun(result.run_dir).predict(["a superb film"])[0]["label"] == "pos"
