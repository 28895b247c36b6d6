"""``tfsft prune``: a finished run without its least important heads and feed-forward neurons,
then a short recovery pass.

Importance is measured on the run's held-out examples (``heldout.jsonl``, see
:func:`tfsft.models.pruning.importance`); the ``heads`` and ``ffn`` fractions with the lowest
importance are removed from the weight matrices (:func:`tfsft.models.pruning.pruned_copy`).
The pruned model then trains for ``recovery_epochs`` (default 1) on the run's data, learning
from the unpruned run's outputs as well as the labels (as :mod:`tfsft.training.distillation`
does). The result is an ordinary run folder with ``pruning.json``: the fractions, the heads and
neurons each layer kept, and the sizes and quality of both.

>>> result = prune("runs/sst2", heads=0.3, ffn=0.3,
...                overrides={"output_dir": "runs/sst2-pruned"})      # doctest: +SKIP
>>> record = json.loads(Path("runs/sst2-pruned/pruning.json").read_text())  # doctest: +SKIP
>>> record["pruned"]["layer_heads"]                                       # doctest: +SKIP
[8, 9, 8, 7, 9, 9]
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from tfsft.errors import ConfigError
from tfsft.runs import HELDOUT_FILE, TrainedRun
from tfsft.training.distillation import DistillationSettings, distill

logger = logging.getLogger(__name__)

PRUNING_FILE = "pruning.json"
#: Held-out examples the importance is measured on (at most).
IMPORTANCE_EXAMPLES = 512


def prune(teacher_dir: str | Path, heads: float, ffn: float, overrides: dict[str, Any],
          recovery_epochs: int = 1, temperature: float = 2.0, alpha: float = 0.5,
          unlabelled: str | None = None, startup_seconds: float | None = None) -> Any:
    """Prune run ``teacher_dir`` and train the pruned model for ``recovery_epochs`` (the run's
    options changed by ``overrides``; ``output_dir`` is required); returns the
    :class:`~tfsft.training.trainer.TrainResult`."""
    from tfsft.models.pruning import check_shares

    check_shares(heads, ffn)
    if heads == 0 and ffn == 0:
        raise ConfigError("--heads 0 and --ffn 0 remove nothing; give the share of heads "
                          "and/or feed-forward neurons to remove (e.g. --heads 0.3 --ffn 0.3)")
    if recovery_epochs < 1:
        raise ConfigError(f"--recovery-epochs must be at least 1, got {recovery_epochs}")
    settings = DistillationSettings(teacher_dir, unlabelled=unlabelled,
                                    temperature=temperature, alpha=alpha)
    facts: dict[str, Any] = {}

    def build(teacher: TrainedRun, task: Any, dtype: str | None) -> Any:
        from tfsft.models.pruning import importance, pruned_copy

        model = teacher.model
        if not hasattr(model, "backbone") or not hasattr(model.backbone, "num_heads"):
            raise ConfigError(f"{teacher_dir}: its model has no BERT backbone to prune (was it "
                              "pruned already? prune the unpruned run with larger fractions)")
        batches, count = _importance_batches(teacher)
        logger.info("Pruning: importance of %d heads and %d feed-forward neurons on %d "
                    "held-out examples", model.backbone.num_layers * model.backbone.num_heads,
                    model.backbone.num_layers * model.backbone.intermediate_dim, count)
        scores = importance(model, batches, _loss(teacher, model))
        pruned = pruned_copy(model, scores, heads, ffn, dtype)
        facts.update({
            "heads": heads, "ffn": ffn, "recovery_epochs": recovery_epochs,
            "importance_examples": count,
            "layer_heads": pruned.backbone.layer_heads,
            "layer_intermediate_dims": pruned.backbone.layer_intermediate_dims,
            "heads_before": int(model.backbone.num_heads),
            "intermediate_dim_before": int(model.backbone.intermediate_dim)})
        logger.info("Pruning: heads per layer %s of %d, feed-forward neurons %s of %d",
                    facts["layer_heads"], facts["heads_before"],
                    facts["layer_intermediate_dims"], facts["intermediate_dim_before"])
        return pruned

    return distill(settings, {**overrides, "epochs": recovery_epochs}, startup_seconds,
                   student_builder=build, report_file=PRUNING_FILE,
                   report_extra=lambda: {"pruned": facts})


def _importance_batches(run: TrainedRun) -> tuple[list[tuple[Any, Any]], int]:
    """Batches of the run's held-out examples (features, targets), and how many examples."""
    from tfsft.data.pipeline import make_dataset

    if not (run.run_dir / HELDOUT_FILE).exists():
        raise ConfigError(f"{run.run_dir / HELDOUT_FILE} is missing: the importance of each "
                          "head is measured on it; restore the run folder")
    examples = run.saved_examples(HELDOUT_FILE)
    examples = examples.subset(np.arange(min(len(examples), IMPORTANCE_EXAMPLES)))
    encoded = run.task.data.encode(run.tokenizer, examples, run.max_length)
    batches = [(batch[0], batch[1]) for batch in make_dataset(encoded, batch_size=32)]
    return batches, len(examples)


def _loss(run: TrainedRun, model: Any) -> Any:
    """``f(features, targets, outputs) -> loss`` with the task's own loss (``model`` is
    compiled with it; its predictions do not change)."""
    import keras

    run.task.modeling.compile(model, keras.optimizers.SGD())

    def loss_of(features: Any, targets: Any, outputs: Any) -> Any:
        return model.compute_loss(x=features, y=targets, y_pred=outputs)

    return loss_of
