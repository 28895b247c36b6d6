"""WordPiece tokenization: packing, truncation, agreement with the checkpoint's own tokenizer."""

from __future__ import annotations

import csv

import pytest
import tensorflow as tf

from tfsft.errors import CheckpointError
from tfsft.tokenization import WordPieceTokenizer, unpad

from .conftest import TINY_VOCAB, requires_minilm, requires_shared_data


@pytest.fixture(scope="module")
def tokenizer():
    return WordPieceTokenizer(TINY_VOCAB)


def ids(tokenizer, word):
    return tokenizer.vocabulary.index(word)


def test_single_text_is_wrapped_and_truncated(tokenizer):
    cls, sep = tokenizer.cls_id, tokenizer.sep_id
    encoded = tokenizer.encode(["The FILM was good", "fun " * 20], max_length=6)
    rows = unpad(encoded)
    assert rows[0] == [cls, ids(tokenizer, "the"), ids(tokenizer, "film"), ids(tokenizer, "was"),
                       ids(tokenizer, "good"), sep]
    assert len(rows[1]) == 6 and rows[1][-1] == sep
    assert unpad(encoded, "segment_ids")[0] == [0] * 6


@pytest.mark.parametrize("len_a, len_b, keep_a, keep_b", [
    (2, 2, 2, 2),     # fits: untouched
    (10, 2, 6, 2),    # only the long text loses tokens
    (2, 10, 2, 6),
    (10, 10, 4, 4),   # both long: split evenly
    (10, 3, 5, 3),
])
def test_pairs_are_truncated_round_robin(tokenizer, len_a, len_b, keep_a, keep_b):
    encoded = tokenizer.encode([" ".join(["good"] * len_a)], [" ".join(["bad"] * len_b)],
                               max_length=11)
    segments = unpad(encoded, "segment_ids")[0]
    tokens = unpad(encoded)[0]
    assert tokens.count(ids(tokenizer, "good")) == keep_a
    assert tokens.count(ids(tokenizer, "bad")) == keep_b
    assert segments == [0] * (keep_a + 2) + [1] * (keep_b + 1)


def test_unknown_words_and_padding(tokenizer):
    encoded = tokenizer.encode(["good", "qqq$ film"])
    assert encoded["padding_mask"].numpy().tolist() == [[1, 1, 1, 0, 0, 0, 0], [1] * 7]
    assert tokenizer.unk_id in encoded["token_ids"].numpy()[1]


def test_encode_inside_tf_function(tokenizer):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def graph_encode(texts):
        return tokenizer.encode(texts, max_length=8)["token_ids"]

    eager = tokenizer.encode(["good film", "a"], max_length=8)["token_ids"]
    assert graph_encode(tf.constant(["good film", "a"])).numpy().tolist() == eager.numpy().tolist()


def test_save_and_reload(tokenizer, tmp_path):
    tokenizer.save(tmp_path)
    again = WordPieceTokenizer.from_pretrained(tmp_path)
    assert again.vocabulary == tokenizer.vocabulary and again.lowercase


def test_bad_vocabularies():
    with pytest.raises(CheckpointError, match="special tokens"):
        WordPieceTokenizer(["hello", "world"])
    with pytest.raises(CheckpointError, match="'good' twice"):
        WordPieceTokenizer(TINY_VOCAB + ["good"])


def sst2_dev_sentences() -> list[str]:
    path = requires_shared_data() / "sst2" / "dev.tsv"
    with open(path, newline="") as handle:
        return [row["content"] for row in csv.DictReader(handle, delimiter="\t",
                                                         quoting=csv.QUOTE_NONE)]


def test_ids_match_the_checkpoint_tokenizer_on_sst2_dev():
    """Same ids as the checkpoint's own tokenizer.json (Hugging Face tokenizers) on all of dev."""
    from tokenizers import Tokenizer

    folder = requires_minilm()
    sentences = sst2_dev_sentences()
    reference = Tokenizer.from_file(str(folder / "tokenizer.json"))
    reference.no_truncation()
    reference.no_padding()
    expected = [e.ids for e in reference.encode_batch(sentences)]
    ours = unpad(WordPieceTokenizer.from_pretrained(folder).encode(sentences))
    assert len(ours) == 872
    assert ours == expected


def test_pair_with_an_empty_second_text(tokenizer):
    encoded = tokenizer.encode(["good film"], [""], max_length=16)
    assert unpad(encoded) == [[tokenizer.cls_id, ids(tokenizer, "good"), ids(tokenizer, "film"),
                               tokenizer.sep_id, tokenizer.sep_id]]
    assert unpad(encoded, "segment_ids") == [[0, 0, 0, 0, 1]]
