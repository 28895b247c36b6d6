"""Read token-classification (NER) data into checked sentences: text, words and word tags.

Formats (every bad row is reported with its file and line):

- CoNLL column files: one token per line (``token ... TAG``; the tag column is chosen with
  ``tag_column``, default the last column that holds tags), a blank line between sentences,
  ``-DOCSTART-`` lines skipped. Character-per-line Chinese data (MSRA: ``中 B-LOC``) is the
  same format; its tokens are joined without spaces.
- JSON lines / tables with a token list and a tag list per row (``{"tokens": [...],
  "tags": [...]}``; Hugging Face ``datasets`` with ``ner_tags`` ClassLabel ids too).
- JSON lines / tables with a text and character spans (``{"text": ..., "entities": [{"start",
  "end", "label"}]}``); overlapping or out-of-range spans are errors.

Every sentence becomes one text (tokens joined by ``token_separator``) with the character span
of each word in it, so predictions map back to the text exactly.

>>> data = sentences_from_tokens([["EU", "rejects", "German", "call"]],
...                              [["B-ORG", "O", "B-MISC", "O"]], source="doc")
>>> data.texts[0], data.words[0][2], data.tags[0][2]
('EU rejects German call', (11, 17), 'B-MISC')
>>> data.entities(0)
[(0, 2, 'ORG'), (11, 17, 'MISC')]
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tfsft.data.readers import Table, read_table
from tfsft.errors import DataError
from tfsft.tasks.token_classification import tags as tag_schemes

logger = logging.getLogger(__name__)
CONLL_SUFFIXES = (".conll", ".conllu", ".iob", ".bio", ".bioes", ".bmes", ".txt")
DOCSTART = "-DOCSTART-"
# Words of a raw text: one CJK character, a run of letters/digits, or one other visible character.
_CJK = (r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f"
        r"\u3040-\u30ff\uac00-\ud7af")
_WORD = re.compile(rf"[{_CJK}]|[^\W{_CJK}]+|[^\s]", re.UNICODE)


@dataclass
class TokenExamples:
    """Sentences for token classification.

    ``texts[i]`` is sentence ``i``; ``words[i]`` the ``(start, end)`` character span of each of
    its words; ``tags[i]`` one tag per word in ``scheme`` (None: unlabelled data).
    ``locations[i]`` says where the sentence came from (``line 12``); ``skipped`` counts what was
    left out on purpose (``-DOCSTART-`` lines); ``repaired`` counts tags changed by
    ``repair_tags``.
    """

    texts: list[str]
    words: list[list[tuple[int, int]]]
    tags: list[list[str]] | None
    scheme: str = "BIO"
    source: str = "data"
    locations: list[str] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    repaired: int = 0
    # one token a line (CoNLL): the line of each word of each sentence
    line_numbers: list[list[int]] | None = None

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def text_pairs(self) -> None:
        """Token classification reads single texts."""
        return None

    @property
    def targets(self) -> list[list[str]] | None:
        """The tags of each sentence (the :class:`~tfsft.tasks.roles.Examples` protocol)."""
        return self.tags

    def subset(self, indices: Sequence[int] | np.ndarray) -> TokenExamples:
        indices = [int(i) for i in np.asarray(indices, dtype=np.int64)]
        return dataclasses.replace(
            self, texts=[self.texts[i] for i in indices], words=[self.words[i] for i in indices],
            tags=None if self.tags is None else [self.tags[i] for i in indices],
            locations=[self.locations[i] for i in indices] if self.locations else [],
            skipped=dict(self.skipped),
            line_numbers=None if self.line_numbers is None
            else [self.line_numbers[i] for i in indices])

    def where(self, index: int) -> str | None:
        return self.locations[index] if self.locations else None

    def where_token(self, index: int, position: int) -> str | None:
        """Where word ``position`` of sentence ``index`` is: its own line in a file of one
        token a line (CoNLL), else the sentence's place and the word."""
        numbers = self.line_numbers[index] if self.line_numbers else []
        if position < len(numbers):
            return f"line {numbers[position]}"
        if not self.locations:
            return None
        return f"{self.locations[index]}, token {position + 1}"

    def entities(self, index: int) -> list[tuple[int, int, str]]:
        """Gold entities of sentence ``index`` as ``(start, end, type)`` character spans."""
        if self.tags is None:
            return []
        words = self.words[index]
        return [(words[first][0], words[last - 1][1], kind)
                for first, last, kind in tag_schemes.spans(self.tags[index], self.scheme)]

    def word_tokens(self, index: int) -> list[str]:
        text = self.texts[index]
        return [text[start:end] for start, end in self.words[index]]


def words_of(text: str) -> list[tuple[int, int]]:
    """Character spans of the words of a raw text (CJK characters one by one, punctuation apart).

    >>> words_of("Hi, 北京!")
    [(0, 2), (2, 3), (4, 5), (5, 6), (6, 7)]
    """
    return [match.span() for match in _WORD.finditer(text)]


