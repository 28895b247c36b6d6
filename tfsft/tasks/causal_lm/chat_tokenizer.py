"""The tokenizer of a causal language model: byte-level BPE plus the checkpoint's chat template.

Host-side tokenization runs on Hugging Face ``tokenizers`` (``tokenizer.json``); prompts are
rendered with the checkpoint's own Jinja chat template (``tokenizer_config.json``), in a
sandbox, the way ``transformers`` renders it. :meth:`ChatTokenizer.encode_chat` returns the
token ids of a conversation with a mask of the tokens the loss covers: each assistant message
and its end-of-turn token, nothing of the prompts.

>>> tokenizer = ChatTokenizer.from_pretrained("smollm2-135m")            # doctest: +SKIP
>>> ids, train_on = tokenizer.encode_chat([{"role": "user", "content": "Hi"},
...                                        {"role": "assistant", "content": "Hello!"}])  # doctest: +SKIP
>>> tokenizer.decode([i for i, t in zip(ids, train_on) if t])            # doctest: +SKIP
'Hello!<|im_end|>'
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tfsft.errors import CheckpointError, ConfigError

ROLES = ("system", "user", "assistant")


class ChatTokenizer:
    """Byte-level BPE tokenizer with a chat template.

    Args:
        tokenizer_json: the text of a Hugging Face ``tokenizer.json``.
        config: the ``tokenizer_config.json`` settings (``eos_token``, ``pad_token``,
            ``bos_token``, ``chat_template``, ``add_bos_token``).
        max_length: default length limit (prompt and response together).
    """

    def __init__(self, tokenizer_json: str, config: dict[str, Any], max_length: int = 512):
        from tokenizers import Tokenizer

        self.tokenizer_json = tokenizer_json
        self.config = dict(config)
        self.max_length = int(max_length)
        try:
            self._tokenizer = Tokenizer.from_str(tokenizer_json)
        except Exception as exc:  # tokenizers raises its own Exception subclass
            raise CheckpointError(f"tokenizer.json cannot be read ({exc})") from None
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()
        self.eos_token = _token_text(self.config.get("eos_token"))
        if not self.eos_token and isinstance(self.config.get("eos_token_id"), int):
            self.eos_token = self._tokenizer.id_to_token(self.config["eos_token_id"])
        if not self.eos_token or self.token_id(self.eos_token) is None:
            raise CheckpointError(f"the tokenizer has no end-of-text token (eos_token "
                                  f"{self.eos_token!r} is not in its vocabulary)")
        self.eos_id = self.token_id(self.eos_token)
        pad = _token_text(self.config.get("pad_token")) or self.eos_token
        self.pad_id = self.token_id(pad) if self.token_id(pad) is not None else self.eos_id
        bos = _token_text(self.config.get("bos_token"))
        self.bos_id = self.token_id(bos) if bos else None
        self.add_bos = bool(self.config.get("add_bos_token")) and self.bos_id is not None
        self.chat_template = self.config.get("chat_template")
        if isinstance(self.chat_template, list):  # several named templates: take "default"
            named = {t.get("name"): t.get("template") for t in self.chat_template}
            self.chat_template = named.get("default") or next(iter(named.values()), None)
        self._template = None

    # -- loading and saving -------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike, max_length: int = 512) -> ChatTokenizer:
        """Load ``tokenizer.json`` and ``tokenizer_config.json`` from a checkpoint folder or a
        known model name (``smollm2-135m``)."""
        from tfsft.models.checkpoints import resolve_checkpoint

        folder = Path(folder) if Path(folder).is_dir() else resolve_checkpoint(folder)
        path = folder / "tokenizer.json"
        if not path.exists():
            raise CheckpointError(f"{folder}: tokenizer.json is missing; a causal language "
                                  "model checkpoint needs its Hugging Face tokenizer file")
        config_path = folder / "tokenizer_config.json"
        config: dict[str, Any] = {}
        if config_path.exists():
            try:
                config = json.loads(config_path.read_text(encoding="utf-8"))
            except ValueError as exc:
                raise CheckpointError(f"{config_path}: not valid JSON ({exc}); copy the "
                                      "checkpoint folder again") from None
        if not config.get("eos_token") and (folder / "config.json").exists():
            model_config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
            config["eos_token_id"] = model_config.get("eos_token_id")
        return cls(path.read_text(encoding="utf-8"), config, max_length=max_length)

    def save(self, folder: str | os.PathLike) -> None:
        """Write ``tokenizer.json`` and ``tokenizer_config.json`` (readable by
        :meth:`from_pretrained`, ``tokenizers`` and keras-hub)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "tokenizer.json").write_text(self.tokenizer_json, encoding="utf-8")
        config = {**self.config, "model_max_length": self.max_length}
        (folder / "tokenizer_config.json").write_text(
            json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    # -- tokens -------------------------------------------------------------------------------
    @property
    def vocabulary_size(self) -> int:
        return self._tokenizer.get_vocab_size(with_added_tokens=True)

    def token_id(self, token: str) -> int | None:
        return self._tokenizer.token_to_id(token)

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (special tokens written in it are recognised)."""
        return self._tokenizer.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self._tokenizer.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        return self._tokenizer.decode([int(i) for i in ids],
                                      skip_special_tokens=skip_special_tokens)

    # -- chat ---------------------------------------------------------------------------------
    def render(self, messages: Sequence[dict[str, str]], add_generation_prompt: bool) -> str:
        """The text of ``messages`` in the chat template (without one: each message's content
        on its own line, the end-of-text token after each assistant message)."""
        if not self.chat_template:
            text = "".join(m["content"] + (self.eos_token if m["role"] == "assistant" else "\n")
                           for m in messages)
            return text
        if self._template is None:
            self._template = _compile_template(self.chat_template)
        try:
            return self._template.render(
                messages=list(messages), add_generation_prompt=add_generation_prompt,
                bos_token=_token_text(self.config.get("bos_token")) or "",
                eos_token=self.eos_token)
        except Exception as exc:  # jinja2 errors and the template's raise_exception
            raise ConfigError(f"the chat template cannot render this conversation: {exc}") \
                from None

    def prompt_ids(self, messages: Sequence[dict[str, str]]) -> list[int]:
        """Token ids that prompt the model for the next assistant message."""
        ids = self.encode(self.render(messages, add_generation_prompt=True))
        return self._with_bos(ids)

    def encode_chat(self, messages: Sequence[dict[str, str]]) -> tuple[list[int], np.ndarray]:
        """Token ids of a conversation and a boolean mask of the tokens to train on: the
        content of every assistant message and the end-of-text token that closes it."""
        text = self.render(messages, add_generation_prompt=False)
        spans = []
        for i, message in enumerate(messages):
            if message["role"] != "assistant":
                continue
            before = self.render(messages[:i], add_generation_prompt=True)
            through = self.render(messages[:i + 1], add_generation_prompt=False)
            if not (text.startswith(through) and through.startswith(before)):
                raise ConfigError("the chat template renders a conversation differently from "
                                  "its beginning, so the assistant messages cannot be located; "
                                  "use a template whose output grows message by message")
            end = through.find(self.eos_token, len(before))
            end = len(through) if end < 0 else end + len(self.eos_token)
            spans.append((len(before), end))
        encoding = self._tokenizer.encode(text, add_special_tokens=False)
        ids = list(encoding.ids)
        train_on = np.zeros(len(ids), bool)
        for index, (start, stop) in enumerate(encoding.offsets):
            train_on[index] = any(a <= start < b for a, b in spans) and stop > start
        if self.add_bos:
            ids, train_on = [self.bos_id, *ids], np.concatenate([[False], train_on])
        return ids, train_on

    def _with_bos(self, ids: list[int]) -> list[int]:
        return [self.bos_id, *ids] if self.add_bos else ids


def byte_symbols() -> list[str]:
    """The printable character byte-level BPE writes for each byte value 0..255 (GPT-2's
    table: printable Latin-1 characters stand for themselves, the others map above U+0100).

    >>> byte_symbols()[ord("a")], byte_symbols()[ord(" ")], byte_symbols()[ord("\\n")]
    ('a', 'Ġ', 'Ċ')
    """
    printable = {*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)}
    symbols, extra = [], 0
    for byte in range(256):
        if byte in printable:
            symbols.append(chr(byte))
        else:
            symbols.append(chr(256 + extra))
            extra += 1
    return symbols


def _token_text(token: Any) -> str | None:
    """A special token from tokenizer_config.json: a string or ``{"content": ...}``."""
    if isinstance(token, dict):
        return token.get("content")
    return token


def _compile_template(source: str):
    """The chat template compiled in Jinja's sandbox, with the helpers templates expect."""
    try:
        from jinja2.exceptions import TemplateError
        from jinja2.sandbox import ImmutableSandboxedEnvironment
    except ImportError as exc:
        raise ConfigError("rendering chat templates needs the package jinja2: "
                          "`pip install jinja2==3.1.6`") from exc

    def raise_exception(message: str):
        raise TemplateError(message)

    environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                                extensions=["jinja2.ext.loopcontrols"])
    environment.filters["tojson"] = lambda value, indent=None: json.dumps(
        value, ensure_ascii=False, indent=indent)
    environment.globals["raise_exception"] = raise_exception
    try:
        return environment.from_string(source)
    except TemplateError as exc:
        raise CheckpointError(f"the checkpoint's chat template is not valid Jinja ({exc})") \
            from None
