"""The data check: what is in a training (and validation) set, and what looks wrong with it.

``tfsft train`` runs it before it builds the model (``data_check.json`` and
``token_lengths.png`` in the run folder); ``tfsft data inspect FILE [--validation FILE]`` runs
it on its own. It reports rows, the label distribution and its imbalance, token lengths against
``max_length`` (how many texts would be cut), exact and normalised duplicates (and duplicates
that carry different labels), train/validation overlap, suspicious labels and the share of
words the vocabulary does not know. :func:`refuse_certain_mistakes` stops training on what is
certainly wrong (one class, validation data that is the training data); the rest are warnings.

>>> from tfsft.data.examples import TextExamples
>>> import numpy as np
>>> data = TextExamples(["Good.", "good", "bad"], None, np.array([1, 1, 0]), ("neg", "pos"))
>>> duplicates(data.texts, None, data.targets)["normalised"]
1
"""

from __future__ import annotations

import logging
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tfsft.data.readers import Table, visible
from tfsft.errors import DataError

logger = logging.getLogger(__name__)

DATA_CHECK_FILE = "data_check.json"
LENGTHS_PLOT = "token_lengths.png"
MISSING_VALUE_MARKERS = frozenset({"nan", "NaN", "NAN", "NA", "N/A", "n/a", "<NA>", "null",
                                   "NULL", "#N/A"})
UNKNOWN_WARNING_SHARE = 0.05
_PUNCTUATION = re.compile(r"[\W_]+", re.UNICODE)


@dataclass
class DataCheck:
    """The findings of a data check: ``report`` (JSON-able) and the ``warnings`` in words."""

    report: dict[str, Any]
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """A short text summary (what ``tfsft data inspect`` prints)."""
        lines = []
        for role in ("train", "validation"):
            part = self.report.get(role)
            if not part:
                continue
            lines.append(f"{role}: {part['source']} — {part['rows']} rows")
            labels = part.get("labels")
            if labels and labels.get("counts"):
                counts = ", ".join(f"{k} {v}" for k, v in labels["counts"].items())
                lines.append(f"  {labels['kind']}: {counts}")
                for key in ("rows_without_labels", "sentences_without_entities"):
                    if key in labels:
                        lines.append(f"  {key.replace('_', ' ')}: {labels[key]}")
                if labels.get("imbalance_ratio"):
                    lines.append(f"  imbalance ratio (largest / smallest): "
                                 f"{labels['imbalance_ratio']:.2f}")
            if labels and labels.get("values"):
                values = labels["values"]
                lines.append("  targets: " + "; ".join(
                    f"{name} min {v['min']:.3g} mean {v['mean']:.3g} max {v['max']:.3g}"
                    for name, v in values.items()))
            elif labels and not labels.get("counts"):  # a task's own summary, e.g. pairs
                lines.append(f"  {labels.get('kind', 'targets')}: " + ", ".join(
                    f"{key.replace('_', ' ')} {value}" for key, value in labels.items()
                    if key != "kind" and isinstance(value, (bool, int, float, str))))
            if part.get("skipped"):
                lines.append("  skipped rows: " + ", ".join(
                    f"{key.replace('_', ' ')} {count}" for key, count in part["skipped"].items()))
            tokens = part.get("tokens")
            if tokens:
                lines.append(
                    f"  tokens per example: median {tokens['median']}, 95th percentile "
                    f"{tokens['p95']}, longest {tokens['max']}; {tokens['over_max_length']} "
                    f"({100 * tokens['over_max_length_share']:.1f} %) longer than max_length "
                    f"{tokens['max_length']}")
                lines.append(f"  words unknown to the vocabulary ([UNK]): "
                             f"{100 * tokens['unknown_word_share']:.2f} %")
            dup = part["duplicates"]
            lines.append(f"  duplicates: {dup['exact']} exact, {dup['normalised']} after "
                         f"normalising case/punctuation/spaces, {dup['conflicting']} with "
                         "different labels")
            if part.get("blank_texts"):
                lines.append(f"  empty or whitespace texts: {part['blank_texts']['count']} "
                             f"({', '.join(part['blank_texts']['where'])})")
        overlap = self.report.get("overlap")
        if overlap:
            lines.append(f"overlap: {overlap['exact']} validation examples also in train "
                         f"({100 * overlap['exact_share']:.1f} %), {overlap['normalised']} after "
                         "normalising")
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def normalise(text: str) -> str:
    """Case, accents, punctuation and runs of spaces removed: near-duplicates compare equal.

    >>> normalise("  The FILM -- was  Good! ") == normalise("the film was good")
    True
    """
    text = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(_PUNCTUATION.sub(" ", text).split())