def join_tokens(tokens: Sequence[str], separator: str) -> tuple[str, list[tuple[int, int]]]:
    """The text of ``tokens`` joined by ``separator`` and each token's character span in it."""
    spans, position = [], 0
    for i, token in enumerate(tokens):
        if i:
            position += len(separator)
        spans.append((position, position + len(token)))
        position += len(token)
    return separator.join(tokens), spans


def is_cjk(token: str) -> bool:
    return len(token) == 1 and re.fullmatch(f"[{_CJK}]", token) is not None


def choose_separator(sentences: Sequence[Sequence[str]], separator: str | None) -> str:
    """``separator``, or (None: auto) ``""`` for character-per-line CJK data, else ``" "``."""
    if separator is not None:
        return separator
    sample = [t for sentence in sentences[:200] for t in sentence][:5000]
    if sample and sum(is_cjk(t) for t in sample) >= 0.5 * len(sample) and all(
            len(t) == 1 for t in sample):
        return ""
    return " "


#: More distinct entity types than this: the "tags" are words, not a tag set.
MAX_ENTITY_TYPES = 200


def _refuse_non_tags(tokens: list[list[str]], tags: list[list[str]], source: str,
                     locate: Callable[[int, int], str | None]) -> None:
    """Refuse a tag column that holds something else: the tokens themselves, numbers, or a
    vocabulary's worth of "entity types" (a text column)."""
    fix = "choose the tag column (--tag-column for CoNLL files, --tags-column for tables)"
    pairs = [(i, p, tag) for i, sentence in enumerate(tags) for p, tag in enumerate(sentence)]
    same = sum(tag == tokens[i][p] and tag != tag_schemes.OUTSIDE for i, p, tag in pairs)
    if pairs and same > 0.5 * len(pairs):
        raise DataError(source, None, f"the tags are the tokens themselves for {same} of "
                        f"{len(pairs)} tokens: the tag column holds the words", fix)
    for i, p, tag in pairs:
        if tag.isdigit():
            raise DataError(source, locate(i, p), f"tag {tag!r} is a number, "
                            "not a tag such as O or B-PER", f"{fix}; numeric tag ids need "
                            "--tag-names O,B-PER,I-PER,... (in id order)")
    if pairs and not any(_TAG.fullmatch(tag) for _, _, tag in pairs):
        i, p, tag = pairs[0]
        raise DataError(source, locate(i, p), f"the tag column holds no tag such as O or B-PER "
                        f"(the first is {tag!r}): it holds words", fix)
    types = tag_schemes.entity_types(tag for _, _, tag in pairs)
    if len(types) > MAX_ENTITY_TYPES:
        raise DataError(source, None, f"the tags name {len(types)} entity types (e.g. "
                        f"{', '.join(map(repr, sorted(types)[:5]))}): the tag column holds "
                        "text, not tags", fix)


def _check_tags(tags: list[list[str]], scheme: str | None, repair: bool, source: str,
                locate: Callable[[int, int], str | None]) -> tuple[list[list[str]], str, int]:
    """Validate every sentence's tags against ``scheme`` (None: detect); repair when asked."""
    tags = [[tag_schemes.normalize_tag(t) for t in sentence] for sentence in tags]
    all_tags = {t for sentence in tags for t in sentence}
    if scheme is None:
        try:
            scheme = tag_schemes.detect_scheme(all_tags)
        except ValueError as exc:
            known = set().union(*(tag_schemes.prefixes_of(s) for s in tag_schemes.SCHEMES))
            odd = next(((i, p, t) for i, sentence in enumerate(tags)
                        for p, t in enumerate(sentence)
                        if tag_schemes.split_tag(t)[0] not in known | {tag_schemes.OUTSIDE}),
                       None)
            if odd is not None:
                i, p, tag = odd
                raise DataError(source, locate(i, p), f"tag {tag!r} has the prefix "
                                f"{tag_schemes.split_tag(tag)[0]!r}, which no tag scheme uses "
                                "(B, I, E, S, L, U or M, and O)", "fix the tag") from exc
            raise DataError(source, None, str(exc), "pass --tag-scheme") from exc
    repaired = 0
    for i, sentence in enumerate(tags):
        problems = tag_schemes.validate(sentence, scheme)
        if not problems:
            continue
        if not repair:
            where = locate(i, problems[0].position)
            count = sum(len(tag_schemes.validate(s, scheme)) for s in tags)
            raise DataError(source, where, f"tag {problems[0].message} ({scheme} tags; "
                            f"{count} such problem{'s' if count != 1 else ''} in this file)",
                            "fix the tags, pass --tag-scheme if it is not " + scheme +
                            ", choose the entity column with --tag-column if this one holds "
                            "other tags (such as chunk tags), or pass --repair-tags to turn "
                            "each into a valid tag (counted)")
        tags[i], changed = tag_schemes.repair(sentence, scheme)
        repaired += changed
    return tags, scheme, repaired


