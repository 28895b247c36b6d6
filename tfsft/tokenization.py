"""WordPiece tokenization that runs the same in training and inside exported graphs.

The tokenizer is built from TensorFlow ops only (tf-text ``FastBertTokenizer`` plus packing with
ragged ops), so the ids a model is trained on are the ids an exported SavedModel computes from raw
strings.

>>> tokenizer = WordPieceTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "hello", "world"])
>>> encoded = tokenizer.encode(["Hello world", "world"])
>>> encoded["token_ids"].numpy().tolist()
[[2, 4, 5, 3], [2, 5, 3, 0]]
>>> unpad(encoded)
[[2, 4, 5, 3], [2, 5, 3]]
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf
import tensorflow_text as tf_text

from tfsft.errors import CheckpointError
from tfsft.io_utils import read_json_file, split_lines

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]")
KERAS_HUB_VOCABULARY = "assets/tokenizer/vocabulary.txt"


class WordPieceTokenizer(tf.Module):
    """BERT WordPiece tokenizer: text (and optional second text) -> ragged token and segment ids.

    Args:
        vocabulary: the WordPiece vocabulary, one token per id.
        lowercase: lower-case, NFD-normalise and strip accents first (uncased checkpoints).
        max_length: default length limit, counting ``[CLS]`` and ``[SEP]``.
        normalization: :mod:`tfsft.text_normalization` steps applied to every text first (not
            with offsets: they would point into the normalized text).
    """

    def __init__(self, vocabulary: Sequence[str], lowercase: bool = True, max_length: int = 512,
                 normalization: Sequence[str] = ()):
        super().__init__(name="wordpiece_tokenizer")
        self.normalization = tuple(normalization)
        self.vocabulary = list(vocabulary)
        if len(set(self.vocabulary)) != len(self.vocabulary):
            seen: set[str] = set()
            twice = next(t for t in self.vocabulary if t in seen or seen.add(t))
            raise CheckpointError(f"the vocabulary lists the token {twice!r} twice")
        missing = [t for t in SPECIAL_TOKENS if t not in self.vocabulary]
        if missing:
            raise CheckpointError(f"the vocabulary lacks the special tokens {missing}")
        self.lowercase = bool(lowercase)
        self.max_length = int(max_length)
        index = {token: i for i, token in enumerate(self.vocabulary)}
        self.pad_id, self.unk_id = index["[PAD]"], index["[UNK]"]
        self.cls_id, self.sep_id = index["[CLS]"], index["[SEP]"]
        self._wordpiece = tf_text.FastBertTokenizer(
            vocab=self.vocabulary,
            token_out_type=tf.int32,
            unknown_token="[UNK]",
            lower_case_nfd_strip_accents=self.lowercase,
        )

    @property
    def vocabulary_size(self) -> int:
        return len(self.vocabulary)

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike, max_length: int = 512) -> WordPieceTokenizer:
        """Load from a checkpoint folder holding ``vocab.txt`` (or a WordPiece ``tokenizer.json``),
        or from a known model name such as ``minilm-l6``.

        Lower-casing follows ``tokenizer_config.json`` (``do_lower_case``) or ``tokenizer.json``.
        """
        from tfsft.models.checkpoints import resolve_checkpoint

        folder = Path(folder) if Path(folder).is_dir() else resolve_checkpoint(folder)
        vocab_file = folder / "vocab.txt"
        keras_hub_vocab = folder / KERAS_HUB_VOCABULARY
        tokenizer_json = folder / "tokenizer.json"
        if vocab_file.exists():
            vocabulary = split_lines(vocab_file.read_text(encoding="utf-8"))
        elif keras_hub_vocab.exists():
            vocabulary = split_lines(keras_hub_vocab.read_text(encoding="utf-8"))
        elif tokenizer_json.exists():
            vocabulary = _vocabulary_from_tokenizer_json(tokenizer_json)
        else:
            raise CheckpointError(
                f"{folder}: no vocab.txt or tokenizer.json; a WordPiece vocabulary is needed"
            )
        return cls(vocabulary, lowercase=_lowercase_setting(folder), max_length=max_length,
                   normalization=_normalization_setting(folder))

    def save(self, folder: str | os.PathLike) -> None:
        """Write ``vocab.txt`` and ``tokenizer_config.json`` (readable by ``from_pretrained``)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "vocab.txt").write_text("\n".join(self.vocabulary) + "\n", encoding="utf-8")
        config = {"do_lower_case": self.lowercase, "model_max_length": self.max_length,
                  "tokenizer_class": "BertTokenizer", **self.normalization_config()}
        (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")

    def normalization_config(self) -> dict[str, list[str]]:
        """The ``tokenizer_config.json`` entry naming the normalization (none: no entry)."""
        return {"tfsft_text_normalization": list(self.normalization)} if self.normalization \
            else {}

    def wordpieces(self, texts: tf.Tensor) -> tf.RaggedTensor:
        """Ids of the word pieces of each text, without special tokens: ``[batch, (pieces)]``."""
        if self.normalization:
            from tfsft.text_normalization import normalize_graph

            texts = normalize_graph(texts, self.normalization)
        return self._wordpiece.tokenize(texts)

    def wordpieces_with_offsets(
            self, texts: tf.Tensor) -> tuple[tf.RaggedTensor, tf.RaggedTensor, tf.RaggedTensor]:
        """Word-piece ids with the UTF-8 byte span of each piece in the original text
        (``starts``, ``ends`` exclusive): ``[batch, (pieces)]`` each, as in :meth:`wordpieces`.

        >>> tokenizer = WordPieceTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "he", "##llo"])
        >>> ids, starts, ends = tokenizer.wordpieces_with_offsets(tf.constant(["Héllo"]))
        >>> ids.to_list(), starts.to_list(), ends.to_list()
        ([[4, 5]], [[0, 3]], [[3, 6]])
        """
        if self.normalization:
            raise ValueError("offsets into normalized texts would not point into the texts; "
                             "span tasks take no text normalization")
        ids, starts, ends = self._wordpiece.tokenize_with_offsets(texts)
        return ids, tf.cast(starts, tf.int32), tf.cast(ends, tf.int32)

    @property
    def continuation_ids(self) -> np.ndarray:
        """Boolean per id: the piece continues a word (``##...``)."""
        return np.array([token.startswith("##") for token in self.vocabulary])

    def encode(
        self,
        texts: tf.Tensor | Sequence[str],
        text_pairs: tf.Tensor | Sequence[str] | None = None,
        max_length: int | None = None,
    ) -> dict[str, tf.Tensor]:
        """Tokenize and pack ``[CLS] a [SEP] (b [SEP])``, truncated to ``max_length``.

        Pairs are truncated round-robin: the longer text loses tokens first. Returns int32
        ``token_ids``, ``segment_ids`` and ``padding_mask`` of shape ``[batch, longest row]``.

        Packing uses plain tensor ops (gather, where), no ragged ops, so the same function runs
        eagerly, in ``tf.function``, in SavedModels and in TFLite with the tf-text custom ops.
        """
        max_length = int(max_length or self.max_length)
        first = self.wordpieces(tf.convert_to_tensor(texts, tf.string))
        len_a = tf.cast(first.row_lengths(), tf.int32)
        if text_pairs is None:
            keep_a = tf.minimum(len_a, max_length - 2)
            keep_b = tf.zeros_like(keep_a)
            second = None
        else:
            second = self.wordpieces(tf.convert_to_tensor(text_pairs, tf.string))
            keep_a, keep_b = _round_robin(len_a, tf.cast(second.row_lengths(), tf.int32),
                                          max_length - 3)
        pair_tokens = 0 if second is None else 1
        total = keep_a + 2 + tf.where(keep_b > 0, keep_b + 1, pair_tokens)
        width = tf.reduce_max(total)
        position = tf.range(width)[tf.newaxis, :] + tf.zeros_like(keep_a)[:, tf.newaxis]
        ka, kb = keep_a[:, tf.newaxis], keep_b[:, tf.newaxis]
        token_ids = tf.where(position == 0, self.cls_id, self.pad_id)
        token_ids = tf.where((position >= 1) & (position <= ka),
                             self._take(first, position - 1, max_length), token_ids)
        token_ids = tf.where(position == ka + 1, self.sep_id, token_ids)
        segment_ids = tf.zeros_like(token_ids)
        if second is not None:
            in_b = (position >= ka + 2) & (position < ka + 2 + kb)
            token_ids = tf.where(in_b, self._take(second, position - ka - 2, max_length),
                                 token_ids)
            token_ids = tf.where(position == ka + kb + 2, self.sep_id, token_ids)
            segment_ids = tf.cast((position >= ka + 2) & (position <= ka + kb + 2), tf.int32)
        padding_mask = tf.cast(position < total[:, tf.newaxis], tf.int32)
        return {"token_ids": token_ids, "segment_ids": segment_ids * padding_mask,
                "padding_mask": padding_mask}

    def _take(self, pieces: tf.RaggedTensor, index: tf.Tensor, max_length: int) -> tf.Tensor:
        """``pieces[row, index[row, j]]`` (indices clipped into range; callers mask the rest)."""
        dense = pieces.to_tensor(default_value=self.pad_id, shape=[None, max_length])
        return tf.gather(dense, tf.clip_by_value(index, 0, max_length - 1), batch_dims=1)


def unpad(encoded: dict[str, tf.Tensor], key: str = "token_ids") -> list[list[int]]:
    """Rows of ``encoded[key]`` without padding, as lists (for inspection and tests)."""
    values = np.asarray(encoded[key])
    mask = np.asarray(encoded["padding_mask"]).astype(bool)
    return [row[keep].tolist() for row, keep in zip(values, mask, strict=True)]


def _round_robin(len_a: tf.Tensor, len_b: tf.Tensor, budget: int) -> tuple[tf.Tensor, tf.Tensor]:
    """Tokens kept of each text when two texts share ``budget`` tokens, taken alternately."""
    half = (budget + 1) // 2
    keep_a = tf.minimum(len_a, tf.maximum(half, budget - len_b))
    keep_b = tf.minimum(len_b, budget - keep_a)
    return keep_a, keep_b


def _lowercase_setting(folder: Path) -> bool:
    config_file = folder / "tokenizer_config.json"
    if config_file.exists():
        config = read_json_file(config_file, "tokenizer config")
        if "do_lower_case" in config:
            return bool(config["do_lower_case"])
    tokenizer_json = folder / "tokenizer.json"
    if tokenizer_json.exists():
        saved = read_json_file(tokenizer_json, "tokenizer file")
        # Hugging Face tokenizer.json: normalizer.lowercase; keras-hub preset: config.lowercase.
        for section in (saved.get("normalizer") or {}, saved.get("config") or {}):
            if "lowercase" in section:
                return bool(section["lowercase"])
    return True  # BertTokenizer's default


def _normalization_setting(folder: Path) -> tuple[str, ...]:
    """The text normalization a saved tfsft tokenizer names (none for other checkpoints)."""
    from tfsft.text_normalization import parse_steps

    config_file = folder / "tokenizer_config.json"
    if not config_file.exists():
        return ()
    steps = read_json_file(config_file, "tokenizer config").get("tfsft_text_normalization")
    return parse_steps(steps) if steps else ()


def _vocabulary_from_tokenizer_json(path: Path) -> list[str]:
    model = read_json_file(path, "tokenizer file").get("model", {})
    if model.get("type") != "WordPiece":
        raise CheckpointError(f"{path}: the tokenizer is {model.get('type')!r}, not WordPiece")
    vocab = model["vocab"]
    return [token for token, _ in sorted(vocab.items(), key=lambda item: item[1])]


def byte_to_char(text: str) -> np.ndarray:
    """Character index of every UTF-8 byte offset of ``text`` (one more entry: the end)."""
    if text.isascii():
        return np.arange(len(text) + 1, dtype=np.int32)
    sizes = [len(c.encode("utf-8")) for c in text]
    return np.append(np.repeat(np.arange(len(text), dtype=np.int32), sizes),
                     np.int32(len(text)))
