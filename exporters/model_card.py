"""The model card (``README.md``, Hugging Face layout: YAML metadata, then Markdown) written into
every export folder, from the run folder and the export report.

It says what the model is (base checkpoint and its licence, task, options), what it learned from
(data files with row counts, SHA-256 and label counts, the data check's warnings), how good it
is (every metric of ``metrics.json``, overall and per class or entity type), how each exported
artifact compares with the Keras model (``export_report.json``), and the limitations the run
shows (truncated examples, [UNK] share, classes with little data, skipped rows). Numbers are
copied from those files, rounded to four decimals; nothing is measured here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from tfsft.runs import TrainedRun
from tfsft.tasks.roles import GenerativeServing

CARD_FILE = "README.md"
#: The card's first line after its metadata: marks a README that tfsft wrote (and may replace).
MARKER = "<!-- model card written by tfsft export -->"
#: A class with fewer training examples than this, or under this share of them, is named
#: under the limitations.
FEW_EXAMPLES = 100
SMALL_SHARE = 0.05
_PIPELINES = {"sequence-classification": "text-classification",
              "token-classification": "token-classification",
              "question-answering": "question-answering",
              "feature-extraction": "sentence-similarity"}
_PER_NAME = ("per_class", "per_type", "per_label", "per_target")


def model_card(run: TrainedRun, report: dict[str, Any], name: str,
               library: str = "tfsft") -> str:
    """The card of ``run`` exported as ``report`` (``export_report.json``) under ``name``."""
    folder = run.run_dir
    metrics = _json(folder / "metrics.json")
    run_record = _json(folder / "run.json")
    data_check = _json(folder / "data_check.json")
    config = yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8")) or {}
    checkpoint = str(run.base_checkpoint or "unknown")
    metadata = _metadata(run, metrics, checkpoint, name, library)
    sections = [
        f"# {name}",
        f"A {run.task.name} model fine-tuned with tfsft from `{config.get('model', checkpoint)}`"
        f" (licence: {metadata.get('license', 'not stated by the checkpoint')}).",
        "## Intended use\n\n" + _intended_use(run, config),
        "## Training data\n\n" + _data_section(data_check, run_record),
        "## Training\n\n" + _training_section(config, run_record),
        "## Evaluation\n\n" + _evaluation_section(metrics, config),
        "## Export\n\n" + _export_section(report),
        "## Limitations\n\n" + _limitations(data_check, run_record, run.max_length,
                                              run.task.data.long_example_treatment),
    ]
    front = yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True)
    return f"---\n{front}---\n{MARKER}\n\n" + "\n\n".join(sections) + "\n"


def write_card(folder: Path, text: str) -> Path:
    """Write the card as ``folder/README.md``, unless a README that tfsft did not write is
    there: then as ``MODEL_CARD.md`` beside it (a user's file is never replaced)."""
    from tfsft.io_utils import atomic_write_text

    path = folder / CARD_FILE
    if path.exists() and MARKER not in path.read_text(encoding="utf-8", errors="replace"):
        path = folder / "MODEL_CARD.md"
    atomic_write_text(path, text)
    return path


def _json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _licence(checkpoint: str) -> str | None:
    """The ``license`` of the checkpoint's own model card (its YAML metadata), if any."""
    readme = Path(checkpoint) / "README.md"
    if not readme.is_file():
        return None
    match = re.match(r"---\n(.*?)\n---", readme.read_text(encoding="utf-8", errors="replace"),
                     re.S)
    try:
        meta = yaml.safe_load(match.group(1)) if match else None
    except yaml.YAMLError:
        return None
    return str(meta["license"]) if isinstance(meta, dict) and meta.get("license") else None


def _metadata(run: TrainedRun, metrics: dict[str, Any], checkpoint: str, name: str,
              library: str) -> dict[str, Any]:
    head = run.task.serving.hub_head()
    meta: dict[str, Any] = {}
    licence = _licence(checkpoint)
    if licence:
        meta["license"] = licence
    meta["library_name"] = ("sentence-transformers" if library == "transformers" and head
                            is not None and head.kind == "feature-extraction" else library)
    if head is not None and head.kind in _PIPELINES:
        meta["pipeline_tag"] = _PIPELINES[head.kind]
    elif isinstance(run.task.serving, GenerativeServing):
        meta["pipeline_tag"] = "text-generation"
    meta["tags"] = ["tfsft", run.task.name]
    scalars = _scalars(metrics)
    meta["model-index"] = [{"name": name, "results": [{
        "task": {"type": meta.get("pipeline_tag", run.task.name)},
        "metrics": [{"type": key, "value": value} for key, value in scalars.items()],
    }]}]
    return meta


def _scalars(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: v for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


def number(value: Any) -> str:
    """A value as the card shows it: four decimals (two significant digits below 0.001, such
    as a difference), whole numbers as they are.

    >>> number(0.81307), number(872), number(None), number(2.4e-07), number(0.0)
    ('0.8131', '872', '-', '2.4e-07', '0.0000')
    """
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.1e}" if 0 < abs(value) < 1e-3 else f"{value:.4f}"
    return str(value)


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table (cells through :func:`number`)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(number(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _intended_use(run: TrainedRun, config: dict[str, Any]) -> str:
    labels = list(run.task.serving.labels())
    outputs = (f" Its outputs: {', '.join(f'`{label}`' for label in labels[:20])}"
               + (" and more" if len(labels) > 20 else "") + "." if labels else "")
    return (f"Made for {run.task.name} of texts like its training data "
            f"(`{Path(str(config.get('train', ''))).name}`).{outputs} Inputs longer than "
            f"{run.max_length} tokens are {run.task.data.long_example_treatment} (see the "
            "limitations). It was not evaluated on "
            "other domains or languages than its validation data; check it on yours first."
            + _normalization_note(run) + _threshold_note(run))


def _threshold_note(run: TrainedRun) -> str:
    """How a run with a decision threshold decides (the token-id models give probabilities)."""
    state = run.task.state_dict()
    if state.get("decision_threshold") is None:
        return ""
    how = ("tuned on the validation data" if state.get("decision_threshold_tuned")
           else "as given in training")
    return (f" It decides `{state['positive_label']}` when that label's probability is above "
            f"{state['decision_threshold']:.2f} ({how}), not the more "
            "probable label: the SavedModel's `label` output does so; callers of the token-id "
            "models and the Hugging Face folder apply the same threshold to `probabilities`.")


def _normalization_note(run: TrainedRun) -> str:
    """What a caller of the token-id models must do for a run trained with text normalization."""
    steps = getattr(run.tokenizer, "normalization", ())
    if not steps:
        return ""
    return (f" Texts are normalized before tokenizing ({', '.join(steps)}; tfsft's "
            "`tfsft.text_normalization`): the SavedModel's raw-text signature and `tfsft "
            "predict` do it; callers of the token-id models (ONNX, TFLite, the Hugging Face "
            "folder) must apply the same steps first (`tokenizer_config.json` names them).")


def _data_section(data_check: dict[str, Any], run_record: dict[str, Any]) -> str:
    rows = []
    for split in ("train", "validation"):
        part = data_check.get(split)
        if not isinstance(part, dict):
            continue
        counts = (part.get("labels") or {}).get("counts") or {}
        shown = ", ".join(f"{k}: {v}" for k, v in list(counts.items())[:12])
        rows.append([split, f"`{part.get('source', '-')}`", part.get("rows"),
                     part.get("sha256", "not recorded"), shown or "-"])
    text = table(["split", "file", "rows", "SHA-256", "label counts"], rows) if rows else (
        "The run folder holds no data check (`data_check.json`).")
    examples = [f"{run_record[k]} {k.split('_')[0]}" for k in ("train_examples",
                                                                "validation_examples")
                if k in run_record]
    if examples:
        text += f"\n\nTrained on {' and validated on '.join(examples)} examples."
    warnings = data_check.get("warnings") or []
    if warnings:
        text += "\n\nData check warnings:\n\n" + "\n".join(f"- {w}" for w in warnings)
    return text


_TRAINING_OPTIONS = ("epochs", "batch_size", "learning_rate", "lr_schedule", "warmup_ratio",
                     "weight_decay", "max_length", "dropout", "seed", "precision")


def _training_section(config: dict[str, Any], run_record: dict[str, Any]) -> str:
    rows = [[key, config[key]] for key in _TRAINING_OPTIONS if config.get(key) is not None]
    for key in ("epochs_run", "optimizer_steps", "wall_seconds"):
        if key in run_record:
            rows.append([key, run_record[key]])
    options = {k: v for k, v in (config.get("task_options") or {}).items() if v is not None}
    text = table(["option", "value"], rows)
    if options:
        text += "\n\nTask options: " + ", ".join(f"`{k}` = `{v}`" for k, v in options.items())
    return text


def _evaluation_section(metrics: dict[str, Any], config: dict[str, Any]) -> str:
    if not metrics:
        return "The run folder holds no `metrics.json`."
    where = config.get("validation") or f"{config.get('validation_fraction')} of the training file"
    text = f"On the validation data ({where}):\n\n" + table(
        ["metric", "value"], list(_scalars(metrics).items()))
    for key in _PER_NAME:
        per = metrics.get(key)
        if isinstance(per, dict) and per and all(isinstance(v, dict) for v in per.values()):
            columns = list(dict.fromkeys(c for v in per.values() for c in v))
            text += (f"\n\n{key.replace('_', ' ').capitalize()}:\n\n"
                     + table([key.split("_")[1], *columns],
                             [[name, *(row.get(c) for c in columns)]
                              for name, row in per.items()]))
    return text


def _export_section(report: dict[str, Any]) -> str:
    rows = []
    for artifact in report.get("artifacts", []):
        size = artifact.get("size_bytes")
        rows.append([artifact.get("artifact"), artifact.get("variant"),
                     "-" if size is None else f"{size / 1e6:.1f}",
                     artifact.get("max_abs_diff"), artifact.get("agreement"),
                     artifact.get("quality_metric"), artifact.get("quality"),
                     artifact.get("passed")])
    examples = f" ({report['examples']})" if "examples" in report else ""
    text = (f"Each artifact was run in its own runtime on held-out examples{examples} and "
            "compared with the Keras model (`export_report.json` has every number):\n\n"
            + table(["artifact", "variant", "size MB", "max abs diff", "agreement",
                     "metric", "value", "passed"], rows))
    left_out = report.get("not_published") or []
    if left_out:
        text += "\n\nNot published (below their gate): " + ", ".join(
            f"{a.get('artifact')} {a.get('variant')}" for a in left_out)
    return text


def _limitations(data_check: dict[str, Any], run_record: dict[str, Any],
                 max_length: int, treatment: str = "truncated") -> str:
    items = []
    train = data_check.get("train") or {}
    tokens = train.get("tokens") or {}
    if tokens:
        items.append(f"{100 * float(tokens.get('over_max_length_share', 0.0)):.1f} % of the "
                     f"training examples are longer than {max_length} tokens and were "
                     f"{treatment}; longer inputs are {treatment} the same way when served.")
        items.append(f"{100 * float(tokens.get('unknown_word_share', 0.0)):.2f} % of the "
                     "training words are unknown to the vocabulary ([UNK]).")
    counts = (train.get("labels") or {}).get("counts") or {}
    total = sum(v for v in counts.values() if isinstance(v, int)) or 1
    few = [f"`{k}` ({v})" for k, v in counts.items()
           if isinstance(v, int) and (v < FEW_EXAMPLES or v / total < SMALL_SHARE)]
    if few:
        items.append(f"Classes with little training data (under {FEW_EXAMPLES} examples or "
                     f"{100 * SMALL_SHARE:.0f} %): {', '.join(few)}; expect weaker results "
                     "on them.")
    for split, skipped in (run_record.get("skipped_rows") or {}).items():
        if skipped:
            items.append(f"Rows skipped in {split}: " + ", ".join(
                f"{k}: {v}" for k, v in skipped.items()) + ".")
    if not items:
        return "The run folder records no data check to draw limitations from."
    return "\n".join(f"- {item}" for item in items)
