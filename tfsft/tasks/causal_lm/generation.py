"""Text generation with a key/value cache: greedy or sampled (temperature, top-p), streamed.

:class:`Generator` runs keras-hub's cached decoder step (``call_with_cache``) as one traced
TensorFlow function per batch shape and picks tokens on the host: greedy is ``argmax``;
sampling draws from the temperature-scaled, top-p-truncated distribution with a seeded NumPy
generator, so the same ``seed`` gives the same text. Prompts of a batch are right-padded; each
row starts generating after its own prompt (rows with longer prompts keep their prompt tokens
until the shorter ones catch up), so a prompt's completion does not depend on its batch.

>>> generator = Generator(backbone, tokenizer)                             # doctest: +SKIP
>>> generator.complete([tokenizer.prompt_ids([{"role": "user", "content": "Hi"}])],
...                    max_new_tokens=8)[0]                                # doctest: +SKIP
[19556, 17, ...]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf


@dataclass(frozen=True)
class Sampling:
    """How the next token is chosen: ``temperature`` 0 is greedy; otherwise sample from the
    smallest set of tokens whose probabilities sum to ``top_p``."""

    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None

    def __post_init__(self):
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")


def choose_tokens(logits: np.ndarray, sampling: Sampling, rng: np.random.Generator) -> np.ndarray:
    """The next token of each row of ``logits`` (``[batch, vocabulary]``).

    >>> logits = np.array([[0.0, 3.0, 1.0], [2.0, 0.0, 0.0]])
    >>> choose_tokens(logits, Sampling(), np.random.default_rng(0)).tolist()
    [1, 0]
    >>> choose_tokens(logits, Sampling(temperature=1.0, top_p=0.5), np.random.default_rng(0)).tolist()
    [1, 0]
    """
    if sampling.temperature == 0:
        return logits.argmax(axis=-1)
    scaled = logits.astype(np.float64) / sampling.temperature
    scaled -= scaled.max(axis=-1, keepdims=True)
    probabilities = np.exp(scaled)
    probabilities /= probabilities.sum(axis=-1, keepdims=True)
    chosen = np.empty(len(logits), np.int64)
    for row, p in enumerate(probabilities):
        order = np.argsort(-p, kind="stable")
        cumulative = np.cumsum(p[order])
        keep = order[:int(np.searchsorted(cumulative, sampling.top_p) + 1)]
        chosen[row] = rng.choice(keep, p=p[keep] / p[keep].sum())
    return chosen


class Generator:
    """Cached autoregressive decoding with a decoder backbone and a :class:`ChatTokenizer`.

    ``max_length`` bounds prompt plus completion (the cache size).
    """

    def __init__(self, backbone: keras.Model, tokenizer, max_length: int = 2048):
        import keras_hub

        self.backbone = backbone
        self.tokenizer = tokenizer
        self.max_length = max_length
        causal_lm_class = _causal_lm_class(backbone)
        self.causal_lm = causal_lm_class(backbone=backbone, preprocessor=None)
        self._keras_hub = keras_hub
        head_dim = backbone.hidden_dim // backbone.num_query_heads
        kv_heads = getattr(backbone, "num_key_value_heads", backbone.num_query_heads)
        cache = tf.TensorSpec([None, backbone.num_layers, 2, None, kv_heads, head_dim],
                              self.causal_lm.compute_dtype)
        ids = tf.TensorSpec([None, None], tf.int32)
        # one trace each, whatever the batch size and lengths
        self._step = tf.function(self._step_eager, input_signature=[
            tf.TensorSpec([None, 1], tf.int32), cache, tf.TensorSpec([], tf.int32)])
        self._prefill = tf.function(self._prefill_eager, input_signature=[ids])

    def _prefill_eager(self, token_ids):
        backbone = self.backbone
        head_dim = backbone.hidden_dim // backbone.num_query_heads
        kv_heads = getattr(backbone, "num_key_value_heads", backbone.num_query_heads)
        shape = [tf.shape(token_ids)[0], backbone.num_layers, 2, tf.shape(token_ids)[1],
                 kv_heads, head_dim]
        cache = tf.zeros(shape, dtype=self.causal_lm.compute_dtype)
        logits, _, cache = self.causal_lm.call_with_cache(token_ids, cache, 0)
        return tf.cast(logits, tf.float32), cache

    def _step_eager(self, token_ids, cache, index):
        logits, _, cache = self.causal_lm.call_with_cache(token_ids, cache, index)
        return tf.cast(logits[:, -1, :], tf.float32), cache

    def complete(self, prompts: Sequence[Sequence[int]], max_new_tokens: int = 64,
                 sampling: Sampling = Sampling(),
                 on_token: Callable[[int, int], None] | None = None) -> list[list[int]]:
        """The completion token ids of each prompt (stopping after the end-of-turn token, which
        is not included). ``on_token(row, token_id)`` is called as each token is chosen."""
        if not prompts:
            return []
        lengths = np.array([len(p) for p in prompts])
        if lengths.min() == 0:
            raise ValueError("a prompt has no tokens")
        total = int(min(lengths.max() + max_new_tokens, self.max_length))
        if lengths.max() >= total:
            raise ValueError(f"a prompt of {lengths.max()} tokens leaves no room to generate "
                             f"within max_length {self.max_length}")
        ids = np.full((len(prompts), total), self.tokenizer.pad_id, np.int32)
        for row, prompt in enumerate(prompts):
            ids[row, :len(prompt)] = prompt
        rng = np.random.default_rng(sampling.seed)
        start = int(lengths.min())
        logits, cache = self._prefill(tf.constant(ids[:, :start]))
        next_logits = logits[:, -1, :].numpy()
        # The prefill covers the shortest prompt; the cache is grown to the whole length.
        cache = tf.pad(cache, [[0, 0], [0, 0], [0, 0], [0, total - start], [0, 0], [0, 0]])
        completions: list[list[int]] = [[] for _ in prompts]
        done = np.zeros(len(prompts), bool)
        stop = self.tokenizer.eos_id
        for index in range(start, total):
            chosen = choose_tokens(next_logits, sampling, rng)
            for row in range(len(prompts)):
                if index < lengths[row] or done[row]:
                    continue  # still inside this row's prompt, or finished
                token = int(chosen[row])
                ids[row, index] = token
                if token == stop:
                    done[row] = True
                    continue
                completions[row].append(token)
                if on_token is not None:
                    on_token(row, token)
                if len(completions[row]) >= max_new_tokens:
                    done[row] = True
            if done.all() or index + 1 == total:
                break
            step_logits, cache = self._step(tf.constant(ids[:, index:index + 1]), cache,
                                            tf.constant(index, tf.int32))
            next_logits = step_logits.numpy()
        return completions

    def generate_texts(self, prompts: Sequence[Sequence[int]], max_new_tokens: int = 64,
                       sampling: Sampling = Sampling(), batch_size: int = 16,
                       progress: bool = False) -> list[str]:
        """Decoded completions, generated in batches of prompts of similar length (with a
        progress bar if ``progress``)."""
        order = np.argsort([len(p) for p in prompts], kind="stable")
        texts: list[str] = [""] * len(prompts)
        bar = keras.utils.Progbar(len(prompts), unit_name="prompt") if progress else None
        for begin in range(0, len(order), batch_size):
            rows = order[begin:begin + batch_size]
            completions = self.complete([prompts[i] for i in rows], max_new_tokens, sampling)
            for row, completion in zip(rows, completions, strict=True):
                texts[row] = self.tokenizer.decode(completion, skip_special_tokens=True)
            if bar is not None:
                bar.add(len(rows))
        return texts


def _causal_lm_class(backbone: keras.Model):
    """The keras-hub CausalLM class of ``backbone`` (``Llama3Backbone`` -> ``Llama3CausalLM``)."""
    import keras_hub

    name = type(backbone).__name__.removesuffix("Backbone") + "CausalLM"
    cls = getattr(keras_hub.models, name, None)
    if cls is None:
        raise ValueError(f"keras-hub has no {name} for generating with {type(backbone).__name__}")
    return cls


def generator_for_run(run: Any, max_new_tokens: int = 256) -> Generator:
    """A :class:`Generator` for a trained causal-lm run (a :class:`tfsft.runs.TrainedRun`)."""
    from tfsft.errors import ConfigError

    if run.task.name != "causal-lm":
        raise ConfigError(f"{run.run_dir} is a {run.task.name!r} run; tfsft generate needs "
                          "a causal-lm run (use tfsft predict)")
    return Generator(run.model.backbone, run.tokenizer,
                     max_length=run.max_length + max_new_tokens)


def generator_for_checkpoint(name: str, max_new_tokens: int = 256,
                             max_length: int = 2048) -> Generator:
    """A :class:`Generator` for a checkpoint as it was pretrained: a known name, a ``.gguf``
    file or a Hugging Face folder."""
    from tfsft.models.checkpoints import resolve_checkpoint
    from tfsft.tasks.causal_lm.chat_tokenizer import ChatTokenizer
    from tfsft.tasks.causal_lm.model import load_causal_backbone

    folder = resolve_checkpoint(name)
    tokenizer = ChatTokenizer.from_pretrained(folder, max_length=max_length)
    return Generator(load_causal_backbone(folder, dtype="float32"), tokenizer,
                     max_length=max_length + max_new_tokens)
