"""``tfsft distill`` and ``tfsft prune``: the soft losses, the shallower student, students of
every distillable task, pruned models that compute what the units they keep computed, and the
refusals."""

from __future__ import annotations

import json
import re
import shutil

import keras_hub
import numpy as np
import pytest
from scipy.special import expit, log_softmax

from tfsft.cli import main as cli
from tfsft.errors import ConfigError
from tfsft.models.distiller import soft_loss
from tfsft.models.pruning import importance, pruned_copy
from tfsft.models.student import evenly_spaced_layers, shallower_copy
from tfsft.runs import TrainedRun
from tfsft.tasks.text_classification.model import TextClassifier
from tfsft.training.distillation import DistillationSettings, distill
from tfsft.training.trainer import train

from .conftest import (
    TINY_VOCAB,
    multi_label_rows,
    qa_rows,
    regression_rows,
    sentiment_rows,
    tiny_config,
    write_csv,
    write_hf_checkpoint,
)
from .test_task_question_answering import write_jsonl
from .test_task_token_classification import ner_sentences, write_conll


def _kl(p_logits, q_logits, axis, temperature):
    log_p = log_softmax(p_logits / temperature, axis=axis)
    log_q = log_softmax(q_logits / temperature, axis=axis)
    return (np.exp(log_p) * (log_p - log_q)).sum(axis=axis)


def test_soft_losses_equal_their_formulas():
    rng = np.random.default_rng(0)
    teacher, student = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    expected = 4.0 * _kl(teacher, student, -1, 2.0).mean()
    assert float(soft_loss("classes", teacher, student, None, 2.0)) == pytest.approx(expected,
                                                                                      rel=1e-5)
    # per token: the mean over real tokens only
    teacher, student = rng.normal(size=(2, 5, 3)), rng.normal(size=(2, 5, 3))
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    divergence = _kl(teacher, student, -1, 1.0)
    assert float(soft_loss("classes", teacher, student, mask, 1.0)) == pytest.approx(
        divergence[mask == 1].mean(), rel=1e-5)
    # span positions: a softmax over the real tokens of each row, per output column
    teacher, student = rng.normal(size=(2, 5, 2)), rng.normal(size=(2, 5, 2))
    rows = [_kl(teacher[i, :n], student[i, :n], 0, 1.0) for i, n in enumerate((3, 5))]
    assert float(soft_loss("positions", teacher, student, mask, 1.0)) == pytest.approx(
        np.mean(rows), rel=1e-5)
    # labels: each label's Bernoulli KL divergence
    teacher, student = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    p, q = expit(teacher / 2), expit(student / 2)
    bernoulli = p * np.log(p / q) + (1 - p) * np.log((1 - p) / (1 - q))
    assert float(soft_loss("labels", teacher, student, None, 2.0)) == pytest.approx(
        4.0 * bernoulli.mean(), rel=1e-4)
    assert float(soft_loss("values", teacher, student, None, 2.0)) == pytest.approx(
        ((teacher - student) ** 2).mean(), rel=1e-5)
    assert float(soft_loss("classes", teacher, teacher, None, 3.0)) == pytest.approx(0, abs=1e-6)


