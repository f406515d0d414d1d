"""The README and the docs site say only what the repository has: every file path they name
exists, every configuration field they name is a field, every `bolt` name they use is
exported; the benchmark tables follow their JSON files; the site builds under --strict (a broken
link fails it); the README stays short. No Prefect server, no network."""

from __future__ import annotations

import ast
import glob
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bolt_tasks.core.config import RoundConfig
from bolt_tasks.core.results import RoundSummary

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = sorted((ROOT / "docs").rglob("*.md"))
DOCUMENTS = [README, *PAGES]
README_MAX_LINES = 250

# A path is checked when its first folder is one of the repository's; paths under bolt_tasks/
# are often written from inside it (`core/threads.py`), as the code's own comments do.
TOP_FOLDERS = {"bolt", "bolt_tasks", "bolt_cli", "flows", "deployments", "sql", "bench", "recipes",
               "scripts", "tests", "docs"}
BOLT_TASKS_FOLDERS = {"core", "policy", "sampling", "stages", "analyses"}
PATH = re.compile(r"(?<![\w./$-])((?:[\w.{},*-]+/)+[\w.{},*-]*)")
FILE_SUFFIX = re.compile(r"\.(py|sql|json|sh|md|png|toml|yml|yaml)$")
CONFIG_SECTIONS = ("task", "reference", "sampling", "weighting", "training", "evaluation", "execution")
FIELD = re.compile(r"`(?:--set\s+'?)?(" + "|".join(CONFIG_SECTIONS) + r")\.(\w+)")


def relative(path: Path) -> str:
    return str(path.relative_to(ROOT))


def code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


def expand_braces(pattern: str) -> list[str]:
    match = re.search(r"\{([^{}]*)\}", pattern)
    if not match:
        return [pattern]
    return [expanded for option in match.group(1).split(",")
            for expanded in expand_braces(pattern[:match.start()] + option + pattern[match.end():])]


def named_paths(text: str) -> set[str]:
    """Repository paths a document names, as paths from the repository root."""
    found = set()
    for raw in PATH.findall(text):
        path = raw.rstrip(".,")
        first = path.split("/", 1)[0]
        if "<" in path or ">" in path or path.startswith("."):
            continue
        if first in BOLT_TASKS_FOLDERS:
            path = "bolt_tasks/" + path
        elif first not in TOP_FOLDERS:
            continue
        if path.endswith("/") or FILE_SUFFIX.search(path) or "{" in path or "*" in path:
            found.add(path)
    return found


def missing_paths(text: str) -> list[str]:
    missing = []
    for path in sorted(named_paths(text)):
        for candidate in expand_braces(path):
            if not glob.glob(str(ROOT / candidate)):
                missing.append(candidate)
    return missing


@pytest.mark.parametrize("document", DOCUMENTS, ids=relative)
def test_every_repository_path_named_exists(document):
    assert not missing_paths(document.read_text()), (
        f"{relative(document)} names files that do not exist: {missing_paths(document.read_text())}")


def test_the_path_check_can_fail():
    text = "the weights are `sql/weights.sql`, the loss in core/threads.py and `sql/no_such_file.sql`"
    assert named_paths(text) == {"sql/weights.sql", "bolt_tasks/core/threads.py", "sql/no_such_file.sql"}
    assert missing_paths(text) == ["sql/no_such_file.sql"]
    assert missing_paths("`docs/bench/e4_builtin_seed{0,1}.json`, `docs/bench/e4_builtin_seed{0,7}.json`") == [
        "docs/bench/e4_builtin_seed7.json"]


# `write_weights` in `bolt_tasks/stages/weights.py`; `bolt_tasks.policy.distributed:main`
NAME_IN_FILE = re.compile(r"`(\w+)`,?\s+(?:in|of|from)\s+`((?:\w+/)+\w+\.py)`")
MODULE_FUNCTION = re.compile(r"\b((?:bolt|bolt_tasks|bolt_cli|flows|deployments)(?:\.\w+)*):(\w+)")


def defines(path: Path, name: str) -> bool:
    return bool(re.search(rf"^\s*(?:def|class|async def) {name}\b|^{name}\s*[:=]", path.read_text(), flags=re.M))


