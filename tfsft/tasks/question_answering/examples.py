"""Question-answering examples: SQuAD v1.1 / v2.0 JSON, flat tables and Hugging Face datasets.

Layouts read:

- SQuAD JSON (``.json``): ``{"data": [{"title", "paragraphs": [{"context", "qas": [{"id",
  "question", "answers": [{"text", "answer_start"}], "is_impossible"}]}]}]}``; evaluation files
  list several answers per question; v2.0 questions with ``is_impossible`` have none.
- Flat rows (JSONL / CSV / TSV / Parquet / DataFrame): ``question``, ``context``,
  ``answer_text``, ``answer_start`` columns (an empty answer: an unanswerable question), or an
  ``answers`` column in the Hugging Face SQuAD layout ``{"text": [...], "answer_start": [...]}``;
  an optional ``id`` column.
- Hugging Face datasets in the SQuAD layout (``id``, ``question``, ``context``, ``answers``).

Every answer is checked against its context (``context[start:start + len(text)] == text``); a
mismatch stops with the question's id and what the context holds there, or is skipped and
counted with ``skip_bad_answers``.

>>> data = examples_from_rows([{"question": "Who?", "context": "Ada wrote it.",
...                             "answer_text": "Ada", "answer_start": 0}], "rows")
>>> data.questions, data.answers
(['Who?'], [[('Ada', 0)]])
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tfsft.data.readers import Table, read_table, visible
from tfsft.errors import DataError

Answer = tuple[str, int]  # answer text and its character offset in the context


@dataclass
class QAExamples:
    """Questions with their contexts and gold answers (``answers[i] == []``: unanswerable;
    ``answers is None``: unlabelled)."""

    ids: list[str]
    questions: list[str]
    contexts: list[str]
    answers: list[list[Answer]] | None
    source: str = "data"
    locations: list[str] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.questions)

    # the data check and the export verification see questions and contexts as text pairs
    @property
    def texts(self) -> list[str]:
        return self.questions

    @property
    def text_pairs(self) -> list[str]:
        return self.contexts

    @property
    def targets(self) -> list[tuple] | None:
        if self.answers is None:
            return None
        return [tuple(a) for a in self.answers]

    @property
    def gold_texts(self) -> list[list[str]]:
        return [[text for text, _ in answers] for answers in self.answers or []]

    @property
    def unanswerable(self) -> int:
        return sum(not a for a in self.answers or [])

    def subset(self, indices: Sequence[int] | np.ndarray) -> QAExamples:
        indices = [int(i) for i in np.asarray(indices, dtype=np.int64)]
        return dataclasses.replace(
            self, ids=[self.ids[i] for i in indices],
            questions=[self.questions[i] for i in indices],
            contexts=[self.contexts[i] for i in indices],
            answers=None if self.answers is None else [self.answers[i] for i in indices],
            locations=[self.locations[i] for i in indices] if self.locations else [],
            skipped=dict(self.skipped))


@dataclass(frozen=True)
class QAColumns:
    """Column names of flat question-answering data."""

    question: str = "question"
    context: str = "context"
    answer_text: str = "answer_text"
    answer_start: str = "answer_start"
    answers: str = "answers"
    id: str = "id"


def read_qa_data(source: Any, columns: QAColumns = QAColumns(), labelled: bool = True,
                 skip_bad_answers: bool = False, max_rows: int | None = None,
                 file_format: str | None = None, encoding: str = "utf-8",
                 delimiter: str | None = None, quoting: bool = True) -> QAExamples:
    """Examples from a SQuAD JSON file, a table file, a DataFrame or a dataset (see above)."""
    if isinstance(source, (str, Path)) and file_format is None:
        squad = _squad_json(Path(source), encoding)
        if squad is not None:
            return examples_from_squad(squad, str(source), labelled, skip_bad_answers, max_rows)
    table = source if isinstance(source, Table) else read_table(source, file_format, encoding,
                                                                delimiter, quoting)
    return examples_from_table(table, columns, labelled, skip_bad_answers, max_rows)


def _squad_json(path: Path, encoding: str) -> dict | None:
    """The parsed file if ``path`` is one JSON document (SQuAD layout checked); None for JSON
    lines and other formats."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in (".gz", ".bz2", ".xz"):
        suffixes = suffixes[:-1]
    if not suffixes or suffixes[-1] != ".json" or not path.is_file():
        return None
    from tfsft.data.readers import _decode, _read_bytes

    text = _decode(path, _read_bytes(path), encoding)
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":  # one object per line: JSON lines
            return None
        raise DataError(str(path), f"line {exc.lineno}, column {exc.colno}",
                        f"invalid JSON ({exc.msg})",
                        "fix the file, or write one JSON object per line") from exc
    if not isinstance(document, dict) or "data" not in document:
        if isinstance(document, dict) and {"question", "context"} <= set(document):
            return None  # a single flat record
        found = (f"an object with keys {sorted(document)[:6]}" if isinstance(document, dict)
                 else f"a {type(document).__name__}")
        raise DataError(str(path), None, f"not in the SQuAD layout: found {found}, expected "
                        '{"data": [{"paragraphs": [{"context": ..., "qas": [...]}]}]}',
                        "write the SQuAD JSON layout, or one JSON object per line with "
                        "question, context, answer_text and answer_start")
    return document