def test_a_shallower_copy_keeps_evenly_spaced_layers_and_the_teachers_weights():
    backbone = keras_hub.models.BertBackbone(vocabulary_size=40, num_layers=4, num_heads=2,
                                             hidden_dim=8, intermediate_dim=16,
                                             max_sequence_length=16)
    teacher = TextClassifier(backbone, num_classes=3, pooling="cls", exact_gelu=True)
    student, kept = shallower_copy(teacher, 2)
    assert kept == [1, 3] and isinstance(student, TextClassifier)
    assert student.backbone.num_layers == 2 and student.exact_gelu and student.pooling == "cls"
    for new, old in enumerate(kept):
        for mine, theirs in zip(student.backbone.get_layer(f"transformer_layer_{new}").weights,
                                teacher.backbone.get_layer(f"transformer_layer_{old}").weights,
                                strict=True):
            np.testing.assert_array_equal(mine.numpy(), theirs.numpy())
    for name in ("token_embedding", "position_embedding", "embeddings_layer_norm"):
        np.testing.assert_array_equal(student.backbone.get_layer(name).weights[0].numpy(),
                                      teacher.backbone.get_layer(name).weights[0].numpy())
    np.testing.assert_array_equal(student.get_layer("logits").kernel.numpy(),
                                  teacher.get_layer("logits").kernel.numpy())
    assert evenly_spaced_layers(12, 6) == [1, 3, 5, 7, 9, 11]
    for keep in (0, 4, 5):
        with pytest.raises(ConfigError, match="between 1 and 3 of the teacher's 4 layers"):
            evenly_spaced_layers(4, keep)


@pytest.fixture(scope="module")
def sentiment_teacher(tiny_checkpoint, tmp_path_factory):
    folder = tmp_path_factory.mktemp("teacher")
    train_file = write_csv(folder / "train.csv", sentiment_rows(512, seed=1))
    return train(tiny_config(tiny_checkpoint, train_file, folder / "run")).run_dir


