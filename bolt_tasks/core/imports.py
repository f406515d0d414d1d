"""The project's import graph and the SQL files its modules read, found by reading the source.

Read statically (ast), so imports inside functions count as much as those at the top of a
module. Two users: a stage's cache key hashes every project module its module reaches and
every SQL file those modules read (core/caching.py), and the architecture test checks that no
module imports one of a higher layer and that the graph has no cycle.
"""

from __future__ import annotations

import ast
import importlib.util
from functools import lru_cache
from pathlib import Path

# Top-level packages of this project, lowest layer first (README "Architecture").
PROJECT_PACKAGES = ("bolt_tasks", "flows", "deployments", "bolt", "bolt_cli")
# The name the SQL files are read by: core/duck.py's sql_text("<name>") reads sql/<name>.sql.
SQL_READER = "sql_text"


def is_project_module(name: str) -> bool:
    return name.split(".")[0] in PROJECT_PACKAGES


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # 'package.module.attribute' is not a module
        return False


def module_file(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise ImportError(f"no source file for module {name}")
    return Path(spec.origin)


@lru_cache(maxsize=None)
def _tree(name: str) -> ast.Module:
    path = module_file(name)
    return ast.parse(path.read_text(), filename=str(path))


def _with_parent_packages(name: str) -> set[str]:
    """`a.b.c` and the packages whose __init__ importing it runs: `a`, `a.b`."""
    parts = name.split(".")
    return {".".join(parts[: i + 1]) for i in range(len(parts))}


@lru_cache(maxsize=None)
def direct_imports(name: str) -> frozenset[str]:
    """Project modules that module `name` imports anywhere in its source."""
    found: set[str] = set()
    for node in ast.walk(_tree(name)):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from a.b import c`: c is a module or a name defined in a.b
            candidates = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        else:
            continue
        for candidate in candidates:
            if is_project_module(candidate) and _is_module(candidate):
                found |= _with_parent_packages(candidate)
    found.discard(name)
    return frozenset(found)


def import_closure(name: str) -> list[str]:
    """`name` and every project module it reaches through imports, sorted."""
    seen, pending = set(), [name, *_with_parent_packages(name)]
    while pending:
        module = pending.pop()
        if module not in seen:
            seen.add(module)
            pending.extend(direct_imports(module))
    return sorted(seen)


@lru_cache(maxsize=None)
def sql_files_read(name: str) -> frozenset[str]:
    """The SQL files module `name` reads: the literal names it passes to sql_text(). A name
    that is not a literal could not be hashed into a cache key, so it is refused."""
    names = set()
    for node in ast.walk(_tree(name)):
        if not isinstance(node, ast.Call):
            continue
        function = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
        if function != SQL_READER:
            continue
        if not node.args or not isinstance(node.args[0], ast.Constant) or not isinstance(node.args[0].value, str):
            raise ValueError(
                f"{module_file(name)} line {node.lineno}: {SQL_READER}() needs the SQL file's name "
                "as a string literal, so the cache keys of the stages that run it can include it"
            )
        names.add(node.args[0].value)
    return frozenset(names)


def project_modules() -> list[str]:
    """Every module of the project's packages, by walking their directories."""
    modules = []
    for package in PROJECT_PACKAGES:
        root = module_file(package).parent
        for path in sorted(root.rglob("*.py")):
            relative = path.relative_to(root.parent).with_suffix("")
            parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
            modules.append(".".join(parts))
    return modules
