"""Pairs of texts for embedding training: (anchor, positive[, negative]) or scored pairs.

Every row is checked as it is read: a missing or empty text, or a score that is not a number or
lies outside ``score_range``, is an error naming the file and line. Rows whose positive is the
anchor itself, or whose hard negative is the anchor or the positive, teach nothing (or the
opposite) and are skipped (counted); anchors that occur more than once are
counted (in-batch training masks them, so they are not taken for negatives).

>>> import pandas as pd
>>> from tfsft.data.readers import read_table
>>> table = read_table(pd.DataFrame({"anchor": ["a cat", "a dog", "a dog"],
...                                  "positive": ["kitten", "puppy", "a dog"]}))
>>> pairs = read_pairs(table, PairColumns("anchor", "positive"))
>>> pairs.texts, pairs.text_pairs, pairs.skipped
(['a cat', 'a dog'], ['kitten', 'puppy'], {'positive_equals_anchor': 1})
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tfsft.data.readers import Table, visible
from tfsft.errors import DataError

logger = logging.getLogger(__name__)
#: Files read as plain text, one text a line (anything else is a table with a text column).
TEXT_SUFFIXES = (".txt", ".txt.gz", ".txt.bz2", ".txt.xz")


@dataclass(frozen=True)
class PairColumns:
    """The columns of a pair: anchor and positive texts, an optional hard negative, and an
    optional similarity score (scored pairs) with the range its values lie in."""

    anchor: str
    positive: str
    negative: str | None = None
    score: str | None = None
    score_range: tuple[float, float] = (0.0, 1.0)


@dataclass
class PairExamples:
    """Anchors (``texts``) with their positives (``text_pairs``; None when unlabelled, e.g.
    texts to embed), optional hard ``negatives`` and ``scores`` (scaled to 0..1)."""

    texts: list[str]
    text_pairs: list[str] | None
    negatives: list[str] | None = None
    scores: np.ndarray | None = None
    source: str = "data"
    locations: list[str] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    duplicate_anchors: int = 0

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def targets(self) -> Any:
        """Each example's target for the data check: its score, else its positive."""
        return self.scores if self.scores is not None else self.text_pairs

    def subset(self, indices: Sequence[int] | np.ndarray) -> PairExamples:
        indices = [int(i) for i in np.asarray(indices, dtype=np.int64)]

        def pick(values):
            return None if values is None else [values[i] for i in indices]

        return dataclasses.replace(
            self, texts=pick(self.texts), text_pairs=pick(self.text_pairs),
            negatives=pick(self.negatives),
            scores=None if self.scores is None else self.scores[indices],
            locations=pick(self.locations) if self.locations else [],
            skipped=dict(self.skipped))


def read_pairs(table: Table, columns: PairColumns, labelled: bool = True,
               max_rows: int | None = None) -> PairExamples:
    """Checked pairs from ``table`` (``labelled=False``: anchors only, texts to embed)."""
    wanted = [columns.anchor]
    if labelled:
        wanted += [c for c in (columns.positive, columns.negative, columns.score) if c]
    missing = [c for c in wanted if c not in table.columns]
    if missing:
        raise DataError(table.source, None, f"no column(s) {missing}; the columns are "
                        f"{table.columns}", "name them with --anchor-column / "
                        "--positive-column / --negative-column / --score-column")
    anchors, positives, negatives, scores, locations = [], [], [], [], []
    skipped = Counter()
    for row, where in zip(table.rows, table.locations, strict=True):
        if max_rows is not None and len(anchors) >= max_rows:
            break
        anchor = _text(table, row, where, columns.anchor)
        if labelled:
            positive = _text(table, row, where, columns.positive)
            if positive == anchor and columns.score is None:
                skipped["positive_equals_anchor"] += 1
                continue
            negative = _text(table, row, where, columns.negative) if columns.negative else None
            if negative is not None and negative in (positive, anchor):
                skipped["negative_equals_pair"] += 1  # no model can rank it below the positive
                continue
            positives.append(positive)
            if negative is not None:
                negatives.append(negative)
            if columns.score:
                scores.append(_score(table, row, where, columns.score, columns.score_range))
        anchors.append(anchor)
        locations.append(where)
    if not anchors and skipped:
        reasons = {"positive_equals_anchor": "whose positive is the anchor itself",
                   "negative_equals_pair": "whose hard negative is the anchor or the positive"}
        said = "; ".join(f"{n} rows {reasons[k]}" for k, n in skipped.items())
        raise DataError(table.source, None, f"every pair was skipped ({said})",
                        "give each anchor a different text as its positive, and a different "
                        "one again as its negative")
    if not anchors:
        raise DataError(table.source, None, "there are no pairs to read", "add rows")
    low, high = columns.score_range
    return PairExamples(
        anchors, positives if labelled else None,
        negatives if labelled and columns.negative else None,
        (np.asarray(scores, np.float32) - low) / (high - low) if scores else None,
        source=table.source, locations=locations, skipped=dict(skipped),
        duplicate_anchors=len(anchors) - len(set(anchors)))


