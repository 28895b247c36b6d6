"""The evaluation role of sentence embeddings: retrieval of each positive by its anchor among
all the distinct positives and the texts of ``--corpus`` (recall@1/5/10, MRR@10, nDCG@10, by
cosine similarity), or, for scored pairs, the correlation of the cosine similarities with the
scores; ``errors.jsonl`` lists the worst-ranked queries. After training, the pretrained
checkpoint is measured on the same validation data too (``metrics.json`` ``untuned``), so the
gain is in the report.

Outputs are :class:`EmbeddingOutputs`: ``vectors`` ``[examples, k, dimensions]`` (``k`` is 1
for texts to embed, 2 with positives (anchor, positive) and 3 with hard negatives; unit length
unless ``--normalize no``) and, with ``--corpus``, the corpus texts' vectors.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
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


@dataclass
class EmbeddingOutputs:
    """The embeddings of a set of examples (see the module docstring)."""

    vectors: np.ndarray
    corpus: np.ndarray | None = None
    corpus_texts: list[str] | None = None


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
                verbose: int | str = 0) -> EmbeddingOutputs:
        from tfsft.data.pipeline import EncodedData

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
        vectors = [self._embed(model, part, batch_size, verbose) for part in rows]
        outputs = EmbeddingOutputs(np.stack(vectors, axis=1))
        if "anchor_ids" in extras and self.task.options.corpus:
            outputs.corpus_texts = self._corpus_texts()
            corpus = self.task.data.encode(
                self.task.tokenizer, self.task.data.examples_from_texts(
                    {"text": outputs.corpus_texts}), self.task.max_length)
            outputs.corpus = self._embed(model, corpus, batch_size, verbose)
        return outputs

    def _embed(self, model: keras.Model, encoded: EncodedData, batch_size: int,
               verbose: int | str) -> np.ndarray:
        """The served vectors of ``encoded`` rows (unit length unless ``--normalize no``)."""
        from tfsft.data.pipeline import predict_logits

        encoder = getattr(model, "encoder", model)
        vectors = predict_logits(encoder, encoded, batch_size=batch_size, verbose=verbose)
        return (normalized(vectors) if self.task.normalizes else vectors).astype(np.float32)

    def _corpus_texts(self) -> list[str]:
        """The texts of ``--corpus`` (read once per evaluation)."""
        from tfsft.tasks.sentence_embedding.examples import read_corpus

        path = self.task.options.corpus
        if not Path(path).exists():
            raise ConfigError(f"the evaluation corpus {path} (--corpus) does not exist; pass "
                              "it again (tfsft evaluate RUN --corpus FILE)")
        return read_corpus(path, self.task.options.corpus_column)

    def after_fit(self, validation: PairExamples, outputs: EmbeddingOutputs) -> None:
        """Measure the pretrained checkpoint on the same validation pairs, for the report."""
        pretrained = self.task.modeling.pretrained
        if pretrained is None or validation.text_pairs is None or self.task.tokenizer is None:
            return
        untuned = self.task.modeling.build(pretrained, dropout=0.0, dtype="float32")
        encoded = self.task.data.encode(self.task.tokenizer, validation, self.task.max_length)
        self.untuned = _measured(validation, self.outputs(untuned, encoded))[0]
        del self.untuned["examples"]

    def evaluate(self, examples: PairExamples, outputs: EmbeddingOutputs,
                 output_dir: str | Path | None = None, prefix: str = "") -> dict[str, Any]:
        from tfsft.io_utils import atomic_write_json, atomic_write_text

        if examples.text_pairs is None or outputs.vectors.shape[1] < 2:
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

    def predictions(self, outputs: EmbeddingOutputs) -> list[dict[str, Any]]:
        return [{"embedding": [round(float(x), 6) for x in row]} for row in outputs.vectors[:, 0]]


def _measured(examples: PairExamples,
              outputs: EmbeddingOutputs) -> tuple[dict[str, Any], np.ndarray | None]:
    """Similarity metrics of scored pairs, or retrieval metrics and the ranks of pairs."""
    metrics: dict[str, Any] = {"examples": len(examples)}
    vectors = normalized(outputs.vectors)
    if examples.scores is not None:
        similarities = np.sum(vectors[:, 0] * vectors[:, 1], axis=-1)
        return {**metrics, **similarity_metrics(examples.scores, similarities)}, None
    found, ranks = retrieval_of(examples, vectors[:, 0], vectors[:, 1],
                                outputs.corpus_texts, outputs.corpus)
    return {**metrics, **found}, ranks


def search_corpus(examples: PairExamples, positives: np.ndarray, corpus_texts: list[str] | None,
                  corpus: np.ndarray | None) -> tuple[list[str], np.ndarray]:
    """The texts searched and their vectors: each distinct positive once (its first vector),
    then the corpus texts that are not positives."""
    first: dict[str, int] = {}
    for i, text in enumerate(examples.text_pairs):
        first.setdefault(text, i)
    texts, vectors = list(first), [np.asarray(positives)[list(first.values())]]
    if corpus_texts is not None and corpus is not None:
        seen, extra = set(first), []
        for i, text in enumerate(corpus_texts):
            if text not in seen:
                seen.add(text)
                extra.append(i)
        texts += [corpus_texts[i] for i in extra]
        vectors.append(np.asarray(corpus)[extra])
    return texts, np.concatenate(vectors)


def retrieval_of(examples: PairExamples, anchors: np.ndarray, positives: np.ndarray,
                 corpus_texts: list[str] | None = None,
                 corpus: np.ndarray | None = None) -> tuple[dict[str, Any], np.ndarray]:
    """Retrieval metrics of ``anchors`` searching the distinct positive texts (and the corpus
    texts), and the rank of each anchor's positive."""
    texts, vectors = search_corpus(examples, positives, corpus_texts, corpus)
    index = {text: i for i, text in enumerate(texts)}
    relevant = np.array([index[text] for text in examples.text_pairs], np.int64)
    ranks = retrieval_ranks(anchors, vectors, relevant)
    return {**retrieval_metrics(ranks), "corpus": len(texts)}, ranks


def _worst_queries(examples: PairExamples, outputs: EmbeddingOutputs,
                   ranks: np.ndarray) -> list[dict[str, Any]]:
    """The queries whose positive ranked lowest, with what ranked first instead."""
    pairs = normalized(outputs.vectors)
    texts, vectors = search_corpus(examples, pairs[:, 1], outputs.corpus_texts,
                                   None if outputs.corpus is None else normalized(outputs.corpus))
    errors = []
    for i in np.argsort(-ranks, kind="stable")[:WORST_QUERIES]:
        if ranks[i] == 1:
            break
        scores = vectors @ pairs[i, 0]
        top = int(np.argmax(scores))
        errors.append({"query": examples.texts[i], "positive": examples.text_pairs[i],
                       "rank": int(ranks[i]), "retrieved": texts[top],
                       "retrieved_similarity": round(float(scores[top]), 4),
                       "positive_similarity": round(float(pairs[i, 0] @ pairs[i, 1]), 4)})
    return errors
