"""``tfsft data clean``: a training or evaluation table cleaned, with every change counted.

Steps, in order; each counts the rows it changed or dropped, with examples, and nothing is
dropped without a line in the report:

1. **Text**: the :mod:`tfsft.text_normalization` steps (default ``mojibake, html, nfkc,
   whitespace``; ``urls``, ``emails``, ``handles``, ``numbers`` on request) on every text
   column. ``mojibake`` is fixed with ftfy here (mixed and partial damage too). A row whose text
   is empty afterwards is dropped.
2. **Leakage** (``against``): rows whose text also occurs in another file (the training file,
   when cleaning validation or test data) are dropped; texts compare after cleaning, case,
   accents and punctuation aside.
3. **Conflicting labels**: rows with the same text and different labels are all dropped
   (``conflicts="drop"``), or the label that most of them carry is kept on the first
   (``"majority"``; a tie drops them all), or they are left (``"keep"``).
4. **Duplicates**: a row whose text and label repeat an earlier row's is dropped: ``exact``
   when its texts are the same characters as the earlier row's, ``normalised`` when they are the
   same after cleaning, case, accents and punctuation aside.

Train with ``--normalize`` set to the same text steps so that predict and the SavedModel apply
them to new texts (the report says which).

>>> import pandas as pd
>>> from tfsft.data.readers import read_table
>>> table = read_table(pd.DataFrame({"text": ["Great  <b>film</b>", "great film!", "dull",
...                                           "dull", "cafÃ©"], "label": [1, 1, 0, 1, 1]}))
>>> rows, report = clean_table(table, ["text"], ["label"])
>>> [row["text"] for row in rows], report["kept"]
(['Great film', 'café'], 2)
>>> {step["step"]: step["rows"] for step in report["steps"]}["html"]
1
"""

from __future__ import annotations

import io
import logging
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from tfsft.choices import CONFLICT_RULES
from tfsft.data.examples import normalize_label
from tfsft.data.readers import Table, read_table
from tfsft.errors import ConfigError, DataError
from tfsft.text_normalization import DEFAULT_STEPS, normalize_texts

logger = logging.getLogger(__name__)

#: Examples kept per step in the report (every dropped row is listed in the JSON report).
EXAMPLES = 5


def clean_texts(texts: Sequence[str], step: str) -> list[str]:
    """``texts`` after one text step (``mojibake`` by ftfy, the others as the graph does)."""
    if step == "mojibake":
        import ftfy

        return [ftfy.fix_encoding(text) for text in texts]
    return normalize_texts(texts, (step,))


