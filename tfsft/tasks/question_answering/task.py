"""``question-answering``: extractive QA (SQuAD v1.1 / v2.0), answer text and offsets out.

Data: SQuAD JSON, flat JSONL/CSV/Parquet rows or Hugging Face datasets (see
:mod:`tfsft.tasks.question_answering.examples`); every answer is checked against its context.

Features: ``[CLS] question [SEP] context window [SEP]``, windows of ``max_length`` tokens over
long contexts sharing ``doc_stride`` pieces (:mod:`tfsft.tasks.question_answering.graph`, the same ops in
training and in the SavedModel). A window's target is the token span of the question's first
answer, or ``[CLS]`` twice when the window does not hold the whole answer (and for
unanswerable questions).

Model: the backbone's token vectors -> ``Dense(2)``: start and end logits per token, trained
with the mean cross-entropy of start and end.

Answers: the best span over all windows of a question (:mod:`tfsft.tasks.question_answering.postprocess`,
also shipped beside TFLite / ONNX models), mapped back to character offsets of the context; for
data with unanswerable questions, the no-answer threshold that maximises validation F1. Metrics:
the official SQuAD exact match and F1 (HasAns / NoAns split for v2), a file of wrong answers.

>>> task = create_task("question-answering")
>>> task.text_inputs(), task.options.doc_stride
(('question', 'context'), 128)
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tfsft.errors import ConfigError, DataError
from tfsft.tasks.base import OutputCheck, Task, TaskOptions, create_task, option, register_task
from tfsft.tasks.question_answering import postprocess as qa_postprocess
from tfsft.tasks.question_answering.examples import QAColumns, QAExamples, read_qa_data

if TYPE_CHECKING:  # pragma: no cover
    import keras
    import tensorflow as tf

    from tfsft.data.pipeline import EncodedData
    from tfsft.tokenization import WordPieceTokenizer

__all__ = ["QuestionAnsweringOptions", "QuestionAnsweringTask", "create_task"]

logger = logging.getLogger(__name__)
PREDICTIONS_FILE = "predictions.json"  # {question id: answer}, the official evaluation format
WRONG_ANSWERS_FILE = "wrong_answers.jsonl"
_CHUNK = 1024  # questions windowed per call


@dataclass
class QuestionAnsweringOptions(TaskOptions):
    question_column: str = option("question", help="column holding the question", read=True)
    context_column: str = option("context", help="column holding the context passage",
                                 read=True)
    answer_text_column: str = option("answer_text", help="column holding the answer text "
                                     "(flat rows)", read=True)
    answer_start_column: str = option("answer_start", help="column holding the answer's "
                                      "character offset in the context (flat rows)", read=True)
    answers_column: str = option("answers", help='column holding {"text": [...], '
                                 '"answer_start": [...]} (Hugging Face SQuAD layout)', read=True)
    id_column: str = option("id", help="column holding the question id (optional)", read=True)
    doc_stride: int = option(128, help="context word pieces shared by consecutive windows of "
                                       "a context longer than one window")
    max_question_length: int = option(64, help="word pieces of the question kept")
    max_answer_length: int = option(30, help="longest answer, in word pieces")
    n_best: int = option(1, help="answers returned per question by predict (the best first; "
                                 "more than 1 adds alternatives)")
    skip_bad_answers: bool = option(False, help="leave out questions whose answer is not at "
                                    "its answer_start instead of stopping (they are counted)")

    def validate(self) -> None:
        for name in ("max_question_length", "max_answer_length", "n_best"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1")
        if self.doc_stride < 0:
            raise ConfigError("doc_stride must be >= 0")

    def columns(self) -> QAColumns:
        return QAColumns(self.question_column, self.context_column, self.answer_text_column,
                         self.answer_start_column, self.answers_column, self.id_column)


@dataclass
class QAOutputs:
    """Start/end logits of every window, padded, with what maps them back to the contexts."""

    start_logits: np.ndarray  # [windows, tokens] float32
    end_logits: np.ndarray
    attention_mask: np.ndarray  # [windows, tokens] 1 on real tokens
    offsets: np.ndarray  # [windows, tokens, 2] character span of context tokens, else -1
    window_example: np.ndarray  # [windows]
    contexts: list[str]

    def __len__(self) -> int:
        return len(self.contexts)


@register_task
class QuestionAnsweringTask(Task):
    name = "question-answering"
    Options = QuestionAnsweringOptions
    input_flags = {"question": "the question (with --context)",
                   "context": "the passage holding the answer"}
    model_options = ("max_answer_length", "n_best")
    metric_directions = {"loss": False, "span_accuracy": True}
    headline_metric = "f1"
    default_max_length = 384
    report_files = ("metrics.json", PREDICTIONS_FILE, WRONG_ANSWERS_FILE)
    long_example_treatment = "split into overlapping windows (--doc-stride)"
    lite_text_model = False
    lite_text_reason = ("windows over long contexts need ragged ops LiteRT lacks: tokenize "
                        "with vocab.txt and decode the logits with qa_postprocess.py")

    def __init__(self, options: QuestionAnsweringOptions):
        super().__init__(options)
        self.null_threshold: float | None = None
        self.unanswerable = False
        self.last_encoding: dict[str, int] = {}

    # -- state ------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"null_threshold": self.null_threshold, "unanswerable": self.unanswerable}

    def load_state(self, state: dict[str, Any]) -> None:
        self.null_threshold = state.get("null_threshold")
        self.unanswerable = bool(state.get("unanswerable", False))

    def labels_for_sidecar(self) -> list[str]:
        return ["start", "end"]

    def sidecar_files(self) -> dict[str, Path]:
        return {"qa_postprocess.py": Path(qa_postprocess.__file__)}

    # -- data -------------------------------------------------------------------------------
    def read(self, source: Any, role: str = "train", labelled: bool = True,
             max_rows: int | None = None, file_format: str | None = None,
             encoding: str = "utf-8", delimiter: str | None = None,
             quoting: bool = True) -> QAExamples:
        examples = read_qa_data(source, self.options.columns(), labelled,
                                self.options.skip_bad_answers, max_rows, file_format, encoding,
                                delimiter, quoting)
        for reason, count in examples.skipped.items():
            logger.warning("%s: %d questions skipped (%s, --skip-bad-answers)", examples.source,
                           count, reason)
        if role == "train" and labelled:
            self.unanswerable = examples.unanswerable > 0
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
        self.unanswerable = any(summary["unanswerable"] for summary in summaries)

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
        task = self.with_options(**self.record_options())
        first = next((line for line in Path(path).read_text("utf-8").splitlines()
                      if line.strip()), "{}")
        return task.read(path, role="eval", labelled="answers" in json.loads(first),
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
    def _check_lengths(self, max_length: int) -> None:
        room = max_length - 3 - self.options.max_question_length
        if room <= self.options.doc_stride:
            raise ConfigError(
                f"--doc-stride {self.options.doc_stride} must be smaller than the context "
                f"pieces a window holds with the longest question: max_length {max_length} - 3 "
                f"- max_question_length {self.options.max_question_length} = {room}; lower "
                "--doc-stride or --max-question-length, or raise --max-length")

    def windows(self, tokenizer: WordPieceTokenizer, questions: Sequence[str],
                contexts: Sequence[str], max_length: int) -> dict[str, Any]:
        """The windows of every question as NumPy arrays (see ``qa_graph.question_windows``),
        with ``offsets``: the character span of each context token (-1 elsewhere), one
        ``[tokens, 2]`` array per window, and each context's piece character spans."""
        import tensorflow as tf

        from tfsft.tasks.question_answering.graph import question_windows
        from tfsft.tokenization import byte_to_char

        self._check_lengths(max_length)
        parts: dict[str, list] = {k: [] for k in ("ids", "segments", "lengths", "example",
                                                  "start", "offsets")}
        piece_spans = []
        for begin in range(0, len(questions), _CHUNK):
            chunk_contexts = list(contexts[begin:begin + _CHUNK])
            out = question_windows(tokenizer, tf.constant(list(questions[begin:begin + _CHUNK])),
                                   tf.constant(chunk_contexts), max_length,
                                   self.options.doc_stride, self.options.max_question_length)
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
        self.last_encoding = {"questions": len(examples), "windows": int(counts.sum()),
                              "windowed_questions": int((counts > 1).sum())}
        if examples.answers is not None:
            encoded.targets = {"target": self._targets(examples, windows)}
        if self.last_encoding["windowed_questions"]:
            logger.info("%s: %d of %d contexts are longer than one window and were cut into "
                        "%d overlapping windows", examples.source,
                        self.last_encoding["windowed_questions"], len(examples),
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
        self.last_encoding["answers_without_tokens"] = uncovered
        if uncovered:
            logger.warning("%s: %d answers cover no word piece (only characters the tokenizer "
                           "drops); those questions train as unanswerable", examples.source,
                           uncovered)
        return targets

    def encoding_notes(self) -> dict[str, Any]:
        return dict(self.last_encoding)

    # -- model ------------------------------------------------------------------------------
    def build_model(self, checkpoint: Path, dropout: float, dtype: str | None) -> keras.Model:
        from tfsft.models.text_model import TextModel

        return TextModel.from_pretrained(checkpoint, num_outputs=2, pooling="tokens",
                                         dropout=dropout, dtype=dtype)

    def compile(self, model: keras.Model, optimizer: Any) -> None:
        from tfsft.models.metrics import SpanAccuracy, SpanLoss

        model.compile(optimizer=optimizer, loss=SpanLoss(), metrics=[SpanAccuracy()])

    def outputs_from_logits(self, logits: Sequence[np.ndarray], encoded: EncodedData) -> QAOutputs:
        return self._outputs(logits, encoded.offsets, encoded.window_example, encoded.contexts)

    @staticmethod
    def _outputs(rows: Sequence[np.ndarray], offsets: Sequence[np.ndarray],
                 window_example: np.ndarray, contexts: list[str]) -> QAOutputs:
        width = max((len(r) for r in rows), default=1)
        start = np.zeros((len(rows), width), np.float32)
        end = np.zeros_like(start)
        mask = np.zeros((len(rows), width), np.int32)
        padded_offsets = np.full((len(rows), width, 2), -1, np.int32)
        for w, (row, row_offsets) in enumerate(zip(rows, offsets, strict=True)):
            start[w, :len(row)], end[w, :len(row)] = row[:, 0], row[:, 1]
            mask[w, :len(row)] = 1
            padded_offsets[w, :len(row)] = row_offsets
        return QAOutputs(start, end, mask, padded_offsets, np.asarray(window_example), contexts)

    # -- answers, metrics, predictions ------------------------------------------------------
    def answers(self, outputs: QAOutputs, null_threshold: float | None = None,
                n_best: int = 1) -> list[dict[str, Any]]:
        return qa_postprocess.best_answers(
            outputs.start_logits, outputs.end_logits, outputs.offsets, outputs.window_example,
            outputs.contexts, outputs.attention_mask, self.options.max_answer_length,
            null_threshold, n_best)

    def after_fit(self, validation: QAExamples, outputs: QAOutputs) -> None:
        """With unanswerable questions: the no-answer threshold of the best validation F1."""
        from tfsft.evaluation.squad_metrics import best_null_threshold, squad_scores

        if not self.unanswerable or validation.answers is None:
            return
        spans = self.answers(outputs, None)
        margins = qa_postprocess.null_margins(
            outputs.start_logits, outputs.end_logits, outputs.offsets, outputs.window_example,
            len(outputs), outputs.attention_mask, self.options.max_answer_length)
        _, span_f1 = squad_scores([a["answer"] for a in spans], validation.gold_texts)
        finite = np.where(np.isfinite(margins), margins, np.finfo(np.float32).max)
        self.null_threshold, best_f1 = best_null_threshold(
            finite, span_f1, [bool(a) for a in validation.answers])
        logger.info("no-answer threshold %.4f (validation F1 %.2f)", self.null_threshold,
                    best_f1)

    def evaluate(self, examples: QAExamples, outputs: QAOutputs,
                 output_dir: str | Path | None = None, prefix: str = "") -> dict[str, Any]:
        from tfsft.evaluation.squad_metrics import squad_metrics, squad_scores

        if examples.answers is None:
            raise ConfigError("evaluation needs questions with answers")
        predicted = self.answers(outputs, self.null_threshold)
        texts = [a["answer"] for a in predicted]
        metrics: dict[str, Any] = squad_metrics(texts, examples.gold_texts)
        metrics["examples"] = len(examples)
        metrics["null_threshold"] = self.null_threshold
        metrics["skipped_rows"] = dict(examples.skipped)
        if output_dir is not None:
            from tfsft.io_utils import atomic_write_json, atomic_write_text

            folder = Path(output_dir)
            folder.mkdir(parents=True, exist_ok=True)
            atomic_write_json(folder / f"{prefix}metrics.json", metrics)
            atomic_write_json(folder / f"{prefix}{PREDICTIONS_FILE}",
                              dict(zip(examples.ids, texts, strict=True)))
            em, f1 = squad_scores(texts, examples.gold_texts)
            wrong = [json.dumps({"id": examples.ids[i], "question": examples.questions[i],
                                 "predicted": texts[i], "gold": examples.gold_texts[i],
                                 "f1": round(float(f1[i]), 4), "score": predicted[i]["score"],
                                 "context": examples.contexts[i]}, ensure_ascii=False)
                     for i in np.flatnonzero(em < 1)]
            atomic_write_text(folder / f"{prefix}{WRONG_ANSWERS_FILE}",
                              "".join(line + "\n" for line in wrong))
        return metrics

    def headline(self, metrics: dict[str, Any]) -> dict[str, Any]:
        keys = ("f1", "exact_match", "HasAns_f1", "NoAns_f1", "examples")
        return {k: metrics[k] for k in keys if k in metrics}

    def predictions(self, outputs: QAOutputs) -> list[dict[str, Any]]:
        return self.answers(outputs, self.null_threshold, self.options.n_best)

    # -- export -----------------------------------------------------------------------------
    def text_inputs(self) -> tuple[str, ...]:
        return ("question", "context")

    def tokenize(self, tokenizer: WordPieceTokenizer, inputs: dict[str, tf.Tensor],
                 max_length: int) -> dict[str, tf.Tensor]:
        from tfsft.tasks.question_answering.graph import question_windows

        self._check_lengths(max_length)
        windows = question_windows(tokenizer, inputs["question"], inputs["context"],
                                   max_length, self.options.doc_stride,
                                   self.options.max_question_length)
        return {k: windows[k] for k in ("token_ids", "segment_ids", "padding_mask")}

    def export_outputs(self, raw: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"start_logits": raw[..., 0], "end_logits": raw[..., 1]}

    def serving_outputs(self, raw: tf.Tensor, inputs: dict[str, tf.Tensor],
                        tokenizer: WordPieceTokenizer, max_length: int) -> dict[str, tf.Tensor]:
        from tfsft.tasks.question_answering.graph import question_windows, span_answers

        windows = question_windows(tokenizer, inputs["question"], inputs["context"],
                                   max_length, self.options.doc_stride,
                                   self.options.max_question_length)
        return span_answers(raw, windows, inputs["context"], self.options.max_answer_length,
                            self.null_threshold)

    def output_checks(self) -> dict[str, OutputCheck]:
        """fp32 artifacts: logits within 1e-3 on real tokens and at most 1 % of the answers
        different. Quantized ones: logits correlated >= 0.95 with the Keras model's; their
        answer agreement is reported but does not decide (one answer flips where two spans
        score nearly alike, which depends on the model more than on the quantization)."""
        logits = OutputCheck(kind="scores", per_token=True, tolerance=1e-3, min_correlation=0.95)
        answers = OutputCheck(kind="equal", tolerance=0.01, min_agreement=0.0)
        return {"start_logits": logits, "end_logits": logits, "answer": answers,
                "start": answers, "end": answers}

    def decode_exported(self, batch: dict[str, Any],
                        outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Answers from a token-id artifact's logits on a verification batch (as an app
        would decode them with ``qa_postprocess.py``)."""
        if "start_logits" not in outputs:
            return {}
        questions = list(batch["text_inputs"]["question"])
        contexts = list(batch["text_inputs"]["context"])
        windows = self.windows(self.tokenizer, questions, contexts, self.max_length)
        width = np.asarray(outputs["start_logits"]).shape[1]
        offsets = np.full((len(windows["offsets"]), width, 2), -1, np.int32)
        for w, row in enumerate(windows["offsets"]):
            offsets[w, :len(row)] = row
        found = qa_postprocess.best_answers(
            outputs["start_logits"], outputs["end_logits"], offsets, windows["window_example"],
            contexts, batch["attention_mask"], self.options.max_answer_length,
            self.null_threshold)
        return {"answer": np.array([a["answer"] for a in found], dtype=object),
                "start": np.array([a["start"] for a in found]),
                "end": np.array([a["end"] for a in found])}

    def export_quality(self, examples: QAExamples, outputs: dict[str, Any]) -> float | None:
        """SQuAD F1 of the exported model's answers."""
        from tfsft.evaluation.squad_metrics import squad_metrics

        if examples.answers is None or "answer" not in outputs:
            return None
        answers = [str(a) for a in np.asarray(outputs["answer"]).ravel()]
        return squad_metrics(answers, examples.gold_texts)["f1"]