def _layout_error(source: str, where: str, problem: str) -> DataError:
    return DataError(source, where, problem, 'a SQuAD file holds {"data": [{"paragraphs": '
                     '[{"context": "...", "qas": [{"id", "question", "answers": [{"text", '
                     '"answer_start"}]}]}]}]}')


def examples_from_squad(document: dict, source: str, labelled: bool = True,
                        skip_bad_answers: bool = False,
                        max_rows: int | None = None) -> QAExamples:
    """Examples from a parsed SQuAD v1.1 / v2.0 document (one per question)."""
    builder = _Builder(source, labelled, skip_bad_answers)
    articles = document["data"]
    if not isinstance(articles, list):
        raise _layout_error(source, "data", f"data is a {type(articles).__name__}, not a list")
    for a, article in enumerate(articles):
        paragraphs = article.get("paragraphs") if isinstance(article, dict) else None
        if not isinstance(paragraphs, list):
            raise _layout_error(source, f"data[{a}]", "the article has no paragraphs list")
        for p, paragraph in enumerate(paragraphs):
            where = f"data[{a}].paragraphs[{p}]"
            if not isinstance(paragraph, dict) or not isinstance(paragraph.get("qas"), list):
                raise _layout_error(source, where, "the paragraph has no qas list")
            context = paragraph.get("context")
            for q, qa in enumerate(paragraph["qas"]):
                if max_rows is not None and len(builder.questions) >= max_rows:
                    return builder.examples()
                if not isinstance(qa, dict):
                    raise _layout_error(source, f"{where}.qas[{q}]", "a question is not an object")
                qid = str(qa.get("id", f"{where}.qas[{q}]"))
                answers = None
                if labelled:
                    answers = qa.get("answers", [])
                    if qa.get("is_impossible"):
                        if answers:  # SQuAD v2 keeps such spans in plausible_answers
                            raise DataError(source, f"question {qid!r}", "is_impossible is "
                                            "true, yet the question has answers", "set "
                                            "is_impossible to false, or move the answers to "
                                            "plausible_answers")
                        answers = []
                    if not isinstance(answers, list):
                        raise _layout_error(source, f"question {qid!r}", "answers is not a list")
                    answers = [(x.get("text"), x.get("answer_start")) if isinstance(x, dict)
                               else (None, None) for x in answers]
                builder.add(qid, qa.get("question"), context, answers, f"question {qid!r}")
    return builder.examples()


def examples_from_table(table: Table, columns: QAColumns = QAColumns(), labelled: bool = True,
                        skip_bad_answers: bool = False,
                        max_rows: int | None = None) -> QAExamples:
    """Examples from flat rows (see the module docstring)."""
    missing = [c for c in (columns.question, columns.context) if c not in table.columns]
    if missing:
        raise DataError(table.source, None, f"no column(s) {missing}; the columns are "
                        f"{table.columns}", "name them with --question-column / --context-column")
    nested = columns.answers in table.columns
    if labelled and not nested and columns.answer_text not in table.columns:
        raise DataError(table.source, None, f"no answer column: neither {columns.answers!r} nor "
                        f"{columns.answer_text!r} (with {columns.answer_start!r}); the columns "
                        f"are {table.columns}", "name them with --answer-text-column and "
                        "--answer-start-column (or --answers-column)")
    if labelled and not nested and columns.answer_start not in table.columns:
        raise DataError(table.source, None, f"no column {columns.answer_start!r} with the "
                        "character offset of each answer", "name it with --answer-start-column")
    builder = _Builder(table.source, labelled, skip_bad_answers)
    for index, (row, where) in enumerate(zip(table.rows, table.locations, strict=True)):
        if max_rows is not None and index >= max_rows:
            break
        qid = row.get(columns.id)
        qid = str(qid) if qid is not None else where
        answers = None
        if labelled:
            answers = (_nested_answers(row.get(columns.answers), table.source, where) if nested
                       else _flat_answer(row.get(columns.answer_text),
                                         row.get(columns.answer_start)))
        builder.add(qid, row.get(columns.question), row.get(columns.context), answers,
                    f"{where} (id {qid!r})" if qid != where else where)
    return builder.examples()


def examples_from_rows(rows: Sequence[dict[str, Any]], source: str = "rows",
                       columns: QAColumns = QAColumns(), labelled: bool = True) -> QAExamples:
    """Examples from in-memory dicts (as :func:`examples_from_table`)."""
    names = list(dict.fromkeys(k for row in rows for k in row))
    table = Table(source, names, list(rows), [f"row {i}" for i in range(1, len(rows) + 1)])
    return examples_from_table(table, columns, labelled)


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value == ""


def _flat_answer(text: Any, start: Any) -> list[tuple[Any, Any]]:
    if _is_missing(text) and (_is_missing(start) or str(start).strip() in ("-1", "-1.0")):
        return []  # unanswerable
    return [(text, start)]


