"""``--augment``: seeded EDA copies of training examples only, entity words untouched in NER,
every generated example listed; tasks whose labels would not survive are refused."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tfsft.data.augmentation import Augmenter, WordNeighbours, parse_methods
from tfsft.errors import ConfigError
from tfsft.tasks import create_task

from .conftest import sentiment_rows, tiny_config, write_csv

VOCABULARY = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "great", "fine", "movie", "film", "the"]
VECTORS = np.array([[0, 0], [0, 0], [0, 0], [0, 0], [1, 0.1], [1, 0], [0, 1], [0.1, 1], [1, 1]])


def test_each_method_edits_and_frozen_words_stay():
    augmenter = Augmenter(parse_methods("all"), WordNeighbours(VOCABULARY, VECTORS), alpha=0.5)
    words = ["the", "great", "movie", "of", "Paris", "Hilton", "today"]
    frozen = {4, 5}
    rng = np.random.default_rng(0)
    made = augmenter.copies(words, 40, rng, frozen)
    assert {method for method, _, _ in made} == {"synonym", "insert", "swap", "delete"}
    for method, edited, origin in made:
        kept = [edited[j] for j, o in enumerate(origin) if o in frozen]
        assert kept == ["Paris", "Hilton"], (method, edited)  # in order, and adjacent:
        first = next(j for j, o in enumerate(origin) if o == 4)
        assert origin[first + 1] == 5, (method, edited)
        assert len(edited) == len(origin)
    assert WordNeighbours(VOCABULARY, VECTORS).of("the") == []  # a stop word has none
    with pytest.raises(ConfigError, match="unknown augmentation method\\(s\\) synonyms"):
        parse_methods("synonyms,swap")


def test_ner_copies_keep_their_tags_aligned():
    task = create_task("token-classification")
    examples = task.data.read_tokens([["Peter", "Blackburn", "visited", "the", "old", "city"]],
                                     [["B-PER", "I-PER", "O", "O", "O", "O"]])
    augmenter = Augmenter(("swap", "delete"), alpha=0.5)
    grown, records = task.data.augment(examples, augmenter, 6, np.random.default_rng(1))
    assert len(grown) == 1 + len(records) and records
    for index in range(1, len(grown)):
        entity = [(grown.texts[index][s:e], t) for s, e, t in grown.entities(index)]
        assert entity == [("Peter Blackburn", "PER")]
        assert grown.locations[index].startswith("sentence 1 (augmented: ")


def test_regression_and_pairs_are_refused():
    import pandas as pd

    regression = create_task("regression", {"target_columns": ["score"]})
    data = regression.data.read(pd.DataFrame({"text": ["a b", "c d"], "score": [1.0, 2.0]}))
    with pytest.raises(ConfigError, match="no augmentation method applies"):
        regression.data.augment(data, Augmenter(("swap",)), 2, np.random.default_rng(0))
    pairs = create_task("text-classification", {"text_pair_column": "b"})
    data = pairs.data.read(pd.DataFrame({"text": ["a b", "c d"], "b": ["x", "y"],
                                         "label": [0, 1]}))
    with pytest.raises(ConfigError, match="for text pairs"):
        pairs.data.augment(data, Augmenter(("swap",)), 2, np.random.default_rng(0))


def test_training_with_augment_lists_its_copies_and_keeps_validation_clean(tiny_checkpoint,
                                                                            tmp_path):
    from tfsft.training.trainer import train

    train_file = write_csv(tmp_path / "train.csv", sentiment_rows(100, seed=2))
    config = tiny_config(tiny_checkpoint, train_file, tmp_path / "run", epochs=1, augment=2,
                         augment_methods="swap,delete,synonym")
    result = train(config)
    records = [json.loads(line) for line in
               (result.run_dir / "augmented.jsonl").read_text().splitlines()]
    assert 100 < len(records) <= 2 * 90  # 90 training rows after the 10 % validation split
    assert {r["method"] for r in records} <= {"swap", "delete", "synonym"}
    assert all(r["source"].startswith("line ") and r["label"] in ("pos", "neg")
               for r in records)
    heldout = (result.run_dir / "heldout.jsonl").read_text().splitlines()
    assert len(heldout) == 10  # the validation rows, none augmented
    assert result.summary["train_examples"] == 90 + len(records)