def _locator(locations: list[str],
             line_numbers: list[list[int]] | None) -> Callable[[int, int], str | None]:
    """Where token ``position`` of sentence ``sentence`` is: its own line in a CoNLL file
    (``line_numbers``: each token's line), else its row and place."""

    def locate(sentence: int, position: int) -> str | None:
        if line_numbers is not None and position < len(line_numbers[sentence]):
            return f"line {line_numbers[sentence][position]}"
        if not locations:
            return None
        return f"{locations[sentence]}, token {position + 1}"

    return locate


def sentences_from_tokens(tokens: list[list[str]], tags: list[list[str]] | None,
                          source: str, locations: list[str] | None = None,
                          separator: str | None = None, scheme: str | None = None,
                          repair: bool = False, skipped: dict[str, int] | None = None,
                          line_numbers: list[list[int]] | None = None) -> TokenExamples:
    """Sentences from token lists (and tag lists), checked; tags in ``scheme`` (None: detect).
    ``line_numbers``: each token's line in a file of one token a line (CoNLL), so that a
    token's line can be named."""
    locations = locations or []
    locate = _locator(locations, line_numbers)
    for i, sentence in enumerate(tokens):
        where = locations[i] if locations else f"sentence {i + 1}"
        if not sentence:
            raise DataError(source, where, "the sentence has no tokens",
                            "remove it or give it tokens")
        for position, token in enumerate(sentence):
            if not isinstance(token, str) or not token or any(c.isspace() for c in token):
                raise DataError(source, locate(i, position) or where,
                                f"token {position + 1} ({token!r}) is empty, not a string or "
                                "holds whitespace", "give every token visible characters")
        if tags is not None and len(tags[i]) != len(sentence):
            raise DataError(source, where, f"{len(sentence)} tokens but {len(tags[i])} tags",
                            "give every token one tag")
    repaired = 0
    if tags is not None:
        _refuse_non_tags(tokens, tags, source, locate)
        tags, scheme, repaired = _check_tags([list(t) for t in tags], scheme, repair, source,
                                             locate)
    separator = choose_separator(tokens, separator)
    texts, words = [], []
    for sentence in tokens:
        text, spans = join_tokens(sentence, separator)
        texts.append(text)
        words.append(spans)
    return TokenExamples(texts, words, tags, scheme or "BIO", source, list(locations),
                         dict(skipped or {}), repaired, line_numbers)


# A tag as the column guesses see one: O, or a scheme prefix and a type that starts with a letter
# (``B-PER``, not the ``B-52`` of a text).
_TAG = re.compile(r"O|[BIMESLUbimeslu][-_][^\W\d_]\S*")
#: Share of a column's cells that must look like tags for the guess to take it (a typo or two
#: in the tag column is then named by the tag checks, instead of another column being read).
TAG_SHARE = 0.98


_CHUNK_TYPES = {"NP", "VP", "PP", "ADJP", "ADVP", "SBAR", "PRT", "CONJP", "INTJ", "LST", "UCP"}
_CONLLU_ID = re.compile(r"\d+(?:[-.]\d+)?")  # CoNLL-U word ids: 3, ranges 3-4, empty nodes 3.1


@dataclass(frozen=True)
class ConllLayout:
    """How the token lines of a CoNLL file are laid out: ``width`` columns (the most common
    count) and whether it is CoNLL-U (``ID FORM LEMMA UPOS XPOS FEATS HEAD DEPREL DEPS MISC``,
    whose token is column 1).

    >>> layout = conll_layout(["# text = EU rejects", "1\tEU\tEU\tPROPN\t_\t_\t2\tnsubj\t_\t_"])
    >>> layout.conllu, layout.token_column, layout.is_comment(["#", "text", "=", "EU"])
    (True, 1, True)
    """

    width: int
    conllu: bool = False

    @property
    def token_column(self) -> int:
        return 1 if self.conllu else 0

    def is_comment(self, fields: Sequence[str]) -> bool:
        """A ``#`` line that is not a token line: any in CoNLL-U; else one with another column
        count than the token lines, a ``# key = value`` line (``# sent_id = 1``) or one with no
        tag or number after its first column (``# newdoc``). A ``#`` token with its tags is
        kept."""
        if not fields[0].startswith("#"):
            return False
        if self.conllu or len(fields) != self.width or (len(fields) > 2 and fields[2] == "="):
            return True
        return self.width > 1 and not any(_TAG.fullmatch(f) or f.isdigit() for f in fields[1:])

    def is_extra_word_line(self, fields: Sequence[str]) -> bool:
        """A CoNLL-U multi-word range (``3-4 don't``) or empty node (``3.1``): not a token."""
        return self.conllu and not fields[0].isdigit()


