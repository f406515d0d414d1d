"""Files on disk: every write is atomic (a temp file in the same directory, then a rename, so a
reader or a crash never sees half a file), and stage outputs are content-addressed references.

A stage returns a TableRef or ModelRef (path plus content digest). Prefect caches on task
inputs, so the digest makes a downstream stage's cache key change whenever an upstream
output's content does. `seconds` is the stage's wall-clock time and `finished_at` when it ended
(Unix time), both set by core/caching.stage and neither part of the content. A ref also keeps
each file's size and mtime as the stage left it (not part of the content either): a cache hit
checks them first and hashes a file again only when they differ (core/intact.py).
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
    size: int = -1
    mtime_ns: int = -1

    @classmethod
    def of_file(cls, path: str | Path) -> TableRef:
        """The reference to a finished Parquet file: its path, content digest, size and mtime."""
        stat = os.stat(path)
        return cls(path=str(path), digest=file_digest(path), size=stat.st_size, mtime_ns=stat.st_mtime_ns)

    def read(self) -> pa.Table:
        return pq.read_table(self.path)


@dataclass(frozen=True)
class FileStamp:
    """One file of a model folder as the stage left it: its name in the folder, size, mtime and
    content digest."""

    name: str
    size: int
    mtime_ns: int
    digest: str


@dataclass(frozen=True)
class ModelRef:
    """A policy checkpoint: a local directory (save_pretrained layout) or a hub id. `files` is
    the folder's manifest when a stage wrote it (empty for a user's folder or a hub id)."""

    path: str
    digest: str
    seconds: float = 0.0
    finished_at: float = 0.0
    files: tuple[FileStamp, ...] = ()

    @classmethod
    def of_directory(cls, path: str | Path) -> ModelRef:
        """A folder a stage wrote: every file hashed in full, so the digest is the content's alone
        and survives a copy that does not keep mtimes."""
        files = directory_manifest(path)
        return cls(path=str(path), digest=manifest_digest(files), files=files)


def file_digest(path: str | Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            sha.update(chunk)
    return sha.hexdigest()[:16]


def folder_files(path: str | Path) -> list[Path]:
    """A model folder's files, in a fixed order (its cache records are not part of it)."""
    return [file for file in sorted(Path(path).rglob("*"))
            if file.is_file() and ".prefect-cache" not in file.relative_to(path).parts]


def directory_manifest(path: str | Path) -> tuple[FileStamp, ...]:
    stamps = []
    for file in folder_files(path):
        stat = file.stat()
        stamps.append(FileStamp(file.relative_to(path).as_posix(), stat.st_size, stat.st_mtime_ns,
                                file_digest(file)))
    return tuple(stamps)


def manifest_digest(files: tuple[FileStamp, ...]) -> str:
    sha = hashlib.sha256()
    for stamp in files:
        sha.update(stamp.name.encode())
        sha.update(stamp.digest.encode())
    return sha.hexdigest()[:16]


def directory_digest(path: str | Path, content_limit: int = 1 << 26) -> str:
    """Digest of a user's model directory, read on every run: file contents, or size and mtime for
    files over the limit (hashing a multi-GB checkpoint on every run would cost more than the
    run). Equal to ModelRef.of_directory's digest when no file is over the limit."""
    sha = hashlib.sha256()
    for file in folder_files(path):
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
