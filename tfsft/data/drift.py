"""Do served inputs still look like the data a model was trained on? (``tfsft data drift``)

A sample of live inputs (and, if given, the predictions served for them) is compared with the
run's validation examples (``heldout.jsonl``) and its data check, signal by signal:

- ``length``: token lengths; population stability index (PSI) over the reference's deciles and
  the two-sample Kolmogorov-Smirnov statistic (scipy). Drift: PSI >= 0.25, or KS >= 0.2 with
  p < 0.001.
- ``unknown_words``: share of words that are [UNK] to the model's vocabulary. Drift: 2 points
  above the reference and at least twice it.
- ``empty``: share of inputs that are empty or only whitespace. Drift: >= 1 %.
- ``duplicates``: share of inputs that repeat an earlier one. Drift: >= 50 %.
- ``labels`` (with the served predictions): PSI of the served labels against the validation
  labels. Drift: PSI >= 0.25.

A PSI between 0.1 and 0.25 is reported as ``watch`` (a shift worth a look, not an alarm).
The length and label signals need 30 reference and 30 live values: with fewer, their verdict is
``too few`` (not judged, never drift).
PSI is ``sum((live - ref) * ln(live / ref))`` over the bins, each share floored at 0.0001.

>>> round(psi([50, 50], [50, 50]), 4), round(psi([90, 10], [10, 90]), 2)
(0.0, 3.52)
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

#: Thresholds of the verdicts (documented in the module docstring and the README).
PSI_WATCH = 0.1
PSI_DRIFT = 0.25
KS_DRIFT = 0.2
KS_P_VALUE = 0.001
UNKNOWN_POINTS = 0.02
EMPTY_SHARE = 0.01
DUPLICATE_SHARE = 0.5
#: Fewer reference (validation) or live values than this: a distribution signal is not judged.
MIN_SAMPLE = 30
_FLOOR = 1e-4


def psi(reference: Sequence[float], live: Sequence[float]) -> float:
    """Population stability index of two histograms over the same bins (counts or shares)."""
    ref = np.asarray(reference, np.float64)
    cur = np.asarray(live, np.float64)
    ref = np.maximum(ref / max(ref.sum(), 1e-12), _FLOOR)
    cur = np.maximum(cur / max(cur.sum(), 1e-12), _FLOOR)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def _psi_verdict(value: float) -> str:
    return "drift" if value >= PSI_DRIFT else "watch" if value >= PSI_WATCH else "ok"


def _enough(verdict: str, reference: int, live: int) -> str:
    """``verdict``, or ``too few`` where either sample is below :data:`MIN_SAMPLE`: a
    distribution of a handful of values says nothing.

    >>> _enough("drift", 7, 500), _enough("drift", 40, 40)
    ('too few', 'drift')
    """
    return verdict if min(reference, live) >= MIN_SAMPLE else "too few"


def length_signal(reference: np.ndarray, live: np.ndarray) -> dict[str, Any]:
    """Token lengths: PSI over the reference's deciles and the KS test."""
    from scipy.stats import ks_2samp

    edges = np.unique(np.quantile(reference, np.linspace(0, 1, 11)[1:-1]))
    bins = np.concatenate([[-np.inf], edges, [np.inf]])
    index = psi(np.histogram(reference, bins)[0], np.histogram(live, bins)[0])
    test = ks_2samp(reference, live)
    verdict = _psi_verdict(index)
    if test.statistic >= KS_DRIFT and test.pvalue < KS_P_VALUE:
        verdict = "drift"
    verdict = _enough(verdict, len(reference), len(live))
    return {"verdict": verdict, "psi": round(index, 4), "ks_statistic": round(float(
        test.statistic), 4), "ks_p_value": float(test.pvalue),
        "reference_median": float(np.median(reference)), "live_median": float(np.median(live)),
        "reference_p95": float(np.percentile(reference, 95)),
        "live_p95": float(np.percentile(live, 95)),
        "rule": f"drift when PSI >= {PSI_DRIFT} or KS >= {KS_DRIFT} with p < {KS_P_VALUE}"}


def unknown_signal(reference_share: float, live_share: float) -> dict[str, Any]:
    drift = (live_share - reference_share >= UNKNOWN_POINTS
             and live_share >= 2 * reference_share)
    return {"verdict": "drift" if drift else "ok", "reference": round(reference_share, 4),
            "live": round(live_share, 4),
            "rule": f"drift when +{100 * UNKNOWN_POINTS:g} points and twice the reference"}


def input_signals(texts: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Empty inputs and repeated inputs among the live ones."""
    count = max(len(texts), 1)
    empty = sum(not str(t).strip() for t in texts) / count
    seen = Counter(str(t).strip() for t in texts if str(t).strip())
    repeats = sum(n - 1 for n in seen.values()) / count
    return {
        "empty": {"verdict": "drift" if empty >= EMPTY_SHARE else "ok",
                  "live": round(empty, 4), "rule": f"drift when >= {100 * EMPTY_SHARE:g} %"},
        "duplicates": {"verdict": "drift" if repeats >= DUPLICATE_SHARE else "ok",
                       "live": round(repeats, 4),
                       "rule": f"drift when >= {100 * DUPLICATE_SHARE:g} %"},
    }


def label_signal(reference: dict[str, int], live: dict[str, int]) -> dict[str, Any]:
    """The mix of served labels against the validation labels (PSI over the label names)."""
    names = sorted(set(reference) | set(live))
    index = psi([reference.get(n, 0) for n in names], [live.get(n, 0) for n in names])
    total_ref, total_live = max(sum(reference.values()), 1), max(sum(live.values()), 1)
    verdict = _enough(_psi_verdict(index), total_ref, total_live)
    return {"verdict": verdict, "psi": round(index, 4),
            "reference_shares": {n: round(reference.get(n, 0) / total_ref, 4) for n in names},
            "live_shares": {n: round(live.get(n, 0) / total_live, 4) for n in names},
            "unseen_labels": [n for n in names if n not in reference],
            "rule": f"drift when PSI >= {PSI_DRIFT}"}


def served_labels(path: str) -> dict[str, int]:
    """Label counts of a JSONL file of served prediction records (``tfsft predict`` output:
    ``label``, ``labels`` or ``entities`` with a ``type``); blank lines are skipped."""
    from tfsft.data.readers import read_numbered_text_lines
    from tfsft.errors import DataError

    lines, _ = read_numbered_text_lines(path)
    source = str(path)
    counts: Counter[str] = Counter()
    for number, line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(source, f"line {number}", f"not valid JSON ({exc.msg})",
                            "give one prediction record a line, as tfsft predict writes "
                            "them") from None
        if not isinstance(record, dict):
            raise DataError(source, f"line {number}", "not a JSON object",
                            "give one prediction record a line, as tfsft predict writes them")
        if record.get("label", "") is None or record.get("labels", []) is None:
            raise DataError(source, f"line {number}", "the label is null",
                            "give the records tfsft predict writes for this run")
        if "label" in record:
            counts[str(record["label"])] += 1
        elif isinstance(record.get("labels"), list):
            counts.update(str(label) for label in record["labels"])
        elif isinstance(record.get("entities"), list):
            counts.update(str(e.get("type")) for e in record["entities"] if isinstance(e, dict))
        else:
            raise DataError(source, f"line {number}", "holds no label, labels or entities",
                            "give the records tfsft predict writes for this run")
    if not lines:
        raise DataError(source, None, "holds no prediction records (it is empty)",
                        "give the records tfsft predict wrote for the served inputs")
    return dict(counts)
