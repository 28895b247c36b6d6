"""Question-answering windows and answer search in TensorFlow ops (training data and SavedModel).

:func:`question_windows` cuts each context into windows ``[CLS] question [SEP] part [SEP]``
exactly as a Hugging Face fast tokenizer does with ``truncation="only_second"``,
``stride=doc_stride`` and overflowing tokens: a window holds ``max_length - 3 - question
tokens`` context pieces, consecutive windows share ``doc_stride`` pieces, and the last window
ends at the context's end. The question keeps at most ``max_question_length`` pieces. The same
function makes the training features and runs inside the exported SavedModel, so both see the
same windows.

:func:`span_answers` is :func:`tfsft.tasks.question_answering.postprocess.best_answers` in graph ops: the
best span of every question over its windows, its character offsets, text and probability.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

_BIG = np.int32(2 ** 30)


def question_windows(tokenizer, questions: tf.Tensor, contexts: tf.Tensor, max_length: int,
                     doc_stride: int, max_question_length: int) -> dict[str, tf.Tensor]:
    """Windows of every (question, context) pair.

    Returns ``token_ids``, ``segment_ids``, ``padding_mask`` (int32 ``[windows, length]``),
    ``window_example`` (int32 ``[windows]``: the pair each window comes from, in order),
    ``context_begin`` (position of the window's first context token), ``window_start`` (index
    of that token among the context's pieces), ``window_count`` (context pieces in the window)
    and the context pieces' UTF-8 byte spans ``piece_starts`` / ``piece_ends`` (ragged
    ``[pairs, (pieces)]``).
    """
    question_ids = tokenizer.wordpieces(questions)[:, :max_question_length]
    context_ids, piece_starts, piece_ends = tokenizer.wordpieces_with_offsets(contexts)
    question_length = tf.cast(question_ids.row_lengths(), tf.int32)
    context_length = tf.cast(context_ids.row_lengths(), tf.int32)
    width = max_length - 3 - question_length  # context pieces per window
    step = width - doc_stride
    count = 1 + tf.maximum(0, (context_length - width + step - 1) // step)
    window_example = tf.repeat(tf.range(tf.shape(count)[0], dtype=tf.int32), count)
    index = tf.ragged.range(count).flat_values
    window_start = index * tf.gather(step, window_example)
    window_count = tf.maximum(0, tf.minimum(tf.gather(width, window_example),
                                            tf.gather(context_length, window_example)
                                            - window_start))
    first = tf.cast(tf.gather(context_ids.row_splits, window_example), tf.int32) + window_start
    context_part = tf.gather(context_ids.flat_values,
                             tf.ragged.range(first, first + window_count))
    windows = tf.shape(window_example)[0]

    def column(token_id):
        return tf.RaggedTensor.from_tensor(tf.fill([windows, 1], tf.constant(token_id, tf.int32)))

    ragged = tf.concat([column(tokenizer.cls_id), tf.gather(question_ids, window_example),
                        column(tokenizer.sep_id), context_part, column(tokenizer.sep_id)],
                       axis=1)
    token_ids = ragged.to_tensor(default_value=tokenizer.pad_id)
    lengths = tf.cast(ragged.row_lengths(), tf.int32)
    position = tf.range(tf.shape(token_ids)[1])[tf.newaxis, :]
    padding_mask = tf.cast(position < lengths[:, tf.newaxis], tf.int32)
    context_begin = tf.gather(question_length, window_example) + 2
    segment_ids = tf.cast(position >= context_begin[:, tf.newaxis], tf.int32) * padding_mask
    return {"token_ids": token_ids, "segment_ids": segment_ids, "padding_mask": padding_mask,
            "window_example": window_example, "context_begin": context_begin,
            "window_start": window_start, "window_count": window_count,
            "piece_starts": piece_starts, "piece_ends": piece_ends}


def _char_offsets(texts: tf.Tensor, byte_offsets: tf.RaggedTensor) -> tf.RaggedTensor:
    """Character index of each UTF-8 byte offset (ragged ``[texts, (offsets)]``)."""
    _, char_bytes = tf.strings.unicode_decode_with_offsets(texts, "UTF-8")
    batch = tf.shape(texts)[0]
    char_bytes = tf.cast(char_bytes, tf.int32).to_tensor(default_value=_BIG)
    char_bytes = tf.concat([char_bytes, tf.fill([batch, 1], _BIG)], axis=1)
    dense = tf.searchsorted(char_bytes, byte_offsets.to_tensor(default_value=0), side="left")
    return tf.RaggedTensor.from_tensor(tf.cast(dense, tf.int32),
                                       lengths=byte_offsets.row_lengths())


def _first_best(values: tf.Tensor, rows: tf.Tensor, nrows: tf.Tensor, fill: float,
                lowest: bool = False) -> tuple[tf.Tensor, tf.Tensor]:
    """Per row: the best value of its windows and the global index of the first window
    holding it (max, or min with ``lowest``)."""
    ragged = tf.RaggedTensor.from_value_rowids(values, rows, nrows=nrows)
    dense = ragged.to_tensor(default_value=fill)
    pick = tf.argmin(dense, axis=1) if lowest else tf.argmax(dense, axis=1)
    pick = tf.cast(pick, tf.int32)
    best = tf.gather(dense, pick, batch_dims=1)
    return best, tf.cast(ragged.row_splits[:-1], tf.int32) + pick


def _window_best_spans(start_logits: tf.Tensor, end_logits: tf.Tensor,
                       windows: dict[str, tf.Tensor], max_answer_length: int
                       ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Per window: the best span score (start + end logit; -inf when the window has no context
    piece) and the span's first and last token positions. A span lies inside the window's
    context and holds at most ``max_answer_length`` tokens."""
    length = tf.shape(start_logits)[1]
    position = tf.range(length)
    begin = windows["context_begin"][:, tf.newaxis]
    in_context = (position[tf.newaxis, :] >= begin) & (
        position[tf.newaxis, :] < begin + windows["window_count"][:, tf.newaxis])
    ends = position[:, tf.newaxis] + tf.range(max_answer_length)[tf.newaxis, :]  # [L, A]
    clipped = tf.minimum(ends, length - 1)
    valid = ((ends < length)[tf.newaxis] & in_context[:, :, tf.newaxis]
             & tf.gather(in_context, clipped, axis=1))
    scores = start_logits[:, :, tf.newaxis] + tf.gather(end_logits, clipped, axis=1)
    scores = tf.where(valid, scores, -np.inf)
    flat = tf.reshape(scores, [tf.shape(scores)[0], -1])
    best_index = tf.argmax(flat, axis=1, output_type=tf.int32)
    best_score = tf.reduce_max(flat, axis=1)
    span_start = best_index // max_answer_length
    span_end = span_start + best_index % max_answer_length
    return best_score, span_start, span_end


