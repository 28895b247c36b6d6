"""Per-layer float fallback: keep the layers that quantize worst in float until a quantized
variant passes its task's gate.

A quantizer that supports it (TFLite full int8 and dynamic int8, ONNX int8 static and dynamic)
reports each quantized layer's error against float32 on the calibration sample as a
signal-to-quantization-noise ratio in dB (:func:`snr_db`; higher is better, 40 dB is 1 % noise).
:func:`quantize_with_fallback` first tries the variant with every layer quantized. When that
fails its gate, each layer is measured by what it does to the model's outputs when it alone is
quantized (:func:`with_output_snr`: the output SNR on the calibration sample; a layer's own SNR
does not say this, an early layer with a good SNR can cost more answers than a late one with a
poor SNR). Worst first, it then tries 1, 2, 4, 8, ... (and all but one) layers kept in float
until one passes, and narrows the count between the last failing and the first passing try
(:data:`BISECTIONS` tries), to keep the variant as small and fast as the gate allows. Each try
is checked on the same held-out examples as every other artifact; the report lists the tries,
the layers kept in float and the per-layer errors.

>>> snr_db(np.array([3.0, 4.0]), np.array([3.0, 4.0]))
inf
>>> round(snr_db(np.array([1.0, 1.0]), np.array([1.1, 0.9])), 1)
20.0
>>> fallback_steps(27), fallback_steps(5), fallback_steps(2), fallback_steps(1)
([0, 1, 2, 4, 8, 16, 26], [0, 1, 2, 4], [0, 1], [0])
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from exporters.verify import Check

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LayerError:
    """One quantized layer and its error against float32 on the calibration sample."""

    name: str  # what the quantizer calls it (TFLite: its output tensor; ONNX: the node)
    op: str
    snr_db: float  # of the layer's output (weight-only quantizers: of its weights)
    #: The worst SNR of the layer's inputs where they carry earlier layers' error (ONNX); the
    #: layer's own share is the drop from there. None: ``snr_db`` is the layer's alone (TFLite).
    input_snr_db: float | None = None
    #: The SNR of the model's outputs on the calibration sample with only this layer quantized
    #: (:func:`with_output_snr`); None: not measured (the variant passed as it was).
    output_snr_db: float | None = None

    @property
    def added_db(self) -> float:
        """How much SNR this layer itself loses (higher: worse; both capped at 100 dB)."""
        if np.isnan(self.snr_db):  # not measured: ranked last
            return 0.0
        output = min(self.snr_db, 100.0)
        if self.input_snr_db is None:
            return 100.0 - output
        return min(self.input_snr_db, 100.0) - output

    @property
    def harm(self) -> float:
        """How much this layer costs the outputs (higher: keep it float sooner): the output SNR
        lost with only this layer quantized, else the SNR it loses itself."""
        if self.output_snr_db is not None:
            return 100.0 - min(self.output_snr_db, 100.0)
        return self.added_db

    def row(self) -> dict[str, object]:
        return {"name": self.name, "op": self.op, "snr_db": _rounded(self.snr_db),
                "input_snr_db": _rounded(self.input_snr_db), "added_db": _rounded(self.added_db),
                "output_snr_db": _rounded(self.output_snr_db)}


def _rounded(value: float | None) -> float | None:
    return None if value is None or not np.isfinite(value) else round(float(value), 2)


def snr_db(reference: np.ndarray, approximation: np.ndarray) -> float:
    """``10 log10(Σ reference² / Σ (reference - approximation)²)``: inf when they are equal."""
    reference = np.asarray(reference, np.float64)
    noise = float(np.sum((reference - np.asarray(approximation, np.float64)) ** 2))
    signal = float(np.sum(reference ** 2))
    if noise == 0.0:
        return float("inf")
    return 10.0 * float(np.log10(max(signal, 1e-30) / noise))


def fallback_steps(count: int) -> list[int]:
    """How many of ``count`` ranked layers each try keeps in float: 0, 1, 2, 4, ..., and all
    but one (never all: with every layer float the variant would be the float model)."""
    steps, step = [0], 1
    while step < count - 1:
        steps.append(step)
        step *= 2
    return [*steps, count - 1] if count > 1 else steps if count else []


def with_output_snr(layers: Sequence[LayerError], quantize: Callable[[Sequence[str]], Path],
                    outputs: Callable[[Path], np.ndarray], reference: np.ndarray,
                    label: str) -> list[LayerError]:
    """``layers``, each with the SNR of the model's outputs (``outputs(path)``, all outputs on
    the calibration sample, flattened) against ``reference`` (the float model's) when only that
    layer is quantized: one quantization and one run of the sample per layer."""
    from tqdm.auto import tqdm

    names = [layer.name for layer in layers]
    measured = []
    for layer in tqdm(layers, desc=f"{label}: error of each layer alone", unit="layer",
                      disable=not logger.isEnabledFor(logging.INFO), leave=False):
        path = quantize([name for name in names if name != layer.name])
        snr = min(snr_db(reference, outputs(path)), 200.0)  # unchanged: 200 dB, not inf
        measured.append(replace(layer, output_snr_db=snr))
    return measured


def quantize_with_fallback(quantize: Callable[[Sequence[str]], Path],
                           check: Callable[[Path], Check], layers: Sequence[LayerError],
                           label: str,
                           measure: Callable[[Sequence[LayerError]], list[LayerError]]
                           | None = None) -> Check:
    """Quantize with more and more of the worst ``layers`` in float until ``check`` passes.

    ``quantize(float_layers)`` writes the variant with those layers (names) in float and
    returns its path; ``check(path)`` verifies it. When every layer quantized fails, ``measure``
    (e.g. :func:`with_output_snr`) ranks the layers before the float ones are chosen; without
    it they are ranked by their own error. Returns the first check that passes, or the last
    one, failed, when none does, with the tries in its notes.
    """
    if not layers:  # nothing to keep in float: the variant as it is
        result = check(quantize([]))
        result.notes.update(float_layers=[], quantized_layers=0, fallback_tries=[],
                            layer_errors=[])
        return result
    tries: list[dict] = []
    results: dict[int, Check] = {}
    written: list[Sequence[str]] = []  # the float layers of the file as it is now
    ranked = sorted(layers, key=lambda layer: -layer.harm)

    def write(float_layers: Sequence[str]) -> Path:
        written[:] = [float_layers]
        return quantize(float_layers)

    def attempt(count: int) -> Check:
        if count:
            logger.info("%s: keeping the %d worst-quantized layer(s) in float and trying again",
                        label, count)
        result = check(write([layer.name for layer in ranked[:count]]))
        tries.append({"float_layers": count, "agreement": result.agreement,
                      "quality": result.quality, "gate": result.gate_text(),
                      "passed": result.passed})
        results[count] = result
        return result

    if attempt(0).passed:
        chosen = 0
    else:
        if measure is not None and len(ranked) > 1:
            logger.info("%s: below its gate with every layer quantized; measuring what each "
                        "of %d layers alone does to the outputs", label, len(ranked))
            ranked = measure(ranked)
        ranked.sort(key=lambda layer: -layer.harm)
        failing, passing = 0, None
        for count in fallback_steps(len(ranked))[1:]:
            if attempt(count).passed:
                passing = count
                break
            failing = count
        # Between the last count that failed and the first that passed, halve the gap a few
        # times: fewer float layers than the doubling alone found (not always the fewest).
        for _ in range(BISECTIONS):
            if passing is None or passing - failing < 2:
                break
            middle = (failing + passing) // 2
            if attempt(middle).passed:
                passing = middle
            else:
                failing = middle
        chosen = passing if passing is not None else tries[-1]["float_layers"]
    float_layers = [layer.name for layer in ranked[:chosen]]
    if list(written[0]) != float_layers:  # the file holds another try: write the chosen one
        write(float_layers)
    result = results[chosen]
    result.notes.update(float_layers=float_layers, quantized_layers=len(ranked) - chosen,
                        fallback_tries=tries, layer_errors=[layer.row() for layer in ranked])
    return result


#: Extra tries that narrow the number of float layers once one count passes.
BISECTIONS = 3
