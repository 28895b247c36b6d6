"""Instruction-tuning examples: conversations; every assistant message is trained on, the last one
is the response that evaluation generates.

Layouts read from JSONL / CSV / TSV / Parquet / DataFrames / Hugging Face datasets:

- ``messages``: a list of ``{"role": "system"|"user"|"assistant", "content": str}`` (in CSV, the
  list as a JSON string); the last message is the response to learn;
- ``prompt`` / ``response`` columns;
- Alpaca: ``instruction``, optional ``input`` (appended to the instruction after a blank line)
  and ``output``.

``layout="auto"`` takes the first of these whose columns are present. Column names are
options (:class:`ChatColumns`). Unlabelled data (prompts to complete) has no response column,
or messages that end with a user message. Every problem names the file, the row and the fix.

>>> data = examples_from_rows([{"prompt": "2+2?", "response": "4"}])
>>> data.prompts[0], data.responses
([{'role': 'user', 'content': '2+2?'}], ['4'])
>>> examples_from_rows([{"instruction": "Add.", "input": "2+2", "output": "4"}]).prompts[0]
[{'role': 'user', 'content': 'Add.\\n\\n2+2'}]
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tfsft.data.readers import Table, read_table, visible
from tfsft.errors import DataError

Message = dict[str, str]
ROLES = ("system", "user", "assistant")
LAYOUTS = ("auto", "messages", "prompt-response", "alpaca")


@dataclass(frozen=True)
class ChatColumns:
    """Column names of the three layouts, and how to pick one (``layout``)."""

    layout: str = "auto"
    messages: str = "messages"
    prompt: str = "prompt"
    response: str = "response"
    instruction: str = "instruction"
    input: str = "input"
    output: str = "output"
    system_prompt: str | None = None


@dataclass
class ChatExamples:
    """Prompts (conversations up to the response) and their responses (None: unlabelled)."""

    prompts: list[list[Message]]
    responses: list[str] | None
    source: str = "data"
    locations: list[str] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.prompts)

    # the data check sees the prompt as the text and the response as its pair
    @property
    def texts(self) -> list[str]:
        return ["\n".join(m["content"] for m in prompt) for prompt in self.prompts]

    @property
    def text_pairs(self) -> list[str] | None:
        return self.responses

    @property
    def targets(self) -> None:
        return None

    def conversation(self, index: int) -> list[Message]:
        """The prompt of example ``index`` followed by its response."""
        if self.responses is None:
            return list(self.prompts[index])
        return [*self.prompts[index], {"role": "assistant", "content": self.responses[index]}]

    def subset(self, indices: Sequence[int] | np.ndarray) -> ChatExamples:
        indices = [int(i) for i in indices]
        return dataclasses.replace(
            self, prompts=[self.prompts[i] for i in indices],
            responses=None if self.responses is None else [self.responses[i] for i in indices],
            locations=[self.locations[i] for i in indices] if self.locations else [],
            skipped=dict(self.skipped))


def read_chat_data(source: Any, columns: ChatColumns = ChatColumns(), labelled: bool = True,
                   max_rows: int | None = None, file_format: str | None = None,
                   encoding: str = "utf-8", delimiter: str | None = None,
                   quoting: bool = True) -> ChatExamples:
    """Examples from a file, DataFrame or dataset (see the module docstring)."""
    table = read_table(source, file_format=file_format, encoding=encoding, delimiter=delimiter,
                       quoting=quoting)
    return examples_from_table(table, columns, labelled, max_rows)


def detect_layout(table: Table, columns: ChatColumns) -> str:
    """The layout of ``table`` (``columns.layout`` unless ``auto``)."""
    if columns.layout != "auto":
        return columns.layout
    found = [(layout, needed) for layout, needed in (
        ("messages", columns.messages), ("prompt-response", columns.prompt),
        ("alpaca", columns.instruction)) if needed in table.columns]
    if found:
        (layout, needed), others = found[0], found[1:]
        for row, where in zip(table.rows, table.locations, strict=True):
            other = next((o for o in others if not _missing(row.get(o[1]))), None)
            if _missing(row.get(needed)) and other is not None:
                first = next(w for r, w in zip(table.rows, table.locations, strict=True)
                             if not _missing(r.get(needed)))
                raise DataError(table.source, where, f"this row is in the {other[0]} layout "
                                f"({other[1]!r}), {first} in the {layout} layout ({needed!r})",
                                "write every row in one layout, or split the file by layout")
        return layout
    raise DataError(table.source, None, f"no conversation columns: expected {columns.messages!r}, "
                    f"{columns.prompt!r} (with {columns.response!r}) or {columns.instruction!r} "
                    f"(with {columns.output!r}); the columns are {table.columns}",
                    "name them with --messages-column, --prompt-column / --response-column "
                    "or --instruction-column / --output-column")


def examples_from_table(table: Table, columns: ChatColumns = ChatColumns(), labelled: bool = True,
                        max_rows: int | None = None) -> ChatExamples:
    layout = detect_layout(table, columns)
    required = {"messages": [columns.messages], "prompt-response": [columns.prompt],
                "alpaca": [columns.instruction]}[layout]
    if labelled:
        required += {"messages": [], "prompt-response": [columns.response],
                     "alpaca": [columns.output]}[layout]
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise DataError(table.source, None, f"no column(s) {missing} for the {layout} layout; "
                        f"the columns are {table.columns}", "name them with the column options "
                        "(see `tfsft train --task causal-lm --help`)")
    prompts: list[list[Message]] = []
    responses: list[str] = []
    locations: list[str] = []
    for index, (row, where) in enumerate(zip(table.rows, table.locations, strict=True)):
        if max_rows is not None and index >= max_rows:
            break
        if layout == "messages":
            messages = _messages(row.get(columns.messages), table.source, where, columns.messages)
            if messages[-1]["role"] == "assistant":
                prompt, response = messages[:-1], messages[-1]["content"]
            else:
                prompt, response = messages, None
            if not any(m["role"] == "user" for m in prompt):
                raise DataError(table.source, where, "the conversation has no user message "
                                "before its response", "add the user's message")
        else:
            if layout == "prompt-response":
                text = _text(row.get(columns.prompt), table.source, where, columns.prompt)
            else:
                text = _text(row.get(columns.instruction), table.source, where,
                             columns.instruction)
                extra = row.get(columns.input)
                if not _missing(extra) and visible(str(extra)):
                    text += "\n\n" + _text(extra, table.source, where, columns.input)
            prompt = [{"role": "user", "content": text}]
            answer_column = columns.response if layout == "prompt-response" else columns.output
            response = (_text(row.get(answer_column), table.source, where, answer_column)
                        if answer_column in table.columns else None)
        if labelled and response is None:
            raise DataError(table.source, where, "the conversation ends without an assistant "
                            "message to learn", "end each conversation with the assistant's "
                            "response, or leave the row out")
        if columns.system_prompt and prompt[0]["role"] != "system":
            prompt = [{"role": "system", "content": columns.system_prompt}, *prompt]
        prompts.append(prompt)
        responses.append(response)
        locations.append(where)
    if not prompts:
        raise DataError(table.source, None, "no examples", "add rows to the data")
    labelled_rows = [r is not None for r in responses]
    if any(labelled_rows) and not all(labelled_rows):
        first = locations[labelled_rows.index(False)]
        raise DataError(table.source, first, "this row has no response while others have one",
                        "give every row its response, or none (prompts to complete)")
    return ChatExamples(prompts, responses if all(labelled_rows) else None, table.source,
                        locations)


def examples_from_rows(rows: Sequence[dict[str, Any]], source: str = "rows",
                       columns: ChatColumns = ChatColumns(), labelled: bool = False
                       ) -> ChatExamples:
    """Examples from in-memory dicts (responses are kept where every row has one; with
    ``labelled`` they are required)."""
    names = list(dict.fromkeys(k for row in rows for k in row))
    table = Table(source, names, list(rows), [f"row {i}" for i in range(1, len(rows) + 1)])
    return examples_from_table(table, columns, labelled)


def examples_from_prompts(prompts: Sequence[str], system_prompt: str | None = None,
                          source: str = "prompts") -> ChatExamples:
    """Unlabelled examples from prompt strings (one user message each)."""
    return examples_from_rows([{"prompt": p} for p in prompts], source,
                              ChatColumns(layout="prompt-response", system_prompt=system_prompt))


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _text(value: Any, source: str, where: str, column: str) -> str:
    if _missing(value):
        raise DataError(source, where, f"{column!r} is missing", "fill it in or remove the row")
    if not isinstance(value, str):
        raise DataError(source, where, f"{column!r} is a {type(value).__name__}, not text",
                        "write it as a string")
    if not visible(value):
        raise DataError(source, where, f"{column!r} is empty", "fill it in or remove the row")
    return value


def _messages(value: Any, source: str, where: str, column: str) -> list[Message]:
    """A checked list of messages (a JSON string is parsed first)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise DataError(source, where, f"{column!r} is not a JSON list of messages ({exc})",
                            'write it as [{"role": "user", "content": "..."}, ...]') from None
    if hasattr(value, "tolist"):  # Parquet / Arrow lists come as NumPy arrays
        value = value.tolist()
    if not isinstance(value, list) or not value:
        raise DataError(source, where, f"{column!r} must be a non-empty list of messages, got "
                        f"{type(value).__name__}",
                        'write it as [{"role": "user", "content": "..."}, ...]')
    messages = []
    for number, message in enumerate(value, 1):
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            raise DataError(source, where, f"message {number} is not a {{\"role\", \"content\"}} "
                            f"object: {str(message)[:80]!r}", "give every message a role and "
                            "a content")
        role = message["role"]
        if role not in ROLES:
            raise DataError(source, where, f"message {number} has role {role!r}",
                            f"use one of {', '.join(ROLES)}")
        # a JSON path: indices from 0
        content = _text(message["content"], source, where, f"{column}[{number - 1}].content")
        messages.append({"role": role, "content": content})
    return messages
