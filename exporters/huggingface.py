"""A Hugging Face ``transformers`` folder of an encoder run (``tfsft export --format hf``).

The folder holds ``config.json`` (the BERT settings, ``architectures``, ``id2label`` /
``label2id``, ``problem_type``), ``model.safetensors`` with ``transformers``' weight names (the
PyTorch layout, which the TensorFlow classes read as well) and the tokenizer files, so that::

    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    model = AutoModelForSequenceClassification.from_pretrained("saved_models/sst2/hf")

loads the tuned model. Which class it is comes from the task's serving role
(:meth:`tfsft.tasks.roles.ServingRole.hub_head`) and the model's pooling:

- token classification and question answering: ``BertForTokenClassification`` /
  ``BertForQuestionAnswering`` (a dense layer on every token vector, as tfsft's);
- sentence classification, multi-label and regression with ``--pooling pooled``:
  ``BertForSequenceClassification`` (BERT's tanh pooler on ``[CLS]``);
- with ``mean`` (the default) or ``cls`` pooling, which ``transformers`` has no class for: the
  same, with the pooling written in :mod:`exporters.hub_code` and shipped in the folder
  (``trust_remote_code=True`` loads it).

A regression's standardization is folded into the classifier, so the Hugging Face logits are
the predictions in the targets' units. Export verifies the folder through ``transformers``'
TensorFlow class (and its PyTorch class where PyTorch is installed) on the held-out examples.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import shutil
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from tfsft.errors import ConfigError
from tfsft.runs import TrainedRun
from tfsft.tasks.roles import HubHead

FOLDER = "hf"
WEIGHTS = "model.safetensors"
#: Pooling of a sequence classifier that ``transformers`` has a class for, and those shipped.
STANDARD_POOLING = "pooled"
REMOTE_POOLINGS = ("mean", "cls")
_CLASSES = {  # head kind -> (PyTorch class, Auto class), for the standard heads
    "sequence-classification": ("BertForSequenceClassification",
                                "AutoModelForSequenceClassification"),
    "token-classification": ("BertForTokenClassification", "AutoModelForTokenClassification"),
    "question-answering": ("BertForQuestionAnswering", "AutoModelForQuestionAnswering"),
}
_REMOTE = {"AutoModelForSequenceClassification":
           "modeling_bert_pooling.BertForSequenceClassificationWithPooling",
           "TFAutoModelForSequenceClassification":
           "modeling_tf_bert_pooling.TFBertForSequenceClassificationWithPooling"}


def hub_head(run: TrainedRun) -> HubHead:
    """The run's head as ``transformers`` knows it; a run without one is a ConfigError."""
    head = run.task.serving.hub_head()
    if head is None or head.kind not in (*_CLASSES, FEATURES):
        raise ConfigError(f"--format hf: {run.task.name} runs have no transformers class to "
                          f"export to; the formats for them are savedmodel, tflite and onnx")
    layer_heads = getattr(getattr(run.model, "backbone", None), "layer_heads", None)
    if layer_heads is not None:  # a pruned backbone: transformers' BERT has one FFN width
        raise ConfigError("--format hf: the model was pruned (tfsft prune: each layer has its "
                          "own number of heads and feed-forward neurons), which transformers' "
                          "BERT cannot hold; export it to savedmodel, tflite or onnx")
    pooling = getattr(run.model, "pooling", None)
    if head.kind == "sequence-classification" and pooling not in (STANDARD_POOLING,
                                                                   *REMOTE_POOLINGS):
        raise ConfigError(f"--format hf: the model's pooling {pooling!r} has no transformers "
                          "equivalent")
    if head.kind == FEATURES and pooling not in _ST_POOLING:
        raise ConfigError(f"--format hf: sentence-transformers has no {pooling!r} pooling (it "
                          "pools the token vectors: mean or cls); train with --pooling mean "
                          "or cls to export this run to it")
    return head


#: The head kind of sentence embeddings: a sentence-transformers folder (BertModel, pooling,
#: the square dense layer, normalization).
FEATURES = "feature-extraction"
_ST_POOLING = {"mean": "pooling_mode_mean_tokens", "cls": "pooling_mode_cls_token"}
_ST_MODULES = "sentence_transformers.models"


