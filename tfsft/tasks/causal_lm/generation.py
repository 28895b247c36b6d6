"""Text generation with a key/value cache: greedy or sampled (temperature, top-p), streamed.

:class:`DecodeLoop` is the one decode loop, written in TensorFlow ops: a prefill of the
shortest prompt, then one cached decoder step (keras-hub's ``call_with_cache``) per position.
Prompts of a batch are right-padded; each row starts generating after its own prompt (rows with
longer prompts keep their prompt tokens until the shorter ones catch up), so a prompt's
completion does not depend on its batch. Greedy picks the ``argmax``; sampling draws from the
temperature-scaled, top-p-truncated distribution with a stateless generator seeded by
``(seed, position)``, so the same ``seed`` gives the same text.

:class:`Generator` (``tfsft generate``, the validation generations) runs the whole loop as one
traced function, or step by step when tokens are streamed; the exported SavedModel's
``generate`` and ``sample`` signatures run the same loop
(:func:`tfsft.tasks.causal_lm.serving.generation_module`).

>>> generator = Generator(backbone, tokenizer)                             # doctest: +SKIP
>>> generator.complete([tokenizer.prompt_ids([{"role": "user", "content": "Hi"}])],
...                    max_new_tokens=8)[0]                                # doctest: +SKIP
[19556, 17, ...]
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tfsft.errors import ConfigError


@dataclass(frozen=True)
class Sampling:
    """How the next token is chosen: ``temperature`` 0 is greedy; otherwise sample from the
    smallest set of tokens whose probabilities sum to ``top_p``. Without a ``seed``, each call
    draws one."""

    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None

    def __post_init__(self):
        if not math.isfinite(self.temperature) or self.temperature < 0:
            raise ValueError(f"temperature must be a finite number >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")


def choose_tokens(next_logits: tf.Tensor, index: tf.Tensor, temperature: tf.Tensor,
                  top_p: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """The next token of each row of ``next_logits`` (``[batch, vocabulary]``): the argmax when
    ``temperature <= 0``, else a draw from the smallest set of tokens whose probabilities reach
    ``top_p``, seeded by ``(seed, index)``.

    >>> logits = tf.constant([[0.0, 3.0, 1.0], [2.0, 0.0, 0.0]])
    >>> choose_tokens(logits, 0, 0.0, 1.0, 0).numpy().tolist()
    [1, 0]
    >>> choose_tokens(logits, 0, 1.0, 0.5, 0).numpy().tolist()  # top-p keeps only the best
    [1, 0]
    """
    def greedy():
        return tf.cast(tf.argmax(next_logits, axis=-1), tf.int32)

    def sample():
        scaled = next_logits / tf.maximum(temperature, 1e-6)
        probabilities = tf.nn.softmax(scaled, axis=-1)
        order = tf.argsort(probabilities, axis=-1, direction="DESCENDING", stable=True)
        sorted_p = tf.gather(probabilities, order, batch_dims=1)
        before = tf.cumsum(sorted_p, axis=-1, exclusive=True)
        keep = before < top_p  # the smallest prefix whose mass reaches top_p
        masked = tf.where(keep, tf.math.log(sorted_p + 1e-30), -np.inf)
        drawn = tf.random.stateless_categorical(
            masked, 1, tf.stack([tf.cast(seed, tf.int32), tf.cast(index, tf.int32)]),
            dtype=tf.int32)[:, 0]
        return tf.gather(order, drawn[:, None], batch_dims=1)[:, 0]

    return tf.cond(tf.cast(temperature, tf.float32) <= 0.0, greedy, sample)


class DecodeLoop:
    """Cached autoregressive decoding of a keras-hub decoder backbone, as TensorFlow ops.

    The state is ``(index, next_logits, cache, ids, done, counts)``: the position whose token
    is chosen next, the logits there, the key/value cache of every position, the token ids
    (prompts, then the chosen tokens), which rows stopped and how many tokens each kept.
    :meth:`start` fills the cache with the shortest prompt; :meth:`step` chooses one token per
    row and runs the decoder on it; :meth:`run` loops :meth:`step` in the graph.
    """

    def __init__(self, backbone: keras.Model, eos_id: int, pad_id: int):
        self.causal_lm = _causal_lm_class(backbone)(backbone=backbone, preprocessor=None)
        self.eos, self.pad = int(eos_id), int(pad_id)
        self.layers = backbone.num_layers
        self.head_dim = backbone.hidden_dim // backbone.num_query_heads
        self.kv_heads = getattr(backbone, "num_key_value_heads", backbone.num_query_heads)

    def cache_spec(self) -> tf.TensorSpec:
        return tf.TensorSpec([None, self.layers, 2, None, self.kv_heads, self.head_dim],
                             self.causal_lm.compute_dtype)

    def start(self, prompt_ids: tf.Tensor, prompt_lengths: tf.Tensor,
              total: tf.Tensor) -> tuple:
        """The state before the first choice, for right-padded ``prompt_ids`` and room for
        ``total`` positions (prompt and completion) per row."""
        prompt_ids, lengths = tf.cast(prompt_ids, tf.int32), tf.cast(prompt_lengths, tf.int32)
        batch, width = tf.shape(prompt_ids)[0], tf.shape(prompt_ids)[1]
        ids = tf.concat([prompt_ids[:, :tf.minimum(width, total)],
                         tf.fill([batch, tf.maximum(total - width, 0)], self.pad)], axis=1)
        ids = tf.where(tf.sequence_mask(lengths, total), ids, self.pad)
        start = tf.reduce_min(lengths)
        cache = tf.zeros([batch, self.layers, 2, start, self.kv_heads, self.head_dim],
                         self.causal_lm.compute_dtype)
        logits, _, cache = self.causal_lm.call_with_cache(ids[:, :start], cache, 0)
        # the prefill covers the shortest prompt; the cache is grown to the whole length
        cache = tf.pad(cache, [[0, 0], [0, 0], [0, 0], [0, total - start], [0, 0], [0, 0]])
        return (start, tf.cast(logits[:, -1, :], tf.float32), cache, ids,
                tf.zeros([batch], tf.bool), tf.zeros([batch], tf.int32))

    def step(self, state: tuple, prompt_lengths: tf.Tensor, new_tokens: tf.Tensor,
             choose: Callable[[tf.Tensor, tf.Tensor], tf.Tensor]) -> tuple[tuple, tf.Tensor]:
        """Choose the token at ``index`` for every row past its prompt and not done, and run
        the decoder on it. Returns the next state and the tokens kept (-1 where none: inside a
        prompt, stopped, or the end-of-turn token, which is not kept)."""
        index, next_logits, cache, ids, done, counts = state
        lengths = tf.cast(prompt_lengths, tf.int32)
        chosen = choose(next_logits, index)
        active = tf.logical_and(index >= lengths, tf.logical_not(done))
        stops = tf.logical_and(active, tf.equal(chosen, self.eos))
        keep = tf.logical_and(active, tf.logical_not(stops))
        token = tf.where(active, chosen, ids[:, index])
        column = tf.one_hot(index, tf.shape(ids)[1], on_value=True, off_value=False,
                            dtype=tf.bool)
        ids = tf.where(tf.logical_and(column[None, :], active[:, None]), token[:, None], ids)
        counts += tf.cast(keep, tf.int32)
        done = tf.logical_or(done, tf.logical_or(stops, tf.logical_and(
            keep, counts >= new_tokens)))
        step_logits, _, cache = self.causal_lm.call_with_cache(token[:, None], cache, index)
        state = (index + 1, tf.cast(step_logits[:, -1, :], tf.float32), cache, ids, done, counts)
        return state, tf.where(keep, chosen, -1)

    @staticmethod
    def unfinished(state: tuple) -> tf.Tensor:
        """Whether a row still generates and there is room left."""
        index, _, _, ids, done, _ = state
        return tf.logical_and(index < tf.shape(ids)[1], tf.logical_not(tf.reduce_all(done)))

    def run(self, prompt_ids: tf.Tensor, prompt_lengths: tf.Tensor, new_tokens: tf.Tensor,
            total: tf.Tensor, choose: Callable[[tf.Tensor, tf.Tensor], tf.Tensor]
            ) -> tuple[tf.Tensor, tf.Tensor]:
        """The whole loop: each row's kept tokens (``[batch, steps]``, at the front of the row,
        padded with -1) and their count."""
        out = tf.TensorArray(tf.int32, size=0, dynamic_size=True)

        def body(state, out):
            state, kept = self.step(state, prompt_lengths, new_tokens, choose)
            return state, out.write(out.size(), kept)

        state, out = tf.while_loop(lambda state, out: self.unfinished(state), body,
                                   [self.start(prompt_ids, prompt_lengths, total), out])
        steps = tf.transpose(out.stack())  # [batch, steps]: -1 where nothing was kept
        order = tf.argsort(tf.cast(tf.equal(steps, -1), tf.int32), axis=1, stable=True)
        return tf.gather(steps, order, batch_dims=1), state[5]


class Generator:
    """Cached autoregressive decoding with a decoder backbone and a :class:`ChatTokenizer`,
    through :class:`DecodeLoop`.

    ``max_length`` bounds prompt plus completion (the cache size); ``context_length``, where
    known, is how many positions the model was pretrained for, which prompt plus completion
    may not pass.
    """

    def __init__(self, backbone: keras.Model, tokenizer, max_length: int = 2048,
                 context_length: int | None = None):
        self.backbone = backbone
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.context_length = context_length
        self.loop = DecodeLoop(backbone, tokenizer.eos_id, tokenizer.pad_id)
        ids, lengths = tf.TensorSpec([None, None], tf.int32), tf.TensorSpec([None], tf.int32)
        scalar = tf.TensorSpec([], tf.int32)
        choice = [tf.TensorSpec([], tf.float32), tf.TensorSpec([], tf.float32), scalar]
        # one trace each, whatever the batch size and lengths
        self._run = tf.function(self._run_eager,
                                input_signature=[ids, lengths, scalar, scalar, *choice])
        self._start = tf.function(self.loop.start, input_signature=[ids, lengths, scalar])
        state = (scalar, tf.TensorSpec([None, None], tf.float32), self.loop.cache_spec(), ids,
                 tf.TensorSpec([None], tf.bool), lengths)
        self._step = tf.function(self._step_eager,
                                 input_signature=[state, lengths, scalar, *choice])

    def _chooser(self, temperature, top_p, seed):
        return lambda logits, index: choose_tokens(logits, index, temperature, top_p, seed)

    def _run_eager(self, ids, lengths, new_tokens, total, temperature, top_p, seed):
        return self.loop.run(ids, lengths, new_tokens, total,
                             self._chooser(temperature, top_p, seed))

    def _step_eager(self, state, lengths, new_tokens, temperature, top_p, seed):
        return self.loop.step(state, lengths, new_tokens,
                              self._chooser(temperature, top_p, seed))

    def complete(self, prompts: Sequence[Sequence[int]], max_new_tokens: int = 64,
                 sampling: Sampling = Sampling(),
                 on_token: Callable[[int, int], None] | None = None) -> list[list[int]]:
        """The completion token ids of each prompt (stopping after the end-of-turn token, which
        is not included). ``on_token(row, token_id)`` is called as each token is chosen (the
        loop then runs one step at a time)."""
        if not prompts:
            return []
        lengths = np.array([len(p) for p in prompts], np.int32)
        if lengths.min() == 0:
            raise ValueError("a prompt has no tokens")
        total = int(min(lengths.max() + max_new_tokens, self.max_length))
        if self.context_length and total > self.context_length:
            room = self.context_length - int(lengths.max())
            raise ConfigError(
                f"{max_new_tokens} new tokens (--max-new-tokens) after a prompt of "
                f"{lengths.max()} tokens go past the {self.context_length} positions the model "
                "was trained for; " + (f"ask for {room} or fewer" if room > 0
                                       else "shorten the prompt"))
        if lengths.max() >= total:
            raise ConfigError(f"a prompt of {lengths.max()} tokens leaves no room to generate "
                              f"within max_length {self.max_length}; shorten the prompt (or "
                              "train with a larger --max-length)")
        ids = np.full((len(prompts), int(lengths.max())), self.tokenizer.pad_id, np.int32)
        for row, prompt in enumerate(prompts):
            ids[row, :len(prompt)] = prompt
        seed = (sampling.seed if sampling.seed is not None
                else int(np.random.default_rng().integers(2 ** 31)))
        choice = (tf.constant(sampling.temperature, tf.float32),
                  tf.constant(sampling.top_p, tf.float32), tf.constant(seed, tf.int32))
        new, room = tf.constant(max_new_tokens, tf.int32), tf.constant(total, tf.int32)
        if on_token is None:
            kept, counts = self._run(tf.constant(ids), tf.constant(lengths), new, room, *choice)
            return [row[:count].tolist() for row, count in
                    zip(kept.numpy(), counts.numpy(), strict=True)]
        completions: list[list[int]] = [[] for _ in prompts]
        state = self._start(tf.constant(ids), tf.constant(lengths), room)
        while bool(DecodeLoop.unfinished(state)):
            state, kept = self._step(state, tf.constant(lengths), new, *choice)
            for row, token in enumerate(kept.numpy().tolist()):
                if token >= 0:
                    completions[row].append(token)
                    on_token(row, token)
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
    backbone = run.model.backbone
    try:  # the checkpoint the run was trained from, as run.json records it
        checkpoint = json.loads((run.run_dir / "run.json").read_text()).get("checkpoint")
    except (OSError, ValueError, AttributeError):
        checkpoint = None
    return Generator(backbone, run.tokenizer, max_length=run.max_length + max_new_tokens,
                     context_length=context_length(backbone, checkpoint))


def generator_for_checkpoint(name: str, max_new_tokens: int = 256,
                             max_length: int = 2048) -> Generator:
    """A :class:`Generator` for a checkpoint as it was pretrained: a known name, a ``.gguf``
    file or a Hugging Face folder."""
    from tfsft.models.checkpoints import resolve_checkpoint
    from tfsft.tasks.causal_lm.chat_tokenizer import ChatTokenizer
    from tfsft.tasks.causal_lm.model import check_causal_checkpoint, load_causal_backbone

    folder = resolve_checkpoint(name)
    check_causal_checkpoint(folder)  # before the tokenizer: a BERT folder has none to load
    tokenizer = ChatTokenizer.from_pretrained(folder, max_length=max_length)
    backbone = load_causal_backbone(folder, dtype="float32")
    return Generator(backbone, tokenizer, max_length=max_length + max_new_tokens,
                     context_length=context_length(backbone, str(folder)))


def context_length(backbone: keras.Model, checkpoint: str | None) -> int | None:
    """The positions a decoder was pretrained for: its learned position table (GPT-2), else
    ``max_position_embeddings`` of the checkpoint's ``config.json`` where it can be found
    (None when neither is known: generation is then bounded by memory only)."""
    from tfsft.errors import TfsftError
    from tfsft.models.checkpoints import read_config, resolve_checkpoint

    learned = getattr(backbone, "max_sequence_length", None)
    if learned:
        return int(learned)
    if not checkpoint:
        return None
    try:
        config = read_config(resolve_checkpoint(checkpoint))
    except (TfsftError, OSError):  # the run was copied without its checkpoint
        return None
    value = config.get("max_position_embeddings") or config.get("config", {}).get(
        "max_sequence_length")
    return int(value) if value else None
