"""tfsft export --format hf: a transformers folder per encoder task, verified through
transformers' own classes (TensorFlow; PyTorch where installed) to 1e-4."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from exporters import export
from tfsft.errors import ConfigError
from tfsft.tasks import create_task

from .conftest import (
    multi_label_rows,
    qa_rows,
    regression_rows,
    sentiment_rows,
    tiny_config,
    write_csv,
)
from .test_task_question_answering import squad_document
from .test_task_token_classification import ner_sentences, write_conll

pytest.importorskip("transformers")


def _train(tiny_checkpoint, tmp_path, train_file, **options):
    from tfsft.training.trainer import train

    return train(tiny_config(tiny_checkpoint, train_file, tmp_path / "run", epochs=1,
                             **options))


def _exported(run_dir, tmp_path) -> tuple[dict, dict]:
    report = export(run_dir, tmp_path / "model", formats=["hf"], max_examples=40)
    config = json.loads((tmp_path / "model" / "hf" / "config.json").read_text())
    return report, config


def _assert_parity(report: dict, variants=("tensorflow",)) -> None:
    assert report["passed"]
    artifacts = {a["variant"]: a for a in report["artifacts"] if a["artifact"] == "hf"}
    keras = next(a for a in report["artifacts"] if a["artifact"] == "keras")
    for variant in variants:
        assert artifacts[variant]["max_abs_diff"] <= 1e-4
        assert artifacts[variant]["quality"] == pytest.approx(keras["quality"], abs=1e-5)


def test_mean_pooled_classifier_ships_its_pooling_code(trained_run, tmp_path):
    report, config = _exported(trained_run.run_dir, tmp_path)
    _assert_parity(report, ("tensorflow", "text"))  # "text": the folder's own tokenizer
    folder = tmp_path / "model" / "hf"
    assert config["architectures"] == ["BertForSequenceClassificationWithPooling"]
    assert config["sequence_pooling"] == "mean" and config["problem_type"] == (
        "single_label_classification")
    labels = json.loads(
        (trained_run.run_dir / "task.json").read_text())["state"]["labels"]
    assert list(config["id2label"].values()) == labels
    assert {"modeling_bert_pooling.py", "modeling_tf_bert_pooling.py", "model.safetensors",
            "vocab.txt", "tokenizer_config.json"} <= {p.name for p in folder.iterdir()}
    card = (folder / "README.md").read_text()  # the model card, in the transformers folder too
    assert "library_name: transformers" in card and "pipeline_tag: text-classification" in card
    tensorflow = next(a for a in report["artifacts"] if a["variant"] == "tensorflow")
    assert tensorflow["trust_remote_code"] is True
    assert tensorflow["pytorch"] in ("checked", "not checked: PyTorch is not installed")


def test_pooled_classifier_is_a_standard_bert_class(tiny_checkpoint, tmp_path):
    from safetensors.numpy import load_file

    train_file = write_csv(tmp_path / "train.csv", sentiment_rows(64, seed=2))
    run = _train(tiny_checkpoint, tmp_path, train_file, pooling="pooled")
    report, config = _exported(run.run_dir, tmp_path)
    _assert_parity(report, ("tensorflow", "text"))
    folder = tmp_path / "model" / "hf"
    assert config["architectures"] == ["BertForSequenceClassification"]
    assert "auto_map" not in config and not list(folder.glob("*.py"))
    assert "bert.pooler.dense.weight" in load_file(str(folder / "model.safetensors"))


def test_regression_logits_are_in_the_targets_units(tiny_checkpoint, tmp_path):
    from safetensors.numpy import load_file

    train_file = write_csv(tmp_path / "train.csv", regression_rows(64, seed=2),
                           header=("text", "score"))
    run = _train(tiny_checkpoint, tmp_path, train_file, task="regression",
                 target_columns=["score"])
    report, config = _exported(run.run_dir, tmp_path)
    _assert_parity(report, ("tensorflow", "text"))
    assert config["problem_type"] == "regression" and config["id2label"] == {"0": "score"}
    weights = load_file(str(tmp_path / "model" / "hf" / "model.safetensors"))
    from tfsft.runs import TrainedRun

    trained = TrainedRun(run.run_dir)
    kernel = trained.model.get_layer("logits").get_weights()[0]
    std = trained.task.std[0]
    np.testing.assert_allclose(weights["classifier.weight"], kernel.T * std, rtol=1e-6)


def test_multi_label_token_and_question_answering_heads(tiny_checkpoint, tmp_path):
    cases = {
        "multi": (write_csv(tmp_path / "ml.csv", multi_label_rows(64, seed=3)),
                  {"task": "multi-label-classification"}, "multi_label_classification"),
        "ner": (write_conll(tmp_path / "ner.txt", ner_sentences(64, seed=3)),
                {"task": "token-classification", "max_length": 24}, None),
        "qa": (tmp_path / "qa.json", {"task": "question-answering", "max_length": 24,
                                      "doc_stride": 4, "max_question_length": 6}, None),
    }
    (tmp_path / "qa.json").write_text(json.dumps(squad_document(qa_rows(48, seed=3))))
    architectures = {}
    for name, (train_file, options, problem_type) in cases.items():
        folder = tmp_path / name
        folder.mkdir()
        run = _train(tiny_checkpoint, folder, train_file, **options)
        report, config = _exported(run.run_dir, folder)
        _assert_parity(report)
        architectures[name] = config["architectures"][0]
        assert config.get("problem_type") == problem_type
    assert architectures == {"multi": "BertForSequenceClassificationWithPooling",
                             "ner": "BertForTokenClassification",
                             "qa": "BertForQuestionAnswering"}


def test_sentence_embeddings_export_as_a_sentence_transformers_folder(tiny_checkpoint,
                                                                       tmp_path):
    rows = [(f"{text} please", text) for text, _ in sentiment_rows(64, seed=4)]
    train_file = write_csv(tmp_path / "pairs.csv", rows, header=("anchor", "positive"))
    run = _train(tiny_checkpoint, tmp_path, train_file, task="sentence-embedding",
                 batch_size=8)
    report, config = _exported(run.run_dir, tmp_path)
    _assert_parity(report, ("tensorflow", "text"))
    folder = tmp_path / "model" / "hf"
    modules = json.loads((folder / "modules.json").read_text())
    assert [m["type"].rsplit(".", 1)[1] for m in modules] == [
        "Transformer", "Pooling", "Dense", "Normalize"]
    assert config["architectures"] == ["BertModel"]
    pooling = json.loads((folder / "1_Pooling" / "config.json").read_text())
    assert pooling["pooling_mode_mean_tokens"] and not pooling["pooling_mode_cls_token"]
    assert "library_name: sentence-transformers" in (folder / "README.md").read_text()


def test_heads_without_a_transformers_class_are_refused():
    from exporters.huggingface import hub_head

    run = SimpleNamespace(task=create_task("sentence-embedding"),
                          model=SimpleNamespace(pooling="pooled"))
    with pytest.raises(ConfigError, match="sentence-transformers has no 'pooled' pooling"):
        hub_head(run)