def remote_code(run: TrainedRun) -> bool:
    """Whether the folder needs the shipped model code (``trust_remote_code=True``)."""
    return (hub_head(run).kind == "sequence-classification"
            and run.model.pooling in REMOTE_POOLINGS)


def write_hub_folder(run: TrainedRun, folder: Path) -> dict[str, Any]:
    """Write the Hugging Face folder of ``run`` into ``folder``; returns notes for the report
    (the class, the call that loads it, whether it needs ``trust_remote_code``)."""
    from tfsft.io_utils import public_mode

    notes = _write_hub_folder(run, folder)
    for path in folder.rglob("*"):  # safetensors writes its files for the owner only
        public_mode(path, folder=path.is_dir())
    return notes


def _write_hub_folder(run: TrainedRun, folder: Path) -> dict[str, Any]:
    from safetensors.numpy import save_file

    head = hub_head(run)
    folder.mkdir(parents=True, exist_ok=True)
    weights = {w.path: np.asarray(w.numpy(), np.float32) for w in run.model.weights}
    tensors = bert_tensors(weights, run.model.backbone.num_layers)
    if head.kind == FEATURES:
        return _write_sentence_transformers(run, folder, weights, tensors)
    kernel, bias = weights["logits/kernel"], weights["logits/bias"]
    if head.scale is not None:  # logits in the targets' units: raw * scale + shift
        scale, shift = np.asarray(head.scale, np.float32), np.asarray(head.shift, np.float32)
        kernel, bias = kernel * scale, bias * scale + shift
    name = "qa_outputs" if head.kind == "question-answering" else "classifier"
    tensors[f"{name}.weight"] = np.ascontiguousarray(kernel.T)
    tensors[f"{name}.bias"] = bias
    remote = remote_code(run)
    if remote or head.kind != "sequence-classification":  # no pooler in these classes
        tensors = {k: v for k, v in tensors.items() if not k.startswith("bert.pooler.")}
    save_file(tensors, str(folder / WEIGHTS), metadata={"format": "pt"})
    config = bert_config(run, head)
    architecture, auto_class = _CLASSES[head.kind]
    if remote:
        from exporters import hub_code

        config["architectures"] = [_REMOTE[auto_class].split(".")[1]]
        config["auto_map"] = dict(_REMOTE)
        config["sequence_pooling"] = run.model.pooling
        for file in hub_code.FILES:
            shutil.copyfile(Path(hub_code.__file__).parent / file, folder / file)
    else:
        config["architectures"] = [architecture]
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    _write_tokenizer(run, folder)
    return {"class": config["architectures"][0], "trust_remote_code": remote,
            "load": f"{auto_class}.from_pretrained(folder"
                    + (", trust_remote_code=True)" if remote else ")")}


def _write_sentence_transformers(run: TrainedRun, folder: Path, weights: dict[str, np.ndarray],
                                 tensors: dict[str, np.ndarray]) -> dict[str, Any]:
    """A sentence-transformers folder: the BertModel at its root, then ``1_Pooling``,
    ``2_Dense`` (the run's square projection) and, for unit-length vectors, ``3_Normalize``."""
    from safetensors.numpy import save_file

    hidden = int(run.model.backbone.hidden_dim)
    model = {k.removeprefix("bert."): v for k, v in tensors.items()}  # BertModel's names
    save_file(model, str(folder / WEIGHTS), metadata={"format": "pt"})
    config = bert_config(run, HubHead(FEATURES))
    config["architectures"] = ["BertModel"]
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    _write_tokenizer(run, folder)
    pooling = {"word_embedding_dimension": hidden,
               **{mode: mode == _ST_POOLING[run.model.pooling] for mode in (
                   "pooling_mode_cls_token", "pooling_mode_mean_tokens",
                   "pooling_mode_max_tokens", "pooling_mode_mean_sqrt_len_tokens")}}
    kernel, bias = weights["logits/kernel"], weights["logits/bias"]
    dense = {"in_features": int(kernel.shape[0]), "out_features": int(kernel.shape[1]),
             "bias": True, "activation_function": "torch.nn.modules.linear.Identity"}
    modules = [("", "Transformer"), ("1_Pooling", "Pooling"), ("2_Dense", "Dense")]
    if hub_head(run).normalize:
        modules.append(("3_Normalize", "Normalize"))
    for path, _ in modules[1:]:
        (folder / path).mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(pooling, indent=2) + "\n")
    (folder / "2_Dense" / "config.json").write_text(json.dumps(dense, indent=2) + "\n")
    save_file({"linear.weight": np.ascontiguousarray(kernel.T), "linear.bias": bias},
              str(folder / "2_Dense" / WEIGHTS), metadata={"format": "pt"})
    (folder / "modules.json").write_text(json.dumps(
        [{"idx": i, "name": str(i), "path": path, "type": f"{_ST_MODULES}.{name}"}
         for i, (path, name) in enumerate(modules)], indent=2) + "\n")
    (folder / "sentence_bert_config.json").write_text(json.dumps(
        {"max_seq_length": run.max_length, "do_lower_case": False}, indent=2) + "\n")
    return {"class": "SentenceTransformer", "load": "SentenceTransformer(folder)",
            "trust_remote_code": False}


