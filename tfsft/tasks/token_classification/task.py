"""``token-classification`` (NER): a tag per word, entity spans with character offsets out.

Data: CoNLL column files, character-per-line Chinese data, JSONL token/tag lists or texts with
character spans, Hugging Face datasets with ``tokens`` / ``ner_tags`` (see
:mod:`tfsft.tasks.token_classification.examples`). Tags in IO, BIO, BIOES/BIOUL or BMES, detected or set with
``tag_scheme``, and validated.

How words meet word pieces. The text is tokenized whole, with the character span of every
word piece. A *unit* is a piece that does not continue a word (``##...``): the words of BERT's
own pre-tokenization (``U.S.`` is the units ``u . s .``). Each unit takes the tag its position
in the gold entities gives it (the scheme re-applied at unit level, so ``B-LOC`` on ``U.S.``
becomes ``B-LOC I-LOC I-LOC I-LOC``); continuation pieces are ignored by the loss
(``label_all_subtokens`` gives them their unit's tag). The same units exist in any raw text, so
``predict`` and the SavedModel decode entities from the units' tags and return character
offsets into the input string. Metrics are computed on the data's own words with ``seqeval``
(BIO: each word takes its first unit's tag; schemes with end tags: entities mapped onto words).

Sentences longer than ``max_length`` pieces are cut into overlapping windows (``stride``
pieces shared); each piece's prediction comes from the window where it is farthest from an
edge. Nothing is truncated in training, evaluation or ``predict``; the exported models see at
most ``max_length`` tokens per text (their ``truncated`` output says when a text was cut).

>>> task = create_task("token-classification")
>>> data = task.read_tokens([["EU", "rejects", "German", "call"]],
...                         [["B-ORG", "O", "B-MISC", "O"]])
>>> task.labels, task.scheme
(['O', 'B-MISC', 'I-MISC', 'B-ORG', 'I-ORG'], 'BIO')
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tfsft.data.examples import split_examples
from tfsft.errors import ConfigError, DataError
from tfsft.tasks.base import OutputCheck, Task, TaskOptions, create_task, option, register_task
from tfsft.tasks.token_classification import tags as tag_schemes
from tfsft.tasks.token_classification.examples import (
    TokenExamples,
    read_token_data,
    sentences_from_tokens,
    words_of,
)
from tfsft.tasks.token_classification.metrics import CONFUSION_FILE, ERRORS_FILE, REPORT_FILE

if TYPE_CHECKING:  # pragma: no cover
    import keras
    import tensorflow as tf

    from tfsft.data.pipeline import EncodedData
    from tfsft.data.readers import Table
    from tfsft.tokenization import WordPieceTokenizer

__all__ = ["TokenClassificationOptions", "TokenClassificationTask", "create_task"]

logger = logging.getLogger(__name__)
IGNORED_TARGET = -1  # target of pieces the loss skips ([CLS], [SEP], continuation pieces)


@dataclass
class TokenClassificationOptions(TaskOptions):
    tokens_column: str = option("tokens", help="column holding each sentence's token list",
                                read=True)
    tags_column: str | None = option(None, help="column holding the tag lists (default: tags, "
                                                "else ner_tags)", read=True)
    text_column: str = option("text", help="column holding the text, for character-span data",
                              read=True)
    entities_column: str = option("entities", help="column holding the character spans "
                                  '([{"start", "end", "label"}])', read=True)
    tag_column: int | None = option(None, help="CoNLL files: the column of the tag (0 is the "
                                               "token; default: the last column holding tags)",
                                    read=True)
    tag_names: list[str] = option([], help="tag names in id order, for numeric tags, space- or "
                                           "comma-separated (Hugging Face datasets name them "
                                           "themselves)", read=True)
    tag_scheme: str = option("auto", choices=("auto", *tag_schemes.SCHEMES),
                             help="tag scheme of the data (auto: detected; character-span "
                                  "data: BIO)")
    repair_tags: bool = option(False, help="turn invalid tags (I-X after O) into valid ones "
                                           "instead of stopping; the count is reported")
    token_separator: str | None = option(None, help="joins tokens into the text (default: a "
                                         "space; none for character-per-line CJK data)")
    label_all_subtokens: bool = option(False, help="train on every word piece, not only each "
                                                   "word's first")
    stride: int | None = option(None, help="word pieces shared by consecutive windows of a "
                                           "sentence longer than max_length (default 32, or a "
                                           "quarter of max_length - 2 if that is less)")

    def validate(self) -> None:
        if self.stride is not None and self.stride < 0:
            raise ConfigError("stride must be >= 0")
        if any("," in name for name in self.tag_names):  # --tag-names O,B-PER,I-PER
            self.tag_names = [n.strip() for name in self.tag_names for n in name.split(",")
                              if n.strip()]


@dataclass
class Pieces:
    """The word pieces of one text: character span of each and whether it starts a unit."""

    starts: np.ndarray  # int32 character offsets
    ends: np.ndarray  # int32, exclusive
    unit_start: np.ndarray  # bool

    def unit_spans(self) -> tuple[np.ndarray, np.ndarray]:
        """Character start and end of every unit (a unit ends where its last piece ends)."""
        index = np.flatnonzero(self.unit_start)
        last = np.append(index[1:] - 1, len(self.starts) - 1).astype(np.int64)
        return self.starts[index], self.ends[last] if len(index) else self.ends[:0]


@dataclass
class TokenOutputs:
    """Per-token model outputs of whole sentences (windows merged), with their pieces."""

    texts: list[str]
    logits: list[np.ndarray]  # one [pieces, tags] array per sentence
    pieces: list[Pieces]

    def __len__(self) -> int:
        return len(self.texts)


def text_pieces(tokenizer: WordPieceTokenizer, texts: Sequence[str],
                chunk: int = 4096) -> tuple[list[np.ndarray], list[Pieces]]:
    """Word-piece ids and :class:`Pieces` of every text (tokenized whole, in chunks)."""
    import tensorflow as tf

    from tfsft.tokenization import byte_to_char

    continuation = tokenizer.continuation_ids
    all_ids, all_pieces = [], []
    for begin in range(0, len(texts), chunk):
        part = list(texts[begin:begin + chunk])
        ids, starts, ends = tokenizer.wordpieces_with_offsets(tf.constant(part))
        splits = ids.row_splits.numpy()
        flat_ids, flat_starts, flat_ends = (ids.values.numpy(), starts.values.numpy(),
                                            ends.values.numpy())
        for i, text in enumerate(part):
            a, b = splits[i], splits[i + 1]
            chars = byte_to_char(text)
            row_ids = flat_ids[a:b].astype(np.int32)
            unit_start = ~continuation[row_ids]
            unit_start[:1] = True  # a text's first piece starts a unit
            all_ids.append(row_ids)
            all_pieces.append(Pieces(chars[flat_starts[a:b]], chars[flat_ends[a:b]], unit_start))
    return all_ids, all_pieces


def windows(count: int, width: int, stride: int) -> list[int]:
    """Start of each window of ``width`` pieces over ``count`` pieces, ``stride`` shared.

    >>> windows(5, 8, 2), windows(10, 4, 1)
    ([0], [0, 3, 6])
    """
    if count <= width:
        return [0]
    step = width - stride
    starts = list(range(0, count - width, step))
    return [*starts, count - width]


@register_task
class TokenClassificationTask(Task):
    name = "token-classification"
    Options = TokenClassificationOptions
    metric_directions = {"loss": False, "token_accuracy": True}
    headline_metric = "f1"
    report_files = ("metrics.json", REPORT_FILE, CONFUSION_FILE, ERRORS_FILE)
    long_example_treatment = "split into overlapping windows (--stride)"

    def __init__(self, options: TokenClassificationOptions):
        super().__init__(options)
        self.labels: list[str] = []
        self.scheme: str = "BIO" if options.tag_scheme == "auto" else options.tag_scheme
        self.label_index: dict[str, int] = {}
        self.last_encoding: dict[str, int] = {}

    # -- state ------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"labels": list(self.labels), "scheme": self.scheme}

    def load_state(self, state: dict[str, Any]) -> None:
        self.labels = list(state.get("labels", []))
        self.scheme = state.get("scheme", self.scheme)
        self.label_index = {label: i for i, label in enumerate(self.labels)}

    def labels_for_sidecar(self) -> list[str]:
        return list(self.labels)

    @property
    def types(self) -> list[str]:
        return tag_schemes.entity_types(self.labels)

    # -- data -------------------------------------------------------------------------------
    def _scheme_option(self) -> str | None:
        return None if self.options.tag_scheme == "auto" else self.options.tag_scheme

    def read(self, source: Any, role: str = "train", labelled: bool = True,
             max_rows: int | None = None, file_format: str | None = None,
             encoding: str = "utf-8", delimiter: str | None = None, quoting: bool = True) -> TokenExamples:
        options = self.options
        scheme = self._scheme_option() or (self.scheme if role != "train" and self.labels
                                           else None)
        data = read_token_data(
            source, tokens_column=options.tokens_column, tags_column=options.tags_column,
            text_column=options.text_column, entities_column=options.entities_column,
            tag_column=options.tag_column, tag_names=options.tag_names or None,
            separator=options.token_separator, scheme=scheme, repair=options.repair_tags,
            labelled=labelled, max_rows=max_rows, file_format=file_format, encoding=encoding,
            delimiter=delimiter, quoting=quoting)
        return self._learn(data, role if labelled else "unlabelled")

    def learn_chunk(self, chunk: Table) -> dict[str, Any]:
        options = self.options
        data = read_token_data(
            chunk, tokens_column=options.tokens_column, tags_column=options.tags_column,
            text_column=options.text_column, entities_column=options.entities_column,
            tag_names=options.tag_names or None, separator=options.token_separator,
            scheme=self._scheme_option(), repair=options.repair_tags)
        tags = {t for sentence in data.tags for t in sentence}
        return {"prefixes": sorted({tag_schemes.split_tag(t)[0] for t in tags}),
                "types": tag_schemes.entity_types(tags)}

    def refuse_chunked_file(self, path: Path, file_format: str | None) -> None:
        from tfsft.tasks.token_classification.examples import is_conll_file

        if is_conll_file(path, file_format):
            raise DataError(str(path), None, "a CoNLL file cannot be preprocessed in chunks",
                            "write it as JSONL with tokens and tags columns, or train from the "
                            "file itself (tfsft train --train FILE)")

    def merge_chunks(self, summaries: Sequence[dict[str, Any]], source: str) -> None:
        prefixes = {p for summary in summaries for p in summary["prefixes"]}
        types = sorted({kind for summary in summaries for kind in summary["types"]})
        if not types:
            raise DataError(source, None, "no entity tags, only O",
                            "tag some entities (B-PER, I-PER, ...) in the training data")
        try:
            self.scheme = self._scheme_option() or tag_schemes.detect_scheme(
                f"{prefix}-X" for prefix in prefixes)
        except ValueError as exc:
            raise DataError(source, None, str(exc), "name the scheme with --tag-scheme") from exc
        self.labels = tag_schemes.label_set(types, self.scheme)
        self.label_index = {label: i for i, label in enumerate(self.labels)}

    def read_tokens(self, tokens: list[list[str]], tags: list[list[str]] | None = None,
                    role: str = "train") -> TokenExamples:
        """Sentences from in-memory token lists (and tag lists)."""
        data = sentences_from_tokens(tokens, tags, "tokens", None, self.options.token_separator,
                                     self._scheme_option() or (None if role == "train"
                                                               else self.scheme),
                                     self.options.repair_tags)
        return self._learn(data, role if tags is not None else "unlabelled")

    def _learn(self, data: TokenExamples, role: str) -> TokenExamples:
        if data.repaired:
            logger.warning("%s: %d tags repaired (--repair-tags)", data.source, data.repaired)
        if role == "unlabelled" or data.tags is None:
            return data
        if role == "train":
            self.scheme = data.scheme
            types = tag_schemes.entity_types(t for sentence in data.tags for t in sentence)
            if not types:
                raise DataError(data.source, None, "no entity tags, only O",
                                "tag some entities (B-PER, I-PER, ...) in the training data")
            self.labels = tag_schemes.label_set(types, self.scheme)
            self.label_index = {label: i for i, label in enumerate(self.labels)}
            return data
        if data.scheme != self.scheme:
            data = self._convert_scheme(data)
        unknown = sorted({t for s in data.tags for t in s} - set(self.labels))
        if unknown:
            known_types = set(self.types)
            bad = [t for t in unknown if tag_schemes.split_tag(t)[1] not in known_types]
            if bad:
                raise DataError(data.source, None, f"entity types {bad} were not in the "
                                f"training data (types: {', '.join(self.types)})",
                                "map them to a known type or to O")
        return data

    def _convert_scheme(self, data: TokenExamples) -> TokenExamples:
        """Data in another tag scheme than the model's, re-tagged in the model's scheme."""
        tags = [tag_schemes.tags_from_spans(len(s), tag_schemes.spans(s, data.scheme),
                                            self.scheme) for s in data.tags]
        data.tags, data.scheme = tags, self.scheme
        return data

    def target_summary(self, examples: TokenExamples) -> dict[str, Any] | None:
        from tfsft.data.checks import class_counts

        if examples.tags is None:
            return None
        entities = Counter(kind for sentence in examples.tags
                           for _, _, kind in tag_schemes.spans(sentence, examples.scheme))
        names = sorted(entities)
        summary = class_counts(names, [entities[n] for n in names], kind="entities")
        summary["sentences_without_entities"] = sum(
            not any(t != "O" for t in sentence) for sentence in examples.tags)
        return summary

    def split(self, examples: TokenExamples, fraction: float,
              seed: int) -> tuple[TokenExamples, TokenExamples]:
        return split_examples(examples, fraction, seed)

    def example_records(self, examples: TokenExamples) -> list[dict[str, Any]]:
        records = []
        for i in range(len(examples)):
            record: dict[str, Any] = {"tokens": examples.word_tokens(i)}
            if examples.tags is not None:
                record["tags"] = examples.tags[i]
            records.append(record)
        return records

    def record_options(self) -> dict[str, Any]:
        return {"tokens_column": "tokens", "tags_column": "tags"}

    def read_records(self, path: Path) -> TokenExamples:
        records = [json.loads(line) for line in Path(path).read_text("utf-8").splitlines()
                   if line.strip()]
        tags = [r["tags"] for r in records] if records and "tags" in records[0] else None
        data = sentences_from_tokens([r["tokens"] for r in records], tags, str(path),
                                     [f"line {i}" for i in range(1, len(records) + 1)],
                                     self.options.token_separator, self.scheme)
        return self._learn(data, "eval" if tags is not None else "unlabelled")

    def texts(self, examples: TokenExamples) -> dict[str, list[str]]:
        return {"text": list(examples.texts)}

    def examples_from_texts(self, texts: dict[str, Sequence[str]]) -> TokenExamples:
        if set(texts) - {"text"}:
            raise ConfigError("token classification takes single texts, not pairs")
        values = list(texts["text"])
        return TokenExamples(values, [words_of(t) for t in values], None, self.scheme, "texts")

    # -- encoding ---------------------------------------------------------------------------
    def unit_tags(self, examples: TokenExamples, index: int, pieces: Pieces) -> tuple[
            list[str], int, int]:
        """Gold tags of the units of sentence ``index``; also entities with no unit and
        entities whose edge falls inside a unit (both counted, for the warning)."""
        unit_starts, _ = pieces.unit_spans()
        unit_spans, lost, inside = [], 0, 0
        for start, end, kind in examples.entities(index):
            first = int(np.searchsorted(unit_starts, start, side="left"))
            last = int(np.searchsorted(unit_starts, end, side="left"))
            if first >= last:
                lost += 1
                continue
            if unit_starts[first] != start:
                inside += 1
            unit_spans.append((first, last, kind))
        return tag_schemes.tags_from_spans(len(unit_starts), unit_spans, self.scheme), lost, \
            inside

    def encode(self, tokenizer: WordPieceTokenizer, examples: TokenExamples, max_length: int,
               training: bool = False) -> EncodedData:
        from tfsft.data.pipeline import TokenAligned
        from tfsft.tasks.token_classification.encoding import TokenEncodedData

        width = max_length - 2
        stride = min(32, width // 4) if self.options.stride is None else self.options.stride
        if stride >= width:
            raise ConfigError(f"--stride {stride} must be smaller than max_length - 2 ({width})")
        ids, pieces = text_pieces(tokenizer, examples.texts)
        labelled = examples.tags is not None
        rows_ids, rows_targets, lengths, sentence_of, start_of = [], [], [], [], []
        lost = inside = windowed = empty = 0
        for i, (row_ids, row_pieces) in enumerate(zip(ids, pieces, strict=True)):
            if labelled:
                tags, row_lost, row_inside = self.unit_tags(examples, i, row_pieces)
                lost, inside = lost + row_lost, inside + row_inside
                unit_ids = np.array([self.label_index[t] for t in tags], np.int32)
                targets = np.full(len(row_ids), IGNORED_TARGET, np.int32)
                unit_of_piece = np.cumsum(row_pieces.unit_start) - 1
                if self.options.label_all_subtokens:
                    valid = unit_of_piece >= 0
                    targets[valid] = unit_ids[unit_of_piece[valid]]
                else:
                    targets[row_pieces.unit_start] = unit_ids
            if len(row_ids) == 0:
                empty += 1
            starts = windows(len(row_ids), width, stride)
            windowed += len(starts) > 1
            for start in starts:
                piece_ids = row_ids[start:start + width]
                rows_ids.append(np.concatenate([[tokenizer.cls_id], piece_ids,
                                                [tokenizer.sep_id]]).astype(np.int32))
                if labelled:
                    rows_targets.append(np.concatenate(
                        [[IGNORED_TARGET], targets[start:start + width], [IGNORED_TARGET]]))
                lengths.append(len(piece_ids) + 2)
                sentence_of.append(i)
                start_of.append(start)
        self.last_encoding = {"sentences": len(examples), "windows": len(lengths),
                              "windowed_sentences": windowed, "entities_without_tokens": lost,
                              "entity_edges_inside_a_token": inside,
                              "sentences_without_tokens": empty}
        if windowed:
            logger.info("%s: %d of %d sentences are longer than %d word pieces and were cut "
                        "into %d overlapping windows", examples.source, windowed, len(examples),
                        width, len(lengths) - len(examples) + windowed)
        if lost or inside:
            logger.warning("%s: %d entities cover no word piece and %d start or end inside a "
                           "word piece (tokenizer and data disagree on word boundaries)",
                           examples.source, lost, inside)
        flat = np.concatenate(rows_ids) if rows_ids else np.zeros(0, np.int32)
        encoded = TokenEncodedData(
            token_ids=flat, segment_ids=np.zeros_like(flat),
            lengths=np.array(lengths, np.int32), texts=list(examples.texts), pieces=pieces,
            row_sentence=np.array(sentence_of, np.int64), row_start=np.array(start_of, np.int64))
        if labelled:
            encoded.targets = {"target": TokenAligned(np.concatenate(rows_targets),
                                                      pad_value=IGNORED_TARGET)}
        return encoded

    def encoding_notes(self) -> dict[str, Any]:
        return dict(self.last_encoding)

    # -- model ------------------------------------------------------------------------------
    def build_model(self, checkpoint: Path, dropout: float, dtype: str | None) -> keras.Model:
        from tfsft.models.text_model import TextModel

        return TextModel.from_pretrained(checkpoint, num_outputs=len(self.labels),
                                         pooling="tokens", dropout=dropout, dtype=dtype)

    def compile(self, model: keras.Model, optimizer: Any) -> None:
        import keras

        from tfsft.models.metrics import MaskedTokenAccuracy

        model.compile(optimizer=optimizer,
                      loss=keras.losses.SparseCategoricalCrossentropy(
                          from_logits=True, ignore_class=IGNORED_TARGET),
                      metrics=[MaskedTokenAccuracy(ignore_class=IGNORED_TARGET)])

    def outputs_from_logits(self, logits: list[np.ndarray], encoded: EncodedData) -> TokenOutputs:
        """Per-piece logits of each sentence, from its windows' rows: each piece takes the
        logits of the window where it lies farthest from an edge."""
        rows = logits
        merged = [np.zeros((len(p.starts), len(self.labels)), np.float32)
                  for p in encoded.pieces]
        best = [np.full(len(p.starts), -1, np.int64) for p in encoded.pieces]
        for row, sentence, start in zip(rows, encoded.row_sentence, encoded.row_start,
                                        strict=True):
            inner = row[1:-1]  # without [CLS] and [SEP]
            count = len(inner)
            if not count:
                continue
            position = np.arange(count)
            margin = np.minimum(position, count - 1 - position)
            target = slice(start, start + count)
            better = margin > best[sentence][target]
            merged[sentence][target][better] = inner[better]
            best[sentence][target][better] = margin[better]
        return TokenOutputs(list(encoded.texts), merged, list(encoded.pieces))

    # -- decoding, metrics, predictions -----------------------------------------------------
    def decode(self, logits: np.ndarray, pieces: Pieces,
               text: str) -> list[dict[str, Any]]:
        """Entities of one text from its per-piece logits."""
        from scipy.special import softmax  # not at --help time

        units = np.flatnonzero(pieces.unit_start)
        if not len(units):
            return []
        probabilities = softmax(logits[units], axis=-1)
        tag_ids = probabilities.argmax(-1)
        tags = [self.labels[i] for i in tag_ids]
        starts, ends = pieces.unit_spans()
        entities = []
        for first, last, kind in tag_schemes.spans(tags, self.scheme):
            start, end = int(starts[first]), int(ends[last - 1])
            score = float(probabilities[np.arange(first, last), tag_ids[first:last]].mean())
            entities.append({"text": text[start:end], "type": kind, "start": start, "end": end,
                             "score": round(score, 6)})
        return entities

    def predictions(self, outputs: TokenOutputs) -> list[dict[str, Any]]:
        return [{"text": text, "entities": self.decode(logits, pieces, text)}
                for text, logits, pieces in zip(outputs.texts, outputs.logits, outputs.pieces,
                                                strict=True)]

    def word_tags(self, examples: TokenExamples, index: int, logits: np.ndarray,
                  pieces: Pieces, text: str) -> list[str]:
        """Predicted tags of sentence ``index``'s own words.

        BIO and IO: each word takes the tag of its first unit (the first-piece convention of
        word-level NER evaluation). Schemes with end tags (BIOES, BIOUL, BMES): the decoded
        entities are mapped onto the words they cover and re-tagged, so a word split into
        several units (or several words in one unit, as digits in character data) still gets a
        valid tag sequence.
        """
        if self.scheme in ("BIO", "IO"):
            units = np.flatnonzero(pieces.unit_start)
            unit_starts = pieces.starts[units]
            tag_ids = logits[units].argmax(-1) if len(units) else np.zeros(0, np.int64)
            tags = []
            for start, end in examples.words[index]:
                j = int(np.searchsorted(unit_starts, start, side="left"))
                inside = j < len(units) and unit_starts[j] < end
                tags.append(self.labels[tag_ids[j]] if inside else tag_schemes.OUTSIDE)
            return tags
        words = examples.words[index]
        word_starts = np.array([s for s, _ in words])
        word_ends = np.array([e for _, e in words])
        spans, taken = [], set()
        for entity in self.decode(logits, pieces, text):
            first = int(np.searchsorted(word_ends, entity["start"], side="right"))
            last = int(np.searchsorted(word_starts, entity["end"], side="left"))
            if first >= last or taken & set(range(first, last)):
                continue
            taken.update(range(first, last))
            spans.append((first, last, entity["type"]))
        return tag_schemes.tags_from_spans(len(words), spans, self.scheme)

    def evaluate(self, examples: TokenExamples, outputs: TokenOutputs,
                 output_dir: str | Path | None = None, prefix: str = "") -> dict[str, Any]:
        from tfsft.tasks.token_classification.metrics import entity_metrics, write_token_report

        if examples.tags is None:
            raise ConfigError("evaluation needs tagged data")
        rows = list(zip(outputs.texts, outputs.logits, outputs.pieces, strict=True))
        predicted_entities = [self.decode(logits, pieces, text) for text, logits, pieces in rows]
        predicted = [self.word_tags(examples, i, logits, pieces, text)
                     for i, (text, logits, pieces) in enumerate(rows)]
        metrics = entity_metrics(examples.tags, predicted, self.scheme)
        metrics["examples"] = len(examples)
        metrics["skipped_rows"] = dict(examples.skipped)
        if output_dir is not None:
            write_token_report(Path(output_dir), examples, predicted, predicted_entities,
                               metrics, self.scheme, prefix)
        return metrics

    def headline(self, metrics: dict[str, Any]) -> dict[str, Any]:
        keys = ("f1", "precision", "recall", "f1_macro", "token_accuracy", "examples")
        return {k: metrics[k] for k in keys if k in metrics}

    # -- export -----------------------------------------------------------------------------
    def text_inputs(self) -> tuple[str, ...]:
        return ("text",)

    def tokenize(self, tokenizer: WordPieceTokenizer, inputs: dict[str, tf.Tensor],
                 max_length: int) -> dict[str, tf.Tensor]:
        return tokenizer.encode(inputs["text"], None, max_length)

    def export_outputs(self, raw: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"logits": raw}

    def serving_outputs(self, raw: tf.Tensor, inputs: dict[str, tf.Tensor],
                        tokenizer: WordPieceTokenizer, max_length: int) -> dict[str, tf.Tensor]:
        from tfsft.tasks.token_classification.graph import entity_outputs

        return {**entity_outputs(raw, inputs["text"], tokenizer, max_length, self.labels,
                                 self.scheme), **self.export_outputs(raw)}

    # LiteRT lacks the ragged and Unicode ops of entity_outputs: the raw-text TFLite model
    # returns the per-token logits ([CLS] first), decoded with vocab.txt, labels.txt, task.json.
    lite_text_signature = True

    def output_checks(self) -> dict[str, OutputCheck]:
        return {"logits": OutputCheck(kind="argmax", per_token=True, tolerance=1e-4)}

    def export_quality(self, examples: TokenExamples, outputs: dict[str, Any]) -> float | None:
        """Entity micro-F1 of per-token logits computed on truncated texts (as exported)."""
        from tfsft.tasks.token_classification.metrics import entity_metrics

        if examples.tags is None or self.tokenizer is None:
            return None
        batches = outputs["logits"]
        _, pieces = text_pieces(self.tokenizer, examples.texts)
        width = self.max_length - 2
        predicted, index = [], 0
        for batch in batches:
            for row in batch:
                row_pieces = pieces[index]
                count = min(len(row_pieces.starts), width)
                kept = Pieces(row_pieces.starts[:count], row_pieces.ends[:count],
                              row_pieces.unit_start[:count])
                predicted.append(self.word_tags(examples, index, np.asarray(row[1:1 + count]),
                                                kept, examples.texts[index]))
                index += 1
        return entity_metrics(examples.tags, predicted, self.scheme)["f1"]

