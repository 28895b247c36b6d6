"""The official SQuAD metrics: exact match and token F1, max over the gold answers.

Answers are compared after the official normalisation (lower case, punctuation removed, the
articles a/an/the removed, whitespace collapsed), as in the SQuAD v1.1 and v2.0 evaluation
scripts. For SQuAD v2, an unanswerable question is right when the prediction is empty, and the
metrics are also given for the answerable (``HasAns``) and unanswerable (``NoAns``) questions.

>>> normalize_answer("The  Denver Broncos!")
'denver broncos'
>>> exact_match("Denver Broncos", ["the Denver Broncos"]), round(f1("Broncos", ["Denver Broncos"]), 3)
(1.0, 0.667)
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

import numpy as np

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower case, no punctuation, no articles, single spaces (the official normalisation)."""
    text = "".join(c for c in text.lower() if c not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _tokens(text: str) -> list[str]:
    return normalize_answer(text).split() if text else []


def _f1_one(prediction: str, gold: str) -> float:
    predicted, expected = _tokens(prediction), _tokens(gold)
    if not predicted or not expected:  # an empty side: right only if both are empty
        return float(predicted == expected)
    common = sum((Counter(predicted) & Counter(expected)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(expected)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, golds: Sequence[str]) -> float:
    """1.0 if the prediction equals a gold answer after normalisation (no gold: must be empty)."""
    golds = list(golds) or [""]
    return float(max(normalize_answer(prediction) == normalize_answer(g) for g in golds))


def f1(prediction: str, golds: Sequence[str]) -> float:
    """Token F1 against the best-matching gold answer (no gold: 1.0 only for empty)."""
    golds = list(golds) or [""]
    return max(_f1_one(prediction, g) for g in golds)


def squad_scores(predictions: Sequence[str],
                 golds: Sequence[Sequence[str]]) -> tuple[np.ndarray, np.ndarray]:
    """Exact match and F1 of every question (0/1 and [0, 1])."""
    em = np.array([exact_match(p, g) for p, g in zip(predictions, golds, strict=True)])
    f = np.array([f1(p, g) for p, g in zip(predictions, golds, strict=True)])
    return em, f


def squad_metrics(predictions: Sequence[str], golds: Sequence[Sequence[str]]) -> dict[str, float]:
    """``exact_match`` and ``f1`` in percent (as the official script prints them), with the
    ``HasAns_*`` / ``NoAns_*`` split when some questions have no answer."""
    em, f = squad_scores(predictions, golds)
    metrics = {"exact_match": _percent(em), "f1": _percent(f), "questions": len(em)}
    has_answer = np.array([bool(g) for g in golds])
    if not has_answer.all():
        for name, keep in (("HasAns", has_answer), ("NoAns", ~has_answer)):
            metrics[f"{name}_exact_match"] = _percent(em[keep])
            metrics[f"{name}_f1"] = _percent(f[keep])
            metrics[f"{name}_questions"] = int(keep.sum())
    return metrics


def _percent(values: np.ndarray) -> float:
    return round(100.0 * float(values.mean()), 4) if len(values) else 0.0


def best_null_threshold(null_margins: Sequence[float], answer_f1: Sequence[float],
                        answerable: Sequence[bool]) -> tuple[float, float]:
    """The no-answer threshold with the highest F1 on validation questions, and that F1 (%).

    ``null_margins[i]``: null score minus best span score of question ``i`` (no answer is
    predicted when the margin exceeds the threshold); ``answer_f1[i]``: F1 of its best span;
    ``answerable[i]``: whether it has a gold answer. As the official v2 script's search.

    >>> best_null_threshold([3.0, -2.0], [0.0, 1.0], [False, True])
    (-2.0, 100.0)
    """
    margins = np.asarray(null_margins, np.float64)
    span_f1 = np.asarray(answer_f1, np.float64)
    answerable = np.asarray(answerable, bool)
    if not len(margins):
        return 0.0, 0.0
    # Below every margin all questions get no answer; raising the threshold past a margin
    # answers that question with its best span instead.
    ascending = np.argsort(margins, kind="stable")
    score = float((~answerable).sum())
    best_score, best_threshold = score, float(margins[ascending[0]]) - 1.0
    for position, i in enumerate(ascending):
        score += span_f1[i] - (0.0 if answerable[i] else 1.0)
        tied = position + 1 < len(ascending) and margins[ascending[position + 1]] == margins[i]
        if not tied and score > best_score:
            best_score, best_threshold = score, float(margins[i])
    return best_threshold, round(100.0 * float(best_score) / len(margins), 4)
