"""``causal-lm``: instruction tuning of a decoder language model (prompt -> response).

Data (:class:`ChatData`): prompt/response columns, chat ``messages`` or Alpaca
``instruction``/``input``/``output`` (:mod:`tfsft.tasks.causal_lm.examples`). Each conversation
is rendered with the checkpoint's own chat template
(:class:`tfsft.tasks.causal_lm.chat_tokenizer.ChatTokenizer`); the loss covers the response
tokens and the end-of-turn token after them, never the prompt. Conversations longer than
``--max-length`` tokens are cut at the end (counted in the data check and ``run.json``); a
training example left without response tokens is skipped and counted.

Model (:class:`CausalLMModeling`): a keras-hub decoder backbone (SmolLM2 / Llama, Gemma, GPT-2,
...) with logits computed only at the trained positions
(:class:`tfsft.tasks.causal_lm.model.CausalLMModel`); LoRA adapters on the attention
projections with ``--lora-rank`` (0: full fine-tuning). The saved model has the adapters merged.

Evaluation (:class:`CausalLMEvaluation`): loss and perplexity over the response tokens; for
data with responses, the exact match and ROUGE-L of greedy generations (``--eval-generations``
examples), written with their prompts to ``generations.jsonl``.

Serving (:class:`~tfsft.tasks.causal_lm.serving.CausalLMServing`, a generative serving role): a
SavedModel whose signatures run the decode loop of ``tfsft generate``, and the frozen forward
graph for ONNX and TFLite (:mod:`exporters.generative` writes and checks them).

>>> task = create_task("causal-lm", {"lora_rank": 4})
>>> task.options.lora_rank, task.options.target_layers()
(4, ('query', 'value'))
>>> task.data.default_max_length, task.evaluation.outputs_from_validation
(512, False)
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from tfsft.errors import ConfigError
from tfsft.tasks.base import Task, TaskOptions, create_task, option, register_task
from tfsft.tasks.causal_lm.examples import LAYOUTS, ChatColumns, ChatExamples, read_chat_data
from tfsft.tasks.causal_lm.serving import CausalLMServing
from tfsft.tasks.roles import DataRole, EvaluationRole, ModelingRole

if TYPE_CHECKING:  # pragma: no cover
    import keras

    from tfsft.tasks.causal_lm.chat_tokenizer import ChatTokenizer
    from tfsft.tasks.causal_lm.encoding import ChatEncodedData
    from tfsft.tasks.commands import TaskCommand

__all__ = ["CausalLMEvaluation", "CausalLMModeling", "CausalLMOptions", "CausalLMServing",
           "CausalLMTask", "ChatData", "create_task"]

logger = logging.getLogger(__name__)
GENERATIONS_FILE = "generations.jsonl"
#: Tokens generated beyond the longest reference answer when evaluating.
EXTRA_EVAL_TOKENS = 16
REPORT_SAMPLES = 5


@dataclass
class CausalLMOptions(TaskOptions):
    layout: str = option("auto", help="data layout: messages, prompt-response, alpaca, or auto "
                         "(the first whose columns are present)", choices=LAYOUTS, read=True)
    messages_column: str = option("messages", help="column holding the chat messages",
                                  read=True)
    prompt_column: str = option("prompt", help="column holding the prompt", read=True)
    response_column: str = option("response", help="column holding the response", read=True)
    instruction_column: str = option("instruction", help="Alpaca: the instruction column",
                                     read=True)
    input_column: str = option("input", help="Alpaca: the optional input column", read=True)
    output_column: str = option("output", help="Alpaca: the response column", read=True)
    system_prompt: str | None = option(None, help="system message put before conversations "
                                       "that have none (default: the chat template's own)")
    lora_rank: int = option(8, help="rank of the LoRA adapters (0: full fine-tuning)")
    lora_alpha: float = option(16.0, help="LoRA scale numerator (updates are scaled by "
                               "alpha / rank)")
    lora_targets: str = option("query,value", help="comma-separated layers LoRA adapts: "
                               "query, key, value, attention_output, feedforward_gate_dense, "
                               "feedforward_intermediate_dense, feedforward_output_dense")
    eval_generations: int = option(200, help="validation examples answered by greedy "
                                   "generation for exact match and ROUGE-L (0: none)")
    max_new_tokens: int = option(256, help="most tokens generated per prompt by predict")

    def validate(self) -> None:
        from tfsft.tasks.causal_lm.model import LORA_TARGETS

        if self.lora_rank < 0:
            raise ConfigError("lora_rank must be >= 0 (0: full fine-tuning)")
        if self.lora_alpha <= 0:
            raise ConfigError("lora_alpha must be > 0")
        unknown = [t for t in self.target_layers() if t not in LORA_TARGETS]
        if unknown or not self.target_layers():
            raise ConfigError(f"lora_targets: unknown layer(s) {unknown}; choose from "
                              f"{', '.join(LORA_TARGETS)}")
        if self.eval_generations < 0:
            raise ConfigError("eval_generations must be >= 0")
        if self.max_new_tokens < 1:
            raise ConfigError("max_new_tokens must be >= 1")

    def target_layers(self) -> tuple[str, ...]:
        return tuple(t.strip() for t in self.lora_targets.split(",") if t.strip())

    def columns(self, role: str = "train") -> ChatColumns:
        return ChatColumns(self.layout, self.messages_column, self.prompt_column,
                           self.response_column, self.instruction_column, self.input_column,
                           self.output_column, self.system_prompt)


@dataclass
class CausalLMOutputs:
    """Per-example response log-loss (summed over its tokens), token counts and completions
    (``None`` where none was generated), and how many prompts were too long to answer."""

    loss_sums: np.ndarray
    token_counts: np.ndarray
    completions: list[str | None]
    prompts: list[str]
    prompts_too_long: int = 0

    def __len__(self) -> int:
        return len(self.prompts)


class ChatData(DataRole):
    """Conversations (:class:`ChatExamples`) read with the checkpoint's chat tokenizer and
    encoded with the response tokens as targets."""

    task: CausalLMTask
    default_max_length: ClassVar[int] = 512
    max_length_limit: ClassVar[int] = 8192
    long_example_treatment: ClassVar[str] = ("cut at the end (examples left without response "
                                             "tokens skipped)")

    def __init__(self, task: CausalLMTask):
        super().__init__(task)
        self.last_encoding: dict[str, int] = {}

    def load_tokenizer(self, folder: Path, max_length: int) -> ChatTokenizer:
        from tfsft.tasks.causal_lm.chat_tokenizer import ChatTokenizer
        from tfsft.tasks.causal_lm.model import check_causal_checkpoint

        if (Path(folder) / "config.json").is_file():  # a checkpoint (a run's tokenizer has none)
            check_causal_checkpoint(Path(folder))  # an encoder's tokenizer has no end token
        return ChatTokenizer.from_pretrained(folder, max_length=max_length)

    def read(self, source: Any, role: str = "train", labelled: bool = True,
             max_rows: int | None = None, file_format: str | None = None,
             encoding: str = "utf-8", delimiter: str | None = None,
             quoting: bool = True) -> ChatExamples:
        return read_chat_data(source, self.task.options.columns(role), labelled, max_rows,
                              file_format, encoding, delimiter, quoting)

    def target_summary(self, examples: ChatExamples) -> dict[str, Any] | None:
        if examples.responses is None:
            return None
        lengths = [len(r) for r in examples.responses]
        return {"kind": "responses", "examples": len(examples),
                "distinct_responses": len(set(examples.responses)),
                "response_characters_median": int(np.median(lengths))}

    def token_length_report(self, tokenizer: ChatTokenizer, examples: ChatExamples,
                            max_length: int) -> tuple[dict[str, Any], np.ndarray]:
        """Tokens per conversation (prompt in the chat template + response), before cutting."""
        lengths = np.array([len(self._token_ids(tokenizer, examples, i)[0])
                            for i in range(len(examples))], np.int64)
        over = int((lengths > max_length).sum())
        report = {
            "max_length": max_length, "median": int(np.median(lengths)),
            "p95": int(np.percentile(lengths, 95)), "max": int(lengths.max()),
            "over_max_length": over, "over_max_length_share": round(over / len(lengths), 4),
            "unknown_word_share": 0.0,  # byte-level BPE has no unknown token
        }
        return report, lengths

    def split(self, examples: ChatExamples, fraction: float,
              seed: int) -> tuple[ChatExamples, ChatExamples]:
        order = np.random.default_rng(seed).permutation(len(examples))
        count = max(1, int(round(fraction * len(examples))))
        if count >= len(examples):
            raise ConfigError(f"{examples.source}: {len(examples)} examples are too few to "
                              "split off validation data; pass a --validation file")
        return examples.subset(np.sort(order[count:])), examples.subset(np.sort(order[:count]))

    def example_records(self, examples: ChatExamples) -> list[dict[str, Any]]:
        return [{"messages": examples.conversation(i)} for i in range(len(examples))]

    def record_options(self) -> dict[str, Any]:
        return {"layout": "messages", "messages_column": "messages", "system_prompt": None}

    def read_records(self, path: Path) -> ChatExamples:
        task = self.task.with_options(**self.record_options())
        return task.data.read(path, role="eval", labelled=False, file_format="jsonl")

    def texts(self, examples: ChatExamples) -> dict[str, list[str]]:
        return {"text": examples.texts}

    def examples_from_texts(self, texts: dict[str, Sequence[str]]) -> ChatExamples:
        from tfsft.tasks.causal_lm.examples import examples_from_prompts

        prompts = texts.get("prompt", texts.get("text"))
        if prompts is None or set(texts) - {"prompt", "text"}:
            raise ConfigError("a causal language model takes prompts (text) only")
        return examples_from_prompts(list(prompts), self.task.options.system_prompt)

    @staticmethod
    def _token_ids(tokenizer: ChatTokenizer, examples: ChatExamples,
                   index: int) -> tuple[list[int], np.ndarray]:
        if examples.responses is None:
            ids = tokenizer.prompt_ids(examples.prompts[index])
            return ids, np.zeros(len(ids), bool)
        return tokenizer.encode_chat(examples.conversation(index))

    def encode(self, tokenizer: ChatTokenizer, examples: ChatExamples, max_length: int,
               training: bool = False) -> ChatEncodedData:
        """Token ids cut to ``max_length``; ``target_positions``: the positions whose next token
        is a response token, ``target``: that token (for training only examples that keep one)."""
        from tfsft.data.pipeline import RaggedRows
        from tfsft.tasks.causal_lm.encoding import ChatEncodedData

        ids_list, positions, labels, prompt_ids = [], [], [], []
        over = without_targets = cut = 0
        kept = []
        for i in range(len(examples)):
            ids, train_on = self._token_ids(tokenizer, examples, i)
            if len(ids) > max_length:
                over += 1
                cut += bool(train_on[max_length:].any())
                ids, train_on = ids[:max_length], train_on[:max_length]
            where = np.flatnonzero(train_on[1:]).astype(np.int32)
            if examples.responses is not None and not len(where):
                without_targets += 1
                if training:
                    continue
            kept.append(i)
            ids_list.append(np.asarray(ids, np.int32))
            positions.append(where)
            labels.append(np.asarray(ids, np.int32)[where + 1])
            prompt_ids.append(tokenizer.prompt_ids(examples.prompts[i]))
        if not kept:
            raise ConfigError(f"{examples.source}: no example keeps a response token within "
                              f"--max-length {max_length}; raise --max-length")
        self.last_encoding = {"examples": len(examples), "over_max_length": over,
                              "responses_cut": cut, "without_response_tokens": without_targets}
        if cut > without_targets:
            logger.warning("%s: %d examples lose response tokens (the last response, or part "
                           "of it) to max_length %d; raise --max-length to keep them",
                           examples.source, cut - without_targets, max_length)
        if without_targets:
            logger.warning("%s: %d examples have no response token within max_length %d%s",
                           examples.source, without_targets, max_length,
                           " and are skipped" if training else "")
        lengths = np.array([len(x) for x in ids_list], np.int32)
        counts = np.array([len(x) for x in positions], np.int32)
        token_ids = np.concatenate(ids_list)
        texts = examples.texts
        encoded = ChatEncodedData(
            token_ids=token_ids, segment_ids=np.zeros_like(token_ids), lengths=lengths,
            extra_features={"target_positions": RaggedRows(np.concatenate(positions), counts, 0)},
            prompt_ids=prompt_ids, prompt_texts=[texts[i] for i in kept])
        if examples.responses is not None:
            encoded.targets = {"target": RaggedRows(np.concatenate(labels), counts, -1)}
        return encoded

    def encoding_notes(self) -> dict[str, Any]:
        return {k: v for k, v in self.last_encoding.items() if v}


class CausalLMModeling(ModelingRole):
    """A :class:`~tfsft.tasks.causal_lm.model.CausalLMModel` (LoRA unless ``lora_rank`` is 0)
    trained on the masked token loss of the response tokens."""

    task: CausalLMTask
    model_options: ClassVar[tuple[str, ...]] = (
        "lora_rank", "lora_alpha", "lora_targets", "eval_generations", "max_new_tokens")
    metric_directions: ClassVar[dict[str, bool]] = {"loss": False, "token_accuracy": True}

    def optimization_defaults(self) -> dict[str, Any]:
        """LoRA adapters start at zero and are few: they learn at a ten times higher rate
        (5e-4, cosine decay) than full fine-tuning (5e-5, linear), which keeps the encoders'
        defaults."""
        if self.task.options.lora_rank:
            return {"learning_rate": 5e-4, "lr_schedule": "cosine"}
        return super().optimization_defaults()

    def build(self, checkpoint: Path, dropout: float, dtype: str | None) -> keras.Model:
        from tfsft.tasks.causal_lm.model import (
            CausalLMModel,
            load_causal_backbone,
            trainable_summary,
        )

        options = self.task.options
        backbone = load_causal_backbone(checkpoint, dtype=dtype)
        rank = options.lora_rank or None
        model = CausalLMModel(backbone, lora_rank=rank,
                              lora_alpha=options.lora_alpha if rank else None,
                              lora_targets=options.target_layers())
        counts = trainable_summary(model)
        logger.info("%s: %s of %s parameters trainable", "LoRA" if rank else "full fine-tuning",
                    f"{counts['trainable_parameters']:,}", f"{counts['parameters']:,}")
        return model

    def load(self, path: Path) -> keras.Model:
        import tfsft.tasks.causal_lm.model  # noqa: F401  (registers the model's classes)

        return super().load(path)

    def compile(self, model: keras.Model, optimizer: Any) -> None:
        from tfsft.models.metrics import MaskedTokenAccuracy, MaskedTokenLoss

        model.compile(optimizer=optimizer, loss=MaskedTokenLoss(),
                      metrics=[MaskedTokenAccuracy(ignore_class=-1)])


class CausalLMEvaluation(EvaluationRole):
    """Response loss and perplexity; exact match and ROUGE-L of greedy generations."""

    task: CausalLMTask
    headline_metric: ClassVar[str] = "loss"
    report_files: ClassVar[tuple[str, ...]] = ("metrics.json", GENERATIONS_FILE)
    # outputs are response losses and generated completions, not the validation logits
    outputs_from_validation: ClassVar[bool] = False

    def outputs(self, model: keras.Model, encoded: ChatEncodedData, batch_size: int = 64,
                verbose: int | str = 0) -> CausalLMOutputs:
        """Response log-loss of every example and greedy completions of the first
        ``eval_generations`` labelled examples (of every unlabelled one)."""
        task = self.task
        sums, counts = response_losses(model, encoded, batch_size=min(batch_size, 16))
        labelled = encoded.targets is not None
        generate = (min(task.options.eval_generations, len(encoded)) if labelled
                    else len(encoded))
        completions: list[str | None] = [None] * len(encoded)
        chosen = list(range(generate))
        if labelled:  # a prompt longer than the training window has no answer to compare
            chosen = [i for i in chosen if len(encoded.prompt_ids[i]) < task.max_length]
            if len(chosen) < generate:
                logger.warning("%d of the first %d validation prompts are longer than "
                               "max_length %d: no answer is generated for them",
                               generate - len(chosen), generate, task.max_length)
        if chosen:
            from tfsft.tasks.causal_lm.generation import Generator

            if labelled:
                new_tokens = int(counts[chosen].max()) + EXTRA_EVAL_TOKENS
            else:
                new_tokens = task.options.max_new_tokens
            generator = Generator(model.backbone, task.tokenizer,
                                  max_length=task.max_length + new_tokens)
            texts = generator.generate_texts([encoded.prompt_ids[i] for i in chosen], new_tokens,
                                             progress=verbose not in (0, "0"))
            for i, text in zip(chosen, texts, strict=True):
                completions[i] = text
        return CausalLMOutputs(sums, counts, completions, list(encoded.prompt_texts),
                               generate - len(chosen))

    def evaluate(self, examples: ChatExamples, outputs: CausalLMOutputs,
                 output_dir: str | Path | None = None, prefix: str = "") -> dict[str, Any]:
        from tfsft.tasks.causal_lm.metrics import exact_match_scores, rouge_l_scores

        if examples.responses is None:
            raise ConfigError("evaluation needs examples with responses")
        tokens = int(outputs.token_counts.sum())
        loss = float(outputs.loss_sums.sum() / max(tokens, 1))
        metrics: dict[str, Any] = {"loss": round(loss, 6),
                                   "perplexity": round(math.exp(min(loss, 700.0)), 4),
                                   "response_tokens": tokens, "examples": len(examples)}
        generated = [i for i, c in enumerate(outputs.completions) if c is not None]
        records = []
        if generated:
            completions = [outputs.completions[i] for i in generated]
            references = [examples.responses[i] for i in generated]
            exact = exact_match_scores(completions, references)
            rouge = rouge_l_scores(completions, references)
            metrics.update({"exact_match": round(float(exact.mean()), 4),
                            "rouge_l": round(float(rouge.mean()), 4),
                            "generated_examples": len(generated)})
            records = [{"prompt": outputs.prompts[i], "reference": examples.responses[i],
                        "completion": outputs.completions[i], "exact_match": bool(e),
                        "rouge_l": round(float(r), 4)}
                       for i, e, r in zip(generated, exact, rouge, strict=True)]
            metrics["samples"] = records[:REPORT_SAMPLES]
        if outputs.prompts_too_long:
            metrics["prompts_too_long_to_answer"] = outputs.prompts_too_long
        if output_dir is not None:
            from tfsft.io_utils import atomic_write_json, atomic_write_text

            folder = Path(output_dir)
            folder.mkdir(parents=True, exist_ok=True)
            atomic_write_json(folder / f"{prefix}metrics.json", metrics)
            atomic_write_text(folder / f"{prefix}{GENERATIONS_FILE}", "".join(
                json.dumps(r, ensure_ascii=False) + "\n" for r in records))
        return metrics

    def headline(self, metrics: dict[str, Any]) -> dict[str, Any]:
        keys = ("loss", "perplexity", "exact_match", "rouge_l", "examples")
        return {k: metrics[k] for k in keys if k in metrics}

    def predictions(self, outputs: CausalLMOutputs) -> list[dict[str, Any]]:
        return [{"prompt": p, "completion": c}
                for p, c in zip(outputs.prompts, outputs.completions, strict=True)]


@register_task
class CausalLMTask(Task):
    """Instruction tuning of a decoder language model; it learns no state from the data."""

    name = "causal-lm"
    Options = CausalLMOptions
    Data = ChatData
    Modeling = CausalLMModeling
    Evaluation = CausalLMEvaluation
    Serving = CausalLMServing

    @classmethod
    def commands(cls) -> tuple[TaskCommand, ...]:
        from tfsft.tasks.causal_lm.commands import GENERATE

        return (GENERATE,)


def response_losses(model: keras.Model, encoded: ChatEncodedData,
                    batch_size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Per-example summed cross-entropy of the response tokens and their number, in input
    order (zeros for unlabelled examples)."""
    import keras
    import tensorflow as tf

    from tfsft.data.pipeline import make_dataset, restore_order

    sums = np.zeros(len(encoded), np.float64)
    counts = np.zeros(len(encoded), np.int64)
    if encoded.targets is None:
        return sums, counts
    dataset = make_dataset(encoded, batch_size)  # sorted by length

    @tf.function(reduce_retracing=True)
    def batch_losses(features, labels):
        logits = model(features, training=False)
        keep = tf.not_equal(labels, -1)
        losses = keras.losses.sparse_categorical_crossentropy(
            tf.where(keep, labels, 0), logits, from_logits=True)
        weight = tf.cast(keep, tf.float32)
        return tf.reduce_sum(losses * weight, axis=1), tf.reduce_sum(tf.cast(keep, tf.int32), 1)

    row_sums, row_counts = [], []
    for features, labels in dataset:
        s, c = batch_losses(features, labels)
        row_sums.append(s.numpy())
        row_counts.append(c.numpy())
    restore = restore_order(encoded)
    sums[:] = np.concatenate(row_sums)[restore]
    counts[:] = np.concatenate(row_counts)[restore]
    return sums, counts
