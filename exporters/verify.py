"""Check an exported artifact against the Keras model on held-out examples, and time it.

Every artifact is wrapped as a :class:`Runner`: a function from a batch of held-out examples to
the task's named export outputs. :func:`verify` feeds the same batches to the artifact and to the
Keras model and compares each output as the task says (:class:`~tfsft.tasks.base.OutputCheck`):
max |Δ| for every output, argmax or decision agreement, correlation for scores; per-token outputs
only on real tokens. It also records the task's quality metric, file size and median latency at
batch 1 and 32. Where the task sets ``max_quality_loss``, a quantized artifact passes only if its
quality is at most that much below the Keras model's on the same examples.

>>> import numpy as np
>>> from tfsft.tasks.roles import OutputCheck
>>> mask = [np.ones((1, 3), np.int32)]
>>> check = Check("x", "fp32", "x.bin", 10, {"logits": OutputCheck(kind="argmax")},
...               {"logits": [np.array([[1.0, 0.0]])]}, {"logits": [np.array([[1.0, 0.1]])]}, mask)
>>> check.max_abs_diff, check.agreement, check.passed
(0.1, 1.0, False)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tfsft.tasks.base import Task
from tfsft.tasks.roles import OutputCheck

# A batch handed to runners: raw-text inputs (``text_inputs``) and the token-id features.
Batch = dict[str, Any]
Runner = Callable[[Batch], dict[str, np.ndarray]]


#: Variants whose outputs must equal the Keras model's (within the output's tolerance): float
#: models, the raw-text models, and the Hugging Face folder run by each framework.
FLOAT_VARIANTS = ("fp32", "optimized", "text", "tensorflow", "pytorch")

@dataclass
class Check:
    """What :func:`verify` measured for one artifact: each output batch by batch."""

    artifact: str
    variant: str
    path: str
    size_bytes: int
    rules: dict[str, OutputCheck] = field(repr=False)
    reference: dict[str, list[np.ndarray]] = field(repr=False)
    outputs: dict[str, list[np.ndarray]] = field(repr=False)
    masks: list[np.ndarray] = field(repr=False)
    quality: float | None = None
    quality_metric: str | None = None
    #: The Keras model's quality on the same examples, and the most a quantized one may lose.
    reference_quality: float | None = None
    max_quality_loss: float | None = None
    latency_ms: dict[str, float] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)

    def _equal(self, name: str) -> np.ndarray:
        """Per example: whether the artifact's value equals the reference's (``equal`` rules)."""
        return np.concatenate([np.asarray(r).ravel() == np.asarray(o).ravel()
                               for r, o in zip(self.reference[name], self.outputs[name],
                                               strict=True)])

    def _pairs(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Reference and artifact values of output ``name`` (real tokens only if per token)."""
        ours, theirs = [], []
        for reference, output, mask in zip(self.reference[name], self.outputs[name], self.masks,
                                           strict=True):
            reference, output = np.asarray(reference, np.float64), np.asarray(output, np.float64)
            if self.rules[name].per_token:
                keep = mask.astype(bool)
                reference, output = reference[keep], output[keep]
            ours.append(reference.reshape(len(reference), -1))
            theirs.append(output.reshape(len(output), -1))
        return np.concatenate(ours), np.concatenate(theirs)

    def diff(self, name: str) -> float:
        """max |Δ| (``equal`` rules: the share of examples that differ)."""
        if self.rules[name].kind == "equal":
            same = self._equal(name)
            return round(1.0 - float(same.mean()), 8) if same.size else 0.0
        reference, output = self._pairs(name)
        return round(float(np.max(np.abs(output - reference))), 8) if reference.size else 0.0

    def agreement_of(self, name: str) -> float | None:
        rule = self.rules[name]
        if rule.kind == "equal":
            same = self._equal(name)
            return float(same.mean()) if same.size else 1.0
        reference, output = self._pairs(name)
        if rule.kind == "argmax":
            return float(np.mean(output.argmax(-1) == reference.argmax(-1)))
        if rule.kind == "decisions":
            threshold = np.asarray(rule.threshold if rule.threshold is not None else 0.0)
            return float(np.mean((output > threshold) == (reference > threshold)))
        return None

    def correlation_of(self, name: str) -> float | None:
        if self.rules[name].kind != "scores":
            return None
        reference, output = self._pairs(name)
        if reference.size < 2 or np.std(reference) == 0 or np.std(output) == 0:
            return 1.0 if np.allclose(reference, output) else 0.0
        return float(np.corrcoef(reference.ravel(), output.ravel())[0, 1])

    @property
    def max_abs_diff(self) -> float:
        return max(self.diff(name) for name in self.rules)

    @property
    def agreement(self) -> float | None:
        values = [a for a in (self.agreement_of(n) for n in self.rules) if a is not None]
        return min(values) if values else None

    @property
    def quantized(self) -> bool:
        return self.variant not in FLOAT_VARIANTS

    def passed_output(self, name: str) -> bool:
        rule = self.rules[name]
        if not self.quantized:
            return self.diff(name) <= rule.tolerance
        if rule.kind == "scores":
            return (self.correlation_of(name) or 0.0) >= rule.min_correlation
        return (self.agreement_of(name) or 0.0) >= rule.min_agreement

    @property
    def quality_gated(self) -> bool:
        return (self.quantized and self.max_quality_loss is not None
                and self.reference_quality is not None)

    @property
    def quality_loss(self) -> float | None:
        """How much quality this artifact loses against the Keras model (negative: gains)."""
        if self.reference_quality is None or self.quality is None:
            return None
        return round(self.reference_quality - self.quality, 8)

    @property
    def passed_quality(self) -> bool:
        if not self.quality_gated:
            return True
        return self.quality_loss is not None and self.quality_loss <= self.max_quality_loss

    @property
    def passed(self) -> bool:
        return self.passed_quality and all(self.passed_output(name) for name in self.rules)

    def rule_text(self, name: str) -> str:
        rule = self.rules[name]
        if not self.quantized:
            what = "share differing" if rule.kind == "equal" else "max |Δ|"
            return f"{what} <= {rule.tolerance:g}"
        if rule.kind == "scores":
            return f"correlation >= {rule.min_correlation}"
        return f"{rule.kind} agreement >= {rule.min_agreement}"

    def gate_text(self) -> str:
        """What this artifact was held to and what it measured, for the report and errors.

        >>> check = Check("onnx", "int8-static", "m.onnx", 1, {"logits": OutputCheck("argmax")},
        ...               {"logits": [np.array([[1.0, 0.0], [0.0, 1.0]])]},
        ...               {"logits": [np.array([[1.0, 0.0], [1.0, 0.0]])]}, [np.ones((2, 3))])
        >>> check.gate_text()
        'logits: argmax agreement 50.00 % (needs >= 98.00 %)'
        """
        parts = []
        for name, rule in self.rules.items():
            if self.quantized and rule.kind == "scores":
                parts.append(f"{name}: correlation {self.correlation_of(name):.4f} (needs >= "
                             f"{rule.min_correlation})")
            elif self.quantized and rule.min_agreement > 0:
                parts.append(f"{name}: {rule.kind} agreement {100 * self.agreement_of(name):.2f}"
                             f" % (needs >= {100 * rule.min_agreement:.2f} %)")
            elif not self.quantized:
                parts.append(f"{name}: {self.rule_text(name)}, measured {self.diff(name):.2e}")
        if self.quality_gated and self.quality is None:
            parts.append(f"no {self.quality_metric} could be measured")
        elif self.quality_gated:
            parts.append(f"{self.quality_metric} loss {self.quality_loss:+.4f} (at most "
                         f"{self.max_quality_loss:g})")
        return "; ".join(parts)

    def summary(self) -> dict[str, Any]:
        return {
            "artifact": self.artifact, "variant": self.variant, "path": self.path,
            "quantized": self.quantized, "gate": self.gate_text(),
            "size_bytes": self.size_bytes, "max_abs_diff": self.max_abs_diff,
            "agreement": self.agreement, "quality_metric": self.quality_metric,
            "quality": self.quality, "reference_quality": self.reference_quality,
            "quality_loss": self.quality_loss,
            "quality_rule": (f"{self.quality_metric} loss <= {self.max_quality_loss:g}"
                             if self.quality_gated else None),
            "latency_ms": self.latency_ms, "passed": self.passed,
            "outputs": {name: {"max_abs_diff": self.diff(name),
                               "agreement": self.agreement_of(name),
                               "correlation": self.correlation_of(name),
                               "rule": self.rule_text(name), "passed": self.passed_output(name)}
                        for name in self.rules},
            **self.notes,
        }