def _keys(texts: list[str], pairs: list[str] | None, key=lambda t: t) -> list[Any]:
    if pairs is None:
        return [key(t) for t in texts]
    return [(key(a), key(b)) for a, b in zip(texts, pairs, strict=True)]


def _target_key(targets: Any, i: int) -> Any:
    if targets is None:
        return None
    value = targets[i]
    if isinstance(value, (np.ndarray, list, tuple)):  # multi-hot rows, per-word tags
        return tuple(np.ravel(np.asarray(value)).tolist())
    return str(value)


def duplicates(texts: list[str], pairs: list[str] | None, targets: Any = None) -> dict[str, Any]:
    """Rows that repeat an earlier row: exactly, after :func:`normalise`, and with a different
    target (the same text labelled two ways)."""
    exact = _keys(texts, pairs)
    normal = _keys(texts, pairs, normalise)
    first_target: dict[Any, Any] = {}
    conflicting = 0
    for i, key in enumerate(normal):
        target = _target_key(targets, i)
        if key in first_target and target is not None and first_target[key] != target:
            conflicting += 1
        first_target.setdefault(key, target)
    return {"exact": len(exact) - len(set(exact)), "normalised": len(normal) - len(set(normal)),
            "conflicting": conflicting}


def overlap(train: Any, validation: Any) -> dict[str, Any]:
    """Validation examples whose text (and pair) also occur in training."""
    train_exact = set(_keys(train.texts, train.text_pairs))
    train_normal = set(_keys(train.texts, train.text_pairs, normalise))
    exact = sum(k in train_exact for k in _keys(validation.texts, validation.text_pairs))
    normal = sum(k in train_normal
                 for k in _keys(validation.texts, validation.text_pairs, normalise))
    rows = max(len(validation), 1)
    return {"exact": exact, "exact_share": round(exact / rows, 4), "normalised": normal,
            "normalised_share": round(normal / rows, 4)}


def token_lengths(tokenizer: Any, texts: list[str], pairs: list[str] | None,
                  max_length: int) -> tuple[dict[str, Any], np.ndarray]:
    """Word pieces per example ([CLS]/[SEP] included, before truncation) and the share of
    words the vocabulary maps to ``[UNK]``."""
    import tensorflow as tf

    lengths = np.zeros(len(texts), np.int64)
    unknown = words = 0
    continuation = tokenizer.continuation_ids
    for column in [texts] + ([pairs] if pairs is not None else []):
        for start in range(0, len(column), 4096):
            pieces = tokenizer.wordpieces(tf.constant(column[start:start + 4096]))
            lengths[start:start + 4096] += pieces.row_lengths().numpy()
            ids = pieces.flat_values.numpy()
            word = ~continuation[ids]
            words += int(word.sum())
            unknown += int((ids[word] == tokenizer.unk_id).sum())
    lengths += 2 if pairs is None else 3
    over = int((lengths > max_length).sum())
    report = {
        "max_length": max_length, "measured": len(lengths),
        "median": int(np.median(lengths)) if len(lengths) else 0,
        "p95": int(np.percentile(lengths, 95)) if len(lengths) else 0,
        "max": int(lengths.max()) if len(lengths) else 0, "over_max_length": over,
        "over_max_length_share": round(over / max(len(lengths), 1), 4),
        "unknown_word_share": round(unknown / words, 4) if words else 0.0,
    }
    return report, lengths