def bert_tensors(weights: dict[str, np.ndarray], layers: int) -> dict[str, np.ndarray]:
    """keras-hub ``BertBackbone`` weights (by variable path) under ``transformers``' PyTorch
    names: dense kernels transposed to ``[out, in]``, attention heads flattened."""
    def linear(prefix: str, source: str) -> dict[str, np.ndarray]:
        kernel, bias = weights[f"{source}/kernel"], weights[f"{source}/bias"]
        if kernel.ndim == 3 and source.endswith("attention_output"):  # [heads, size, hidden]
            kernel = kernel.reshape(-1, kernel.shape[-1])
        elif kernel.ndim == 3:  # query/key/value: [hidden, heads, size]
            kernel = kernel.reshape(kernel.shape[0], -1)
        return {f"{prefix}.weight": np.ascontiguousarray(kernel.T),
                f"{prefix}.bias": bias.reshape(-1)}

    def norm(prefix: str, source: str) -> dict[str, np.ndarray]:
        return {f"{prefix}.weight": weights[f"{source}/gamma"],
                f"{prefix}.bias": weights[f"{source}/beta"]}

    tensors = {
        "bert.embeddings.word_embeddings.weight": weights["token_embedding/embeddings"],
        "bert.embeddings.position_embeddings.weight": weights["position_embedding/embeddings"],
        "bert.embeddings.token_type_embeddings.weight": weights["segment_embedding/embeddings"],
        **norm("bert.embeddings.LayerNorm", "embeddings_layer_norm"),
        **linear("bert.pooler.dense", "pooled_dense"),
    }
    for i in range(layers):
        source, target = f"transformer_layer_{i}", f"bert.encoder.layer.{i}"
        attention = f"{source}/self_attention_layer"
        for part in ("query", "key", "value"):
            tensors.update(linear(f"{target}.attention.self.{part}", f"{attention}/{part}"))
        tensors.update(linear(f"{target}.attention.output.dense",
                              f"{attention}/attention_output"))
        tensors.update(norm(f"{target}.attention.output.LayerNorm",
                            f"{source}/self_attention_layer_norm"))
        tensors.update(linear(f"{target}.intermediate.dense",
                              f"{source}/feedforward_intermediate_dense"))
        tensors.update(linear(f"{target}.output.dense", f"{source}/feedforward_output_dense"))
        tensors.update(norm(f"{target}.output.LayerNorm", f"{source}/feedforward_layer_norm"))
    return {k: np.ascontiguousarray(v, np.float32) for k, v in tensors.items()}


