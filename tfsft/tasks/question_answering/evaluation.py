"""The evaluation role of question answering: the best answer span of every question over its
windows (:mod:`tfsft.tasks.question_answering.postprocess`), the no-answer threshold learned on
validation data, the official SQuAD metrics and the files of answers and wrong answers.

>>> from tfsft.tasks import create_task
>>> evaluation = create_task("question-answering").evaluation
>>> evaluation.headline_metric, evaluation.report_files
('f1', ('metrics.json', 'predictions.json', 'wrong_answers.jsonl'))
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tfsft.errors import ConfigError
from tfsft.tasks.question_answering import postprocess as qa_postprocess
from tfsft.tasks.question_answering.examples import QAExamples
from tfsft.tasks.roles import EvaluationRole

if TYPE_CHECKING:  # pragma: no cover
    from tfsft.data.pipeline import EncodedData
    from tfsft.tasks.question_answering.task import QuestionAnsweringTask

logger = logging.getLogger(__name__)
PREDICTIONS_FILE = "predictions.json"  # {question id: answer}, the official evaluation format
WRONG_ANSWERS_FILE = "wrong_answers.jsonl"


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


class QAEvaluation(EvaluationRole):
    """Window logits to answers, SQuAD metrics, reports and prediction records."""

    task: QuestionAnsweringTask
    headline_metric = "f1"
    report_files = ("metrics.json", PREDICTIONS_FILE, WRONG_ANSWERS_FILE)

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
    def _answers(self, outputs: QAOutputs, null_threshold: float | None = None,
                 n_best: int = 1) -> list[dict[str, Any]]:
        return qa_postprocess.best_answers(
            outputs.start_logits, outputs.end_logits, outputs.offsets, outputs.window_example,
            outputs.contexts, outputs.attention_mask, self.task.options.max_answer_length,
            null_threshold, n_best)

    def after_fit(self, validation: QAExamples, outputs: QAOutputs) -> None:
        """With unanswerable questions: the no-answer threshold of the best validation F1."""
        from tfsft.evaluation.squad_metrics import best_null_threshold, squad_scores

        task = self.task
        if not task.unanswerable or validation.answers is None:
            return
        spans = self._answers(outputs, None)
        margins = qa_postprocess.null_margins(
            outputs.start_logits, outputs.end_logits, outputs.offsets, outputs.window_example,
            len(outputs), outputs.attention_mask, task.options.max_answer_length)
        _, span_f1 = squad_scores([a["answer"] for a in spans], validation.gold_texts)
        finite = np.where(np.isfinite(margins), margins, np.finfo(np.float32).max)
        task.null_threshold, best_f1 = best_null_threshold(
            finite, span_f1, [bool(a) for a in validation.answers])
        logger.info("no-answer threshold %.4f (validation F1 %.2f)", task.null_threshold,
                    best_f1)

    def evaluate(self, examples: QAExamples, outputs: QAOutputs,
                 output_dir: str | Path | None = None, prefix: str = "") -> dict[str, Any]:
        from tfsft.evaluation.squad_metrics import squad_metrics, squad_scores

        if examples.answers is None:
            raise ConfigError("evaluation needs questions with answers")
        predicted = self._answers(outputs, self.task.null_threshold)
        texts = [a["answer"] for a in predicted]
        metrics: dict[str, Any] = squad_metrics(texts, examples.gold_texts)
        metrics["examples"] = len(examples)
        metrics["null_threshold"] = self.task.null_threshold
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
        return self._answers(outputs, self.task.null_threshold, self.task.options.n_best)
