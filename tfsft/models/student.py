"""Students for distillation: a shallower copy of a trained text model, initialised from it.

The copy keeps ``layers`` of the teacher's transformer layers, evenly spaced and always the last
one (whose output the head was trained on), with the teacher's embeddings, pooler and head.

>>> evenly_spaced_layers(6, 3)
[1, 3, 5]
>>> evenly_spaced_layers(12, 4)
[2, 5, 8, 11]
>>> import keras_hub
>>> from tfsft.models.text_model import TextModel
>>> backbone = keras_hub.models.BertBackbone(vocabulary_size=50, num_layers=4, num_heads=2,
...     hidden_dim=8, intermediate_dim=16, max_sequence_length=32)
>>> student, kept = shallower_copy(TextModel(backbone, num_outputs=3), 2)
>>> kept, student.backbone.num_layers, student.output_shape
([1, 3], 2, (None, 3))
"""

from __future__ import annotations

import keras

from tfsft.errors import ConfigError


def transformer_layers(model: keras.Model) -> int:
    """How many transformer layers the backbone of text ``model`` has."""
    backbone = getattr(model, "backbone", None)
    count = getattr(backbone, "num_layers", None)
    if count is None:
        raise ConfigError(f"{type(model).__name__} has no BERT backbone to take layers from")
    return int(count)


def evenly_spaced_layers(total: int, keep: int) -> list[int]:
    """Indices of ``keep`` of ``total`` layers, evenly spaced, ending with the last."""
    if not 1 <= keep < total:
        raise ConfigError(f"a student keeps between 1 and {total - 1} of the teacher's {total} "
                          f"layers, not {keep}")
    return [round((i + 1) * total / keep) - 1 for i in range(keep)]


def shallower_copy(model: keras.Model, layers: int,
                   dtype: str | None = None) -> tuple[keras.Model, list[int]]:
    """A model of the same class as text ``model`` with ``layers`` transformer layers, its
    weights copied from ``model`` (the kept layers from :func:`evenly_spaced_layers`); returns
    it with the indices of the kept layers. ``dtype``: the backbone's dtype policy (default:
    the teacher's)."""
    total = transformer_layers(model)
    kept = evenly_spaced_layers(total, layers)
    config = model.get_config()
    backbone = dict(config["backbone"]["config"])
    if "layer_heads" in backbone:  # a pruned backbone: the kept layers keep their widths
        for name in ("layer_heads", "layer_intermediate_dims"):
            backbone[name] = [backbone[name][index] for index in kept]
    else:
        backbone["num_layers"] = layers
    if dtype is not None:
        backbone["dtype"] = keras.saving.serialize_keras_object(keras.DTypePolicy(dtype))
    config["backbone"] = {**config["backbone"], "config": backbone}
    student = type(model).from_config(config)
    renamed = {f"transformer_layer_{new}": f"transformer_layer_{old}"
               for new, old in enumerate(kept)}
    for layer in student.backbone.layers:
        source = model.backbone.get_layer(renamed.get(layer.name, layer.name))
        layer.set_weights(source.get_weights())
    for layer in student.layers:
        if layer is not student.backbone and layer.weights:
            layer.set_weights(model.get_layer(layer.name).get_weights())
    return student, kept
