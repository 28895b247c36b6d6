"""Validation inside ``fit`` in one pass that gives both the logged metrics and the outputs.

Keras validates with ``evaluate`` (loss and compiled metrics only), so a run that then needs the
model's outputs on the same rows (reports, thresholds, the data for ``metrics.json``) predicts
them again, with a second traced function. :class:`ValidationPass` runs each batch once through
one ``tf.function`` that returns the outputs and updates the compiled loss and metrics, logs
``val_loss`` and ``val_<metric>`` exactly where ``fit`` would (the epoch's logs, before the
checkpoint, early-stopping and logging callbacks read them), and keeps the outputs of the epoch
whose weights the model ends with.

>>> import numpy as np
>>> from tfsft.data.examples import TextExamples
>>> from tfsft.data.pipeline import encode
>>> from tfsft.tokenization import WordPieceTokenizer
>>> tokenizer = WordPieceTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "good", "bad"])
>>> data = TextExamples(["good", "bad bad", "good"], None, np.array([1, 0, 1], np.int32),
...                     ("neg", "pos"))
>>> validation = ValidationPass(encode(tokenizer, data, max_length=8), batch_size=2)
>>> [int(x["token_ids"].shape[1]) for x, y in validation.dataset]
[3, 4]
>>> # model.fit(train, callbacks=[validation, ...]); outputs = validation.final_outputs()
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tfsft.data.pipeline import (
    EncodedData,
    any_shape,
    make_dataset,
    outputs_in_input_order,
    restore_order,
)
from tfsft.training.callbacks import BestWeightsCheckpoint


class ValidationPass(keras.callbacks.Callback):
    """Validate on ``encoded`` at each epoch end (rows sorted by length, ``batch_size`` per
    batch, padded to ``buckets`` if given) and add ``val_*`` to the epoch's logs.

    Put it first in ``fit``'s callbacks, with no ``validation_data``. With ``keep_outputs``,
    :meth:`final_outputs` gives the model's outputs (in input order, as
    :func:`~tfsft.data.pipeline.predict_logits` gives them) for the weights the model ends
    with: those of the best epoch when ``restorer`` restores them at the end of training (an
    ``EarlyStopping(restore_best_weights=True)`` or a ``BestWeightsCheckpoint(restore=True)``),
    else the last epoch's.
    """

    def __init__(self, encoded: EncodedData, batch_size: int,
                 buckets: Sequence[int] | None = None, keep_outputs: bool = True,
                 restorer: keras.callbacks.Callback | None = None):
        super().__init__()
        self.encoded = encoded
        self.restorer = restorer if restores_best_weights(restorer) else None
        self.dataset = make_dataset(encoded, batch_size, buckets=buckets)
        self.keep_outputs = keep_outputs
        self.seconds: list[float] = []
        self._outputs: dict[int, Any] = {}
        self._last_epoch: int | None = None
        self._step = None
        self._tracer: threading.Thread | None = None

    def on_train_batch_end(self, batch, logs=None):
        # Trace the validation step on a thread while the training steps run: a step spends
        # its time in TensorFlow's kernels, which leave Python (and the tracing) free.
        if self._step is None and self._tracer is None:
            self._tracer = threading.Thread(target=self._trace, name="tfsft-validation-trace",
                                            daemon=True)
            self._tracer.start()

    def _trace(self) -> None:
        try:
            step = _validation_step(self.model, self.dataset.element_spec)
            step.get_concrete_function()
            self._step = step
        except Exception:  # traced again (and any error raised) in the main thread
            self._step = None

    def on_epoch_end(self, epoch, logs=None):
        started = time.perf_counter()
        values, outputs = self.evaluate()
        if logs is not None:
            logs.update({f"val_{name}": value for name, value in values.items()})
        if self.keep_outputs:
            keep = {epoch, self._best_epoch_so_far()}
            self._outputs = {e: o for e, o in self._outputs.items() if e in keep}
            self._outputs[epoch] = outputs
        self._last_epoch = epoch
        self.seconds.append(time.perf_counter() - started)

    def _best_epoch_so_far(self) -> int | None:
        """The restorer's best epoch before this one (it sees this epoch's logs after us)."""
        restorer = self.restorer
        if restorer is None or getattr(restorer, "best_weights", True) is None:
            return None  # EarlyStopping before its first epoch
        return restorer.best_epoch

    def evaluate(self) -> tuple[dict[str, float], Any]:
        """``{"loss": ..., metric: ...}`` over the validation rows, and the outputs."""
        model = self.model
        if self._tracer is not None:
            self._tracer.join()
            self._tracer = None
        if self._step is None:
            self._step = _validation_step(model, self.dataset.element_spec)
        model.reset_metrics()
        batches, loss_sum, rows = [], 0.0, 0
        for batch in self.dataset:
            outputs, loss = self._step(*batch)
            count = int(tf.shape(batch[0]["token_ids"])[0])
            loss_sum += float(loss) * count
            rows += count
            if self.keep_outputs:
                batches.append(np.asarray(outputs))
        values = {name: float(np.asarray(value)) for name, value
                  in model.get_metrics_result().items() if name != "loss"}
        values = {"loss": loss_sum / max(rows, 1), **values}
        model.reset_metrics()
        outputs = (outputs_in_input_order(batches, self.encoded, restore_order(self.encoded))
                   if self.keep_outputs else None)
        return values, outputs

    def final_outputs(self) -> Any | None:
        """The validation outputs of the weights the model holds after ``fit`` (early
        stopping's best epoch, or the last one); ``None`` when that epoch was not validated
        in this process (none ran: a run resumed after its last epoch)."""
        best = self._best_epoch_so_far()
        epoch = best if best is not None else self._last_epoch
        return self._outputs.get(epoch) if epoch is not None else None


def restores_best_weights(callback: keras.callbacks.Callback | None) -> bool:
    """Whether ``callback`` gives the model its best epoch's weights when training ends."""
    if isinstance(callback, keras.callbacks.EarlyStopping):
        return bool(callback.restore_best_weights)
    return isinstance(callback, BestWeightsCheckpoint) and callback.restore


def _validation_step(model: keras.Model, element_spec: Any):
    """``(features, y[, weights]) -> (outputs, loss)``, updating the compiled metrics, as a
    ``tf.function`` traced once for any batch shape."""

    signature = [any_shape(part) for part in element_spec]

    def step(features, y, weights=None):
        outputs = model(features, training=False)
        loss = model.compute_loss(x=features, y=y, y_pred=outputs, sample_weight=weights,
                                  training=False)
        model.compute_metrics(features, y, outputs, sample_weight=weights)
        return outputs, loss

    return tf.function(step, input_signature=signature,
                       jit_compile=bool(getattr(model, "jit_compile", False)))