def describe(task: Any, examples: Any, tokenizer: Any = None,
             max_length: int | None = None) -> tuple[dict[str, Any], np.ndarray | None, list[str]]:
    """The report of one set of examples, its token lengths, and warnings about it."""
    report: dict[str, Any] = {"source": examples.source, "rows": len(examples)}
    warnings = []
    labels = task.data.target_summary(examples)
    if labels:
        report["labels"] = labels
        warnings += label_warnings(labels, examples.source)
    report["duplicates"] = duplicates(examples.texts, examples.text_pairs, examples.targets)
    if report["duplicates"]["conflicting"]:
        warnings.append(f"{examples.source}: {report['duplicates']['conflicting']} texts occur "
                        "again with a different label")
    if examples.skipped:
        report["skipped"] = dict(examples.skipped)
    lengths = None
    if tokenizer is not None and max_length:
        report["tokens"], lengths = task.data.token_length_report(tokenizer, examples, max_length)
        tokens = report["tokens"]
        if tokens["over_max_length_share"] > 0.05:
            longer = min(task.data.max_length_limit,
                         _round_up(max(tokens["p95"], max_length + 1)))
            measured = tokens.get("measured", len(examples))
            unit = "examples" if measured == len(examples) else f"of {measured} texts"
            warnings.append(
                f"{examples.source}: {tokens['over_max_length']} {unit} "
                f"({100 * tokens['over_max_length_share']:.1f} %) are longer than max_length "
                f"{max_length} tokens and are {task.data.long_example_treatment}"
                + (f"; consider --max-length {longer}" if longer > max_length else ""))
        if tokens["unknown_word_share"] > UNKNOWN_WARNING_SHARE:
            warnings.append(
                f"{examples.source}: {100 * tokens['unknown_word_share']:.1f} % of the words are "
                "[UNK] to the vocabulary: the model cannot tell them apart. Choose a checkpoint "
                "whose vocabulary covers this language or script (for Chinese, a Chinese BERT)")
    return report, lengths, warnings


def label_warnings(labels: dict[str, Any], source: str) -> list[str]:
    """Warnings about a label distribution: classes with one example, labels that look like
    missing values, numbers mixed with words, strong imbalance."""
    # the labels the file holds (a validation summary also counts the training labels it lacks)
    counts = {k: v for k, v in (labels.get("counts") or {}).items() if v}
    warnings = []
    single = [k for k, v in counts.items() if v == 1]
    if single:
        warnings.append(f"{source}: {len(single)} class(es) have a single example "
                        f"({', '.join(map(repr, single[:5]))}); they cannot be learned or "
                        "validated")
    markers = [k for k in counts if k in MISSING_VALUE_MARKERS]
    if markers:
        warnings.append(f"{source}: label(s) {markers} look like missing values")
    numeric = [k for k in counts if _is_number(k)]
    if numeric and len(numeric) < len(counts):
        warnings.append(f"{source}: numbers mixed with words among the labels "
                        f"({', '.join(map(repr, numeric[:5]))} beside "
                        f"{next(repr(k) for k in counts if not _is_number(k))}); check the "
                        "label column")
    ratio = labels.get("imbalance_ratio")
    if ratio and ratio >= 20:
        warnings.append(f"{source}: the largest class is {ratio:.0f}x the smallest; consider "
                        "--class-weight balanced" if labels.get("kind") == "classes" else
                        f"{source}: the most frequent label is {ratio:.0f}x the rarest")
    return warnings


def class_counts(names: list[str] | tuple[str, ...], counts: Any,
                 kind: str = "classes") -> dict[str, Any]:
    """A label distribution for the report: counts by name and the imbalance ratio."""
    by_name = {str(n): int(c) for n, c in zip(names, counts, strict=True)}
    present = [c for c in by_name.values() if c > 0]
    ratio = round(max(present) / min(present), 2) if present else None
    return {"kind": kind, "counts": by_name, "imbalance_ratio": ratio}