def conll_layout(lines: Sequence[str]) -> ConllLayout:
    """The :class:`ConllLayout` of a CoNLL file's lines (the first 500 token lines decide)."""
    rows = [line.split() for line in lines[:2000]]
    rows = [r for r in rows if r and r[0] != DOCSTART and not r[0].startswith("#")][:500]
    width = Counter(len(r) for r in rows).most_common(1)[0][0] if rows else 1
    same = [r for r in rows if len(r) == width]
    conllu = width >= 10 and all(_CONLLU_ID.fullmatch(r[0]) for r in same)
    return ConllLayout(width, conllu)


def _token_rows(lines: Sequence[str], layout: ConllLayout) -> list[list[str]]:
    """The fields of the first 500 token lines (no blank, ``-DOCSTART-`` or comment lines)."""
    rows = [line.split() for line in lines[:2000]]
    return [r for r in rows if r and r[0] != DOCSTART and not layout.is_comment(r)
            and not layout.is_extra_word_line(r)][:500]


def guess_tag_column(lines: Sequence[str], source: str,
                     tag_names: Sequence[str] | None = None) -> int:
    """The last column whose values in the first token lines all look like tags (or, with
    ``tag_names``, like ids of them); a column of phrase-chunk tags (``B-NP``, ``I-VP``) gives
    way to one of entity tags. With several candidates, the choice is logged.

    >>> guess_tag_column(["EU B-ORG B-NP", "rejects O B-VP"], "x.txt")
    1
    """
    layout = conll_layout(lines)
    width = layout.width
    # "#" lines count neither way: a comment may hold a word that looks like a tag
    rows = [r for r in _token_rows(lines, layout) if len(r) == width and not r[0].startswith("#")]
    if width < 2:
        return -1  # the line checks report the missing column
    columns = range(width - 1, layout.token_column, -1)

    def share(column: int) -> float:
        if tag_names and all(r[column].isdigit() and int(r[column]) < len(tag_names)
                             for r in rows):
            return 1.0
        return sum(bool(_TAG.fullmatch(r[column])) for r in rows) / max(len(rows), 1)

    shares = {column: share(column) for column in columns}
    candidates = sorted((c for c in columns if shares[c] >= TAG_SHARE),
                        key=lambda c: (-shares[c], -c))
    if not candidates and layout.conllu:
        raise DataError(source, None, "a CoNLL-U file (ID FORM LEMMA UPOS ... MISC): none of "
                        "its columns holds entity tags (O, B-PER, ...)", "add a tag column and "
                        "choose it with --tag-column, or give a CoNLL file of tokens and tags")
    if not candidates and _one_text_a_line(lines, layout):
        raise DataError(source, None, "the lines have different numbers of words: this looks "
                        "like one text a line, not a CoNLL file (a token and its tag a line, "
                        "a blank line between sentences)", "for training, tag the tokens in "
                        "CoNLL, or write JSONL with tokens and tags (or a text and entity "
                        "spans); to find entities in texts, use tfsft predict RUN --input FILE")
    if not candidates:
        numeric = [c for c in columns if all(r[c].isdigit() for r in rows)]
        if numeric and tag_names:
            column = numeric[0]
            top = max(int(r[column]) for r in rows)
            raise DataError(source, None, f"column {column} holds tag ids up to {top}, but "
                            f"--tag-names names {len(tag_names)} tags (ids 0-"
                            f"{len(tag_names) - 1})", "give every tag name, in id order")
        if numeric:
            raise DataError(source, None, f"column {numeric[0]} holds numbers, not tags such as "
                            "O or B-PER", "for tag ids, pass their names in id order with "
                            "--tag-names O,B-PER,I-PER,...; else choose the tag column with "
                            "--tag-column")
        raise DataError(source, None, "no column holds tags (O, B-PER, I-PER, ...) in the "
                        f"first {len(rows)} lines: a CoNLL file has a token and its tag a line",
                        "tag the tokens (a blank line between sentences), or write JSONL with "
                        "tokens and tags; if a column holds tags in another form, name it with "
                        "--tag-column")

    def chunks(column: int) -> bool:
        types = tag_schemes.entity_types(r[column] for r in rows)
        return bool(types) and set(types) <= _CHUNK_TYPES

    chosen = next((c for c in candidates if not chunks(c)), candidates[0])
    if len(candidates) > 1:
        others = [c for c in sorted(candidates) if c != chosen]
        why = ("they look like phrase chunks" if chosen != candidates[0]
               else "the last tag column is read")
        also = (f"column {others[0]} also holds" if len(others) == 1
                else f"columns {', '.join(map(str, others))} also hold")
        logger.warning("%s: %s tags; reading column %d (%s; 0 is the token). Pass "
                       "--tag-column %d to read another.", source, also, chosen, why,
                       others[-1])
    return chosen