def missing_names(text: str) -> list[str]:
    missing = []
    for name, path in NAME_IN_FILE.findall(text):
        file = ROOT / path if path.split("/")[0] in TOP_FOLDERS else ROOT / "bolt_tasks" / path
        if not file.is_file() or not defines(file, name):
            missing.append(f"{name} in {path}")
    for module, name in MODULE_FUNCTION.findall(text):
        base = ROOT / module.replace(".", "/")
        file = base.with_suffix(".py") if base.with_suffix(".py").is_file() else base / "__init__.py"
        if not file.is_file() or not defines(file, name):
            missing.append(f"{module}:{name}")
    return missing


@pytest.mark.parametrize("document", DOCUMENTS, ids=relative)
def test_every_function_named_with_its_file_exists(document):
    assert not missing_names(document.read_text()), (
        f"{relative(document)} names what the code does not define: {missing_names(document.read_text())}")


def test_the_name_and_field_checks_can_fail():
    text = ("`with_resolved_backend` in `bolt_tasks/sampling/backends.py`, `no_such_function` in "
            "`bolt_tasks/sampling/backends.py`, bolt_cli.main:main and bolt_cli.main:no_such_main")
    assert missing_names(text) == ["no_such_function in bolt_tasks/sampling/backends.py",
                                   "bolt_cli.main:no_such_main"]
    assert FIELD.findall("`sampling.backend`, `--set training.autocast=native`") == [
        ("sampling", "backend"), ("training", "autocast")]
    assert "no_such_field" not in type(RoundConfig().sampling).model_fields


@pytest.mark.parametrize("document", DOCUMENTS, ids=relative)
def test_every_configuration_field_named_exists(document):
    """`sampling.backend`, `--set training.autocast=native`: each must be a field of its part of
    RoundConfig, or the text describes a knob nobody can set."""
    fields = {section: set(type(getattr(RoundConfig(), section)).model_fields)
              for section in CONFIG_SECTIONS}
    unknown = sorted({f"{section}.{name}" for section, name in FIELD.findall(document.read_text())
                      if name not in fields[section]})
    assert not unknown, f"{relative(document)} names fields RoundConfig does not have: {unknown}"


