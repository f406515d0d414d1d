"""The house: layers that only import downward, no import cycles, small files, the README's
architecture table matching the packages, sql/views.sql matching the table registry."""

import re
from pathlib import Path

from bolt_tasks.core.imports import direct_imports, module_file, project_modules
from bolt_tasks.core.tables import views_sql

ROOT = Path(__file__).resolve().parents[1]
# Lowest first; a module may import its own layer and the layers below it, never above.
LAYERS = [
    "bolt_tasks.core", "bolt_tasks.policy", "bolt_tasks.sampling", "bolt_tasks.stages",
    "bolt_tasks.analyses", "flows", "deployments", "bolt", "bolt_cli",
]
MAX_LINES = 400


def layer_of(module: str) -> int:
    if module == "bolt_tasks":
        return 0
    return next(i for i, layer in enumerate(LAYERS) if module == layer or module.startswith(layer + "."))


def test_every_module_belongs_to_a_layer():
    for module in project_modules():
        layer_of(module)  # StopIteration if a module sits outside every layer


def test_no_module_imports_a_higher_layer():
    upward = [
        f"{module} (layer {LAYERS[layer_of(module)]}) imports {imported} ({LAYERS[layer_of(imported)]})"
        for module in project_modules()
        for imported in direct_imports(module)
        if layer_of(imported) > layer_of(module)
    ]
    assert not upward, "\n".join(upward)


def test_import_graph_has_no_cycle():
    graph = {module: set(direct_imports(module)) - {module} for module in project_modules()}
    # Package __init__ files are empty here; an edge to a parent package is not a dependency.
    graph = {m: {i for i in imports if not m.startswith(i + ".")} for m, imports in graph.items()}
    state: dict[str, str] = {}

    def visit(module, path):
        state[module] = "open"
        for imported in sorted(graph.get(module, ())):
            if state.get(imported) == "open":
                raise AssertionError("import cycle: " + " -> ".join(path + [module, imported]))
            if imported not in state:
                visit(imported, path + [module])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [])


def test_no_file_over_the_line_limit():
    files = [module_file(module) for module in project_modules()]
    files += sorted((ROOT / "tests").glob("*.py")) + sorted((ROOT / "bench").glob("*.py"))
    long = {str(f): n for f in files if (n := len(f.read_text().splitlines())) > MAX_LINES}
    assert not long, long


def test_readme_architecture_table_lists_the_layers_in_order():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Architecture", 1)[1].split("\n## ", 1)[0]
    packages = re.findall(r"^\| \d+ \| `([a-z_/]+?)/?` \|", section, flags=re.M)
    assert [p.replace("/", ".") for p in packages] == LAYERS


def test_views_sql_is_generated_from_the_registry():
    assert (ROOT / "sql" / "views.sql").read_text() == views_sql(), (
        "sql/views.sql is out of date: run `bolt views > sql/views.sql`")
