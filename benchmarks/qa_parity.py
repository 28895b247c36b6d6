"""Exported question answering vs Python: ``python -m benchmarks.qa_parity RUN SAVEDMODEL DATA``.

Answers every question of ``DATA`` (SQuAD JSON or JSONL) twice, each in a fresh process:
``tfsft predict RUN --input DATA`` (the Keras model and the Python post-processing) and the
SavedModel's ``serving_default`` loaded with nothing but TensorFlow and tf-text (the answer
search in the graph). Writes how many answers, offsets and scores agree (``--out``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

SERVE = """
import json, sys
import tensorflow as tf
import tensorflow_text  # noqa: F401  (tokenizer ops)
serve = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
rows = [json.loads(line) for line in open(sys.argv[2], encoding="utf-8")]
out = open(sys.argv[3], "w", encoding="utf-8")
for begin in range(0, len(rows), 32):
    part = rows[begin:begin + 32]
    result = serve(question=tf.constant([r["question"] for r in part]),
                   context=tf.constant([r["context"] for r in part]))
    for i in range(len(part)):
        out.write(json.dumps({"answer": result["answer"][i].numpy().decode("utf-8"),
                              "start": int(result["start"][i]), "end": int(result["end"][i]),
                              "score": float(result["score"][i])}) + "\\n")
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("savedmodel", help="the SavedModel version folder (saved_models/NAME/1)")
    parser.add_argument("data", help="questions: SQuAD JSON or JSONL")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    from tfsft.tasks.question_answering.examples import read_qa_data

    data = read_qa_data(args.data, labelled=False)
    with tempfile.TemporaryDirectory() as folder:
        questions = Path(folder) / "questions.jsonl"
        questions.write_text("".join(json.dumps({"question": q, "context": c}) + "\n"
                                     for q, c in zip(data.questions, data.contexts, strict=True)),
                             encoding="utf-8")
        python = subprocess.run([sys.executable, "-m", "tfsft.cli", "predict", args.run_dir,
                                 "--input", str(questions)], check=True, capture_output=True,
                                text=True).stdout.splitlines()
        served_file = Path(folder) / "served.jsonl"
        subprocess.run([sys.executable, "-c", SERVE, args.savedmodel, str(questions),
                        str(served_file)], check=True, capture_output=True)
        served = served_file.read_text(encoding="utf-8").splitlines()
    python = [json.loads(line) for line in python]
    served = [json.loads(line) for line in served]
    same = [p["answer"] == s["answer"] and p["start"] == s["start"] and p["end"] == s["end"]
            for p, s in zip(python, served, strict=True)]
    report = {"questions": len(data), "equal_answers": sum(same),
              "equal_share": round(sum(same) / len(data), 6),
              "max_score_diff": max(abs(p["score"] - s["score"])
                                    for p, s in zip(python, served, strict=True)),
              "different": [{"question": data.questions[i], "python": python[i],
                             "savedmodel": served[i]} for i, ok in enumerate(same) if not ok]}
    args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "different"}))
    return 0 if all(same) else 1


if __name__ == "__main__":
    sys.exit(main())
