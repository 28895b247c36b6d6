"""Entity-level metrics of token classification (``seqeval``) and its report files.

>>> gold = [["B-PER", "I-PER", "O", "B-LOC"]]
>>> predicted = [["B-PER", "I-PER", "O", "O"]]
>>> metrics = entity_metrics(gold, predicted, "BIO")
>>> metrics["precision"], metrics["recall"], round(metrics["f1"], 3)
(1.0, 0.5, 0.667)
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from tfsft.tasks.token_classification import tags as tag_schemes

REPORT_FILE = "ner_report.txt"
CONFUSION_FILE = "entity_confusion.tsv"
ERRORS_FILE = "errors.jsonl"


def entity_metrics(gold: list[list[str]], predicted: list[list[str]],
                   scheme: str) -> dict[str, Any]:
    """Micro / macro entity precision, recall, F1 and per type (``seqeval``; strict mode for
    BIOES, BIOUL and BMES, conlleval's lenient mode for BIO and IO), plus word accuracy."""
    from seqeval import metrics as sm
    from seqeval import scheme as seqeval_schemes

    gold = [tag_schemes.to_seqeval_tags(s, scheme) for s in gold]
    predicted = [tag_schemes.to_seqeval_tags(s, scheme) for s in predicted]
    strict = scheme in ("BIOES", "BIOUL", "BMES")
    kwargs: dict[str, Any] = {"zero_division": 0}
    if strict:
        name = tag_schemes.seqeval_scheme("BIOES" if scheme == "BMES" else scheme)
        kwargs.update(mode="strict", scheme=getattr(seqeval_schemes, name))
    report = sm.classification_report(gold, predicted, output_dict=True, **kwargs)
    per_type = {kind: {"precision": float(v["precision"]), "recall": float(v["recall"]),
                       "f1": float(v["f1-score"]), "support": int(v["support"])}
                for kind, v in report.items() if not kind.endswith(" avg")}
    micro, macro = report.get("micro avg", {}), report.get("macro avg", {})
    words = sum(len(s) for s in gold)
    correct = sum(a == b for g, p in zip(gold, predicted, strict=True)
                  for a, b in zip(g, p, strict=True))
    return {
        "f1": float(micro.get("f1-score", 0.0)),
        "precision": float(micro.get("precision", 0.0)),
        "recall": float(micro.get("recall", 0.0)),
        "f1_macro": float(macro.get("f1-score", 0.0)),
        "precision_macro": float(macro.get("precision", 0.0)),
        "recall_macro": float(macro.get("recall", 0.0)),
        "token_accuracy": correct / words if words else 0.0,
        "entities": int(micro.get("support", 0)),
        "mode": "strict" if strict else "default",
        "per_type": per_type,
    }


def type_confusion(gold: list[list[str]], predicted: list[list[str]]) -> dict[str, Counter]:
    """Per gold entity type of each word (``O`` included), the predicted types' counts."""
    table: dict[str, Counter] = {}
    for gold_sentence, predicted_sentence in zip(gold, predicted, strict=True):
        for g, p in zip(gold_sentence, predicted_sentence, strict=True):
            g_type = tag_schemes.split_tag(g)[1] or "O"
            p_type = tag_schemes.split_tag(p)[1] or "O"
            table.setdefault(g_type, Counter())[p_type] += 1
    return table


def write_token_report(folder: Path, examples, predicted: list[list[str]],
                       predicted_entities: list[list[dict[str, Any]]], metrics: dict[str, Any],
                       scheme: str, prefix: str = "") -> None:
    """``metrics.json``, ``ner_report.txt``, ``entity_confusion.tsv`` (word level, gold type per
    row, predicted type per column) and ``errors.jsonl`` (sentences with wrong entities)."""
    from tfsft.io_utils import atomic_write_json, atomic_write_text

    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(folder / f"{prefix}metrics.json", metrics)
    lines = [f"entity-level ({metrics['mode']} mode, {scheme} tags), "
             f"{metrics['examples']} sentences, {metrics['entities']} entities", "",
             f"{'type':<14}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}"]
    for kind, row in sorted(metrics["per_type"].items()):
        lines.append(f"{kind:<14}{row['precision']:>10.4f}{row['recall']:>10.4f}"
                     f"{row['f1']:>10.4f}{row['support']:>10d}")
    lines += ["", f"{'micro avg':<14}{metrics['precision']:>10.4f}{metrics['recall']:>10.4f}"
              f"{metrics['f1']:>10.4f}{metrics['entities']:>10d}",
              f"{'macro avg':<14}{metrics['precision_macro']:>10.4f}"
              f"{metrics['recall_macro']:>10.4f}{metrics['f1_macro']:>10.4f}",
              "", f"word accuracy {metrics['token_accuracy']:.4f}"]
    atomic_write_text(folder / f"{prefix}{REPORT_FILE}", "\n".join(lines) + "\n")
    confusion = type_confusion(examples.tags, predicted)
    types = sorted(set(confusion) | {t for c in confusion.values() for t in c})
    rows = ["gold \\ predicted\t" + "\t".join(types)]
    rows += [f"{g}\t" + "\t".join(str(confusion.get(g, Counter())[p]) for p in types)
             for g in types]
    atomic_write_text(folder / f"{prefix}{CONFUSION_FILE}", "\n".join(rows) + "\n")
    errors = []
    for i, entities in enumerate(predicted_entities):
        gold = [{"text": examples.texts[i][s:e], "type": k, "start": s, "end": e}
                for s, e, k in examples.entities(i)]
        found = [{k: v for k, v in entity.items() if k != "score"} for entity in entities]
        key = sorted((e["start"], e["end"], e["type"]) for e in found)
        if key != sorted((e["start"], e["end"], e["type"]) for e in gold):
            errors.append(json.dumps({"where": examples.where(i), "text": examples.texts[i],
                                      "gold": gold, "predicted": entities},
                                     ensure_ascii=False))
    atomic_write_text(folder / f"{prefix}{ERRORS_FILE}", "\n".join(errors) + ("\n" if errors
                                                                              else ""))
