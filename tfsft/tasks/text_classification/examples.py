"""Text-classification examples: one label per text (or text pair), read and checked row by
row, with a stratified validation split.

>>> import pandas as pd
>>> frame = pd.DataFrame({"review": ["great", "awful", "fine"], "stars": ["pos", "neg", "pos"]})
>>> data = read_text_classification(frame, text_column="review", label_column="stars")
>>> data.labels, data.label_ids.tolist()
(('neg', 'pos'), [1, 0, 1])
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tfsft.data.examples import (
    SKIP,
    TextExamples,
    TextRows,
    normalize_label,
    read_text_rows,
    refuse_missing_value_marker,
    sort_labels,
    split_examples,
)
from tfsft.data.readers import Table, read_table
from tfsft.errors import DataError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Columns:
    """Which columns hold the text, the optional second text and the label."""

    text: str = "text"
    text_pair: str | None = None
    label: str | None = "label"


class TextClassificationData(TextExamples):
    """Texts with integer labels indexing ``labels`` (``targets`` / ``target_names``)."""

    @property
    def label_ids(self) -> np.ndarray | None:
        return self.targets

    @property
    def labels(self) -> tuple[str, ...]:
        return self.target_names


def read_text_classification(
    source: Any,
    text_column: str = "text",
    label_column: str | None = "label",
    text_pair_column: str | None = None,
    labels: Sequence[str] | None = None,
    exclude_labels: Sequence[str] = (),
    max_rows: int | None = None,
    file_format: str | None = None,
    encoding: str = "utf-8",
    delimiter: str | None = None,
    quoting: bool = True,
) -> TextClassificationData:
    """Read and check labelled texts from any source :func:`read_table` accepts.

    ``labels`` fixes the label list (as saved by a training run); a label outside it is an error.
    Without it the list is built from the data. ``exclude_labels`` skips rows carrying those labels
    (the count is logged and kept in ``skipped``). ``label_column=None`` reads unlabelled text.
    """
    table = source if isinstance(source, Table) else read_table(
        source, file_format, encoding, delimiter, quoting)
    columns = Columns(text=text_column, text_pair=text_pair_column, label=label_column)
    return examples_from_table(table, columns, labels, exclude_labels, max_rows)


def label_reader(source: str, column: str, labels: Sequence[str] | None = None,
                 exclude_labels: Sequence[str] = ()) -> Callable[[dict[str, Any], str], Any]:
    """A :func:`read_text_rows` target reader for one label per row (a string).

    Blank labels and labels outside ``labels`` (when given) are errors naming the row; labels
    in ``exclude_labels`` make the row :data:`SKIP`.
    """
    excluded = {str(x) for x in exclude_labels}
    known = None if labels is None else set(labels)
    spellings: dict[str, tuple[str, str]] = {}  # label -> its first spelling and its row
    warned: set[str | bool] = set()  # labels (and True: yes/no values) warned of once

    def read_label(row: dict[str, Any], where: str) -> Any:
        value = row.get(column)
        if isinstance(value, (list, tuple, dict)):
            raise DataError(source, where, f"the label (column {column!r}) is "
                            f"{'a list' if isinstance(value, (list, tuple)) else 'an object'} "
                            f"({value!r}), not one label",
                            "for several labels per text train --task "
                            "multi-label-classification; else give each row one label")
        label = normalize_label(value)
        if isinstance(value, bool) and True not in warned:
            warned.add(True)
            logger.warning("%s, %s: the label (column %r) is %s, a yes/no value: true/false "
                           "labels are read as the classes '1' and '0'", source, where, column,
                           str(value).lower())
        if isinstance(value, str) and label is not None:
            _warn_merged_spelling(spellings, warned, label, value.strip(), source, where,
                                  column)
        refuse_missing_value_marker(label, source, where, column)
        if label is None:
            raise DataError(source, where, f"the label (column {column!r}) is empty",
                            "give every row a label, or remove the row")
        if label in excluded:
            return SKIP
        if known is not None and label not in known:
            raise DataError(
                source, where, f"label {label!r} was not seen in training; the model "
                f"knows {', '.join(repr(k) for k in labels)}",
                "fix the label, or train a model that includes it",
            )
        return label

    return read_label


def _warn_merged_spelling(spellings: dict[str, tuple[str, str]], warned: set[str | bool],
                          label: str, spelling: str, source: str, where: str,
                          column: str) -> None:
    """Warn (once per label) where a number written another way ("01", "1.0") joins the
    label of an earlier spelling ("1"): numbers are one label however they are written."""
    first, first_where = spellings.setdefault(label, (spelling, where))
    if first != spelling and label not in warned:
        warned.add(label)
        logger.warning("%s, %s: the label %r (column %r) is read as %r, the same class as %r at "
                       "%s: numbers are one label however they are written; if these are "
                       "different classes, write them as words (such as c01)", source, where,
                       spelling, column, label, first, first_where)


def classification_examples(rows: TextRows, source: str, labels: Sequence[str] | None,
                            exclude_labels: Sequence[str] = (),
                            labelled: bool = True, chunk: bool = False) -> TextClassificationData:
    """Examples from rows read with :func:`label_reader` (label list from the data if None).
    ``chunk``: the rows are part of a larger file (which is checked whole): they may all have
    been skipped, and skipping is not logged."""
    excluded = sorted({str(x) for x in exclude_labels})
    if not rows.texts and not chunk:
        raise DataError(source, None, f"no rows are left after skipping labels {excluded}",
                        "check --exclude-labels")
    if rows.skipped and not chunk:
        logger.warning("%s: skipped %d rows whose label is one of %s (--exclude-labels)",
                       source, rows.skipped, excluded)
    label_list = tuple(labels) if labels is not None else sort_labels(set(rows.targets))
    label_index = {label: i for i, label in enumerate(label_list)}
    label_ids = (np.array([label_index[x] for x in rows.targets], dtype=np.int32)
                 if labelled else None)
    return TextClassificationData(
        rows.texts, rows.text_pairs, label_ids, label_list, source=source,
        locations=rows.locations,
        skipped={"excluded_labels": rows.skipped} if rows.skipped else {},
    )


def examples_from_table(
    table: Table,
    columns: Columns,
    labels: Sequence[str] | None = None,
    exclude_labels: Sequence[str] = (),
    max_rows: int | None = None,
) -> TextClassificationData:
    """Check ``table`` row by row and build examples (see :func:`read_text_classification`)."""
    reader = (label_reader(table.source, columns.label, labels, exclude_labels)
              if columns.label else None)
    rows = read_text_rows(table, columns.text, columns.text_pair,
                          [columns.label] if columns.label else [], reader, max_rows)
    return classification_examples(rows, table.source, labels, exclude_labels,
                                   labelled=bool(columns.label))


def stratified_split(
    data: TextClassificationData, validation_fraction: float, seed: int
) -> tuple[TextClassificationData, TextClassificationData]:
    """Split off a seeded validation set with the same label proportions.

    >>> import numpy as np
    >>> data = TextClassificationData([f"t{i}" for i in range(20)], None,
    ...                               np.array([0, 1] * 10, dtype=np.int32), ("a", "b"))
    >>> train, validation = stratified_split(data, 0.2, seed=0)
    >>> len(train), len(validation), sorted(validation.label_ids.tolist())
    (16, 4, [0, 0, 1, 1])
    """
    if data.label_ids is None:
        raise ValueError("cannot split unlabelled data")
    counts = np.bincount(data.label_ids, minlength=len(data.labels))
    stratify = data.label_ids if counts[counts > 0].min() >= 2 else None
    if stratify is None:
        logger.warning("%s: a label has fewer than 2 examples; the validation split is not "
                       "stratified", data.source)
    return split_examples(data, validation_fraction, seed, stratify)