def _one_text_a_line(lines: Sequence[str], layout: ConllLayout) -> bool:
    """Whether fewer than nine in ten token lines have the most common column count."""
    rows = _token_rows(lines, layout)
    return bool(rows) and sum(len(r) == layout.width for r in rows) < 0.9 * len(rows)


def _read_lines(path: Path, encoding: str) -> list[str]:
    """The lines of a text file (optionally compressed); a missing file, a pipe, or bytes that
    are not ``encoding`` text (named by line) is a :class:`DataError`."""
    from tfsft.data.readers import _decode, _read_bytes, require_file
    from tfsft.io_utils import split_lines

    return split_lines(_decode(path, _read_bytes(require_file(path)), encoding))


@dataclass
class _ConllSentences:
    """Sentences gathered line by line from a CoNLL file: tokens, tags, the line each sentence
    starts on (``line 12``) and the ``-DOCSTART-`` lines skipped."""

    tokens: list[list[str]] = field(default_factory=list)
    tags: list[list[str]] = field(default_factory=list)
    locations: list[str] = field(default_factory=list)
    docstarts: int = 0
    comments: int = 0
    numbers: list[list[int]] = field(default_factory=list)  # each token's line
    current: list[str] = field(default_factory=list)
    current_tags: list[str] = field(default_factory=list)
    current_numbers: list[int] = field(default_factory=list)
    start_line: int = 0

    def add(self, number: int, token: str, tag: str) -> None:
        """Append a token and its tag (from line ``number``) to the open sentence."""
        if not self.current:
            self.start_line = number
        self.current.append(token)
        self.current_tags.append(tag)
        self.current_numbers.append(number)

    def close(self) -> None:
        """End the open sentence, if it has tokens."""
        if self.current:
            self.tokens.append(self.current)
            self.tags.append(self.current_tags)
            self.locations.append(f"line {self.start_line}")
            self.numbers.append(self.current_numbers)
        self.current, self.current_tags, self.current_numbers = [], [], []


def _token_and_tag(fields: list[str], line: str, number: int, source: str, tag_column: int,
                   token_column: int, columns_seen: int | None) -> tuple[str, str]:
    """The token and tag of a labelled token line (``fields``: its columns). A single column,
    another number of columns than the earlier lines (``columns_seen``) or a missing column
    are errors."""
    if len(fields) < 2:
        raise DataError(source, f"line {number}",
                        f"one column ({line.strip()!r}) where a token and a tag are "
                        "expected", "separate token and tag with a space or tab, or "
                        "leave a blank line between sentences")
    if columns_seen is not None and len(fields) != columns_seen:
        raise DataError(source, f"line {number}",
                        f"{len(fields)} columns where earlier lines have {columns_seen}",
                        "give every token line the same columns")
    try:
        tag = fields[tag_column]
        token = fields[token_column]
    except IndexError as exc:
        raise DataError(source, f"line {number}",
                        f"no column {tag_column}: the line has {len(fields)} columns, numbered "
                        f"0 to {len(fields) - 1} (0 is the token)", "choose the tag column "
                        "with --tag-column, counted from 0") from exc
    return token, tag


def _conll_sentences(lines: Sequence[str], source: str, tag_column: int | None,
                     token_column: int, labelled: bool, max_sentences: int | None,
                     layout: ConllLayout) -> _ConllSentences:
    """The sentences of CoNLL ``lines``: a blank line ends a sentence, ``-DOCSTART-`` lines
    end one and are counted, comment lines (``# sent_id = 1``) are counted and left out, as
    are CoNLL-U multi-word ranges. Reading stops at the blank line after ``max_sentences``
    sentences (more may be returned: a ``-DOCSTART-`` line does not stop it). Unlabelled
    tokens get the tag ``O``."""
    found = _ConllSentences()
    columns_seen: int | None = None
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields:
            found.close()
            if max_sentences is not None and len(found.tokens) >= max_sentences:
                break
            continue
        if fields[0] == DOCSTART:
            found.close()
            found.docstarts += 1
            continue
        if layout.is_comment(fields) or (
                labelled and fields[0].startswith("#") and tag_column is not None
                and len(fields) > tag_column and not _TAG.fullmatch(fields[tag_column])
                and not fields[tag_column].isdigit()):
            found.comments += 1  # "# from O Globo": a comment, though a word looks like a tag
            continue
        if layout.is_extra_word_line(fields):
            continue
        if labelled:
            token, tag = _token_and_tag(fields, line, number, source, tag_column, token_column,
                                        columns_seen)
            columns_seen = len(fields)
        else:
            token, tag = fields[min(token_column, len(fields) - 1)], tag_schemes.OUTSIDE
        found.add(number, token, tag)
    found.close()
    return found


