"""The export table printed after an export, and ``export_report.json``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from exporters.verify import Check

COLUMNS = ("artifact", "variant", "size MB", "max |Δ|", "agree %", "{quality}",
           "b1 ms", "b32 ms", "b1 ×", "b32 ×", "float layers", "ok")
#: The artifact whose latency the speed-up columns (× = its time / this one's) divide.
BASELINES = {"keras": "fp32", "savedmodel": "fp32", "tflite": "fp32", "onnx": "optimized"}


def columns(checks: Sequence[Check]) -> list[str]:
    quality = next((c.quality_metric for c in checks if c.quality_metric), None) or "quality"
    return [name.format(quality=quality) for name in COLUMNS]


def speedup(check: Check, checks: Sequence[Check], timing: str) -> float | None:
    """fp32 latency of the same format (ONNX: the optimized graph) on the same provider / this
    artifact's."""
    baseline = next((c for c in checks if c.artifact == check.artifact
                     and c.variant == BASELINES.get(check.artifact)
                     and c.notes.get("provider") == check.notes.get("provider")), None)
    if baseline is None or not check.latency_ms.get(timing):
        return None
    return round(baseline.latency_ms.get(timing, 0.0) / check.latency_ms[timing], 2) or None


def rows(checks: Sequence[Check]) -> list[list[str]]:
    table = []
    for check in checks:
        quality, agreement = check.quality, check.agreement
        speedups = [speedup(check, checks, name) for name in ("batch_1", "batch_32")]
        kept = check.notes.get("float_layers")
        table.append([
            check.artifact, check.variant, f"{check.size_bytes / 1e6:.1f}",
            f"{check.max_abs_diff:.2e}", "-" if agreement is None else f"{100 * agreement:.2f}",
            "-" if quality is None else f"{quality:.4f}",
            *(f"{check.latency_ms[name]:.1f}" if name in check.latency_ms else "-"
              for name in ("batch_1", "batch_32")),
            *("-" if s is None else f"{s:.2f}" for s in speedups),
            "-" if kept is None else f"{len(kept)} of {len(check.notes['layer_errors'])}",
            "yes" if check.passed else "NO",
        ])
    return table


def markdown_table(checks: Sequence[Check]) -> str:
    """The checks as a Markdown table (also readable in a terminal).

    >>> markdown_table([]).splitlines()[0].split(" | ")[-4:]
    ['b1 ×', 'b32 ×', 'float layers', 'ok |']
    """
    lines = ["| " + " | ".join(columns(checks)) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row) + " |" for row in rows(checks)]
    for check in checks:
        if "fused_operators" in check.notes:
            fused = check.notes["fused_operators"]
            listed = ", ".join(f"{op} x{count}" for op, count in fused.items()) or "none"
            lines.append(f"\n{check.artifact} {check.variant}: fused nodes: {listed}")
    for check in checks:
        if check.artifact == "hf" and "class" in check.notes:
            lines.append(f"\nhf {check.variant}: {check.notes['class']} "
                         f"({check.notes['load']}); PyTorch: {check.notes['pytorch']}")
    for check in checks:
        if check.quantized:
            lines.append(f"\n{check.artifact} {check.variant}: {check.gate_text()}: "
                         f"{'passed' if check.passed else 'FAILED'}")
            if "quantization" in check.notes:
                lines.append(f"  quantized as {check.notes['quantization']}")
    return "\n".join(lines)


def layer_error_tables(checks: Sequence[Check], worst: int | None = None) -> str:
    """Per quantized variant: its layers, worst first, with their SNR against float (their own
    output's; where the fallback measured it, the model outputs' with that layer alone
    quantized) and whether they stayed float (``worst``: only that many rows each)."""
    parts = []
    for check in checks:
        layers = check.notes.get("layer_errors")
        if not layers:
            continue
        kept = set(check.notes.get("float_layers", ()))
        tries = "\n".join(f"- {t.get('what') or str(t['float_layers']) + ' float'}: {t['gate']}: "
                           f"{'passed' if t['passed'] else 'failed'}"
                           for t in check.notes.get("fallback_tries", ()))
        parts += [f"\n### {check.artifact} {check.variant}: error of each quantized layer",
                  f"\nTries (layers kept float: what was measured):\n\n{tries}\n",
                  "| layer | op | SNR dB | input SNR dB | added dB | output SNR dB alone | "
                  "kept float |", "|---|---|---|---|---|---|---|"]
        for layer in layers[:worst]:
            parts.append(f"| {layer['name']} | {layer['op']} | {_db(layer['snr_db'])} | "
                         f"{_db(layer['input_snr_db'])} | {_db(layer['added_db'])} | "
                         f"{_db(layer.get('output_snr_db'))} | "
                         f"{'yes' if layer['name'] in kept else 'no'} |")
    return "\n".join(parts)


def _db(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def report(checks: Sequence[Check], extra: dict[str, Any]) -> dict[str, Any]:
    return {**extra, "passed": all(c.passed for c in checks),
            "artifacts": [c.summary() for c in checks]}