def _text(table: Table, row: dict[str, Any], where: str, column: str) -> str:
    value = row.get(column)
    if value is None or (isinstance(value, float) and value != value):
        raise DataError(table.source, where, f"the text (column {column!r}) is missing",
                        "fill it in or remove the row")
    if not isinstance(value, str):
        raise DataError(table.source, where, f"the text (column {column!r}) is {value!r:.40} "
                        f"({type(value).__name__}), not a string", "store text as strings")
    if not visible(value):
        raise DataError(table.source, where, f"the text (column {column!r}) is empty",
                        "fill it in or remove the row")
    return value


def _score(table: Table, row: dict[str, Any], where: str, column: str,
           score_range: tuple[float, float]) -> float:
    value = row.get(column)
    if value is None or (isinstance(value, str) and not value.strip()):
        value = float("nan")  # missing: said so below
    try:
        score = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise DataError(table.source, where, f"the score (column {column!r}) is {value!r}, not "
                        "a number", "store numbers such as 0.8") from None
    low, high = score_range
    if math.isnan(score):
        raise DataError(table.source, where, f"the score (column {column!r}) is missing or NaN",
                        "fill it in or remove the row")
    if not math.isfinite(score) or not low <= score <= high:
        raise DataError(table.source, where, f"the score (column {column!r}) is {value!r}, "
                        f"outside the score range {low:g}..{high:g}",
                        "fix the score, or set --score-range LOW HIGH")
    return score


def read_corpus(path: str, column: str = "text") -> list[str]:
    """The texts of a corpus to search: a ``.txt`` file, one text a line (blank lines are
    skipped and counted), or a CSV/TSV/JSONL/Parquet table with a ``column`` of texts (an
    empty text is an error naming its row)."""
    from pathlib import Path

    from tfsft.data.readers import read_table, read_text_lines, require_file

    if Path(path).exists():
        require_file(path)  # a pipe or a folder is named as such, whatever its name
    if str(path).endswith(TEXT_SUFFIXES):
        texts, blank = read_text_lines(path)
        if blank:
            logger.warning("%s: %d blank lines skipped", path, blank)
    else:
        from tfsft.data.readers import guess_format

        if str(path).lower().endswith((".npz", ".npy")):
            raise DataError(str(path), None, "is a vector index, and only tfsft search reads "
                            "one", "give the texts themselves here (a .txt file, one a line, or "
                            "a table with a text column)")
        try:
            guess_format(Path(path))
        except DataError:
            raise DataError(str(path), None, "cannot tell from its extension what the file "
                            "holds", "name it .txt (one text a line) or .csv, .tsv, .jsonl or "
                            ".parquet (a table with a text column)") from None
        table = read_table(path)
        if column not in table.columns:
            raise DataError(str(path), None, f"no column {column!r}; the columns are "
                            f"{table.columns}", "name the text column (--text-column, or "
                            "--corpus-column in training)")
        texts = [_text(table, row, where, column)
                 for row, where in zip(table.rows, table.locations, strict=True)]
    if not texts:
        raise DataError(str(path), None, "there are no texts", "add texts, one a line")
    return texts