def read_conll(path: str | Path, tag_column: int | None = None, token_column: int | None = None,
               encoding: str = "utf-8", labelled: bool = True, separator: str | None = None,
               scheme: str | None = None, repair: bool = False,
               max_sentences: int | None = None,
               tag_names: Sequence[str] | None = None) -> TokenExamples:
    """Sentences of a CoNLL column file, CoNLL-U (tokens from its FORM column) or
    character-per-line data such as MSRA NER; with ``tag_names``, tags written as ids (``0``,
    ``3``) are those names. ``token_column`` None: 1 in CoNLL-U, else 0."""
    path = Path(path)
    lines = _read_lines(path, encoding)
    layout = conll_layout(lines)
    if token_column is None:
        token_column = layout.token_column
    if labelled and tag_column is None:
        tag_column = guess_tag_column(lines, str(path), tag_names)
    found = _conll_sentences(lines, str(path), tag_column, token_column, labelled,
                             max_sentences, layout)
    tokens, tags, locations, docstarts = (found.tokens, found.tags, found.locations,
                                          found.docstarts)
    numbers = found.numbers
    if max_sentences is not None:
        tokens, tags, locations, numbers = (tokens[:max_sentences], tags[:max_sentences],
                                            locations[:max_sentences], numbers[:max_sentences])
    if not tokens:
        raise DataError(str(path), None, "no sentences found",
                        "give one token per line and a blank line between sentences")
    if docstarts:
        logger.info("%s: %d -DOCSTART- lines skipped (document separators)", path, docstarts)
    if found.comments:
        logger.info("%s: %d comment lines (# ...) skipped", path, found.comments)
    if labelled and tag_names:
        locate = _locator(locations, numbers)
        tags = [[_tag_name(int(t) if t.isdigit() else t, list(tag_names), str(path),
                           locate(index, position))
                 for position, t in enumerate(sentence)] for index, sentence in enumerate(tags)]
    return sentences_from_tokens(tokens, tags if labelled else None, str(path), locations,
                                 separator, scheme, repair,
                                 {key: count for key, count in (("-DOCSTART- lines", docstarts),
                                  ("comment lines", found.comments)) if count} or None,
                                 line_numbers=numbers)


def _as_list(value: Any, column: str, source: str, where: str) -> list:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            value = value.split()
    if hasattr(value, "tolist"):
        value = value.tolist()
    if not isinstance(value, (list, tuple)):
        raise DataError(source, where, f"column {column!r} holds {type(value).__name__}, not a "
                        "list", f"give {column!r} a list (JSON array)")
    return list(value)


def read_token_table(table: Table, tokens_column: str, tags_column: str | None,
                     tag_names: Sequence[str] | None = None, separator: str | None = None,
                     scheme: str | None = None, repair: bool = False,
                     max_rows: int | None = None) -> TokenExamples:
    """Sentences from a table with a token-list column and a tag-list column (tag ids index
    ``tag_names``, e.g. a Hugging Face ClassLabel)."""
    tokens, tags = [], [] if tags_column else None
    rows = table.rows[:max_rows] if max_rows else table.rows
    for row, where in zip(rows, table.locations, strict=False):
        row_tokens = _as_list(row.get(tokens_column), tokens_column, table.source, where)
        missing = [i for i, t in enumerate(row_tokens) if t is None]
        if missing:
            raise DataError(table.source, f"{where}, token {missing[0] + 1}", "the token is null",
                            "give every token as a string")
        tokens.append([str(t) if not isinstance(t, str) else t for t in row_tokens])
        if tags is not None:
            row_tags = _as_list(row.get(tags_column), tags_column, table.source, where)
            tags.append([_tag_name(t, tag_names, table.source, where) for t in row_tags])
    return sentences_from_tokens(tokens, tags, table.source, table.locations[:len(tokens)],
                                 separator, scheme, repair)


def _tag_name(value: Any, names: Sequence[str] | None, source: str, where: str) -> str:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        if names is None:
            raise DataError(source, where, f"tag {value} is a number but no tag names are known",
                            "pass --tag-names O,B-PER,I-PER,... (in id order) or give tags "
                            "as strings")
        if not 0 <= int(value) < len(names):
            raise DataError(source, where, f"tag id {value} is outside the {len(names)} tag "
                            "names", "check --tag-names")
        return names[int(value)]
    if not isinstance(value, str) or not value.strip():
        raise DataError(source, where, f"tag {value!r} is not a tag name",
                        "give tags such as O, B-PER, I-PER")
    return value.strip()