def make_batches(task: Task, tokenizer, examples: Any, max_length: int,
                 batch_size: int = 32) -> list[Batch]:
    """Held-out examples in input order, cut into batches with their token-id features."""
    import tensorflow as tf

    texts = task.data.texts(examples)
    count = len(next(iter(texts.values())))
    batches = []
    for start in range(0, count, batch_size):
        inputs = {name: np.array(values[start:start + batch_size], dtype=object)
                  for name, values in texts.items()}
        features = task.serving.tokenize(
            tokenizer, {k: tf.constant(list(v)) for k, v in inputs.items()}, max_length)
        batches.append({
            "text_inputs": inputs,
            "input_ids": features["token_ids"].numpy(),
            "attention_mask": features["padding_mask"].numpy(),
            "token_type_ids": features["segment_ids"].numpy(),
        })
    return batches


def batch_size_of(batch: Batch) -> int:
    """Examples in ``batch`` (a question-answering example may fill several token-id rows)."""
    return len(next(iter(batch["text_inputs"].values())))


def decoding(runner: Runner, task: Task) -> Runner:
    """``runner`` plus the per-example values the task decodes from its token-id outputs
    (:meth:`~tfsft.tasks.roles.ServingRole.decode_exported`) where the artifact does not give them."""

    def run(batch: Batch) -> dict[str, np.ndarray]:
        outputs = dict(runner(batch))
        decoded = task.serving.decode_exported(batch, outputs)
        return {**{k: v for k, v in decoded.items() if k not in outputs}, **outputs}

    return run


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


