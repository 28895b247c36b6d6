"""Write CoNLL-2003 sentences as multi-label data: which entity types each sentence mentions.

    python examples/conll_entity_types.py ../shared/data/conll2003/train.txt train.jsonl

Each output line is ``{"text": "EU rejects German call ...", "labels": ["MISC", "ORG"]}``;
sentences without entities have ``"labels": []``. ``-DOCSTART-`` lines are skipped.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def sentences(path: Path):
    tokens, types = [], set()
    for line in path.read_text(encoding="utf-8").splitlines() + [""]:
        fields = line.split()
        if not fields or fields[0] == "-DOCSTART-":
            if tokens:
                yield " ".join(tokens), sorted(types)
            tokens, types = [], set()
            continue
        tokens.append(fields[0])
        if fields[1] != "O":
            types.add(fields[1].split("-", 1)[1])


def main(source: str, target: str) -> None:
    with open(target, "w", encoding="utf-8") as handle:
        for text, labels in sentences(Path(source)):
            handle.write(json.dumps({"text": text, "labels": labels}) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:3])
