"""The evaluation role of sentence embeddings: retrieval of each positive by its anchor among
all the positives (recall@1/5/10, MRR@10, nDCG@10), or, for scored pairs, the correlation of the
cosine similarities with the scores; ``errors.jsonl`` lists the worst-ranked queries. After
training, the pretrained checkpoint is measured on the same validation data too
(``metrics.json`` ``untuned``), so the gain is in the report.

Outputs are one array ``[examples, k, dimensions]`` of L2-normalised embeddings: ``k`` is 1 for
texts to embed, 2 with positives (anchor, positive) and 3 with hard negatives.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tfsft.errors import ConfigError
from tfsft.tasks.roles import EvaluationRole
from tfsft.tasks.sentence_embedding.metrics import (
    normalized,
    retrieval_metrics,
    retrieval_ranks,
    similarity_metrics,
)

if TYPE_CHECKING:  # pragma: no cover
    import keras

    from tfsft.data.pipeline import EncodedData
    from tfsft.tasks.sentence_embedding.examples import PairExamples
    from tfsft.tasks.sentence_embedding.task import SentenceEmbeddingTask

ERRORS_FILE = "errors.jsonl"
#: Queries listed in errors.jsonl.
WORST_QUERIES = 50


class EmbeddingEvaluation(EvaluationRole):
    """See the module docstring."""

    task: SentenceEmbeddingTask
    report_files = ("metrics.json", ERRORS_FILE)
    # outputs are embeddings of anchors and positives, not the training model's similarities
    outputs_from_validation = False

    def __init__(self, task: SentenceEmbeddingTask):
        super().__init__(task)
        #: Metrics of the pretrained checkpoint on the same validation data (after training).
        self.untuned: dict[str, Any] | None = None

    @property
    def headline_metric(self) -> str:  # type: ignore[override]
        """Recall@1 for pairs; Spearman correlation for scored pairs."""
        return "spearman" if self.task.options.score_column else "recall@1"

    def outputs(self, model: keras.Model, encoded: EncodedData, batch_size: int = 64,
                verbose: int | str = 0) -> np.ndarray:
        from tfsft.data.pipeline import EncodedData, predict_logits

        encoder = getattr(model, "encoder", model)
        extras = encoded.extra_features or {}
        own = EncodedData(encoded.token_ids, encoded.segment_ids, encoded.lengths)
        # pairs: anchor, positive (each row's own tokens), negative; texts: their own tokens
        rows = [] if "anchor_ids" in extras else [own]
        for name in ("anchor", "positive", "negative"):
            ragged = extras.get(f"{name}_ids")
            if name == "positive" and "anchor_ids" in extras:
                rows.append(own)
            elif ragged is not None:
                rows.append(EncodedData(ragged.values, np.zeros_like(ragged.values),
                                        ragged.row_lengths))
        vectors = [normalized(predict_logits(encoder, part, batch_size=batch_size,
                                             verbose=verbose)) for part in rows]
        return np.stack(vectors, axis=1).astype(np.float32)

    def after_fit(self, validation: PairExamples, outputs: np.ndarray) -> None:
        """Measure the pretrained checkpoint on the same validation pairs, for the report."""
        pretrained = self.task.modeling.pretrained
        if pretrained is None or validation.text_pairs is None or self.task.tokenizer is None:
            return
        untuned = self.task.modeling.build(pretrained, dropout=0.0, dtype="float32")
        encoded = self.task.data.encode(self.task.tokenizer, validation, self.task.max_length)
        self.untuned = _measured(validation, self.outputs(untuned, encoded))[0]
        del self.untuned["examples"]

    def evaluate(self, examples: PairExamples, outputs: np.ndarray,
                 output_dir: str | Path | None = None, prefix: str = "") -> dict[str, Any]:
        from tfsft.io_utils import atomic_write_json, atomic_write_text

        if examples.text_pairs is None or outputs.shape[1] < 2:
            raise ConfigError("evaluation needs pairs (--positive-column)")
        metrics, ranks = _measured(examples, outputs)
        errors = [] if ranks is None else _worst_queries(examples, outputs, ranks)
        if self.untuned is not None:
            metrics["untuned"] = self.untuned
        if output_dir is not None:
            folder = Path(output_dir)
            atomic_write_json(folder / f"{prefix}metrics.json", metrics)
            atomic_write_text(folder / f"{prefix}{ERRORS_FILE}", "".join(
                json.dumps(e, ensure_ascii=False) + "\n" for e in errors))
        return metrics

    def headline(self, metrics: dict[str, Any]) -> dict[str, Any]:
        keys = ("examples", "recall@1", "recall@5", "recall@10", "mrr@10", "ndcg@10",
                "pearson", "spearman")
        return {k: metrics[k] for k in keys if k in metrics}

    def predictions(self, outputs: np.ndarray) -> list[dict[str, Any]]:
        return [{"embedding": [round(float(x), 6) for x in row]} for row in outputs[:, 0]]


def _measured(examples: PairExamples,
              outputs: np.ndarray) -> tuple[dict[str, Any], np.ndarray | None]:
    """Similarity metrics of scored pairs, or retrieval metrics and the ranks of pairs."""
    metrics: dict[str, Any] = {"examples": len(examples)}
    if examples.scores is not None:
        similarities = np.sum(outputs[:, 0] * outputs[:, 1], axis=-1)
        return {**metrics, **similarity_metrics(examples.scores, similarities)}, None
    found, ranks = retrieval_of(examples, outputs[:, 0], outputs[:, 1])
    return {**metrics, **found}, ranks


def retrieval_of(examples: PairExamples, anchors: np.ndarray,
                 positives: np.ndarray) -> tuple[dict[str, Any], np.ndarray]:
    """Retrieval metrics of ``anchors`` searching the distinct positive texts (each text once,
    its first vector), and the rank of each anchor's positive."""
    index: dict[str, int] = {}
    relevant = np.array([index.setdefault(text, len(index)) for text in examples.text_pairs],
                        np.int64)
    first = {text: i for i, text in reversed(list(enumerate(examples.text_pairs)))}
    corpus = np.asarray(positives)[[first[text] for text in index]]
    ranks = retrieval_ranks(anchors, corpus, relevant)
    return {**retrieval_metrics(ranks), "corpus": len(index)}, ranks


def _worst_queries(examples: PairExamples, outputs: np.ndarray,
                   ranks: np.ndarray) -> list[dict[str, Any]]:
    """The queries whose positive ranked lowest, with what ranked first instead."""
    texts = list(dict.fromkeys(examples.text_pairs))
    first = {text: i for i, text in reversed(list(enumerate(examples.text_pairs)))}
    vectors = outputs[[first[text] for text in texts], 1]
    errors = []
    for i in np.argsort(-ranks, kind="stable")[:WORST_QUERIES]:
        if ranks[i] == 1:
            break
        scores = vectors @ outputs[i, 0]
        top = int(np.argmax(scores))
        errors.append({"query": examples.texts[i], "positive": examples.text_pairs[i],
                       "rank": int(ranks[i]), "retrieved": texts[top],
                       "retrieved_similarity": round(float(scores[top]), 4),
                       "positive_similarity": round(float(outputs[i, 0] @ outputs[i, 1]), 4)})
    return errors