def test_a_distilled_student_is_an_ordinary_run(sentiment_teacher, tmp_path, capsys):
    unlabelled = tmp_path / "more.txt"
    unlabelled.write_text("\n".join(text for text, _ in sentiment_rows(96, seed=9)) + "\n")
    student_dir = tmp_path / "student"
    assert cli(["distill", str(sentiment_teacher), "--student-layers", "1", "--unlabelled",
                str(unlabelled), "--output-dir", str(student_dir), "--epochs", "3",
                "--no-tensorboard"]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    record = json.loads((student_dir / "distillation.json").read_text())
    assert printed["student"] == record["student"]
    assert record["settings"]["student_layers"] == 1 and record["kind"] == "classes"
    assert record["student"]["layers"] == 1 and record["student"]["kept_teacher_layers"] == [2]
    assert record["teacher"]["layers"] == 2 and record["unlabelled_rows"] == 96
    assert record["student"]["parameters"] < record["teacher"]["parameters"]
    # the teacher scored on the student's validation rows: the run's own, here the same
    assert record["validation_examples"] == json.loads(
        (sentiment_teacher / "metrics.json").read_text())["examples"]
    teacher_accuracy = record["teacher"]["accuracy"]
    assert teacher_accuracy > 0.8  # the teacher learned something to pass on
    assert record["student"]["accuracy"] >= teacher_accuracy - 0.1
    run = TrainedRun(student_dir)
    assert run.model.backbone.num_layers == 1
    assert run.predict(["a wonderful film"])[0]["label"] in ("pos", "neg")
    assert run.task.state_dict() == TrainedRun(sentiment_teacher).task.state_dict()
    # (a student is a TextModel of fewer layers: the exports of the pruned model below cover
    # models whose layers were changed)


def test_distillation_refuses_students_that_cannot_learn_from_the_teacher(
        sentiment_teacher, tiny_checkpoint, tmp_path, capsys):
    def refused(*flags: str) -> str:
        assert cli(["distill", str(sentiment_teacher), "--output-dir",
                    str(tmp_path / "student"), *flags]) == 2
        return capsys.readouterr().err

    assert "between 1 and 1 of the teacher's 2 layers, not 2" in refused("--student-layers", "2")
    assert "--student-layers must be at least 1" in refused("--student-layers", "0")
    assert "name the student" in refused()
    assert "--alpha is the weight of the teacher's outputs" in refused(
        "--student-layers", "1", "--alpha", "1.5")
    assert "--temperature must be a number above 0, got inf" in refused(
        "--student-layers", "1", "--temperature", "inf")
    other = write_hf_checkpoint(tmp_path / "other-vocabulary", TINY_VOCAB + ["zebra"])
    assert "has another vocabulary than the teacher" in refused("--student", str(other))
    no_vocabulary = tmp_path / "no-vocabulary"
    no_vocabulary.mkdir()
    (no_vocabulary / "config.json").write_text('{"model_type": "llama"}')
    assert f"--student {no_vocabulary}: its tokenizer cannot be read as the teacher's" in (
        refused("--student", str(no_vocabulary)))
    wrong_column = write_csv(tmp_path / "more.csv", [("a fine film", "x")],
                             header=("review", "y"))
    assert ("column 'text' not found" in (message := refused(
        "--student-layers", "1", "--unlabelled", str(wrong_column)))
        and "--unlabelled is read as the teacher read its data (text columns 'text', UTF-8"
        in message and "or give a .txt file with one text a line" in message), message
    scores = write_csv(tmp_path / "scores.csv", [(f"text {i}", str(i)) for i in range(20)],
                       header=("text", "score"))
    assert cli(["preprocess", "--train", str(scores), "--output", str(tmp_path / "shards"),
                "--task", "regression", "--target-columns", "score", "--model",
                str(tiny_checkpoint), "--max-length", "16", "--no-progress"]) == 0
    capsys.readouterr()
    message = refused("--student-layers", "1", "--train", str(tmp_path / "shards"))
    assert "trains from files, not from shards" in message and "--task" not in message
    damaged = tmp_path / "damaged-teacher"
    shutil.copytree(sentiment_teacher, damaged)
    options = (damaged / "config.yaml").read_text()
    (damaged / "config.yaml").write_text(re.sub(r"(?m)^max_length: .*$", "max_length: banana",
                                                options))
    assert f"{damaged / 'config.yaml'}: max_length must be a whole number, got 'banana'" in (
        cli_error(["distill", str(damaged), "--student-layers", "1", "--output-dir",
                   str(tmp_path / "student")], capsys))
    assert not (tmp_path / "student").exists()  # each refused before any training began
    assert "is the teacher's run folder" in cli_error(
        ["distill", str(sentiment_teacher), "--student-layers", "1", "--output-dir",
         str(sentiment_teacher)], capsys)


def test_unlabelled_text_of_two_input_tasks_comes_in_columns(tmp_path):
    from tfsft.tasks import create_task
    from tfsft.training.distillation import read_unlabelled

    texts = tmp_path / "more.txt"
    texts.write_text("what was good ?\n")
    with pytest.raises(Exception, match="a question-answering teacher reads question and "
                                        "context for each example, which a .txt file"):
        read_unlabelled(create_task("question-answering"), str(texts))
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"question": "what was good ?", "context": "the acting was good"}\n')
    assert len(read_unlabelled(create_task("question-answering"), str(pairs))) == 1


def cli_error(argv: list[str], capsys) -> str:
    assert cli(argv) == 2
    return capsys.readouterr().err


def _ner_file(path):
    return write_conll(path, ner_sentences(96, seed=3))


def _qa_file(path):
    return write_jsonl(path, qa_rows(96, seed=2))


def _regression_file(path):
    return write_csv(path, regression_rows(96), header=("text", "score"))


def _multi_label_file(path):
    return write_csv(path, multi_label_rows(96), header=("text", "labels"))