def run_all(runner: Runner, batches: Sequence[Batch],
            names: Sequence[str]) -> dict[str, list[np.ndarray]]:
    """Each named output of ``runner``, one array per batch (float32; strings as ``str``)."""
    outputs: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for batch in batches:
        result = runner(batch)
        for name in names:
            outputs[name].append(_comparable(result[name]))
    return outputs


def _comparable(value: Any) -> np.ndarray:
    value = np.asarray(value)
    if value.dtype.kind in "OSU":  # strings (TensorFlow gives bytes)
        return np.array([v.decode("utf-8") if isinstance(v, bytes) else str(v)
                         for v in value.ravel()], dtype=object).reshape(value.shape)
    return value.astype(np.float32)


def size_of(path: str | Path) -> int:
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def quality_of(task: Task, examples: Any,
               outputs: dict[str, list[np.ndarray]]) -> float | None:
    """The task's export quality of per-batch ``outputs`` on labelled ``examples``."""
    rules = task.serving.output_checks()
    return task.serving.export_quality(
        examples, {k: v if rules[k].per_token else np.concatenate(v) for k, v in outputs.items()})


def verify(artifact: str, variant: str, path: str | Path, runner: Runner, task: Task,
           reference: dict[str, list[np.ndarray]], batches: Sequence[Batch], examples: Any,
           latency_batches: dict[str, Sequence[Batch]], notes: dict | None = None,
           reference_quality: float | None = None) -> Check:
    """Run ``runner`` on all held-out ``batches``, compare with ``reference`` (whose quality is
    ``reference_quality``, :func:`quality_of` it) and time it."""
    rules = task.serving.output_checks()
    outputs = run_all(decoding(runner, task), batches, list(rules))
    check = Check(artifact, variant, str(path), size_of(path), rules, reference, outputs,
                  [b["attention_mask"] for b in batches], quality_of(task, examples, outputs),
                  task.evaluation.headline_metric,
                  reference_quality=reference_quality,
                  max_quality_loss=task.serving.max_quality_loss, notes=dict(notes or {}))
    for name, timing_batches in latency_batches.items():
        check.latency_ms[name] = median_ms(runner, timing_batches)
    return check