def _nested_answers(value: Any, source: str, where: str) -> list[tuple[Any, Any]]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise DataError(source, where, f"the answers cell is not JSON ({exc.msg})",
                            'write {"text": [...], "answer_start": [...]}') from exc
    if isinstance(value, dict):  # Hugging Face layout: parallel lists
        texts, starts = value.get("text"), value.get("answer_start")
        if not isinstance(texts, list) or not isinstance(starts, list) or len(texts) != len(starts):
            raise DataError(source, where, "answers needs lists text and answer_start of the same "
                            "length", 'write {"text": ["..."], "answer_start": [0]}')
        return list(zip(texts, starts, strict=True))
    if isinstance(value, list):  # SQuAD layout: a list of {"text", "answer_start"}
        return [(a.get("text"), a.get("answer_start")) if isinstance(a, dict) else (None, None)
                for a in value]
    raise DataError(source, where, f"answers is {value!r:.40}, not a dict or list",
                    'write {"text": [...], "answer_start": [...]}')


class _Builder:
    """Checks each question and collects the examples."""

    def __init__(self, source: str, labelled: bool, skip_bad_answers: bool):
        self.source, self.labelled, self.skip_bad_answers = source, labelled, skip_bad_answers
        self.ids: list[str] = []
        self.questions: list[str] = []
        self.contexts: list[str] = []
        self.answers: list[list[Answer]] = []
        self.locations: list[str] = []
        self.skipped: Counter = Counter()
        self._first: dict[str, str] = {}  # where each question id was first seen

    def _text(self, value: Any, what: str, where: str) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            raise DataError(self.source, where, f"the {what} is missing",
                            f"fill in the {what} or remove the question")
        if not isinstance(value, str):
            raise DataError(self.source, where, f"the {what} is {value!r:.40} "
                            f"({type(value).__name__}), not a string", "store text as strings")
        if not visible(value):
            raise DataError(self.source, where, f"the {what} is empty",
                            f"fill in the {what} or remove the question")
        return value

    def add(self, qid: str, question: Any, context: Any, answers: list | None,
            where: str) -> None:
        question = self._text(question, "question", where)
        context = self._text(context, "context", where)
        checked: list[Answer] = []
        for text, start in answers or []:
            problem = _answer_problem(context, text, start)
            if problem:
                if self.skip_bad_answers:
                    self.skipped["answer not at answer_start"] += 1
                    return
                raise DataError(self.source, where, problem, "fix answer_start (a character "
                                "offset into the context, counted from 0) or the answer text, "
                                "or pass --skip-bad-answers to leave such questions out "
                                "(they are counted)")
            checked.append((text, int(float(start))))
        if qid in self._first:  # predictions.json, the file SQuAD scoring reads, is keyed by id
            earlier = ("occurs more than once" if self._first[qid] == where else
                       f"is also the id of the question at {self._first[qid]}")
            raise DataError(self.source, where, f"the question id {qid!r} {earlier}",
                            "give every question an id of its own (predictions.json keeps one "
                            "answer per id)")
        self._first[qid] = where
        self.ids.append(qid)
        self.questions.append(question)
        self.contexts.append(context)
        self.answers.append(checked)
        self.locations.append(where)

    def examples(self) -> QAExamples:
        if not self.questions and self.skipped:
            counts = ", ".join(f"{n} {why}" for why, n in self.skipped.items())
            raise DataError(self.source, None, f"every question was skipped ({counts}), so "
                            "none is left", "fix the answers' answer_start offsets (see the "
                            "first one without --skip-bad-answers)")
        if not self.questions:
            raise DataError(self.source, None, "holds no questions",
                            "add questions (SQuAD JSON, or rows with question and context)")
        return QAExamples(self.ids, self.questions, self.contexts,
                          self.answers if self.labelled else None, self.source, self.locations,
                          dict(self.skipped))


def _answer_problem(context: str, text: Any, start: Any) -> str | None:
    """Why an answer does not sit at its offset in the context (None if it does)."""
    if not isinstance(text, str) or not text.strip():
        return f"the answer text is {text!r:.40}, not a non-empty string"
    try:
        offset = float(start)
    except (TypeError, ValueError):
        return f"answer_start is {start!r:.40}, not a character offset"
    if not math.isfinite(offset) or offset != int(offset) or offset < 0:
        return f"answer_start is {start!r:.40}, not a character offset (an integer >= 0)"
    offset = int(offset)
    found = context[offset:offset + len(text)]
    if found == text:
        return None
    nearby = context.find(text, max(0, offset - 20))
    hint = (f"; the text occurs at offset {nearby}" if nearby >= 0 and abs(nearby - offset) <= 20
            else "" if text in context else "; the text does not occur in the context")
    if offset >= len(context):
        return (f"answer_start {offset} is past the end of the context ({len(context)} "
                f"characters){hint}")
    return (f"the answer {text!r:.60} is not at answer_start {offset}: the context holds "
            f"{found!r:.60} there{hint}")
