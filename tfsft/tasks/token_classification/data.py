"""The data role of token classification: files to checked sentences (learning the tag set and
scheme), and sentences to windows of word pieces with a target per piece."""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tfsft.data.examples import split_examples
from tfsft.errors import ConfigError, DataError
from tfsft.io_utils import split_lines
from tfsft.tasks.roles import DataRole
from tfsft.tasks.token_classification import tags as tag_schemes
from tfsft.tasks.token_classification.examples import (
    TokenExamples,
    read_token_data,
    sentences_from_tokens,
    words_of,
)
from tfsft.tasks.token_classification.pieces import Pieces, text_pieces, windows

if TYPE_CHECKING:  # pragma: no cover
    from tfsft.data.pipeline import EncodedData
    from tfsft.data.readers import Table
    from tfsft.tasks.token_classification.task import TokenClassificationTask
    from tfsft.tokenization import WordPieceTokenizer

logger = logging.getLogger(__name__)
IGNORED_TARGET = -1  # target of pieces the loss skips ([CLS], [SEP], continuation pieces)


class TokenData(DataRole):
    """CoNLL, token/tag tables and character-span data to :class:`TokenExamples`; sentences to
    overlapping windows of word pieces."""

    task: TokenClassificationTask
    long_example_treatment = "split into overlapping windows (--stride)"

    def __init__(self, task: TokenClassificationTask) -> None:
        super().__init__(task)
        self.last_encoding: dict[str, int] = {}

    # -- reading ----------------------------------------------------------------------------
    def _scheme_option(self) -> str | None:
        options = self.task.options
        return None if options.tag_scheme == "auto" else options.tag_scheme

    def read(self, source: Any, role: str = "train", labelled: bool = True,
             max_rows: int | None = None, file_format: str | None = None,
             encoding: str = "utf-8", delimiter: str | None = None, quoting: bool = True) -> TokenExamples:
        task, options = self.task, self.task.options
        scheme = self._scheme_option() or (task.scheme if role != "train" and task.labels
                                           else None)
        data = read_token_data(
            source, tokens_column=options.tokens_column, tags_column=options.tags_column,
            text_column=options.text_column, entities_column=options.entities_column,
            tag_column=options.tag_column, tag_names=options.tag_names or None,
            separator=options.token_separator, scheme=scheme, repair=options.repair_tags,
            labelled=labelled, max_rows=max_rows, file_format=file_format, encoding=encoding,
            delimiter=delimiter, quoting=quoting)
        return self._learn(data, role if labelled else "unlabelled")

    def reads_text_lines(self, path: str, encoding: str = "utf-8") -> bool:
        """A ``.txt`` file is one text a line, unless its lines are CoNLL token lines (a token
        and its tags, in the named tag column if one is, CoNLL-U, or one token a line with blank
        lines between sentences): then it is read as sentences."""
        from tfsft.tasks.token_classification.examples import looks_like_conll

        if not super().reads_text_lines(path, encoding):
            return False
        options = self.task.options
        if looks_like_conll(path, encoding, bool(options.tag_names), options.tag_column):
            logger.info("%s: read as a CoNLL file (one token a line, a blank line between "
                        "sentences); tag columns, if any, are not used", path)
            return False
        return True

    def learn_chunk(self, chunk: Table) -> dict[str, Any]:
        options = self.task.options
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
        task = self.task
        prefixes = {p for summary in summaries for p in summary["prefixes"]}
        types = sorted({kind for summary in summaries for kind in summary["types"]})
        if not types:
            raise DataError(source, None, "no entity tags, only O",
                            "tag some entities (B-PER, I-PER, ...) in the training data")
        try:
            task.scheme = self._scheme_option() or tag_schemes.detect_scheme(
                f"{prefix}-X" for prefix in prefixes)
        except ValueError as exc:
            raise DataError(source, None, str(exc), "name the scheme with --tag-scheme") from exc
        task.labels = tag_schemes.label_set(types, task.scheme)
        task.label_index = {label: i for i, label in enumerate(task.labels)}

    def read_tokens(self, tokens: list[list[str]], tags: list[list[str]] | None = None,
                    role: str = "train") -> TokenExamples:
        """Sentences from in-memory token lists (and tag lists)."""
        options = self.task.options
        data = sentences_from_tokens(tokens, tags, "tokens", None, options.token_separator,
                                     self._scheme_option() or (None if role == "train"
                                                               else self.task.scheme),
                                     options.repair_tags)
        return self._learn(data, role if tags is not None else "unlabelled")

    def _learn(self, data: TokenExamples, role: str) -> TokenExamples:
        task = self.task
        if data.repaired:
            logger.warning("%s: %d tags repaired (--repair-tags)", data.source, data.repaired)
        if role == "unlabelled" or data.tags is None:
            return data
        if role == "train":
            task.scheme = data.scheme
            types = tag_schemes.entity_types(t for sentence in data.tags for t in sentence)
            if not types:
                raise DataError(data.source, None, "no entity tags, only O",
                                "tag some entities (B-PER, I-PER, ...) in the training data")
            task.labels = tag_schemes.label_set(types, task.scheme)
            task.label_index = {label: i for i, label in enumerate(task.labels)}
            return data
        if data.scheme != task.scheme:
            data = self._convert_scheme(data)
        unknown = sorted({t for s in data.tags for t in s} - set(task.labels))
        if unknown:
            known_types = set(task.types)
            bad = [t for t in unknown if tag_schemes.split_tag(t)[1] not in known_types]
            if bad:
                names = sorted({tag_schemes.split_tag(t)[1] for t in bad})
                first, position = next((i, p) for i, sentence in enumerate(data.tags)
                                       for p, t in enumerate(sentence) if t in bad)
                where = data.where_token(first, position)
                raise DataError(data.source, where, f"entity type(s) {', '.join(names)} were "
                                f"not in the training data (its types: "
                                f"{', '.join(task.types)})", "relabel them to a known type, "
                                "or leave them untagged (outside every entity)")
        return data

    def _convert_scheme(self, data: TokenExamples) -> TokenExamples:
        """Data in another tag scheme than the model's, re-tagged in the model's scheme."""
        scheme = self.task.scheme
        tags = [tag_schemes.tags_from_spans(len(s), tag_schemes.spans(s, data.scheme), scheme)
                for s in data.tags]
        data.tags, data.scheme = tags, scheme
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

    def token_length_report(self, tokenizer: WordPieceTokenizer, examples: TokenExamples,
                            max_length: int) -> tuple[dict[str, Any], np.ndarray]:
        """Word pieces of each whole sentence (before windowing)."""
        from tfsft.data.checks import token_lengths

        return token_lengths(tokenizer, examples.texts, examples.text_pairs, max_length)

    def split(self, examples: TokenExamples, fraction: float,
              seed: int) -> tuple[TokenExamples, TokenExamples]:
        return split_examples(examples, fraction, seed)

    def augment(self, examples: TokenExamples, augmenter: Any, copies: int,
                rng: Any) -> tuple[TokenExamples, list[dict[str, Any]]]:
        """Edited copies of each sentence that leave its entities' words alone: only words
        tagged ``O`` are replaced, swapped or deleted, and no word is inserted inside an
        entity (inserted words are ``O``), so every tag stays aligned. An ``O`` word between
        two entities stays too (deleting it would join them into one in IO tags)."""
        import dataclasses

        tokens, tags, sources, methods = [], [], [], []
        for index in range(len(examples)):
            words, word_tags = examples.word_tokens(index), examples.tags[index]
            inside = [tag != tag_schemes.OUTSIDE for tag in word_tags]
            frozen = {j for j, entity in enumerate(inside) if entity or (
                0 < j < len(inside) - 1 and inside[j - 1] and inside[j + 1])}
            for method, edited, origin in augmenter.copies(words, copies, rng, frozen):
                tokens.append(edited)
                tags.append([tag_schemes.OUTSIDE if j < 0 else word_tags[j] for j in origin])
                sources.append(index)
                methods.append(method)
        if not tokens:
            return examples, []
        count = len(examples)
        where = list(examples.locations) or [f"sentence {i + 1}" for i in range(count)]
        made = sentences_from_tokens(tokens, tags, examples.source, None,
                                     self.task.options.token_separator, examples.scheme)
        grown = dataclasses.replace(
            examples, texts=list(examples.texts) + made.texts,
            words=list(examples.words) + made.words, tags=list(examples.tags) + made.tags,
            locations=where + [f"{where[s]} (augmented: {m})"
                               for s, m in zip(sources, methods, strict=True)],
            line_numbers=None if examples.line_numbers is None
            else list(examples.line_numbers) + [[] for _ in sources])
        records = [{"source": where[s], "method": m, **record} for s, m, record in
                   zip(sources, methods, self.example_records(made), strict=True)]
        return grown, records

    # -- records and raw texts --------------------------------------------------------------
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
        records = [json.loads(line) for line in split_lines(Path(path).read_text("utf-8"))
                   if line.strip()]
        tags = [r["tags"] for r in records] if records and "tags" in records[0] else None
        data = sentences_from_tokens([r["tokens"] for r in records], tags, str(path),
                                     [f"line {i}" for i in range(1, len(records) + 1)],
                                     self.task.options.token_separator, self.task.scheme)
        return self._learn(data, "eval" if tags is not None else "unlabelled")

    def texts(self, examples: TokenExamples) -> dict[str, list[str]]:
        return {"text": list(examples.texts)}

    def examples_from_texts(self, texts: dict[str, Sequence[str]]) -> TokenExamples:
        if set(texts) - {"text"}:
            raise ConfigError("token classification takes single texts, not pairs")
        values = list(texts["text"])
        return TokenExamples(values, [words_of(t) for t in values], None, self.task.scheme,
                             "texts")

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
        return tag_schemes.tags_from_spans(len(unit_starts), unit_spans, self.task.scheme), \
            lost, inside

    def _piece_targets(self, examples: TokenExamples, index: int, pieces: Pieces,
                       count: int) -> tuple[np.ndarray, int, int]:
        """Target label id of each of the ``count`` pieces of sentence ``index``: the unit's tag
        on its first piece (on every piece with ``label_all_subtokens``), ``IGNORED_TARGET``
        elsewhere; also the entities :meth:`unit_tags` lost and cut."""
        options, label_index = self.task.options, self.task.label_index
        tags, lost, inside = self.unit_tags(examples, index, pieces)
        unit_ids = np.array([label_index[t] for t in tags], np.int32)
        targets = np.full(count, IGNORED_TARGET, np.int32)
        unit_of_piece = np.cumsum(pieces.unit_start) - 1
        if options.label_all_subtokens:
            valid = unit_of_piece >= 0
            targets[valid] = unit_ids[unit_of_piece[valid]]
        else:
            targets[pieces.unit_start] = unit_ids
        return targets, lost, inside

    def _window_stride(self, width: int) -> int:
        """Pieces shared by consecutive windows of ``width`` pieces: ``--stride``, or 32 (a
        quarter of the window if less); it must be smaller than the window."""
        stride = self.task.options.stride
        stride = min(32, width // 4) if stride is None else stride
        if stride >= width:
            raise ConfigError(f"--stride {stride} must be smaller than max_length - 2 ({width})")
        return stride

    def encode(self, tokenizer: WordPieceTokenizer, examples: TokenExamples, max_length: int,
               training: bool = False) -> EncodedData:
        width = max_length - 2
        stride = self._window_stride(width)
        ids, pieces = text_pieces(tokenizer, examples.texts)
        labelled = examples.tags is not None
        rows = _WindowRows(tokenizer.cls_id, tokenizer.sep_id, width)
        lost = inside = windowed = empty = total = 0
        for i, (row_ids, row_pieces) in enumerate(zip(ids, pieces, strict=True)):
            targets = None
            if labelled:
                targets, row_lost, row_inside = self._piece_targets(examples, i, row_pieces,
                                                                    len(row_ids))
                lost, inside = lost + row_lost, inside + row_inside
                total += len(examples.entities(i))
            if len(row_ids) == 0:
                empty += 1
            starts = windows(len(row_ids), width, stride)
            windowed += len(starts) > 1
            rows.add(i, row_ids, targets, starts)
        self.last_encoding = {"sentences": len(examples), "windows": len(rows.lengths),
                              "windowed_sentences": windowed, "entities_without_tokens": lost,
                              "entity_edges_inside_a_token": inside,
                              "sentences_without_tokens": empty}
        if training and total and lost == total:
            raise DataError(examples.source, None, f"none of the {total} entities covers a "
                            "word piece of its text, so nothing is left to learn (each lies "
                            "inside a word the tokenizer keeps whole)", "check the entities' "
                            "character offsets (start, and end exclusive) against the texts")
        _log_encoding(examples, width, windowed, len(rows.lengths), lost, inside)
        return rows.encoded(examples, pieces, labelled)

    def encoding_notes(self) -> dict[str, Any]:
        return dict(self.last_encoding)


@dataclass
class _WindowRows:
    """The model rows ``[CLS] pieces [SEP]`` of overlapping windows of ``width`` pieces, with
    their targets, gathered sentence by sentence."""

    cls_id: int
    sep_id: int
    width: int
    ids: list[np.ndarray] = field(default_factory=list)
    targets: list[np.ndarray] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    sentence_of: list[int] = field(default_factory=list)
    start_of: list[int] = field(default_factory=list)

    def add(self, sentence: int, piece_ids: np.ndarray, targets: np.ndarray | None,
            starts: list[int]) -> None:
        """One row for each window start of a sentence's pieces (and their ``targets``)."""
        width = self.width
        for start in starts:
            window_ids = piece_ids[start:start + width]
            self.ids.append(np.concatenate([[self.cls_id], window_ids,
                                            [self.sep_id]]).astype(np.int32))
            if targets is not None:
                self.targets.append(np.concatenate(
                    [[IGNORED_TARGET], targets[start:start + width], [IGNORED_TARGET]]))
            self.lengths.append(len(window_ids) + 2)
            self.sentence_of.append(sentence)
            self.start_of.append(start)

    def encoded(self, examples: TokenExamples, pieces: list[Pieces],
                labelled: bool) -> EncodedData:
        """The rows as :class:`TokenEncodedData` (with a ``target`` per piece if
        ``labelled``)."""
        from tfsft.data.pipeline import TokenAligned
        from tfsft.tasks.token_classification.encoding import TokenEncodedData

        flat = np.concatenate(self.ids) if self.ids else np.zeros(0, np.int32)
        encoded = TokenEncodedData(
            token_ids=flat, segment_ids=np.zeros_like(flat),
            lengths=np.array(self.lengths, np.int32), texts=list(examples.texts), pieces=pieces,
            row_sentence=np.array(self.sentence_of, np.int64),
            row_start=np.array(self.start_of, np.int64))
        if labelled:
            encoded.targets = {"target": TokenAligned(np.concatenate(self.targets),
                                                      pad_value=IGNORED_TARGET)}
        return encoded


def _log_encoding(examples: TokenExamples, width: int, windowed: int, rows: int, lost: int,
                  inside: int) -> None:
    """Report the sentences cut into windows (info) and the entities the word pieces do not
    fit (warning)."""
    if windowed:
        logger.info("%s: %d of %d sentences are longer than %d word pieces and were cut "
                    "into %d overlapping windows", examples.source, windowed, len(examples),
                    width, rows - len(examples) + windowed)
    if lost:
        logger.warning("%s: %d entities lie inside a single word piece and are left out "
                       "(the tokenizer and the data disagree on word boundaries)",
                       examples.source, lost)
    if inside:
        logger.warning("%s: %d entities start inside a word piece; each is tagged from the "
                       "start of that piece", examples.source, inside)
