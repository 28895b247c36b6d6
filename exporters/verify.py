"""Check an exported artifact against the Keras model on held-out texts, and time it.

Every artifact is wrapped as a :class:`Runner`: a function from a batch of held-out examples to
logits. :func:`verify` feeds the same batches to the artifact and to the Keras model and reports
max |Δlogit|, argmax agreement, accuracy, file size and median latency at batch 1 and 32.

>>> import numpy as np
>>> check = Check("x", "fp32", "x.bin", 10, np.array([[1.0, 0.0]]), np.array([[1.0, 0.1]]),
...               np.array([0]))
>>> check.max_abs_diff, check.agreement, check.accuracy
(0.1, 1.0, 1.0)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tfsft.data.examples import TextClassificationData

# A batch handed to runners: the texts (and pairs) and their token-id features.
Batch = dict[str, Any]
Runner = Callable[[Batch], np.ndarray]

FP32_TOLERANCE = 1e-4
QUANTIZED_MIN_AGREEMENT = 0.98


@dataclass
class Check:
    """What :func:`verify` measured for one artifact."""

    artifact: str
    variant: str
    path: str
    size_bytes: int
    reference: np.ndarray = field(repr=False)
    logits: np.ndarray = field(repr=False)
    label_ids: np.ndarray | None = field(repr=False)
    latency_ms: dict[str, float] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def max_abs_diff(self) -> float:
        return round(float(np.max(np.abs(self.logits - self.reference))), 8)

    @property
    def agreement(self) -> float:
        return float(np.mean(self.logits.argmax(-1) == self.reference.argmax(-1)))

    @property
    def accuracy(self) -> float | None:
        if self.label_ids is None:
            return None
        return float(np.mean(self.logits.argmax(-1) == self.label_ids))

    @property
    def quantized(self) -> bool:
        return self.variant not in ("fp32", "optimized", "text")

    @property
    def passed(self) -> bool:
        if self.quantized:
            return self.agreement >= QUANTIZED_MIN_AGREEMENT
        return self.max_abs_diff <= FP32_TOLERANCE

    def summary(self) -> dict[str, Any]:
        return {
            "artifact": self.artifact, "variant": self.variant, "path": self.path,
            "size_bytes": self.size_bytes, "max_abs_logit_diff": self.max_abs_diff,
            "argmax_agreement": self.agreement, "accuracy": self.accuracy,
            "latency_ms": self.latency_ms, "passed": self.passed,
            "rule": (f"argmax agreement >= {QUANTIZED_MIN_AGREEMENT}" if self.quantized
                     else f"max |Δlogit| <= {FP32_TOLERANCE}"),
            **self.notes,
        }


def make_batches(tokenizer, data: TextClassificationData, max_length: int,
                 batch_size: int = 32) -> list[Batch]:
    """Held-out examples in input order, cut into batches with their token-id features."""
    batches = []
    for start in range(0, len(data), batch_size):
        texts = data.texts[start:start + batch_size]
        pairs = None if data.text_pairs is None else data.text_pairs[start:start + batch_size]
        encoded = tokenizer.encode(texts, pairs, max_length=max_length)
        batches.append({
            "texts": np.array(texts, dtype=object),
            "text_pairs": None if pairs is None else np.array(pairs, dtype=object),
            "input_ids": encoded["token_ids"].numpy(),
            "attention_mask": encoded["padding_mask"].numpy(),
            "token_type_ids": encoded["segment_ids"].numpy(),
        })
    return batches


def single_examples(batches: Sequence[Batch], count: int) -> list[Batch]:
    """The first ``count`` examples as batches of one, trimmed to their own length."""
    singles = []
    for batch in batches:
        for i in range(len(batch["texts"])):
            if len(singles) == count:
                return singles
            length = int(batch["attention_mask"][i].sum())
            singles.append({
                "texts": batch["texts"][i:i + 1],
                "text_pairs": None if batch["text_pairs"] is None else batch["text_pairs"][i:i + 1],
                **{k: batch[k][i:i + 1, :length]
                   for k in ("input_ids", "attention_mask", "token_type_ids")},
            })
    return singles


def median_ms(runner: Runner, batches: Sequence[Batch], warmup: int = 2) -> float:
    """Median wall time of ``runner`` over ``batches`` (after ``warmup`` untimed calls)."""
    for batch in list(batches)[:warmup]:
        runner(batch)
    times = []
    for batch in batches:
        start = time.perf_counter()
        runner(batch)
        times.append((time.perf_counter() - start) * 1000)
    return round(float(np.median(times)), 3)


def run_all(runner: Runner, batches: Sequence[Batch]) -> np.ndarray:
    return np.concatenate([np.asarray(runner(batch), dtype=np.float32) for batch in batches])


def size_of(path: str | Path) -> int:
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def verify(artifact: str, variant: str, path: str | Path, runner: Runner,
           reference: np.ndarray, batches: Sequence[Batch], label_ids: np.ndarray | None,
           latency_batches: dict[str, Sequence[Batch]], notes: dict | None = None) -> Check:
    """Run ``runner`` on all held-out ``batches``, compare with ``reference`` and time it."""
    logits = run_all(runner, batches)
    check = Check(artifact, variant, str(path), size_of(path), reference, logits, label_ids,
                  notes=dict(notes or {}))
    for name, timing_batches in latency_batches.items():
        check.latency_ms[name] = median_ms(runner, timing_batches)
    return check
