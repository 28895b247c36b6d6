"""``tfsft embed`` and ``tfsft search``: sentence vectors of many texts, and exact search.

``tfsft embed RUN --input FILE --output vectors.npz`` embeds every text of a file (a ``.txt``
file, one text a line, or a table with ``--text-column``) and writes a NumPy index: the
unit-length vectors (float32 ``[texts, dimensions]``) and the texts, or ``.npy`` with the
vectors only. ``tfsft search RUN --corpus FILE_OR_INDEX "query" ...`` ranks the corpus by
cosine similarity (an exact dot product over the whole index) and prints the best ``--top-k``
per query as JSON lines. For millions of vectors, load the index into a vector store that ranks
by inner product (FAISS ``IndexFlatIP`` or ``IndexHNSWFlat``, pgvector, Qdrant, Milvus).

>>> EMBED.name, SEARCH.name
('embed', 'search')
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from tfsft.errors import ConfigError, DataError
from tfsft.tasks.commands import CommandContext, TaskCommand
from tfsft.tasks.sentence_embedding.examples import read_corpus
from tfsft.tasks.sentence_embedding.metrics import normalized


def add_embed_arguments(parser: argparse.ArgumentParser, context: CommandContext) -> None:
    parser.add_argument("run_dir", help="a sentence-embedding run folder")
    parser.add_argument("--input", required=True, help="texts: a .txt file (one a line) or "
                        "CSV/TSV/JSONL/Parquet with --text-column")
    parser.add_argument("--text-column", default="text", help="column holding the texts")
    parser.add_argument("--output", required=True, help="vectors.npz (vectors and texts) or "
                        "vectors.npy (vectors only)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--overwrite", action="store_true", help="replace --output")


def add_search_arguments(parser: argparse.ArgumentParser, context: CommandContext) -> None:
    parser.add_argument("run_dir", help="a sentence-embedding run folder")
    parser.add_argument("queries", nargs="+", help="what to search for")
    parser.add_argument("--corpus", required=True, help="an index written by tfsft embed "
                        "(.npz), or texts: a .txt file (one a line) or a table with "
                        "--text-column")
    parser.add_argument("--text-column", default="text", help="column holding the texts")
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)


def embed_texts(run: Any, texts: list[str], batch_size: int) -> np.ndarray:
    """Float32 vectors of ``texts`` by the run's encoder (unit length unless the run was
    trained with ``--normalize no``)."""
    examples = run.task.data.examples_from_texts({"text": texts})
    return run.outputs(examples, batch_size=batch_size, verbose=0).vectors[:, 0]


def _run(context: CommandContext, path: str) -> Any:
    if not context.is_run(path):
        raise ConfigError(f"{path} is not a tfsft run folder")
    run = context.load_run(path)
    if run.task.name != "sentence-embedding":
        raise ConfigError(f"{path} is a {run.task.name!r} run; embed and search need a "
                          "sentence-embedding run")
    return run


def run_embed(args: argparse.Namespace, context: CommandContext) -> int:
    from tfsft.io_utils import atomic_file

    output = Path(args.output)
    if output.suffix.lower() not in (".npz", ".npy"):
        raise ConfigError(f"--output {output} must end in .npz (vectors and texts) or .npy")
    if output.is_dir():
        raise ConfigError(f"--output {output} is a folder; name a file (FILE.npz)")
    if output.exists() and not args.overwrite:
        raise ConfigError(f"{output} exists; pass --overwrite to replace it")
    folder = next((p for p in output.absolute().parents if p.exists()), None)
    if folder is not None and (not folder.is_dir() or not os.access(folder, os.W_OK)):
        raise ConfigError(f"--output {output}: {folder} is not a folder this user can write "
                          "to; name a file in a writable folder")  # before embedding anything
    run = _run(context, args.run_dir)
    texts = read_corpus(args.input, args.text_column)
    vectors = embed_texts(run, texts, args.batch_size)
    with atomic_file(output) as temporary:
        temporary.write_bytes(_index_bytes(vectors, texts, output.suffix.lower()))
    print(json.dumps({"output": str(output), "texts": len(texts),
                      "dimensions": int(vectors.shape[1])}))
    return 0


def _index_bytes(vectors: np.ndarray, texts: list[str], suffix: str) -> bytes:
    import io

    buffer = io.BytesIO()
    if suffix == ".npy":
        np.save(buffer, vectors)
    else:
        np.savez(buffer, vectors=vectors, texts=np.array(texts, dtype=str))  # no pickled objects
    return buffer.getvalue()


def read_index(path: str) -> tuple[np.ndarray, list[str]]:
    """The vectors and texts of an index written by ``tfsft embed``, checked."""
    import zipfile

    fix = "write it again with tfsft embed RUN --input TEXTS --output FILE.npz"
    try:
        with np.load(path, allow_pickle=False) as index:  # a pickle in a file could run code
            vectors, texts = np.asarray(index["vectors"]), [str(t) for t in index["texts"]]
    except FileNotFoundError:
        raise DataError(path, None, "file not found", "check the path") from None
    except KeyError as exc:
        raise DataError(path, None, f"is not an index written by tfsft embed (no {exc})",
                        fix) from None
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise DataError(path, None, f"cannot be read as an index ({exc})", fix) from None
    if vectors.ndim != 2 or len(vectors) != len(texts):
        raise DataError(path, None, f"holds {len(vectors)} vectors of shape {vectors.shape} for "
                        f"{len(texts)} texts", fix)
    norms = np.linalg.norm(vectors.astype(np.float64), axis=1) if vectors.size else np.ones(1)
    if not np.isfinite(norms).all() or (norms == 0).any():
        row = int(np.flatnonzero(~np.isfinite(norms) | (norms == 0))[0])
        raise DataError(path, f"vector {row + 1}", "is zero or not finite: no text embeds to "
                        "that, so the index was not written by tfsft embed", fix)
    if not np.all(np.isfinite(vectors)):
        raise DataError(path, None, "holds vectors with NaN or infinite values", fix)
    return vectors.astype(np.float32), texts


def run_search(args: argparse.Namespace, context: CommandContext) -> int:
    if args.top_k < 1:
        raise ConfigError(f"--top-k must be >= 1, got {args.top_k}")
    for number, query in enumerate(args.queries, 1):
        if not query.strip():
            raise ConfigError(f"query {number} is empty; give the text to search for")
    run = _run(context, args.run_dir)
    if args.corpus.lower().endswith(".npy"):
        raise ConfigError(f"{args.corpus} holds vectors only, without their texts; write the "
                          "index as .npz (tfsft embed --output FILE.npz) to search it")
    if args.corpus.lower().endswith(".npz"):
        vectors, texts = read_index(args.corpus)
    else:
        texts = read_corpus(args.corpus, args.text_column)
        vectors = embed_texts(run, texts, args.batch_size)
    queries = embed_texts(run, list(args.queries), args.batch_size)
    if queries.shape[1] != vectors.shape[1]:
        raise ConfigError(f"{args.corpus} holds {vectors.shape[1]}-dimensional vectors; this "
                          f"run makes {queries.shape[1]}: embed the corpus with this run")
    scores = normalized(queries) @ normalized(vectors).T  # cosine, normalised or not
    for query, row in zip(args.queries, scores, strict=True):
        best = np.argsort(-row, kind="stable")[:args.top_k]
        for rank, i in enumerate(best, 1):
            print(json.dumps({"query": query, "rank": rank, "score": round(float(row[i]), 6),
                              "text": texts[i]}, ensure_ascii=False))
    return 0


EMBED = TaskCommand(name="embed", help="sentence vectors of many texts, as a NumPy index",
                    add_arguments=add_embed_arguments, run=run_embed)
SEARCH = TaskCommand(name="search", help="rank a corpus by similarity to queries (exact)",
                     add_arguments=add_search_arguments, run=run_search)