def bert_config(run: TrainedRun, head: HubHead) -> dict[str, Any]:
    """``config.json`` of the folder: the backbone's settings in ``BertConfig`` terms."""
    backbone = run.model.backbone
    config: dict[str, Any] = {
        "model_type": "bert",
        "vocab_size": int(backbone.vocabulary_size),
        "hidden_size": int(backbone.hidden_dim),
        "num_hidden_layers": int(backbone.num_layers),
        "num_attention_heads": int(backbone.num_heads),
        "intermediate_size": int(backbone.intermediate_dim),
        "max_position_embeddings": int(backbone.max_sequence_length),
        "type_vocab_size": int(backbone.num_segments),
        # keras-hub's BERT: exact GELU where the checkpoint said so, else the tanh form
        "hidden_act": "gelu" if getattr(run.model, "exact_gelu", False) else "gelu_new",
        "layer_norm_eps": 1e-12,
        "hidden_dropout_prob": float(backbone.dropout),
        "attention_probs_dropout_prob": float(backbone.dropout),
        "classifier_dropout": float(getattr(run.model, "dropout", backbone.dropout)),
        "initializer_range": 0.02,
        "pad_token_id": 0,
        "position_embedding_type": "absolute",
    }
    if head.kind == "question-answering":
        config["num_labels"] = 2
    else:
        config["id2label"] = {str(i): label for i, label in enumerate(head.labels)}
        config["label2id"] = {label: i for i, label in enumerate(head.labels)}
    if head.problem_type:
        config["problem_type"] = head.problem_type
    return config


def _write_tokenizer(run: TrainedRun, folder: Path) -> None:
    tokenizer = run.tokenizer
    (folder / "vocab.txt").write_text("\n".join(tokenizer.vocabulary) + "\n", encoding="utf-8")
    special = {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]",
               "cls_token": "[CLS]", "mask_token": "[MASK]"}
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n",
                                                    encoding="utf-8")
    config = {"tokenizer_class": "BertTokenizer", "do_lower_case": tokenizer.lowercase,
              "strip_accents": None, "tokenize_chinese_chars": True,
              "model_max_length": run.max_length, "clean_up_tokenization_spaces": False,
              **special, **tokenizer.normalization_config()}
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n",
                                                  encoding="utf-8")


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """transformers' loading messages (weights used, TF classes deprecated) left out."""
    import transformers

    previous = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        transformers.logging.set_verbosity(previous)


def torch_available() -> bool:
    return importlib.util.find_spec("torch") is not None


def tf_runner(folder: Path, run: TrainedRun) -> Callable[[dict], dict[str, np.ndarray]]:
    """A verify runner: the folder loaded by ``transformers``' TensorFlow Auto class, its logits
    through the task's export outputs (a folded regression scale undone first)."""
    try:
        import transformers
    except ImportError as exc:
        raise ConfigError("--format hf verifies the folder with transformers, which is not "
                          "installed: pip install 'tfsft[peers]'") from exc
    from safetensors.numpy import load_file
    from transformers.modeling_tf_pytorch_utils import load_pytorch_state_dict_in_tf2_model

    head = hub_head(run)
    remote = remote_code(run)
    auto_name = "AutoModel" if head.kind == FEATURES else _CLASSES[head.kind][1]
    auto_class = getattr(transformers, "TF" + auto_name)
    with _quiet_transformers():
        config = transformers.AutoConfig.from_pretrained(str(folder), trust_remote_code=remote)
        model = auto_class.from_config(config, trust_remote_code=remote)
        # What from_pretrained does with a PyTorch-layout safetensors file, given the tensors as
        # a dict: transformers 4.57 iterates the open file, which safetensors 0.8 does not allow.
        _, info = load_pytorch_state_dict_in_tf2_model(model, load_file(str(folder / WEIGHTS)),
                                                       output_loading_info=True)
    unused = info["unexpected_keys"] + info["missing_keys"] + info["mismatched_keys"]
    if unused:
        raise ConfigError(f"{folder}: transformers' {type(model).__name__} does not take the "
                          f"weights {unused[:5]}; this is a bug in the export")
    if head.kind == FEATURES:
        pipeline = _sentence_modules(folder)
        return _runner(lambda batch: pipeline(_tf_hidden(model, batch), batch["attention_mask"]),
                       run, head)
    return _runner(lambda batch: _tf_logits(model, batch, head.kind), run, head)


_ID_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def _ids(batch: dict, dtype: Any) -> dict[str, np.ndarray]:
    """The token-id inputs of a verification batch, as ``transformers`` names them."""
    return {k: np.asarray(batch[k], dtype) for k in _ID_INPUTS}


def _tf_hidden(model: Any, batch: dict) -> np.ndarray:
    return model(_ids(batch, np.int32), training=False).last_hidden_state.numpy()


