"""Retrieval and similarity metrics of sentence embeddings.

Retrieval: each query (anchor) searches a corpus (its positives, each distinct text once) by
cosine similarity; its positive is the one relevant document. Recall@k is the share of queries
whose positive ranks in the top k, MRR@10 the mean of 1 / rank (0 past 10), nDCG@10 with one
relevant document is 1 / log2(rank + 1) (0 past 10).

>>> queries = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
>>> corpus = np.array([[1.0, 0.0], [0.0, 1.0]])
>>> ranks = retrieval_ranks(queries, corpus, np.array([0, 1, 0]))
>>> ranks.tolist(), retrieval_metrics(ranks)["recall@1"], retrieval_metrics(ranks)["mrr@10"]
([1, 1, 2], 0.666667, 0.833333)
"""

from __future__ import annotations

from typing import Any

import numpy as np

CUTOFFS = (1, 5, 10)


def normalized(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, np.float64)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)


def retrieval_ranks(queries: np.ndarray, corpus: np.ndarray, relevant: np.ndarray,
                    chunk: int = 1024) -> np.ndarray:
    """The 1-based rank of each query's ``relevant`` corpus row by cosine similarity (ties
    count against the query: a document as similar as the relevant one ranks above it)."""
    corpus = normalized(corpus)
    ranks = np.empty(len(queries), np.int64)
    for start in range(0, len(queries), chunk):
        scores = normalized(queries[start:start + chunk]) @ corpus.T
        rows = np.arange(len(scores))
        own = scores[rows, relevant[start:start + chunk]]
        ranks[start:start + chunk] = (scores >= own[:, None]).sum(axis=1)
    return ranks


def retrieval_metrics(ranks: np.ndarray) -> dict[str, Any]:
    """Recall@1/5/10, MRR@10 and nDCG@10 from the ranks of the relevant documents."""
    ranks = np.asarray(ranks)
    metrics: dict[str, Any] = {f"recall@{k}": round(float(np.mean(ranks <= k)), 6)
                               for k in CUTOFFS}
    within = ranks <= 10
    metrics["mrr@10"] = round(float(np.mean(np.where(within, 1.0 / ranks, 0.0))), 6)
    metrics["ndcg@10"] = round(float(np.mean(np.where(within, 1.0 / np.log2(ranks + 1), 0.0))),
                               6)
    return metrics


def similarity_metrics(scores: np.ndarray, similarities: np.ndarray) -> dict[str, Any]:
    """Pearson and Spearman correlation of the cosine similarities with the gold scores."""
    from scipy.stats import pearsonr, spearmanr

    if len(scores) < 2 or np.std(scores) == 0 or np.std(similarities) == 0:
        return {"pearson": 0.0, "spearman": 0.0}
    return {"pearson": round(float(pearsonr(scores, similarities)[0]), 6),
            "spearman": round(float(spearmanr(scores, similarities)[0]), 6)}