def bolt_exports() -> set[str]:
    """bolt.__all__, read from the source (importing bolt would import torch and Prefect)."""
    tree = ast.parse((ROOT / "bolt" / "__init__.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
            return set(ast.literal_eval(node.value))
    raise AssertionError("bolt/__init__.py has no __all__")


@pytest.mark.parametrize("document", DOCUMENTS, ids=relative)
def test_python_examples_use_what_bolt_exports(document):
    exports = bolt_exports()
    summary_fields = set(RoundSummary.model_fields)
    for code in code_blocks(document.read_text(), "python"):
        imported = {name.strip() for names in re.findall(r"from bolt import ([\w, ]+)", code)
                    for name in names.split(",")}
        used = set(re.findall(r"\bbolt\.(\w+)", code))
        assert imported | used <= exports, f"{relative(document)}: not in bolt.__all__: {(imported | used) - exports}"
        read = set(re.findall(r"\bsummary\.(\w+)", code))
        assert read <= summary_fields, f"{relative(document)}: RoundSummary has no {read - summary_fields}"


def test_the_api_reference_covers_every_export():
    reference = (ROOT / "docs" / "reference" / "api.md").read_text()
    assert not {name for name in bolt_exports() if name not in reference}


# ---------------------------------------------------------------- the bench tables

def bench_tables():
    spec = importlib.util.spec_from_file_location("bench_tables", ROOT / "docs" / "hooks" / "bench_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_bench_table_changes_when_its_json_changes(tmp_path):
    tables = bench_tables()
    original = json.loads((ROOT / "docs" / "bench" / "train_throughput.json").read_text())
    shutil.copy(ROOT / "docs" / "bench" / "train_throughput.json", tmp_path / "train_throughput.json")
    page = "Before.\n\n<!-- bench: train_throughput -->\n\nAfter."
    before = tables.replace_markers(page, tmp_path)
    assert "<!-- bench" not in before and "| smollm2 |" in before
    assert f"| {original['smollm2']['best_sequences_per_second']['bolt']} |" in before

    changed = json.loads(json.dumps(original))
    changed["smollm2"]["best_sequences_per_second"]["bolt"] = 9.876
    changed["smollm2"]["bolt_over_trl"] = 24.63
    (tmp_path / "train_throughput.json").write_text(json.dumps(changed))
    after = tables.replace_markers(page, tmp_path)
    assert after != before
    assert "| 9.876 |" in after and "| 24.63 |" in after
    assert "| 5.65 |" in before and "| 5.65 |" not in after


def test_a_bench_table_states_what_its_json_records_and_nothing_else(tmp_path):
    tables = bench_tables()
    data = json.loads((ROOT / "docs" / "bench" / "eval_backends.json").read_text())
    data = {k: v for k, v in data.items() if k != "provenance"}
    # a top-level "machine" is a bench's own figure (train_throughput.json has one), not provenance
    bare = tables.render("eval_backends", {**data, "machine": "2 CPU cores"})
    assert "Date: not recorded. Commit: not recorded. Machine: not recorded. Command: not recorded." in bare
    block = {"date": "2026-12-05T10:00:00+00:00", "commit": "0123456789abcdef0123456789abcdef01234567-dirty",
             "machine": "AMD EPYC, 2 cores", "command": "python bench/eval_backends.py --repeats 1"}
    recorded = tables.render("eval_backends", {**data, "provenance": block})
    assert ("Date: 2026-12-05T10:00:00+00:00. Commit: 0123456789-dirty. Machine: AMD EPYC, 2 cores. "
            "Command: `python bench/eval_backends.py --repeats 1`.") in recorded
    assert "backfilled" not in recorded
    backfilled = tables.render("eval_backends", {**data, "provenance": {**block, "backfilled": True}})
    assert "Provenance backfilled from the git history" in backfilled


def test_every_bench_json_records_its_provenance():
    tables = bench_tables()
    for path in sorted((ROOT / "docs" / "bench").glob("*.json")):
        block = json.loads(path.read_text()).get("provenance")
        assert isinstance(block, dict), f"{path.name} has no provenance block"
        assert all(isinstance(block.get(f), str) and block[f] for f in tables.PROVENANCE_FIELDS), (
            f"{path.name}: {block}")
        if block["commit"] != tables.NOT_RECORDED:
            assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?", block["commit"]), f"{path.name}: {block['commit']}"
        if block["command"] != tables.NOT_RECORDED:
            assert block["command"].startswith("python bench/"), f"{path.name}: {block['command']}"


def test_a_bench_records_the_commit_machine_and_command_it_ran_with():
    spec = importlib.util.spec_from_file_location("provenance", ROOT / "bench" / "provenance.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    fresh = module.provenance([str(ROOT / "bench" / "weights_scale.py"), "--large-rows", "0", "--out", "a b.json"])
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?", fresh["commit"]), fresh["commit"]
    assert fresh["command"] == "python bench/weights_scale.py --large-rows 0 --out 'a b.json'"
    assert fresh["date"].endswith("+00:00") and fresh["date"][:4].isdigit()
    assert re.search(r", \d+ cores", fresh["machine"]), fresh["machine"]


def test_every_bench_marker_names_a_json_that_renders():
    tables = bench_tables()
    markers = [m for page in PAGES for m in tables.MARKER.findall(page.read_text())]
    assert markers, "no page has a bench marker"
    for name, view in markers:
        data = json.loads((ROOT / "docs" / "bench" / f"{name}.json").read_text())
        assert tables.render(name, data, view or None).count("\n| ") >= 2


def test_an_unknown_marker_fails_instead_of_vanishing(tmp_path):
    tables = bench_tables()
    with pytest.raises(FileNotFoundError):
        tables.replace_markers("<!-- bench: no_such_bench -->", tmp_path)
    (tmp_path / "odd.json").write_text("{}")
    with pytest.raises(ValueError):
        tables.replace_markers("<!-- bench: odd -->", tmp_path)


# ---------------------------------------------------------------- the site and the README

def test_the_site_builds_strictly(tmp_path):
    """mkdocs build --strict: a broken link, a missing page or image, an unknown anchor or a
    bench marker that does not render fails it. mkdocs comes with the docs extra, which
    `scripts/install.sh --test` installs; without it this fails rather than skips."""
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"),
         "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    benchmarks = (tmp_path / "site" / "benchmarks" / "index.html").read_text()
    assert "Generated from <code>docs/bench/train_throughput.json</code>" in benchmarks
    assert "<!-- bench" not in benchmarks
    api = (tmp_path / "site" / "reference" / "api" / "index.html").read_text()
    assert 'id="bolt.run_round"' in api and 'id="bolt_tasks.core.config.RoundConfig"' in api


def test_the_readme_is_short():
    lines = len(README.read_text().splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; the docs site is where the rest goes"
