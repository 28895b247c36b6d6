"""Atomic writes: outputs appear complete or not at all, with the permissions the user's umask
gives a new file or folder (temporary files are created private, 0600/0700, then opened up)."""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def split_lines(text: str) -> list[str]:
    r"""The lines of ``text``, broken at ``\n``, ``\r\n`` and ``\r`` only (``str.splitlines``
    also breaks at U+2028, U+0085, form feeds and more, which a text may hold); no empty last
    line for a final line break.

    >>> split_lines("one\u2028still one\r\ntwo\n")
    ['one\u2028still one', 'two']
    """
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return lines[:-1] if lines and lines[-1] == "" else lines


def read_json_file(path: str | os.PathLike, what: str = "file",
                   fix: str = "restore it from a backup or produce it again") -> Any:
    """The JSON in ``path``; a truncated or damaged file is a :class:`CheckpointError` naming
    the file, the line and column, and ``fix``.

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "config.json"
    >>> _ = path.write_text('{"hidden_size": 8')
    >>> read_json_file(path, "checkpoint config")
    Traceback (most recent call last):
    ...
    tfsft.errors.CheckpointError: .../config.json: this checkpoint config is not valid JSON (line 1, ...
    """
    from tfsft.errors import CheckpointError

    path = Path(path)
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise CheckpointError(f"{path}: this {what} is not UTF-8 text (byte {exc.start}); "
                              f"the file is damaged: {fix}") from None
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: this {what} is not valid JSON (line {exc.lineno}, "
                              f"column {exc.colno}: {exc.msg}); the file may be incomplete: "
                              f"{fix}") from None


def file_sha256(path: str | os.PathLike, block_size: int = 1 << 20) -> str:
    """The SHA-256 of a file's bytes, read in blocks.

    >>> import tempfile
    >>> with tempfile.NamedTemporaryFile(delete=False) as handle:
    ...     _ = handle.write(b"abc")
    >>> file_sha256(handle.name)[:16]
    'ba7816bf8f01cfea'
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(functools.partial(handle.read, block_size), b""):
            digest.update(block)
    return digest.hexdigest()


def process_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (of any user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@functools.cache
def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def public_mode(path: str | os.PathLike, folder: bool = False) -> None:
    """Give ``path`` the mode a plain ``open``/``mkdir`` would have given it under the umask."""
    os.chmod(path, (0o777 if folder else 0o666) & ~_umask())


@contextlib.contextmanager
def atomic_directory(target: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder next to ``target``; rename it to ``target`` on success.

    On error the temporary folder is removed and ``target`` is untouched.

    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> with atomic_directory(root / "out") as tmp:
    ...     _ = (tmp / "a.txt").write_text("x")
    >>> (root / "out" / "a.txt").read_text()
    'x'
    """
    target = Path(target)
    with _named(target):
        target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} already exists; choose another path or remove it first")
    with _named(target):  # an error names the output, not the temporary folder
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    public_mode(tmp, folder=True)
    try:
        yield tmp
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        public_mode(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_json(path: str | os.PathLike, data: Any) -> None:
    """Write ``data`` as indented JSON, atomically."""
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


@contextlib.contextmanager
def _named(path: Path) -> Iterator[None]:
    """Re-raise an ``OSError`` with ``path`` as its file name (the user's output, not the
    temporary path tfsft writes first)."""
    try:
        yield
    except OSError as exc:
        if exc.errno is None:
            raise
        if isinstance(exc, FileExistsError):  # mkdir(parents=True) under a file
            raise NotADirectoryError(errno.ENOTDIR, "Not a directory", str(path)) from None
        raise type(exc)(exc.errno, exc.strerror, str(path)) from None


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary file path next to ``path``; rename it onto ``path`` on success.

    For writers that take a file name (``model.save``, ``savefig``).
    """
    path = Path(path)
    with _named(path):
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")  # keeps every suffix (.weights.h5)
    try:
        with _named(path):  # an error names the output, not the temporary file
            yield tmp
            os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def stderr_to_file() -> Iterator[None]:
    """File descriptor 2 (where C++ code writes) goes to a temporary file; on an exception
    its content is written back to the real standard error."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode("utf-8", errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