# Slow: the soft loss of each kind is checked above, the per-token teacher outputs' batches below.
@pytest.mark.parametrize("task, write, options, kind", [
    pytest.param("token-classification", _ner_file, {}, "classes", marks=pytest.mark.slow),
    pytest.param("question-answering", _qa_file,
                 {"doc_stride": 4, "max_question_length": 6, "max_answer_length": 4},
                 "positions", marks=pytest.mark.slow),
    pytest.param("regression", _regression_file, {"target_columns": ["score"]}, "values",
                 marks=pytest.mark.slow),
    pytest.param("multi-label-classification", _multi_label_file, {"label_column": "labels"},
                 "labels", marks=pytest.mark.slow),
])
def test_every_task_with_logits_distils(task, write, options, kind, tmp_path):
    checkpoint = write_hf_checkpoint(tmp_path / "bert", TINY_VOCAB + ["anna", "bob", "carla",
                                                                      "dirk"])
    train_file = write(tmp_path / ("train.txt" if task == "token-classification"
                                   else "train.jsonl" if task == "question-answering"
                                   else "train.csv"))
    teacher = train(tiny_config(checkpoint, train_file, tmp_path / "teacher", task=task,
                                epochs=1, max_length=32, **options)).run_dir
    result = distill(DistillationSettings(teacher, student_layers=1),
                     {"output_dir": str(tmp_path / "student"), "epochs": 1})
    record = json.loads((result.run_dir / "distillation.json").read_text())
    headline = TrainedRun(teacher).task.evaluation.headline_metric
    assert record["kind"] == kind and record["student"]["layers"] == 1
    assert np.isfinite(record["student"][headline])
    assert TrainedRun(result.run_dir).model.backbone.num_layers == 1


@pytest.mark.parametrize("buckets", [None, (4, 8)])
def test_per_token_teacher_outputs_are_batched_with_their_tokens(buckets):
    from tfsft.data.pipeline import EncodedData, TokenAligned, make_dataset
    from tfsft.models.distiller import LABELLED_TARGET, TEACHER_TARGET
    from tfsft.training.distillation import with_teacher_outputs

    lengths = np.array([3, 5, 2], np.int32)
    ids = np.arange(1, 11, dtype=np.int32)
    encoded = EncodedData(ids, np.zeros_like(ids), lengths,
                          targets={"target": TokenAligned(ids % 3, pad_value=-1)})
    per_token = [np.stack([ids[a:b], -ids[a:b]], axis=1).astype(np.float32)
                 for a, b in ((0, 3), (3, 8), (8, 10))]
    encoded = with_teacher_outputs(encoded, per_token, np.array([1, 1, 0], np.float32))
    for features, y in make_dataset(encoded, batch_size=3, buckets=buckets):
        teacher = y[TEACHER_TARGET].numpy()
        tokens = features["token_ids"].numpy()
        assert teacher.shape == (*tokens.shape, 2)
        np.testing.assert_array_equal(teacher[..., 0], tokens)  # each token's own outputs
        np.testing.assert_array_equal(teacher[..., 1], -tokens)
        assert y[LABELLED_TARGET].numpy().tolist() == [0, 1, 1]  # rows sorted by length


def _silenced_model():
    """A tiny text model whose layer-0 head 1 and layer-1 neurons 0-7 contribute nothing (zero
    output weights), and the inputs to run it on."""
    backbone = keras_hub.models.BertBackbone(vocabulary_size=40, num_layers=2, num_heads=4,
                                             hidden_dim=16, intermediate_dim=32,
                                             max_sequence_length=16)
    model = TextClassifier(backbone, num_classes=3, pooling="mean", exact_gelu=True)
    attention = backbone.get_layer("transformer_layer_0")._self_attention_layer
    kernel, bias = attention._output_dense.get_weights()
    kernel[1] = 0.0
    attention._output_dense.set_weights([kernel, bias])
    down = backbone.get_layer("transformer_layer_1")._feedforward_output_dense
    kernel, bias = down.get_weights()
    kernel[:8] = 0.0
    down.set_weights([kernel, bias])
    rng = np.random.default_rng(0)
    features = {"token_ids": rng.integers(0, 40, (4, 12)).astype("int32"),
                "segment_ids": np.zeros((4, 12), "int32"),
                "padding_mask": (np.arange(12) < np.array([[12], [9], [5], [12]])).astype("int32")}
    return model, features, np.array([0, 1, 2, 1])


