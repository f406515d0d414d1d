"""A runs directory that moves keeps its cache: cache keys name paths relative to it, and a
cached result written under another root is re-rooted when it is read.

Paths are recognised as text: the runs root as a whole path component sequence (not inside a
longer name), at the start of a string or after a scheme such as sqlite:///. A path outside the
runs directory (a user's model folder, a prompt file, a packaged checkpoint) is left as it is,
so a stage that reads one still runs again when it moves.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from pydantic import BaseModel

RUNS = "<runs>"


def _root_pattern(root: str) -> re.Pattern:
    return re.compile(r"(?<![\w.-])" + re.escape(root.rstrip("/")) + r"(?=/|$)")


def runs_relative(text: str, root: str | None) -> str:
    """`text` with the runs root written as <runs> (what a cache key sees of a path)."""
    return _root_pattern(root).sub(RUNS, text) if root else text


def inside_runs(path: str | Path, root: str | Path | None) -> str:
    """`path` relative to the runs directory `root` when it lies inside it (what a table records,
    so that the table's bytes do not depend on where the directory is), else as given."""
    if root is not None and Path(path).is_absolute() and Path(path).is_relative_to(root):
        return Path(path).relative_to(root).as_posix()
    return str(path)


def rebased(value, old_root: str, new_root: str):
    """`value` with every path under `old_root` moved under `new_root`, in strings, refs,
    dataclasses, pydantic records and containers."""
    if isinstance(value, str):
        return _root_pattern(old_root).sub(lambda _: new_root.rstrip("/"), value)
    if isinstance(value, Path):
        return Path(rebased(str(value), old_root, new_root))
    if isinstance(value, tuple):
        return tuple(rebased(item, old_root, new_root) for item in value)
    if isinstance(value, list):
        return [rebased(item, old_root, new_root) for item in value]
    if isinstance(value, dict):
        return {key: rebased(item, old_root, new_root) for key, item in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.replace(value, **{f.name: rebased(getattr(value, f.name), old_root, new_root)
                                             for f in dataclasses.fields(value) if f.init})
    if isinstance(value, BaseModel):
        return type(value).model_validate(rebased(value.model_dump(), old_root, new_root))
    return value


def recorded_root(written_at: str, record: Path, root: str) -> str | None:
    """The runs root a cache record was written under, from where Prefect says it wrote it
    (`written_at`, its metadata's storage_key) and where it lies now; None when unmoved or when
    the record is not under `root`."""
    try:
        inside = record.relative_to(root).as_posix()
    except ValueError:
        return None
    if written_at == str(record) or not written_at.endswith("/" + inside):
        return None
    return written_at[: -len(inside) - 1]
