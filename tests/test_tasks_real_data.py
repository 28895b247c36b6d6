"""Acceptance recipes of the multi-label and regression tasks on real weights and data (slow)."""

from __future__ import annotations

import importlib.util

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
