"""Files on disk: every write is atomic (a temp file in the same directory, then a rename, so a
reader or a crash never sees half a file), and stage outputs are content-addressed references.

A stage returns a TableRef or ModelRef (path plus content digest). Prefect caches on task
inputs, so the digest makes a downstream stage's cache key change whenever an upstream
output's content does. `seconds` is the stage's wall-clock time and `finished_at` when it ended
(Unix time), both set by core/caching.stage and neither part of the content.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


@dataclass(frozen=True)
class TableRef:
    path: str
    digest: str
    seconds: float = 0.0
    finished_at: float = 0.0

    @classmethod
    def of_file(cls, path: str | Path) -> TableRef:
        """The reference to a finished Parquet file: its path and content digest."""
        return cls(path=str(path), digest=file_digest(path))

    def read(self) -> pa.Table:
        return pq.read_table(self.path)


@dataclass(frozen=True)
class ModelRef:
    """A policy checkpoint: a local directory (save_pretrained layout) or a hub id."""

    path: str
    digest: str
    seconds: float = 0.0
    finished_at: float = 0.0


def file_digest(path: str | Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            sha.update(chunk)
    return sha.hexdigest()[:16]


def directory_digest(path: str | Path, content_limit: int = 1 << 26) -> str:
    """Digest of a model directory: file contents, or size and mtime for files over the limit
    (hashing a multi-GB checkpoint on every run would cost more than the run)."""
    sha = hashlib.sha256()
    for file in sorted(Path(path).rglob("*")):
        if file.is_file() and ".prefect-cache" not in file.parts:
            stat = file.stat()
            sha.update(file.relative_to(path).as_posix().encode())
            if stat.st_size > content_limit:
                sha.update(f"{stat.st_size}:{stat.st_mtime_ns}".encode())
            else:
                sha.update(file_digest(file).encode())
    return sha.hexdigest()[:16]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp makes files only their owner can read; a table or plot is as readable as any file.
FILE_MODE = 0o666 & ~_umask()


@contextmanager
def atomic_path(path: str | Path):
    """A temporary path beside `path`, renamed to `path` when the block succeeds, removed if
    it fails (a full disk is one sentence naming the file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        yield temp_name
        os.chmod(temp_name, FILE_MODE)
        os.replace(temp_name, path)
    except BaseException as error:
        Path(temp_name).unlink(missing_ok=True)
        if isinstance(error, OSError) and error.filename is None:
            raise OSError(error.errno, f"cannot write {path}: {error.strerror or error}") from error
        raise


def write_table_atomic(table: pa.Table, path: str | Path) -> TableRef:
    with atomic_path(path) as temp:
        pq.write_table(table, temp)
    return TableRef.of_file(path)


def write_text_atomic(text: str, path: str | Path) -> None:
    with atomic_path(path) as temp:
        Path(temp).write_text(text)


def save_figure_atomic(figure, path: str | Path, **options) -> Path:
    """matplotlib's savefig, atomically; the format comes from `path`'s suffix."""
    with atomic_path(path) as temp:
        figure.savefig(temp, format=Path(path).suffix.lstrip("."), **options)
    return Path(path)