def clean_table(table: Table, text_columns: Sequence[str], label_columns: Sequence[str],
                steps: Sequence[str] = DEFAULT_STEPS, conflicts: str = "drop",
                drop_duplicates: bool = True, against: dict[Any, str] | None = None,
                read_label: Callable[[dict[str, Any], str], Any] | None = None,
                ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The cleaned rows of ``table`` and the report of what each step did (see the module
    docstring). ``against`` maps the text keys (:func:`text_key`) of other files' rows to
    where they are. ``read_label(row, where)``: a row's label as the task reads it (``4.5``
    and ``4.50`` one score, ``PER|LOC`` and ``LOC|PER`` one label set), raising
    :class:`DataError` for a missing or bad one (such rows are dropped, each with its reason);
    default: the label cells as they are."""
    if conflicts not in CONFLICT_RULES:
        raise ConfigError(f"--conflicts must be one of {', '.join(CONFLICT_RULES)}, got "
                          f"{conflicts!r}")
    _check_columns(table, [*text_columns, *label_columns])
    rows = [dict(row) for row in table.rows]
    where = list(table.locations)
    report: dict[str, Any] = {"source": table.source, "rows": len(rows),
                              "text_columns": list(text_columns),
                              "label_columns": list(label_columns),
                              "normalization": list(steps), "steps": [], "dropped": []}
    not_text = [i for i, row in enumerate(rows)
                if any(row[c] is not None and not isinstance(row[c], str) for c in text_columns)]
    _drop(report, "text is not a string", not_text, rows, where, text_columns,
          lambda i: "a text cell holds " + ", ".join(
              type(rows[i][c]).__name__ for c in text_columns
              if rows[i][c] is not None and not isinstance(rows[i][c], str)))
    skip = set(not_text)
    labels: list[Any] = [None] * len(rows)
    problems: dict[int, str] = {}
    for i, row in enumerate(rows):
        if i in skip or not label_columns:
            continue
        try:
            labels[i] = (read_label(row, where[i]) if read_label is not None
                         else _label_key(row, label_columns))
        except DataError as exc:
            problems[i] = exc.problem
    _drop(report, "label missing or not valid", sorted(problems), rows, where, text_columns,
          problems.get)
    skip |= set(problems)
    for step in steps:
        report["steps"].append(_text_step(rows, where, text_columns, step, skip))
    alive = [i for i, row in enumerate(rows) if i not in skip
             and all(isinstance(row[c], str) and row[c].strip() for c in text_columns)]
    left = set(alive)
    _drop(report, "empty after cleaning", [i for i in range(len(rows))
                                           if i not in left and i not in skip],
          rows, where, text_columns, lambda i: "no text is left")
    keys = [text_key(rows[i], text_columns) if i in left else None for i in range(len(rows))]
    if against is not None:
        leaked = [i for i in alive if keys[i] in against]
        _drop(report, "also in --against", leaked, rows, where, text_columns,
              lambda i: f"the same text is at {against[keys[i]]}")
        alive = [i for i in alive if keys[i] not in against]
    if label_columns and conflicts != "keep":
        alive = _resolve_conflicts(report, alive, keys, labels, rows, where, text_columns,
                                   label_columns, conflicts)
    if drop_duplicates:
        alive = _drop_duplicates(report, alive, keys, labels, rows, where, text_columns)
    report["kept"] = len(alive)
    report["dropped_rows"] = len(rows) - len(alive)
    return [rows[i] for i in alive], report


def text_key(row: dict[str, Any], text_columns: Sequence[str]) -> tuple[str, ...]:
    """The texts of a row with case, accents, punctuation (Unicode P categories) and spacing
    aside, as a comparison key. Symbols count (``C++`` is not ``C#``, nor ``😀`` ``😢``), and a
    text of punctuation only compares as it is (``!!!`` is not ``???``).

    >>> text_key({"t": "The FILM -- was  Good!"}, ["t"]) == text_key({"t": "the film was good"}, ["t"])
    True
    >>> text_key({"t": "I love C++"}, ["t"]) == text_key({"t": "I love C#"}, ["t"])
    False
    """
    texts = ["" if row[c] is None else str(row[c]) for c in text_columns]
    return tuple(_comparable(text) or text for text in texts)


def _comparable(text: str) -> str:
    text = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", text).casefold())
    kept = "".join(" " if unicodedata.category(c).startswith("P") else c for c in text
                   if unicodedata.category(c) != "Mn")
    return " ".join(kept.split())


def _check_columns(table: Table, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise DataError(table.source, None, f"no column {', '.join(map(repr, missing))}; the "
                        f"columns are {', '.join(table.columns)}", "name the text and label "
                        "columns with --text-column / --label-column (or --unlabelled)")


def _text_step(rows: list[dict[str, Any]], where: list[str], text_columns: Sequence[str],
               step: str, skip: set[int] | frozenset = frozenset()) -> dict[str, Any]:
    changed: set[int] = set()
    examples: list[dict[str, Any]] = []
    for column in text_columns:
        indices = [i for i, row in enumerate(rows)
                   if isinstance(row[column], str) and i not in skip]
        after = clean_texts([rows[i][column] for i in indices], step)
        for i, text in zip(indices, after, strict=True):
            if text != rows[i][column]:
                if len(examples) < EXAMPLES:
                    examples.append({"where": where[i], "column": column,
                                     "before": rows[i][column], "after": text})
                rows[i][column] = text
                changed.add(i)
    return {"step": step, "rows": len(changed), "examples": examples}


def hashable_label(value: Any, unordered: bool = False) -> Any:
    """A label as a comparison key: lists become tuples (sorted where their order does not
    count: a multi-label set).

    >>> hashable_label(["PER", "LOC"], unordered=True), hashable_label([4.5, 1.0])
    (('LOC', 'PER'), (4.5, 1.0))
    """
    if isinstance(value, (list, tuple)):
        items = [str(v) for v in value] if unordered else list(value)
        return tuple(sorted(items)) if unordered else tuple(items)
    return value


def _label_key(row: dict[str, Any], label_columns: Sequence[str]) -> tuple[Any, ...]:
    key = []
    for column in label_columns:
        value = row[column]
        if isinstance(value, (list, tuple)):
            key.append(tuple(sorted(str(normalize_label(v)) for v in value)))
        else:
            key.append(normalize_label(value))
    return tuple(key)


def _drop(report: dict[str, Any], reason: str, indices: Sequence[int],
          rows: list[dict[str, Any]], where: list[str], text_columns: Sequence[str],
          detail) -> None:
    """Record ``indices`` as dropped for ``reason`` (a count, examples, and every row)."""
    entries = [{"where": where[i], "reason": reason, "detail": detail(i),
                "text": " | ".join(str(rows[i][c]) for c in text_columns)} for i in indices]
    report["dropped"].extend(entries)
    report["steps"].append({"step": reason, "rows": len(indices),
                            "examples": entries[:EXAMPLES]})


def _resolve_conflicts(report, alive, keys, labels, rows, where, text_columns, label_columns,
                       rule) -> list[int]:
    groups: dict[Any, list[int]] = defaultdict(list)
    for i in alive:
        groups[keys[i]].append(i)
    conflicting = {key: members for key, members in groups.items()
                   if len({labels[i] for i in members}) > 1}
    dropped: list[int] = []
    relabelled = 0
    for members in conflicting.values():
        votes = Counter(labels[i] for i in members).most_common()
        if rule == "majority" and (len(votes) == 1 or votes[0][1] > votes[1][1]):
            winner = votes[0][0]
            keep = members[0]
            if labels[keep] != winner:  # the first row carries the majority label
                donor = next(i for i in members if labels[i] == winner)
                for column in label_columns:
                    rows[keep][column] = rows[donor][column]
                labels[keep] = winner
                relabelled += 1
            dropped += [i for i in members if i != keep]
        else:
            dropped += members
    first = {key: members[0] for key, members in conflicting.items()}

    def detail(i: int) -> str:
        shown = ", ".join(f"{_shown(label)} x{count}" for label, count in
                          Counter(labels[j] for j in conflicting[keys[i]]).most_common())
        return f"the text at {where[first[keys[i]]]} is labelled {shown}"

    name = "conflicting labels" + (" (majority kept)" if rule == "majority" else "")
    _drop(report, name, sorted(dropped), rows, where, text_columns, detail)
    report["steps"][-1].update(groups=len(conflicting), relabelled=relabelled)
    gone = set(dropped)
    return [i for i in alive if i not in gone]


def _shown(label: Any) -> str:
    """A label key as the report shows it: ``pos``, ``LOC|PER``, ``4.5/1.0``."""
    if isinstance(label, tuple):
        return "/".join(_shown(part) for part in label) if label else "(none)"
    return str(label)


def _drop_duplicates(report, alive, keys, labels, rows, where, text_columns) -> list[int]:
    seen_exact: dict[Any, int] = {}
    seen_normal: dict[Any, int] = {}
    exact, normalised, kept = [], [], []
    original = {}
    for i in alive:
        raw = (tuple(rows[i][c] for c in text_columns), labels[i])
        normal = (keys[i], labels[i])
        if raw in seen_exact:
            exact.append(i)
            original[i] = seen_exact[raw]
        elif normal in seen_normal:
            normalised.append(i)
            original[i] = seen_normal[normal]
        else:
            kept.append(i)
        seen_exact.setdefault(raw, i)
        seen_normal.setdefault(normal, i)
    _drop(report, "exact duplicates", exact, rows, where, text_columns,
          lambda i: f"repeats {where[original[i]]}")
    _drop(report, "normalised duplicates", normalised, rows, where, text_columns,
          lambda i: f"repeats {where[original[i]]} (case, accents or punctuation aside)")
    return kept


# -- files ------------------------------------------------------------------------------------

def against_keys(paths: Sequence[str], text_columns: Sequence[str], steps: Sequence[str],
                 read: dict[str, Any]) -> dict[Any, str]:
    """The text keys of the rows of ``paths`` (cleaned by ``steps`` first), with where each
    first occurs (``train.tsv, line 12``)."""
    keys: dict[Any, str] = {}
    for path in paths:
        table = read_table(path, **read)
        missing = [c for c in text_columns if c not in table.columns]
        if missing:
            raise DataError(table.source, None, f"no column {', '.join(map(repr, missing))}; "
                            f"the columns are {', '.join(table.columns)}", "name its text "
                            "column with --against-text-column (and --against-text-pair-column)")
        rows = [dict(row) for row in table.rows]
        for step in steps:
            _text_step(rows, list(table.locations), text_columns, step)
        for row, where in zip(rows, table.locations, strict=True):
            keys.setdefault(text_key(row, text_columns), f"{path}, {where}")
    return keys


def format_report(report: dict[str, Any]) -> str:
    """The report as lines of text: each step's count and examples."""
    out = io.StringIO()
    out.write(f"{report['source']}: {report['rows']} rows, {report['kept']} kept, "
              f"{report['dropped_rows']} dropped\n")
    for step in report["steps"]:
        extra = (f" ({step['groups']} texts, {step.get('relabelled', 0)} relabelled)"
                 if "groups" in step else "")
        verb = "changed" if step["step"] in (report["normalization"]) else "dropped"
        out.write(f"  {step['step']:28} {step['rows']:7} rows {verb}{extra}\n")
        for example in step["examples"][:3]:
            if "before" in example:
                out.write(f"      {example['where']}: {example['before'][:70]!r} -> "
                          f"{example['after'][:70]!r}\n")
            else:
                out.write(f"      {example['where']}: {example['text'][:70]!r} "
                          f"({example['detail']})\n")
    return out.getvalue()
