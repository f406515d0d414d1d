"""Is a cached stage result still on disk as the stage left it?

A cache hit is honoured only when every file its result names (a TableRef's table, each file of a
ModelRef's folder) exists with the content digest the stage recorded. The check is cheap where
nothing happened: a file whose size and mtime are the recorded ones is taken as unchanged (a
stat), and only a file whose size or mtime differs is hashed again. A copy that keeps the
content but not the mtimes therefore costs one hash per file, after which the record holds the
new stamps (core/caching.py rewrites it).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from bolt_tasks.core.storage import FileStamp, ModelRef, TableRef, file_digest, folder_files


class Damaged(Exception):
    """A file a cached result names is missing, unreadable or changed; the message says which."""


def _stamped(path: str | Path, size: int, mtime_ns: int, digest: str) -> tuple[int, int]:
    """The file's (size, mtime) if its content is the recorded one, else Damaged."""
    try:
        stat = os.stat(path)
        if (stat.st_size, stat.st_mtime_ns) == (size, mtime_ns):
            return size, mtime_ns
        now = file_digest(path)
    except FileNotFoundError:
        raise Damaged(f"{path} is missing") from None
    except OSError as error:
        raise Damaged(f"{path} cannot be read ({error.strerror or error})") from None
    if now != digest:
        raise Damaged(f"{path} changed since the stage wrote it ({stat.st_size} bytes, sha256 "
                      f"{now}; the stage wrote {size} bytes, sha256 {digest})")
    return stat.st_size, stat.st_mtime_ns


def _table(ref: TableRef) -> TableRef:
    size, mtime_ns = _stamped(ref.path, ref.size, ref.mtime_ns, ref.digest)
    return dataclasses.replace(ref, size=size, mtime_ns=mtime_ns)


def _model(ref: ModelRef) -> ModelRef:
    folder = Path(ref.path)
    if not ref.files:  # a hub id, or a user's folder: nothing recorded but where it is
        if folder.is_absolute() and not folder.exists():
            raise Damaged(f"{folder} is missing")
        return ref
    if not folder.is_dir():
        raise Damaged(f"{folder} is missing")
    recorded = {stamp.name for stamp in ref.files}
    extra = sorted({f.relative_to(folder).as_posix() for f in folder_files(folder)} - recorded)
    if extra:
        raise Damaged(f"{folder / extra[0]} was not written by the stage")
    files = tuple(FileStamp(s.name, *_stamped(folder / s.name, s.size, s.mtime_ns, s.digest), s.digest)
                  for s in ref.files)
    return dataclasses.replace(ref, files=files)


def intact(result):
    """`result` with every file stamp as found on disk now (equal to `result` when no stamp
    moved), or Damaged naming the first file that is missing or whose content changed."""
    if isinstance(result, TableRef):
        return _table(result)
    if isinstance(result, ModelRef):
        return _model(result)
    if isinstance(result, tuple):
        return tuple(intact(item) for item in result)
    if isinstance(result, list):
        return [intact(item) for item in result]
    if isinstance(result, dict):
        return {key: intact(value) for key, value in result.items()}
    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        return dataclasses.replace(result, **{f.name: intact(getattr(result, f.name))
                                              for f in dataclasses.fields(result) if f.init})
    return result
