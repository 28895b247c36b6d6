"""The export table printed after an export, and ``export_report.json``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from exporters.verify import Check

COLUMNS = ("artifact", "variant", "size MB", "max |Δ|", "agree %", "{quality}",
           "b1 ms", "b32 ms", "ok")


def columns(checks: Sequence[Check]) -> list[str]:
    quality = next((c.quality_metric for c in checks if c.quality_metric), None) or "quality"
    return [name.format(quality=quality) for name in COLUMNS]


def rows(checks: Sequence[Check]) -> list[list[str]]:
    table = []
    for check in checks:
        quality, agreement = check.quality, check.agreement
        table.append([
            check.artifact, check.variant, f"{check.size_bytes / 1e6:.1f}",
            f"{check.max_abs_diff:.2e}", "-" if agreement is None else f"{100 * agreement:.2f}",
            "-" if quality is None else f"{quality:.4f}",
            *(f"{check.latency_ms[name]:.1f}" if name in check.latency_ms else "-"
              for name in ("batch_1", "batch_32")),
            "yes" if check.passed else "NO",
        ])
    return table


def markdown_table(checks: Sequence[Check]) -> str:
    """The checks as a Markdown table (also readable in a terminal).

    >>> print(markdown_table([]).splitlines()[0])
    | artifact | variant | size MB | max |Δ| | agree % | quality | b1 ms | b32 ms | ok |
    """
    lines = ["| " + " | ".join(columns(checks)) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row) + " |" for row in rows(checks)]
    for check in checks:
        if "fused_operators" in check.notes:
            fused = check.notes["fused_operators"]
            listed = ", ".join(f"{op} x{count}" for op, count in fused.items()) or "none"
            lines.append(f"\n{check.artifact} {check.variant}: fused nodes: {listed}")
    for check in checks:
        if check.quality_gated:
            lines.append(f"\n{check.artifact} {check.variant}: {quality_gate_text(check)}")
    return "\n".join(lines)


def quality_gate_text(check: Check) -> str:
    """How a quantized artifact's quality compares with the Keras model's, and the verdict."""
    if check.quality is None:
        return f"no {check.quality_metric} could be measured: FAILED"
    return (f"{check.quality_metric} {check.quality:.4f} vs {check.reference_quality:.4f} for "
            f"the Keras model (loss {check.quality_loss:+.4f}, at most {check.max_quality_loss:g}"
            f"): {'passed' if check.passed_quality else 'FAILED'}")


def report(checks: Sequence[Check], extra: dict[str, Any]) -> dict[str, Any]:
    return {**extra, "passed": all(c.passed for c in checks),
            "artifacts": [c.summary() for c in checks]}