def _log_probabilities(start_logits: tf.Tensor, end_logits: tf.Tensor,
                       padding_mask: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Log-softmax of the start and of the end logits over each window's real tokens."""
    real = tf.cast(padding_mask, tf.bool)
    log_start = tf.nn.log_softmax(tf.where(real, start_logits, -np.inf), axis=1)
    log_end = tf.nn.log_softmax(tf.where(real, end_logits, -np.inf), axis=1)
    return log_start, log_end


def _context_piece(windows: dict[str, tf.Tensor], window: tf.Tensor,
                   token: tf.Tensor) -> tf.Tensor:
    """Index among its context's pieces of the token at position ``token`` of ``window``."""
    return tf.gather(windows["window_start"], window) + token - tf.gather(
        windows["context_begin"], window)


def _char_at(offsets: tf.RaggedTensor, piece: tf.Tensor, found: tf.Tensor, rows: tf.Tensor,
             pairs: tf.Tensor) -> tf.Tensor:
    """Per pair (``rows``: ``0 .. pairs - 1``): ``offsets`` of its context piece ``piece``
    where ``found``, else -1."""
    # one column more: a batch whose contexts have no pieces at all still has a column 0
    dense = tf.concat([offsets.to_tensor(-1), tf.fill([pairs, 1], -1)], axis=1)
    return tf.where(found, tf.gather_nd(dense, tf.stack(
        [rows, tf.where(found, piece, 0)], 1)), -1)


def _answer_chars(windows: dict[str, tf.Tensor], contexts: tf.Tensor, pairs: tf.Tensor,
                  window: tf.Tensor, start: tf.Tensor, end: tf.Tensor, found: tf.Tensor
                  ) -> tuple[tf.Tensor, tf.Tensor]:
    """Character offsets (end exclusive) of each pair's answer: the tokens ``start`` to ``end``
    of window ``window``; -1 where no answer was ``found``."""
    char_starts = _char_offsets(contexts, windows["piece_starts"])
    char_ends = _char_offsets(contexts, windows["piece_ends"])
    piece_start = _context_piece(windows, window, start)
    piece_end = _context_piece(windows, window, end)
    rows = tf.range(pairs)
    return (_char_at(char_starts, piece_start, found, rows, pairs),
            _char_at(char_ends, piece_end, found, rows, pairs))


def span_answers(raw: tf.Tensor, windows: dict[str, tf.Tensor], contexts: tf.Tensor,
                 max_answer_length: int, null_threshold: float | None) -> dict[str, tf.Tensor]:
    """``answer`` (string), ``start`` / ``end`` (int32 character offsets, end exclusive; -1: no
    answer) and ``score`` (float32) of every pair, from the model's ``raw`` output ``[windows,
    length, 2]`` on :func:`question_windows`."""
    start_logits, end_logits = raw[..., 0], raw[..., 1]
    best_score, span_start, span_end = _window_best_spans(start_logits, end_logits, windows,
                                                          max_answer_length)
    pairs = tf.shape(contexts)[0]
    example = windows["window_example"]
    score, window = _first_best(best_score, example, pairs, -np.inf)
    log_start, log_end = _log_probabilities(start_logits, end_logits, windows["padding_mask"])
    s, e = tf.gather(span_start, window), tf.gather(span_end, window)
    probability = tf.exp(tf.gather_nd(log_start, tf.stack([window, s], 1))
                         + tf.gather_nd(log_end, tf.stack([window, e], 1)))
    found = tf.math.is_finite(score)
    first, last = _answer_chars(windows, contexts, pairs, window, s, e, found)

    # the null answer ([CLS] as start and end): its lowest score over the windows
    null_score, null_window = _first_best(start_logits[:, 0] + end_logits[:, 0], example,
                                          pairs, np.inf, lowest=True)
    null_probability = tf.exp(tf.gather(log_start[:, 0] + log_end[:, 0], null_window))
    no_answer = ~found
    if null_threshold is not None:
        no_answer |= null_score - score > tf.constant(null_threshold, tf.float32)
    text = tf.strings.substr(contexts, tf.maximum(first, 0), tf.maximum(last - first, 0),
                             unit="UTF8_CHAR")
    return {
        "answer": tf.where(no_answer, "", text),
        "start": tf.where(no_answer, -1, first),
        "end": tf.where(no_answer, -1, last),
        "score": tf.where(no_answer, null_probability, probability),
    }
