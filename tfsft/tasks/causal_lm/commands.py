"""``tfsft generate``: complete prompts with a causal-lm run (or an untuned checkpoint).

>>> GENERATE.name
'generate'
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from tfsft.errors import ConfigError
from tfsft.tasks.commands import CommandContext, TaskCommand

logger = logging.getLogger(__name__)


#: The largest --max-new-tokens / --batch-size (a model's context is far shorter; beyond int32
#: the generation arithmetic overflows).
LARGEST_COUNT = 1_000_000


def add_generate_arguments(parser: argparse.ArgumentParser, context: CommandContext) -> None:
    parser.add_argument("run_dir", help="a causal-lm run folder, or a checkpoint "
                        "(smollm2-135m, a .gguf file, a Hugging Face folder) to try untuned")
    parser.add_argument("prompts", nargs="*", help="prompts (one user message each)")
    parser.set_defaults(trailing_positionals="prompts")  # prompts may follow options too
    parser.add_argument("--input", help="prompts: a .txt file (one a line) or JSONL/CSV/"
                        "Parquet with a prompt or messages field, as in training data")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--temperature", type=float, default=0.0,
                        help="0 (default): greedy; above 0: sample")
    parser.add_argument("--top-p", type=float, default=1.0,
                        help="sample from the smallest set of tokens with this probability")
    parser.add_argument("--seed", type=int, help="seed of the sampling (same seed, same text)")
    parser.add_argument("--system-prompt", help="system message before each prompt")
    parser.add_argument("--batch-size", type=int, default=8,
                        help="prompts generated together with --json")
    parser.add_argument("--json", action="store_true", help="one JSON object a line: "
                        '{"prompt", "completion"} (no streaming)')
    context.add_read_options(parser)


def _input_conversations(args: argparse.Namespace, context: CommandContext, run: Any,
                         system: list[dict[str, str]]) -> list[list[dict[str, str]]]:
    """The conversations of ``--input``: a .txt file (one prompt a line) or a table / JSONL of
    prompts or messages, read like training data."""
    from tfsft.data.readers import TEXT_LINE_SUFFIXES, read_text_lines

    if args.input.endswith(TEXT_LINE_SUFFIXES):
        lines, blank = read_text_lines(args.input, args.encoding or "utf-8")
        if blank:
            logger.warning("%s: %d blank lines skipped", args.input, blank)
        return [[*system, {"role": "user", "content": line}] for line in lines]
    from tfsft.tasks.base import create_task

    task = run.task if run is not None else create_task("causal-lm")
    read = context.read_options(args)
    columns = {k: read.pop(k) for k in list(read) if hasattr(task.options, k)}
    read = {k: v for k, v in read.items() if k in ("file_format", "encoding", "delimiter",
                                                   "quoting")}
    examples = task.with_options(**columns).data.read(args.input, role="eval", labelled=False,
                                                      **read)
    return [[*system, *p] if system and p[0]["role"] != "system" else p
            for p in examples.prompts]


def run_generate(args: argparse.Namespace, context: CommandContext) -> int:
    from tfsft.data.readers import visible
    from tfsft.tasks.causal_lm.generation import (
        Sampling,
        generator_for_checkpoint,
        generator_for_run,
    )

    for flag, value in (("--max-new-tokens", args.max_new_tokens),
                        ("--batch-size", args.batch_size)):
        if not 1 <= value <= LARGEST_COUNT:
            raise ConfigError(f"{flag} must be from 1 to {LARGEST_COUNT:,}, got {value}")
    if args.seed is not None and args.seed < 0:  # as tfsft train's --seed
        raise ConfigError(f"--seed must be >= 0, got {args.seed}")
    try:
        sampling = Sampling(args.temperature, args.top_p, args.seed)
    except ValueError as exc:
        raise ConfigError(f"--temperature / --top-p: {exc}") from None
    for number, text in enumerate(args.prompts, 1):
        if not visible(text):
            raise ConfigError(f"prompt argument {number} ({text!r}) is empty or only whitespace")
    system = [{"role": "system", "content": args.system_prompt}] if args.system_prompt else []
    conversations = [[*system, {"role": "user", "content": p}] for p in args.prompts]
    # the run's settings only (its model loads lazily): the input is read before any model
    run = context.load_run(args.run_dir) if context.is_run(args.run_dir) else None
    if args.input:
        conversations += _input_conversations(args, context, run, system)
    if not conversations:
        raise ConfigError(f"{args.input} holds no prompts; give one a line (or prompt / "
                          "messages fields)" if args.input else
                          "nothing to generate: pass prompts as arguments or --input FILE")
    generator = (generator_for_run(run, max_new_tokens=args.max_new_tokens) if run is not None
                 else generator_for_checkpoint(args.run_dir, args.max_new_tokens))
    tokenizer = generator.tokenizer
    prompt_ids = [tokenizer.prompt_ids(c) for c in conversations]
    if args.json:
        texts = generator.generate_texts(prompt_ids, args.max_new_tokens, sampling,
                                         batch_size=args.batch_size)
        for conversation, text in zip(conversations, texts, strict=True):
            print(json.dumps({"prompt": conversation[-1]["content"], "completion": text},
                             ensure_ascii=False), flush=True)
        return 0
    for number, ids in enumerate(prompt_ids):
        if number:
            print()
        stream = TokenStream(tokenizer)
        generator.complete([ids], args.max_new_tokens, sampling,
                           on_token=lambda _row, token, stream=stream: stream.add(token))
        stream.finish()
    return 0


class TokenStream:
    """Prints a completion as its tokens arrive (holding back an incomplete UTF-8 character)."""

    def __init__(self, tokenizer):
        self.tokenizer, self.ids, self.printed = tokenizer, [], ""

    def add(self, token: int) -> None:
        self.ids.append(token)
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if text.endswith("\ufffd"):
            return
        sys.stdout.write(text[len(self.printed):])
        sys.stdout.flush()
        self.printed = text

    def finish(self) -> None:
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        sys.stdout.write(text[len(self.printed):] + "\n")
        sys.stdout.flush()


GENERATE = TaskCommand(
    name="generate",
    help="complete prompts with a causal-lm run (or checkpoint), streaming",
    add_arguments=add_generate_arguments,
    run=run_generate,
)
