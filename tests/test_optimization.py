"""Learning-rate schedules, AdamW weight-decay exclusions, class weights, metrics."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from tfsft.config import TrainConfig
from tfsft.errors import ConfigError
from tfsft.evaluation.metrics import classification_metrics
from tfsft.optimization.optimizers import adamw
from tfsft.optimization.schedules import WarmupDecay
from tfsft.tasks.text_classification.examples import TextClassificationData
from tfsft.tasks.text_classification.model import TextClassifier
from tfsft.tasks.text_classification.task import class_weights
from tfsft.training.precision import cpu_has_fast_bfloat16, resolve_precision


def values(schedule, steps):
    return [float(schedule(s)) for s in steps]


def test_warmup_then_each_decay():
    steps = [0, 9, 10, 55, 99, 100]
    linear = values(WarmupDecay(1.0, 100, 10, "linear"), steps)
    np.testing.assert_allclose(linear, [0.1, 1.0, 1.0, 0.5, 0.011111, 0.0], atol=1e-5)
    cosine = values(WarmupDecay(1.0, 100, 10, "cosine"), [10, 55, 100])
    np.testing.assert_allclose(cosine, [1.0, 0.5, 0.0], atol=1e-6)
    exponential = values(WarmupDecay(1.0, 100, 10, "exponential", final_ratio=0.01), [10, 55, 100])
    np.testing.assert_allclose(exponential, [1.0, 0.1, 0.01], rtol=1e-5)
    assert values(WarmupDecay(2.0, 100, 0, "constant"), [0, 50, 100]) == [2.0, 2.0, 2.0]


def test_schedule_serializes():
    schedule = WarmupDecay(3e-5, 200, 20, "cosine")
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(schedule))
    assert values(again, [5, 100]) == values(schedule, [5, 100])


def test_adamw_skips_layer_norm_and_bias(tiny_checkpoint):
    model = TextClassifier.from_pretrained(tiny_checkpoint, num_classes=2)
    optimizer = adamw(1e-3, weight_decay=0.1)
    optimizer.build(model.trainable_variables)
    decayed = {v.path for v in model.trainable_variables if optimizer._use_weight_decay(v)}
    assert "transformer_layer_0/self_attention_layer/query/kernel" in decayed
    assert "logits/kernel" in decayed
    assert not any(p.endswith(("/bias", "/gamma", "/beta")) for p in decayed)


def test_fused_adamw_matches_keras_adamw(tiny_checkpoint):
    """One fused ResourceApplyAdam per variable = Keras's element-wise AdamW (decay, clipping)
    given the embedding gradient summed per row."""
    import tensorflow as tf

    class DenseGradientAdamW(keras.optimizers.AdamW):
        def apply(self, grads, trainable_variables=None):
            return super().apply([tf.convert_to_tensor(g) for g in grads], trainable_variables)

    features = {"token_ids": np.array([[2, 8, 9, 3], [2, 10, 3, 0]], np.int32),
                "segment_ids": np.zeros((2, 4), np.int32),
                "padding_mask": np.array([[1, 1, 1, 1], [1, 1, 1, 0]], np.int32)}
    reference = DenseGradientAdamW(WarmupDecay(1e-2, 6, 2), weight_decay=0.1, epsilon=1e-6,
                                   global_clipnorm=0.5)
    reference.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    weights = {}
    for name, optimizer in (("fused", adamw(WarmupDecay(1e-2, 6, 2), 0.1, clipnorm=0.5)),
                            ("keras", reference)):
        keras.utils.set_random_seed(0)  # the same classifier head for both
        model = TextClassifier.from_pretrained(tiny_checkpoint, num_classes=2, dropout=0.0)
        initial = {v.path: v.numpy() for v in model.trainable_variables}
        model.compile(optimizer=optimizer)
        model.fit(features, np.array([1, 0]), epochs=5, verbose=0)
        weights[name] = {v.path: v.numpy() for v in model.trainable_variables}
    for path, value in weights["fused"].items():
        if not path.endswith("key/bias"):  # softmax ignores the key bias: no gradient
            assert np.abs(value - initial[path]).max() > 1e-3, f"{path} was not updated"
        # Float rounding differs (fused kernel vs element-wise ops); a wrong formula would be
        # off by about the learning rate (1e-2) per step.
        np.testing.assert_allclose(value, weights["keras"][path], rtol=0, atol=3e-4, err_msg=path)


def test_global_norm_clipping():
    import tensorflow as tf

    optimizer = adamw(1e-3, clipnorm=1.0)
    clipped = optimizer._clip_gradients([tf.constant([3.0]), None, tf.constant([[4.0]])])
    assert clipped[1] is None
    np.testing.assert_allclose([float(clipped[0][0]), float(clipped[2][0, 0])], [0.6, 0.8])
    kept = optimizer._clip_gradients([tf.constant([0.3, 0.4])])  # norm 0.5 < 1: unchanged
    np.testing.assert_allclose(kept[0].numpy(), [0.3, 0.4])
    assert np.isnan(optimizer._clip_gradients([tf.constant([np.nan, 1.0])])[0].numpy()).all()


def test_precision_options(tmp_path):
    assert resolve_precision("mixed_float16") == "mixed_float16"
    assert resolve_precision("auto") in ("float32", "mixed_bfloat16")
    with pytest.raises(ConfigError, match="precision must be one of"):
        resolve_precision("fp8")
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse avx512f amx_tile amx_bf16\n")
    assert cpu_has_fast_bfloat16(cpuinfo)
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse avx2\n")
    assert not cpu_has_fast_bfloat16(str(cpuinfo))
    assert not cpu_has_fast_bfloat16(tmp_path / "missing")


def test_class_weights_balanced_and_explicit():
    data = TextClassificationData(["a"] * 4, None, np.array([0, 0, 0, 1], np.int32), ("neg", "pos"))
    np.testing.assert_allclose(class_weights("balanced", data), [2 / 3, 2.0])
    assert class_weights({"pos": 3}, data).tolist() == [1.0, 3.0]
    with pytest.raises(ConfigError, match="neutral"):
        class_weights({"neutral": 3}, data)
    with pytest.raises(ConfigError, match="class_weight must be 'balanced'"):
        TrainConfig(train="x", model="m", output_dir="o", task_options={"class_weight": "some"})


def test_config_validation_messages(tmp_path):
    with pytest.raises(ConfigError, match="missing required option.*--output-dir"):
        TrainConfig.from_dict({"train": "t", "model": "m"})
    with pytest.raises(ConfigError, match="unknown option.*'epoch'"):
        TrainConfig.from_dict({"train": "t", "model": "m", "output_dir": "o", "epoch": 1})
    with pytest.raises(ConfigError, match="reduce_lr_on_plateau needs lr_schedule constant"):
        TrainConfig.from_dict({"train": "t", "model": "m", "output_dir": "o",
                               "reduce_lr_on_plateau": True})
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: a\nmodel: [b\n")
    with pytest.raises(ConfigError, match=r"bad.yaml, line \d"):
        TrainConfig.from_yaml(bad)


def test_yaml_options_and_flag_overrides(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("train: a.csv\nmodel: minilm-l6\noutput-dir: runs/x\nepochs: 4\nbatch_size: 8\n")
    config = TrainConfig.from_yaml(path, {"epochs": 2, "batch_size": None})
    assert (config.epochs, config.batch_size, config.output_dir) == (2, 8, "runs/x")


def test_metrics_multiclass():
    labels = np.array([0, 1, 2, 2])
    probabilities = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7], [0.5, 0.1, 0.4]])
    metrics = classification_metrics(labels, probabilities, ("a", "b", "c"))
    assert metrics["accuracy"] == 0.75
    assert metrics["per_class"]["c"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3),
                                         "support": 2}
    assert metrics["f1_macro"] == pytest.approx((2 / 3 + 1 + 2 / 3) / 3)
    assert metrics["roc_auc"] == pytest.approx(1.0)
    assert metrics["confusion_matrix"] == [[1, 0, 0], [0, 1, 0], [1, 0, 1]]
    # A label absent from the data leaves ROC-AUC undefined rather than wrong.
    assert classification_metrics(labels[:2], probabilities[:2], ("a", "b", "c"))["roc_auc"] is None


def test_compiled_model_reloads_with_its_optimizer(tiny_checkpoint, tmp_path):
    import tfsft.optimization.optimizers as optimizers

    model = TextClassifier.from_pretrained(tiny_checkpoint, num_classes=2)
    model.compile(optimizer=adamw(WarmupDecay(1e-3, 10, 2), weight_decay=0.05))
    features = {"token_ids": np.array([[2, 8, 3]], np.int32),
                "segment_ids": np.zeros((1, 3), np.int32),
                "padding_mask": np.ones((1, 3), np.int32)}
    model.fit(features, np.array([1]), epochs=3, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert isinstance(loaded.optimizer, optimizers.AdamW)
    assert int(loaded.optimizer.iterations) == 3
    assert loaded.optimizer.weight_decay == pytest.approx(0.05)
    gamma = next(v for v in loaded.trainable_variables if v.path.endswith("gamma"))
    assert not loaded.optimizer._use_weight_decay(gamma)


def test_yaml_merge_keys_are_read_and_keys_given_here_win(tmp_path):
    from tfsft.config import load_yaml_options

    path = tmp_path / "c.yaml"
    path.write_text("base: &base\n  epochs: 1\n  batch_size: 8\n<<: *base\nepochs: 2\n")
    values = load_yaml_options(path)
    assert values["epochs"] == 2 and values["batch_size"] == 8
