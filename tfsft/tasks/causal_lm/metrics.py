"""Metrics of generated text against reference answers: exact match and ROUGE-L.

Exact match compares answers normalised as SQuAD does (lower case, no punctuation, articles or
extra whitespace), so "Positive." matches "positive". ROUGE-L is the F1 of the longest common
subsequence of lower-cased alphanumeric words (as the ``rouge-score`` package tokenizes).

>>> exact_match_scores(["Positive.", "negative, I think"], ["positive", "negative"]).tolist()
[1.0, 0.0]
>>> round(rouge_l("the cat sat on the mat", "the cat lay on the mat"), 4)
0.8333
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from tfsft.evaluation.squad_metrics import normalize_answer


def exact_match_scores(predictions: Sequence[str], references: Sequence[str]) -> np.ndarray:
    """1.0 where the normalised prediction equals the normalised reference, else 0.0."""
    return np.array([float(normalize_answer(p) == normalize_answer(r))
                     for p, r in zip(predictions, references, strict=True)])


def _words(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).split()


def _lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence (dynamic programming, one row at a time)."""
    if not a or not b:
        return 0
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b, 1):
            current.append(previous[j - 1] + 1 if x == y else max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F1 of one prediction against its reference."""
    predicted, wanted = _words(prediction), _words(reference)
    common = _lcs_length(predicted, wanted)
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(wanted)
    return 2 * precision * recall / (precision + recall)


def rouge_l_scores(predictions: Sequence[str], references: Sequence[str]) -> np.ndarray:
    return np.array([rouge_l(p, r) for p, r in zip(predictions, references, strict=True)])
