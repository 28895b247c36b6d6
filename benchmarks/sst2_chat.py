"""SST-2 as instruction data: each sentence becomes a chat prompt whose response is the label.

Generative classification makes a measurable instruction-tuning effect: exact match of greedy
answers before and after tuning.

    python -m benchmarks.sst2_chat ../shared/data/sst2/train.tsv train.jsonl --rows 2000
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

PROMPT = ("Is the sentiment of this review positive or negative? Answer with one word.\n\n"
          "Review: {sentence}")
ANSWERS = {"0": "negative", "1": "positive"}


def sst2_chat_rows(path: str | Path, rows: int | None = None) -> list[dict[str, str]]:
    """``{"prompt", "response"}`` rows from an SST-2 TSV (``label`` + ``sentence``/``content``)."""
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        out = []
        for row in reader:
            row = {k.strip(): (v or "").strip() for k, v in row.items()}
            text = row.get("sentence") or row.get("content")
            out.append({"prompt": PROMPT.format(sentence=text),
                        "response": ANSWERS[row["label"]]})
            if rows is not None and len(out) >= rows:
                break
    return out


def write_jsonl(rows: list[dict[str, str]], path: str | Path) -> None:
    Path(path).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tsv")
    parser.add_argument("jsonl")
    parser.add_argument("--rows", type=int)
    args = parser.parse_args()
    write_jsonl(sst2_chat_rows(args.tsv, args.rows), args.jsonl)


if __name__ == "__main__":
    main()
