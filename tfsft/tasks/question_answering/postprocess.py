"""Answers from the start/end logits of an extractive question-answering model (NumPy only).

This file has no dependency but NumPy: tfsft uses it for its own answers and ships it beside the
exported TFLite and ONNX models (``qa_postprocess.py``), so an app turns their logits into the
same answers the SavedModel returns.

Each question's context is cut into windows ``[CLS] question [SEP] context part [SEP]``; the
model gives a start and an end logit per token of every window. ``offsets[w, t]`` is the
character span ``[start, end)`` in the context of token ``t`` of window ``w`` (``-1, -1`` for
the question, special tokens and padding), as a Hugging Face fast tokenizer's offset mapping
with the non-context positions set to -1.

The answer of a question is the span with the highest ``start_logit[s] + end_logit[e]`` over
all its windows, with ``s <= e < s + max_answer_length`` and both tokens in the context (ties:
the earliest window, then the earliest start, then the shortest span). Its ``score`` is the
probability the model gives that span in its window (softmax over the window's tokens, start
times end). With a ``null_threshold`` (SQuAD v2), the question gets no answer (``""``) when the
lowest ``[CLS]`` score of its windows exceeds the best span's score by more than the threshold.

>>> import numpy as np
>>> start = np.array([[0., 0., 5., 1., 0.]], np.float32)
>>> end = np.array([[0., 0., 1., 4., 0.]], np.float32)
>>> offsets = np.array([[[-1, -1], [-1, -1], [0, 5], [6, 11], [-1, -1]]])
>>> best_answers(start, end, offsets, np.array([0]), ["hello world"])[0]["answer"]
'hello world'
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["best_answers", "null_margins", "window_spans"]


def window_spans(start_logits: np.ndarray, end_logits: np.ndarray, in_context: np.ndarray,
                 max_answer_length: int) -> np.ndarray:
    """Scores ``[tokens, max_answer_length]`` of the span starting at token ``s`` with
    ``d`` more tokens (``-inf`` where the span leaves the context or the window)."""
    count = len(start_logits)
    starts = np.arange(count)[:, None]
    ends = starts + np.arange(max_answer_length)[None, :]
    inside = ends < count
    clipped = np.minimum(ends, count - 1)
    valid = inside & in_context[starts] & in_context[clipped]
    scores = start_logits[starts] + end_logits[clipped]  # float32, as in the exported graph
    return np.where(valid, scores, np.float32(-np.inf))


def _search(start_logits: np.ndarray, end_logits: np.ndarray, offsets: np.ndarray,
            window_example: Sequence[int], examples: int, attention_mask: np.ndarray | None,
            max_answer_length: int, n_best: int) -> tuple[list, list, list]:
    """Per example: the best span ``(score, window, s, e, probability)`` (None: no span), the
    lowest null score ``(score, probability)``, and candidate spans for the alternatives."""
    from scipy.special import log_softmax  # not at --help time

    start_logits = np.asarray(start_logits, np.float32)
    end_logits = np.asarray(end_logits, np.float32)
    offsets = np.asarray(offsets)
    if attention_mask is None:
        lengths = np.full(len(start_logits), start_logits.shape[1])
    else:
        lengths = np.asarray(attention_mask).astype(bool).sum(axis=1)
    best: list = [None] * examples
    null: list = [None] * examples
    candidates: list[list[tuple]] = [[] for _ in range(examples)]
    for w, example in enumerate(window_example):
        count = int(lengths[w])
        start, end = start_logits[w, :count], end_logits[w, :count]
        scores = window_spans(start, end, offsets[w, :count, 0] >= 0, max_answer_length)
        log_start = log_softmax(start.astype(np.float64))
        log_end = log_softmax(end.astype(np.float64))
        null_score = start[0] + end[0]
        if null[example] is None or null_score < null[example][0]:
            null[example] = (null_score, float(np.exp(log_start[0] + log_end[0])))
        s, d = divmod(int(np.argmax(scores)), max_answer_length) if scores.size else (0, 0)
        if scores.size and np.isfinite(scores[s, d]) and (
                best[example] is None or scores[s, d] > best[example][0]):
            best[example] = (scores[s, d], w, s, s + d,
                             float(np.exp(log_start[s] + log_end[s + d])))
        if n_best > 1:
            for index in np.argsort(-scores, axis=None, kind="stable")[:n_best]:
                s2, d2 = divmod(int(index), max_answer_length)
                if np.isfinite(scores[s2, d2]):
                    candidates[example].append((
                        scores[s2, d2], int(offsets[w, s2, 0]), int(offsets[w, s2 + d2, 1]),
                        float(np.exp(log_start[s2] + log_end[s2 + d2]))))
    return best, null, candidates


def best_answers(start_logits: np.ndarray, end_logits: np.ndarray, offsets: np.ndarray,
                 window_example: Sequence[int], contexts: Sequence[str],
                 attention_mask: np.ndarray | None = None, max_answer_length: int = 30,
                 null_threshold: float | None = None, n_best: int = 1) -> list[dict]:
    """One answer per context: ``{"answer", "start", "end", "score"}`` (character offsets,
    ``end`` exclusive; no answer: ``""``, -1, -1 and the no-answer probability), plus
    ``"alternatives"`` (the next best distinct spans) when ``n_best > 1``.

    ``start_logits``, ``end_logits``: ``[windows, tokens]``; ``offsets``: ``[windows, tokens,
    2]``; ``window_example[w]``: the index into ``contexts`` of window ``w`` (windows of one
    context in order); ``attention_mask``: ``[windows, tokens]``, 1 on real tokens (default:
    all real).
    """
    offsets = np.asarray(offsets)
    best, null, candidates = _search(start_logits, end_logits, offsets, window_example,
                                     len(contexts), attention_mask, max_answer_length, n_best)
    answers = []
    for example, context in enumerate(contexts):
        found = best[example]
        if found is None or (null_threshold is not None
                             and null[example][0] - found[0] > null_threshold):
            answers.append({"answer": "", "start": -1, "end": -1,
                            "score": round(null[example][1], 6) if null[example] else 0.0})
            continue
        _, w, s, e, probability = found
        first, last = int(offsets[w, s, 0]), int(offsets[w, e, 1])
        answer = {"answer": context[first:last], "start": first, "end": last,
                  "score": round(probability, 6)}
        if n_best > 1:
            answer["alternatives"] = _alternatives(candidates[example], context, (first, last),
                                                   n_best - 1)
        answers.append(answer)
    return answers


def null_margins(start_logits: np.ndarray, end_logits: np.ndarray, offsets: np.ndarray,
                 window_example: Sequence[int], examples: int,
                 attention_mask: np.ndarray | None = None,
                 max_answer_length: int = 30) -> np.ndarray:
    """Per example: lowest null (``[CLS]``) score minus best span score (``inf``: no span),
    the value a SQuAD v2 ``null_threshold`` is compared with."""
    best, null, _ = _search(start_logits, end_logits, offsets, window_example, examples,
                            attention_mask, max_answer_length, 1)
    return np.array([np.inf if b is None else float(n[0] - b[0]) for b, n in zip(best, null,
                                                                               strict=True)])


def _alternatives(candidates: list[tuple], context: str, chosen: tuple[int, int],
                  count: int) -> list[dict]:
    """The best ``count`` distinct spans other than ``chosen``, highest score first."""
    seen, found = {chosen}, []
    for _, first, last, probability in sorted(candidates, key=lambda c: -c[0]):
        if (first, last) in seen:
            continue
        seen.add((first, last))
        found.append({"answer": context[first:last], "start": first, "end": last,
                      "score": round(probability, 6)})
        if len(found) == count:
            break
    return found