def test_units_that_contribute_nothing_have_no_importance_and_pruning_them_changes_nothing(
        tmp_path):
    import keras

    from exporters.bert_graph import token_id_function

    model, features, labels = _silenced_model()
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    scores = importance(model, [(features, labels)], lambda x, y, out: loss(y, out))
    assert scores["heads"][0, 1] == 0 and (scores["heads"][0] > 0).sum() == 3
    assert (scores["ffn"][1, :8] == 0).all() and (scores["ffn"][1, 8:] > 0).all()
    # 1 of 8 heads and 8 of 64 neurons: exactly the silent ones go
    pruned = pruned_copy(model, scores, heads=1 / 8, ffn=8 / 64)
    assert pruned.backbone.layer_heads == [3, 4]
    assert pruned.backbone.layer_intermediate_dims == [32, 24]
    assert pruned.count_params() < model.count_params()
    expected = model.predict(features, verbose=0)
    np.testing.assert_allclose(pruned.predict(features, verbose=0), expected, atol=1e-5)
    pruned.save(tmp_path / "pruned.keras")
    from tfsft.tasks import create_task

    loaded = create_task("text-classification").modeling.load(tmp_path / "pruned.keras")
    np.testing.assert_allclose(loaded.predict(features, verbose=0), expected, atol=1e-5)
    # the ONNX export's graph reads each layer's own heads
    graph = token_id_function(pruned)(features["token_ids"], features["padding_mask"],
                                      features["segment_ids"])
    np.testing.assert_allclose(np.asarray(graph["logits"]), expected, atol=1e-5)
    with pytest.raises(ConfigError, match="from 0 up to"):
        pruned_copy(model, scores, heads=1.0, ffn=0.0)


def test_a_pruned_run_is_smaller_exports_with_parity_and_refuses_the_hub_format(
        sentiment_teacher, tmp_path, capsys):
    pruned_dir = tmp_path / "pruned"
    assert cli(["prune", str(sentiment_teacher), "--heads", "0.5", "--ffn", "0.3",
                "--output-dir", str(pruned_dir), "--no-tensorboard"]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    record = json.loads((pruned_dir / "pruning.json").read_text())
    assert printed["pruned"] == record["pruned"]
    assert sum(record["pruned"]["layer_heads"]) == 2  # of 2 layers x 2 heads
    assert sum(record["pruned"]["layer_intermediate_dims"]) == 45  # 64 - round(0.3 x 64)
    assert record["pruned"]["recovery_epochs"] == 1
    assert record["student"]["parameters"] < record["teacher"]["parameters"]
    run = TrainedRun(pruned_dir)
    assert run.model.backbone.layer_heads == record["pruned"]["layer_heads"]
    assert run.predict(["a wonderful film"])[0]["label"] in ("pos", "neg")
    output = tmp_path / "exported"
    assert cli(["export", str(pruned_dir), "--format", "onnx,tflite", "--output",
                str(output)]) == 0
    assert json.loads((output / "export_report.json").read_text())["passed"]
    capsys.readouterr()
    assert cli(["export", str(pruned_dir), "--format", "hf", "--output",
                str(tmp_path / "hf")]) == 2
    assert "the model was pruned" in capsys.readouterr().err
    assert "no BERT backbone to prune" in cli_error(
        ["prune", str(pruned_dir), "--heads", "0.3", "--output-dir", str(tmp_path / "again")],
        capsys)
    for flags, message in ((["--heads", "1"], "from 0 up to (not including) 1; got 1.0"),
                           (["--ffn", "-0.1"], "--ffn is the share of units"),
                           ([], "remove nothing"),
                           (["--heads", "0.3", "--recovery-epochs", "0"],
                            "--recovery-epochs must be at least 1")):
        assert message in cli_error(["prune", str(sentiment_teacher), *flags, "--output-dir",
                                     str(tmp_path / "refused")], capsys)
    assert not (tmp_path / "refused").exists()
