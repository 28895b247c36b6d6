"""One training recipe per process: ``python -m benchmarks.training RECIPE --examples N --out F``.

Recipes (all: all-MiniLM-L6-v2 weights, the same SST-2 sample, max_length 128, batch 32,
AdamW lr 5e-5 with weight decay 0.01 (not on biases and LayerNorm), 10 % linear warm-up then
linear decay, global gradient clipping at 1.0, one epoch):

- ``tfsft``: ``tfsft.training.train`` with its defaults (the ``tfsft train`` command; on a CPU
  with AMX/AVX512-BF16 that is ``--precision auto`` = bfloat16 matmuls).
- ``tfsft-fp32``: the same with ``--precision float32``, the peers' precision.
- ``hf-dynamic``: transformers ``TFBertForSequenceClassification`` + tf-keras ``fit``, per-batch
  padding with ``DataCollatorWithPadding`` through ``prepare_tf_dataset`` (its course recipe).
- ``hf-padded``: the same with every sequence padded to 128 (its examples' ``pad_to_max_length``).
- ``keras-hub``: ``keras_hub.models.BertTextClassifier.fit`` on raw strings.

Every recipe validates on SST-2 dev at the end of the epoch inside ``fit``, as the recipes it
follows do. Each writes one JSON: wall time from process start to the end of ``fit`` (load,
tokenize, train, validate), steady examples/s after the first steps, peak RSS and SST-2 dev
accuracy.
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()  # before TensorFlow is imported: wall time includes loading it

import argparse  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

from benchmarks import common  # noqa: E402

RECIPES = ("tfsft", "tfsft-fp32", "hf-dynamic", "hf-padded", "keras-hub")


def schedule_steps(examples: int, epochs: int = 1) -> tuple[int, int]:
    """Optimizer steps and warm-up steps of ``epochs`` over ``examples`` at the common batch size."""
    steps = epochs * math.ceil(examples / common.BATCH_SIZE)
    return steps, math.ceil(common.WARMUP_RATIO * steps)


def run_tfsft(texts, labels, dev_texts, dev_labels, run_dir: Path | None = None,
              precision: str = "auto") -> dict:
    import keras

    from benchmarks.hardware import per_example_training_flops
    from tfsft.config import TrainConfig
    from tfsft.runs import TrainedRun
    from tfsft.training.trainer import train

    timer = common.step_timer(keras.callbacks.Callback)
    with tempfile.TemporaryDirectory() as folder:
        train_file, dev_file = Path(folder) / "train.tsv", Path(folder) / "dev.tsv"
        common.write_tsv(train_file, texts, labels)
        common.write_tsv(dev_file, dev_texts, dev_labels)
        config = TrainConfig(train=str(train_file), validation=str(dev_file), model="minilm-l6",
                             output_dir=str(run_dir or Path(folder) / "run"),
                             task_options={"text_column": "sentence"}, epochs=1,
                             batch_size=common.BATCH_SIZE, max_length=common.MAX_LENGTH,
                             seed=common.SEED, overwrite=True, precision=precision)
        result = train(config, callbacks=[timer])
        run = TrainedRun(result.run_dir)
        # Model FLOPs from the real (unpadded) length of every training sentence.
        lengths = run.tokenizer.encode(texts, max_length=common.MAX_LENGTH)["padding_mask"]
        backbone = run.model.backbone
        flops = per_example_training_flops(lengths.numpy().sum(axis=1), backbone.num_layers,
                                           backbone.hidden_dim, backbone.intermediate_dim)
    return {"timer": timer, "dev_accuracy": result.metrics["accuracy"],
            "precision": result.summary["precision"], "train_tokens": result.summary["train_tokens"],
            "train_flops_per_example": float(flops.mean())}


def hf_model_and_tokenizer(num_labels: int = 2, head: str = "TFBertForSequenceClassification",
                           seed: int = common.SEED):
    """A transformers TF BERT model class ``head`` with all-MiniLM-L6-v2 weights, and its tokenizer."""
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    import safetensors.numpy
    import tensorflow as tf
    import transformers
    from transformers import BertConfig, BertTokenizerFast
    from transformers.modeling_tf_pytorch_utils import load_pytorch_state_dict_in_tf2_model

    from tfsft.models.checkpoints import resolve_checkpoint

    folder = resolve_checkpoint("minilm-l6")
    tf.keras.utils.set_random_seed(seed)
    model = getattr(transformers, head)(BertConfig.from_pretrained(folder, num_labels=num_labels))
    model(model.dummy_inputs)
    # transformers 4.57's from_pretrained cannot read these safetensors without torch.
    state = safetensors.numpy.load_file(str(folder / "model.safetensors"))
    load_pytorch_state_dict_in_tf2_model(model, state, allow_missing_keys=True)
    return model, BertTokenizerFast.from_pretrained(folder)


def run_hf(texts, labels, dev_texts, dev_labels, pad_to_max_length: bool) -> dict:
    model, tokenizer = hf_model_and_tokenizer()
    import numpy as np
    import tf_keras
    from datasets import Dataset
    from transformers import DataCollatorWithPadding, create_optimizer

    padding = "max_length" if pad_to_max_length else False

    def tokenize(batch):
        return tokenizer(batch["sentence"], truncation=True, max_length=common.MAX_LENGTH,
                         padding=padding)

    train_set = Dataset.from_dict({"sentence": texts, "label": labels}).map(tokenize, batched=True)
    collator = DataCollatorWithPadding(tokenizer, return_tensors="np")
    train_ds = model.prepare_tf_dataset(train_set, shuffle=True, batch_size=common.BATCH_SIZE,
                                        collate_fn=collator, tokenizer=tokenizer)
    steps, warmup = schedule_steps(len(texts))
    optimizer, _ = create_optimizer(init_lr=common.LEARNING_RATE, num_train_steps=steps,
                                    num_warmup_steps=warmup,
                                    weight_decay_rate=common.WEIGHT_DECAY,
                                    adam_global_clipnorm=common.CLIPNORM)
    dev_set = Dataset.from_dict({"sentence": dev_texts, "label": dev_labels}).map(
        tokenize, batched=True)
    dev_ds = model.prepare_tf_dataset(dev_set, shuffle=False, batch_size=common.BATCH_SIZE,
                                      collate_fn=collator, tokenizer=tokenizer)
    model.compile(optimizer=optimizer)
    timer = common.step_timer(tf_keras.callbacks.Callback)
    model.fit(train_ds, validation_data=dev_ds, epochs=1, callbacks=[timer], verbose=2)
    logits = model.predict(dev_ds, verbose=0).logits
    return {"timer": timer, "dev_accuracy": float(np.mean(logits.argmax(-1) == dev_labels))}


def run_keras_hub(texts, labels, dev_texts, dev_labels) -> dict:
    import keras
    import keras_hub
    import numpy as np
    import tensorflow as tf

    from tfsft.models.checkpoints import load_backbone, resolve_checkpoint
    from tfsft.optimization.schedules import WarmupDecay

    keras.utils.set_random_seed(common.SEED)
    folder = resolve_checkpoint("minilm-l6")
    backbone, _ = load_backbone(folder)
    tokenizer = keras_hub.models.BertTokenizer.from_preset(str(folder))
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(
        tokenizer, sequence_length=common.MAX_LENGTH)
    classifier = keras_hub.models.BertTextClassifier(backbone, num_classes=2,
                                                     preprocessor=preprocessor)
    steps, warmup = schedule_steps(len(texts))
    optimizer = keras.optimizers.AdamW(WarmupDecay(common.LEARNING_RATE, steps, warmup),
                                       weight_decay=common.WEIGHT_DECAY,
                                       global_clipnorm=common.CLIPNORM)
    optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    classifier.compile(optimizer=optimizer,
                       loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    train_ds = tf.data.Dataset.from_tensor_slices((texts, labels)).shuffle(
        len(texts), seed=common.SEED).batch(common.BATCH_SIZE)
    dev_ds = tf.data.Dataset.from_tensor_slices((dev_texts, dev_labels)).batch(common.BATCH_SIZE)
    timer = common.step_timer(keras.callbacks.Callback)
    classifier.fit(train_ds, validation_data=dev_ds, epochs=1, callbacks=[timer], verbose=2)
    logits = classifier.predict(dev_ds.map(lambda text, label: text), verbose=0)
    return {"timer": timer, "dev_accuracy": float(np.mean(logits.argmax(-1) == dev_labels))}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", choices=RECIPES)
    parser.add_argument("--examples", type=int, default=2048)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--run-dir", type=Path, help="tfsft: keep the run folder here")
    args = parser.parse_args(argv)
    texts, labels = common.sst2_sample(args.examples)
    dev_texts, dev_labels = common.sst2_dev()
    if args.recipe.startswith("tfsft"):
        result = run_tfsft(texts, labels, dev_texts, dev_labels, args.run_dir,
                           precision="float32" if args.recipe == "tfsft-fp32" else "auto")
    elif args.recipe == "keras-hub":
        result = run_keras_hub(texts, labels, dev_texts, dev_labels)
    else:
        result = run_hf(texts, labels, dev_texts, dev_labels, args.recipe == "hf-padded")
    timer = result.pop("timer")
    from tfsft.io_utils import atomic_write_json  # after the recipe: HF needs tf-keras set first
    atomic_write_json(args.out, {
        "recipe": args.recipe, "examples": args.examples, "max_length": common.MAX_LENGTH,
        "batch_size": common.BATCH_SIZE, "precision": "float32", **timer.steady(args.examples),
        "wall_seconds": round(timer.fit_end - STARTED, 3), **result,
        "peak_rss_mb": round(common.peak_rss_mb(), 1),
    })


if __name__ == "__main__":
    main()
