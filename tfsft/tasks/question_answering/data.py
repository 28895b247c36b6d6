"""The data role of question answering: questions read and checked, split by context, and
cut into windows with each token's character span in its context (training features).

>>> from tfsft.tasks import create_task
>>> task = create_task("question-answering")
>>> examples = task.data.examples_from_texts({"question": ["Who?"],
...                                           "context": ["Ada wrote it."]})
>>> task.data.texts(examples)
{'question': ['Who?'], 'context': ['Ada wrote it.']}
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tfsft.errors import ConfigError, DataError
from tfsft.io_utils import split_lines
from tfsft.tasks.question_answering.examples import QAExamples, read_qa_data
from tfsft.tasks.roles import DataRole

if TYPE_CHECKING:  # pragma: no cover
    from tfsft.data.pipeline import EncodedData
    from tfsft.tasks.question_answering.task import QuestionAnsweringTask
    from tfsft.tokenization import WordPieceTokenizer

logger = logging.getLogger(__name__)
_CHUNK = 1024  # questions windowed per call


class QAData(DataRole):
    """SQuAD JSON and flat rows to checked questions; questions to windows and span targets."""

    task: QuestionAnsweringTask
    long_example_treatment = "split into overlapping windows (--doc-stride)"
    default_max_length = 384

    def check_max_length(self, max_length: int) -> None:
        self.task._check_lengths(max_length)

    def __init__(self, task: QuestionAnsweringTask):
        super().__init__(task)
        self._last_encoding: dict[str, int] = {}

    # -- reading ----------------------------------------------------------------------------
    def read(self, source: Any, role: str = "train", labelled: bool = True,
             max_rows: int | None = None, file_format: str | None = None,
             encoding: str = "utf-8", delimiter: str | None = None,
             quoting: bool = True) -> QAExamples:
        options = self.task.options
        examples = read_qa_data(source, options.columns(), labelled, options.skip_bad_answers,
                                max_rows, file_format, encoding, delimiter, quoting)
        for reason, count in examples.skipped.items():
            logger.warning("%s: %d questions skipped (%s, --skip-bad-answers)", examples.source,
                           count, reason)
        if role == "train" and labelled:
            self.task.unanswerable = examples.unanswerable > 0
        return examples

    def refuse_chunked_file(self, path: Path, file_format: str | None) -> None:
        if file_format is None and path.name.lower().removesuffix(".gz").endswith(".json"):
            raise DataError(str(path), None, "a SQuAD-style JSON document cannot be "
                            "preprocessed in chunks", "write one question per JSONL line "
                            "(question, context, answers), or train from the file itself "
                            "(tfsft train --train FILE)")

    def merge_chunks(self, summaries: Sequence[dict[str, Any]], source: str) -> None:
        if not summaries:
            raise DataError(source, None, "there are no data rows", "add rows")
        self.task.unanswerable = any(summary["unanswerable"] for summary in summaries)

    def target_summary(self, examples: QAExamples) -> dict[str, Any] | None:
        if examples.answers is None:
            return None
        answered = [a for a in examples.answers if a]
        lengths = [len(text) for answers in answered for text, _ in answers[:1]]
        return {"kind": "answers", "questions": len(examples),
                "unanswerable": examples.unanswerable,
                "contexts": len(set(examples.contexts)),
                "answers_per_question": round(float(np.mean([len(a) for a in answered])), 3)
                if answered else 0.0,
                "answer_characters_median": int(np.median(lengths)) if lengths else 0}

    def token_length_report(self, tokenizer: WordPieceTokenizer, examples: QAExamples,
                            max_length: int) -> tuple[dict[str, Any], np.ndarray]:
        """Word pieces of each question and its whole context (before windowing)."""
        from tfsft.data.checks import token_lengths

        return token_lengths(tokenizer, examples.texts, examples.text_pairs, max_length)

    def split(self, examples: QAExamples, fraction: float,
              seed: int) -> tuple[QAExamples, QAExamples]:
        """A seeded split by context: questions on one passage stay on one side."""
        from sklearn.model_selection import GroupShuffleSplit

        groups = np.unique(examples.contexts, return_inverse=True)[1]
        if groups.max() < 1:
            raise ConfigError(f"{examples.source}: all questions share one context, so no "
                              "validation split is possible; pass a --validation file")
        splitter = GroupShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
        train_index, validation_index = next(splitter.split(groups, groups=groups))
        return examples.subset(np.sort(train_index)), examples.subset(np.sort(validation_index))

    def example_records(self, examples: QAExamples) -> list[dict[str, Any]]:
        records = []
        for i in range(len(examples)):
            record: dict[str, Any] = {"id": examples.ids[i], "question": examples.questions[i],
                                      "context": examples.contexts[i]}
            if examples.answers is not None:
                record["answers"] = [{"text": t, "answer_start": s}
                                     for t, s in examples.answers[i]]
            records.append(record)
        return records

    def record_options(self) -> dict[str, Any]:
        return {"question_column": "question", "context_column": "context",
                "answers_column": "answers", "id_column": "id"}

    def read_records(self, path: Path) -> QAExamples:
        task = self.task.with_options(**self.record_options())
        first = next((line for line in split_lines(Path(path).read_text("utf-8"))
                      if line.strip()), "{}")
        return task.data.read(path, role="eval", labelled="answers" in json.loads(first),
                              file_format="jsonl")

    def texts(self, examples: QAExamples) -> dict[str, list[str]]:
        return {"question": list(examples.questions), "context": list(examples.contexts)}

    def examples_from_texts(self, texts: dict[str, Sequence[str]]) -> QAExamples:
        if set(texts) != {"question", "context"}:
            raise ConfigError("question answering takes questions and their contexts "
                              "(--question and --context, or an --input file)")
        questions, contexts = list(texts["question"]), list(texts["context"])
        if len(questions) != len(contexts):
            raise ConfigError(f"{len(questions)} questions but {len(contexts)} contexts: every "
                              "question needs its context")
        rows = [{"question": q, "context": c} for q, c in zip(questions, contexts, strict=True)]
        from tfsft.tasks.question_answering.examples import examples_from_rows

        return examples_from_rows(rows, "texts", labelled=False)

    # -- encoding ---------------------------------------------------------------------------
    def windows(self, tokenizer: WordPieceTokenizer, questions: Sequence[str],
                contexts: Sequence[str], max_length: int) -> dict[str, Any]:
        """The windows of every question as NumPy arrays (see ``qa_graph.question_windows``),
        with ``offsets``: the character span of each context token (-1 elsewhere), one
        ``[tokens, 2]`` array per window, and each context's piece character spans. The
        serving role decodes exported logits on these windows."""
        import tensorflow as tf

        from tfsft.tasks.question_answering.graph import question_windows
        from tfsft.tokenization import byte_to_char

        options = self.task.options
        self.task._check_lengths(max_length)
        parts: dict[str, list] = {k: [] for k in ("ids", "segments", "lengths", "example",
                                                  "start", "offsets")}
        piece_spans = []
        for begin in range(0, len(questions), _CHUNK):
            chunk_contexts = list(contexts[begin:begin + _CHUNK])
            out = question_windows(tokenizer, tf.constant(list(questions[begin:begin + _CHUNK])),
                                   tf.constant(chunk_contexts), max_length,
                                   options.doc_stride, options.max_question_length)
            mask = out["padding_mask"].numpy().astype(bool)
            starts, ends = out["piece_starts"].to_list(), out["piece_ends"].to_list()
            chunk_spans = []
            for i, context in enumerate(chunk_contexts):
                chars = byte_to_char(context)
                chunk_spans.append((chars[np.asarray(starts[i], np.int64)],
                                    chars[np.asarray(ends[i], np.int64)]))
            piece_spans += chunk_spans
            example = out["window_example"].numpy()
            context_begin = out["context_begin"].numpy()
            window_start = out["window_start"].numpy()
            window_count = out["window_count"].numpy()
            for w, (row_mask, i) in enumerate(zip(mask, example, strict=True)):
                offsets = np.full((int(row_mask.sum()), 2), -1, np.int32)
                begin_token, first = int(context_begin[w]), int(window_start[w])
                count = int(window_count[w])
                span_starts, span_ends = chunk_spans[i]
                offsets[begin_token:begin_token + count, 0] = span_starts[first:first + count]
                offsets[begin_token:begin_token + count, 1] = span_ends[first:first + count]
                parts["offsets"].append(offsets)
            parts["ids"].append(out["token_ids"].numpy()[mask])
            parts["segments"].append(out["segment_ids"].numpy()[mask])
            parts["lengths"].append(mask.sum(axis=1).astype(np.int32))
            parts["example"].append(example.astype(np.int64) + begin)
            parts["start"].append(window_start.astype(np.int64))
        return {"token_ids": np.concatenate(parts["ids"]).astype(np.int32),
                "segment_ids": np.concatenate(parts["segments"]).astype(np.int32),
                "lengths": np.concatenate(parts["lengths"]),
                "window_example": np.concatenate(parts["example"]),
                "window_start": np.concatenate(parts["start"]),
                "offsets": parts["offsets"], "piece_spans": piece_spans}

    def encode(self, tokenizer: WordPieceTokenizer, examples: QAExamples, max_length: int,
               training: bool = False) -> EncodedData:
        from tfsft.tasks.question_answering.encoding import QAEncodedData

        windows = self.windows(tokenizer, examples.questions, examples.contexts, max_length)
        encoded = QAEncodedData(
            token_ids=windows["token_ids"], segment_ids=windows["segment_ids"],
            lengths=windows["lengths"], window_example=windows["window_example"],
            offsets=windows["offsets"], contexts=list(examples.contexts))
        counts = np.bincount(windows["window_example"], minlength=len(examples))
        self._last_encoding = {"questions": len(examples), "windows": int(counts.sum()),
                               "windowed_questions": int((counts > 1).sum())}
        if examples.answers is not None:
            encoded.targets = {"target": self._targets(examples, windows)}
        if self._last_encoding["windowed_questions"]:
            logger.info("%s: %d of %d contexts are longer than one window and were cut into "
                        "%d overlapping windows", examples.source,
                        self._last_encoding["windowed_questions"], len(examples),
                        int(counts[counts > 1].sum()))
        return encoded

    def _targets(self, examples: QAExamples, windows: dict[str, Any]) -> np.ndarray:
        """Start and end token of the first answer in each window ([CLS] = 0 when absent)."""
        spans = []
        uncovered = 0
        for i, answers in enumerate(examples.answers):
            if not answers:
                spans.append(None)
                continue
            text, start = answers[0]
            piece_starts, piece_ends = windows["piece_spans"][i]
            first = int(np.searchsorted(piece_ends, start, side="right"))
            last = int(np.searchsorted(piece_starts, start + len(text), side="left")) - 1
            if first > last:
                uncovered += 1
                spans.append(None)
            else:
                spans.append((first, last))
        targets = np.zeros((len(windows["window_example"]), 2), np.int32)
        for w, (i, offsets) in enumerate(zip(windows["window_example"], windows["offsets"],
                                             strict=True)):
            if spans[i] is None:
                continue
            in_context = np.flatnonzero(offsets[:, 0] >= 0)
            if not len(in_context):
                continue
            begin, first_piece = int(in_context[0]), int(windows["window_start"][w])
            first, last = spans[i]
            if first >= first_piece and last < first_piece + len(in_context):
                targets[w] = (begin + first - first_piece, begin + last - first_piece)
        self._last_encoding["answers_without_tokens"] = uncovered
        if uncovered:
            logger.warning("%s: %d answers cover no word piece (only characters the tokenizer "
                           "drops); those questions train as unanswerable", examples.source,
                           uncovered)
        return targets

    def encoding_notes(self) -> dict[str, Any]:
        return dict(self._last_encoding)