def read_span_table(table: Table, text_column: str, entities_column: str | None,
                    scheme: str = "BIO", max_rows: int | None = None) -> TokenExamples:
    """Sentences from a table with a text column and character-span entities
    (``[{"start": 0, "end": 2, "label": "ORG"}, ...]``, ``end`` exclusive)."""
    texts, words, tags = [], [], [] if entities_column else None
    rows = table.rows[:max_rows] if max_rows else table.rows
    for row, where in zip(rows, table.locations, strict=False):
        text = row.get(text_column)
        if not isinstance(text, str) or not text.strip():
            raise DataError(table.source, where, f"column {text_column!r} is empty or missing",
                            "give every row a text")
        entities = []
        if entities_column:
            entities = _read_spans(row.get(entities_column), text, table.source, where,
                                   entities_column)
        cuts = {0, len(text)} | {p for start, end, _ in entities for p in (start, end)}
        spans = _split_words(words_of(text), cuts)
        texts.append(text)
        words.append(spans)
        if tags is not None:
            index = {span[0]: i for i, span in enumerate(spans)}
            ends = {span[1]: i for i, span in enumerate(spans)}
            word_entities = []
            for start, end, label in entities:
                first, last = _first_word(spans, start, index), _last_word(spans, end, ends)
                if first is None or last is None or last < first:
                    raise DataError(table.source, where, f"entity {text[start:end]!r} "
                                    f"({start}:{end}) covers no word", "check its offsets")
                word_entities.append((first, last + 1, label))
            tags.append(tag_schemes.tags_from_spans(len(spans), word_entities, scheme))
    return TokenExamples(texts, words, tags, scheme, table.source, table.locations[:len(texts)])


def _first_word(spans, start, index):
    if start in index:
        return index[start]
    return next((i for i, (s, _) in enumerate(spans) if s >= start), None)


def _last_word(spans, end, ends):
    if end in ends:
        return ends[end]
    candidates = [i for i, (_, e) in enumerate(spans) if e <= end]
    return candidates[-1] if candidates else None


def _split_words(spans: list[tuple[int, int]], cuts: set[int]) -> list[tuple[int, int]]:
    """Words split at every entity boundary that falls inside one."""
    result = []
    for start, end in spans:
        inner = sorted(c for c in cuts if start < c < end)
        edges = [start, *inner, end]
        result += list(zip(edges[:-1], edges[1:], strict=True))
    return result


def _read_spans(value: Any, text: str, source: str, where: str,
                column: str) -> list[tuple[int, int, str]]:
    if value is None:
        return []
    value = _as_list(value, column, source, where) if not isinstance(value, list) else value
    entities = []
    for number, entity in enumerate(value, start=1):
        if not isinstance(entity, dict) or not {"start", "end", "label"} <= set(entity):
            raise DataError(source, where, f"entity {number} is not an object with start, end "
                            "and label", 'write entities as {"start": 0, "end": 5, '
                            '"label": "PER"}')
        start, end, label = entity["start"], entity["end"], entity["label"]
        offsets = [v for v in (start, end) if isinstance(v, bool) or not isinstance(v, int)]
        if offsets:
            raise DataError(source, where, f"entity {number} has the offset {offsets[0]!r} "
                            f"({type(offsets[0]).__name__}), not a whole number",
                            "give start and end as integers (character offsets, end exclusive)")
        if not 0 <= start < end <= len(text):
            raise DataError(source, where, f"entity {number} ({start}:{end}, {label!r}) is "
                            f"outside the text of {len(text)} characters or empty",
                            "give character offsets with 0 <= start < end <= len(text), end "
                            "exclusive")
        if not isinstance(label, str) or not label.strip() or "-" in label[:2]:
            raise DataError(source, where, f"entity {number} has the label {label!r}",
                            "give an entity type such as PER (no B-/I- prefix)")
        if not text[start:end].strip():
            raise DataError(source, where, f"entity {number} ({start}:{end}) covers only "
                            "whitespace", "check its offsets")
        entities.append((start, end, label.strip()))
    entities.sort()
    for (s1, e1, l1), (s2, e2, l2) in zip(entities, entities[1:], strict=False):
        if s2 < e1:
            raise DataError(source, where, f"entities {text[s1:e1]!r} ({s1}:{e1}, {l1}) and "
                            f"{text[s2:e2]!r} ({s2}:{e2}, {l2}) overlap",
                            "token classification gives each character one entity at most; "
                            "keep one of them")
    return entities