def _sentence_modules(folder: Path) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """The modules after the transformer as the folder's files describe them (pooling and the
    dense layer; sentence-transformers' Normalize is the served outputs' own), in NumPy, so
    that the check reads what sentence-transformers will read."""
    from safetensors.numpy import load_file

    modules = {m["type"].rsplit(".", 1)[1]: m["path"]
               for m in json.loads((folder / "modules.json").read_text())}
    pooling = json.loads((folder / modules["Pooling"] / "config.json").read_text())
    dense = load_file(str(folder / modules["Dense"] / WEIGHTS))

    def vectors(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
        if pooling["pooling_mode_cls_token"]:
            pooled = hidden[:, 0]
        else:
            weights = np.asarray(mask, np.float32)[..., None]
            pooled = (hidden * weights).sum(1) / np.maximum(weights.sum(1), 1e-9)
        return pooled @ dense["linear.weight"].T + dense["linear.bias"]

    return vectors


def torch_runner(folder: Path, run: TrainedRun) -> Callable[[dict], dict[str, np.ndarray]]:
    """As :func:`tf_runner`, through the PyTorch Auto class."""
    import torch
    import transformers

    head = hub_head(run)
    auto_name = "AutoModel" if head.kind == FEATURES else _CLASSES[head.kind][1]
    with _quiet_transformers():
        model = getattr(transformers, auto_name).from_pretrained(
            str(folder), trust_remote_code=remote_code(run)).eval()
    pipeline = _sentence_modules(folder) if head.kind == FEATURES else None

    def logits(batch: dict) -> np.ndarray:
        with torch.no_grad():
            out = model(**{k: torch.as_tensor(v) for k, v in _ids(batch, np.int64).items()})
        if pipeline is not None:
            return pipeline(out.last_hidden_state.numpy(), batch["attention_mask"])
        if head.kind == "question-answering":
            return np.stack([out.start_logits.numpy(), out.end_logits.numpy()], -1)
        return out.logits.numpy()

    return _runner(logits, run, head)


def text_runner(folder: Path, run: TrainedRun,
                model_runner: Callable[[dict], dict[str, np.ndarray]]
                ) -> Callable[[dict], dict[str, np.ndarray]] | None:
    """A verify runner from raw texts: the run's text normalization (if any; a caller applies
    it too), the folder's own tokenizer (``AutoTokenizer``), then ``model_runner`` on its token
    ids; ``None`` for tasks whose inputs are not plain texts or text pairs (their tokenization
    is the task's own, e.g. words or question windows)."""
    if (hub_head(run).kind not in ("sequence-classification", FEATURES)
            or not set(run.task.serving.text_inputs()) <= {"text", "text_pair"}):
        return None
    from transformers import AutoTokenizer

    from tfsft.text_normalization import normalize_texts

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    steps = getattr(run.tokenizer, "normalization", ())

    def run_batch(batch: dict) -> dict[str, np.ndarray]:
        texts = batch["text_inputs"]
        pairs = texts.get("text_pair")
        encoded = tokenizer(normalize_texts([str(t) for t in texts["text"]], steps),
                            None if pairs is None
                            else normalize_texts([str(t) for t in pairs], steps),
                            truncation=True, max_length=run.max_length, padding=True,
                            return_tensors="np")
        return model_runner({"input_ids": encoded["input_ids"],
                             "attention_mask": encoded["attention_mask"],
                             "token_type_ids": encoded["token_type_ids"]})

    return run_batch


def _tf_logits(model: Any, batch: dict, kind: str) -> np.ndarray:
    out = model(_ids(batch, np.int32), training=False)
    if kind == "question-answering":
        return np.stack([out.start_logits.numpy(), out.end_logits.numpy()], -1)
    return out.logits.numpy()


def _runner(logits_of: Callable[[dict], np.ndarray], run: TrainedRun,
            head: HubHead) -> Callable[[dict], dict[str, np.ndarray]]:
    import tensorflow as tf

    def run_batch(batch: dict) -> dict[str, np.ndarray]:
        raw = np.asarray(logits_of(batch), np.float32)
        if head.scale is not None:
            raw = (raw - np.asarray(head.shift, np.float32)) / np.asarray(head.scale, np.float32)
        outputs = run.task.serving.export_outputs(tf.constant(raw, tf.float32))
        return {k: v.numpy() for k, v in outputs.items()}

    return run_batch