def check_data(task: Any, train: Any, validation: Any = None, tokenizer: Any = None,
               max_length: int | None = None) -> tuple[DataCheck, dict[str, np.ndarray]]:
    """Run the data check on training (and validation) examples."""
    check = DataCheck({})
    lengths = {}
    for role, examples in (("train", train), ("validation", validation)):
        if examples is None:
            continue
        check.report[role], role_lengths, warnings = describe(task, examples, tokenizer,
                                                              max_length)
        check.warnings += warnings
        if role_lengths is not None:
            lengths[role] = role_lengths
    if validation is not None and train is not None:
        check.report["overlap"] = found = overlap(train, validation)
        if found["exact"]:
            check.warnings.append(
                f"{found['exact']} validation examples ({100 * found['exact_share']:.1f} %) also "
                "occur in the training data: validation scores will be too optimistic")
    return check, lengths


def refuse_same_file(train_source: Any, validation_source: Any,
                     can_split: bool = True) -> None:
    """Validation data must not be the training file itself (``can_split``: whether leaving
    --validation out would split validation rows off the training data; shards cannot be)."""
    if (isinstance(train_source, (str, Path)) and isinstance(validation_source, (str, Path))
            and Path(train_source).resolve() == Path(validation_source).resolve()):
        raise DataError(str(validation_source), None, "the validation data is the training "
                        "file itself" + ("" if can_split else " (the one the shards were "
                                         "made from)"),
                        "pass a separate --validation file" + (
                            ", or leave it out to split one off the training data" if can_split
                            else " of held-out rows: shards cannot be split"))


def refuse_certain_mistakes(check: DataCheck, validation_source: Any) -> None:
    """Stop on what is certainly wrong: validation examples that all occur in training. (One
    class is refused by the task's reader, a blank text by the table reader.) A validation set
    split off the training data is never refused: duplicates in the data are only warned of."""
    if validation_source is None:
        return
    found = check.report.get("overlap")
    if found and found["exact_share"] == 1.0:
        raise DataError(str(validation_source), None, "every validation example also occurs in "
                        "the training data, so validation cannot measure generalisation",
                        "pass held-out data as --validation, or leave it out to split one off")


def without_blank_texts(table: Table, columns: list[str],
                        skipped: Any = None) -> tuple[Table, list[str]]:
    """``table`` without the rows whose text columns are empty, whitespace or invisible, and
    where those rows were (for ``tfsft data inspect``, which reports them instead of failing).
    Rows for which ``skipped(row)`` is true (excluded labels) are left to the task's reader."""
    keep, blank = [], []
    for i, row in enumerate(table.rows):
        values = [row.get(c) for c in columns]
        if skipped is not None and skipped(row):
            keep.append(i)
        elif any(isinstance(v, str) and not visible(v) for v in values):
            blank.append(table.locations[i])
        else:
            keep.append(i)
    filtered = Table(table.source, table.columns, [table.rows[i] for i in keep],
                     [table.locations[i] for i in keep])
    return filtered, blank


def plot_lengths(lengths: dict[str, np.ndarray], max_length: int, path: str | Path) -> None:
    """A histogram of tokens per example (train and validation) with the max_length line."""
    from tfsft.evaluation.reports import _pyplot, _save_figure

    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(7, 4))
    top = max([int(v.max()) for v in lengths.values() if len(v)] + [max_length])
    bins = np.linspace(0, top + 1, 50)
    for role, values in lengths.items():
        share = np.full(len(values), 100 / max(len(values), 1))
        axis.hist(values, bins=bins, weights=share, alpha=0.6, label=f"{role} ({len(values)})")
    axis.axvline(max_length, color="black", linestyle="--", label=f"max_length {max_length}")
    axis.set_xlabel("word pieces per example ([CLS]/[SEP] included)")
    axis.set_ylabel("% of examples")
    axis.legend()
    figure.tight_layout()
    _save_figure(figure, path)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _round_up(value: int) -> int:
    return int(2 ** np.ceil(np.log2(max(value, 8))))