def looks_like_conll(path: str | Path, encoding: str = "utf-8", numeric_tags: bool = False,
                     tag_column: int | None = None) -> bool:
    r"""Whether a file's first lines are CoNLL token lines rather than one text a line: nine in
    ten lines have the same number of columns, and one column after the token (``tag_column``,
    if given) holds tags (``O``, ``B-PER``) or, with ``numeric_tags`` or ``tag_column``, tag
    ids (a ``tag_column`` outside the columns is not used); or the lines are CoNLL-U; or
    every line is one token and blank lines part sentences. Comment lines (``# sent_id = 1``)
    are left out.

    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "a.txt").write_text("EU B-ORG 0\nrejects O 0\n\nPeter B-PER 0\n")
    >>> _ = (folder / "b.txt").write_text("EU\nrejects\n\nPeter\nsaid\n")
    >>> _ = (folder / "c.txt").write_text("a fine film\nslow and dull\n")
    >>> [looks_like_conll(folder / name) for name in ("a.txt", "b.txt", "c.txt")]
    [True, True, False]
    """
    try:
        lines = _read_lines(Path(path), encoding)[:2000]
    except DataError:
        return False  # reading it as text lines reports the problem
    layout = conll_layout(lines)
    rows = _token_rows(lines, layout)
    if not rows:
        return False
    width = layout.width
    if sum(len(r) == width for r in rows) < 0.9 * len(rows):
        return False
    if layout.conllu:
        return True
    if width == 1:
        sentences = sum(1 for i, line in enumerate(lines)
                        if not line.strip() and i and lines[i - 1].strip())
        return sentences > 0 and len(rows) >= 2 * (sentences + 1)
    same = [r for r in rows if len(r) == width]
    named = tag_column is not None and 0 < tag_column < width
    columns = [tag_column] if named else range(1, width)
    ids = numeric_tags or named
    return any(sum(bool(_TAG.fullmatch(r[c])) or (ids and r[c].isdigit())
                   for r in same) >= 0.9 * len(same)
               and (ids or any(r[c] == tag_schemes.OUTSIDE for r in same)) for c in columns)


def is_conll_file(source: Any, file_format: str | None) -> bool:
    if file_format is not None:
        return file_format == "conll"
    if not isinstance(source, (str, Path)):
        return False
    name = Path(source).name.lower()
    return any(name.endswith(s) for s in CONLL_SUFFIXES)


def hf_tag_names(source: Any, tags_column: str) -> list[str] | None:
    """ClassLabel names of a Hugging Face dataset's tag column (``ner_tags``), if any."""
    features = getattr(source, "features", None)
    if not features or tags_column not in features:
        return None
    feature = features[tags_column]
    inner = getattr(feature, "feature", None)
    if isinstance(feature, list) and feature:  # datasets >= 4: List of ClassLabel as [ClassLabel]
        inner = feature[0]
    names = getattr(inner, "names", None)
    return list(names) if names else None


def read_token_data(source: Any, *, tokens_column: str = "tokens", tags_column: str | None = None,
                    text_column: str = "text", entities_column: str = "entities",
                    tag_column: int | None = None, tag_names: Sequence[str] | None = None,
                    separator: str | None = None, scheme: str | None = None,
                    repair: bool = False, labelled: bool = True, max_rows: int | None = None,
                    file_format: str | None = None, encoding: str = "utf-8",
                    delimiter: str | None = None, quoting: bool = True) -> TokenExamples:
    """Read token-classification data in any of the module's formats (see the docstring).

    Tables are read as tokens + tags when they have ``tokens_column``, else as text + entity
    spans. ``tags_column`` None means ``tags``, else ``ner_tags``.
    """
    if is_conll_file(source, file_format):
        return read_conll(source, tag_column=tag_column, encoding=encoding, labelled=labelled,
                          separator=separator, scheme=scheme, repair=repair,
                          max_sentences=max_rows, tag_names=tag_names)
    table = read_table(source, file_format, encoding, delimiter, quoting)
    if tokens_column in table.columns:
        if labelled and tags_column is None:
            tags_column = next((c for c in ("tags", "ner_tags") if c in table.columns), None)
            if tags_column is None:
                raise DataError(table.source, None, f"no tags or ner_tags column beside "
                                f"{tokens_column!r}", "name the tag column with --tags-column")
        if labelled and tags_column not in table.columns:
            raise DataError(table.source, None, f"no column {tags_column!r}; the columns are "
                            f"{', '.join(table.columns)}", "name the tag column with "
                            "--tags-column")
        names = list(tag_names) if tag_names else hf_tag_names(source, tags_column or "")
        return read_token_table(table, tokens_column, tags_column if labelled else None, names,
                                separator, scheme, repair, max_rows)
    if text_column in table.columns:
        if labelled and entities_column not in table.columns:
            raise DataError(table.source, None, f"no column {entities_column!r} beside "
                            f"{text_column!r}", "name the entity column with --entities-column")
        return read_span_table(table, text_column, entities_column if labelled else None,
                               scheme or "BIO", max_rows)
    raise DataError(table.source, None, f"neither a {tokens_column!r} column (token lists) nor a "
                    f"{text_column!r} column (texts with entity spans); the columns are "
                    f"{', '.join(table.columns)}", "name them with --tokens-column or "
                    "--text-column")


def normalize_for_vocabulary(text: str) -> str:
    """Lower-cased, accent-stripped text (how an uncased BERT vocabulary sees it)."""
    text = unicodedata.normalize("NFD", text.lower())
    return "".join(c for c in text if unicodedata.category(c) != "Mn")
