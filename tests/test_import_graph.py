"""The import graph, read from the source with `ast` (every import, also those inside functions).

- `models/` and `checks/` never import Dagster.
- No import cycle between modules, nor between the units the layout names: each subpackage or module of
  `models/`, the catalog contracts (`models/catalog/schema.py`, which the sourcing adapters and the
  quarantine rules share), each rule set of `checks/` (independent modules: the sourcing adapters apply
  `quarantine_rules`, the asset checks run the suites), `assets/`, the code location's leaves and its wiring.
- The leaves (resources, partitions definitions, settings) import no asset module; asset modules import
  nothing else of `orchestration/`; `orchestration/definitions.py` is the one module importing asset modules,
  and it imports every one.
"""

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

from orchestration.settings import REPO_ROOT

PACKAGES = ("models", "checks", "assets", "orchestration")
LEAVES = {
    "orchestration.partitions",
    "orchestration.resources",
    "orchestration.llm_resource",
    "orchestration.local_state",
    "orchestration.registry_lock",
    "orchestration.settings",
}
CONTRACTS = {"models.catalog.schema"}
ASSET_HELPERS = {"assets", "assets.ui_metadata"}  # metadata helpers, not asset modules


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for package in PACKAGES for p in (REPO_ROOT / package).rglob("*.py")}


def _imports(path: Path) -> set[str]:
    """Every module named by an import statement of the file (`from a import b` names `a` and `a.b`)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (itself excluded)."""
    modules = _modules()
    return {name: (_imports(path) & modules.keys()) - {name} for name, path in modules.items()}


def unit(module: str) -> str:
    parts = module.split(".")
    if module in CONTRACTS:
        return module
    if parts[0] in ("models", "checks"):
        return ".".join(parts[:2])
    if parts[0] == "orchestration":
        return "orchestration (leaves)" if module in LEAVES else "orchestration (wiring)"
    return parts[0]


def _assert_acyclic(edges: dict[str, set[str]], what: str) -> None:
    try:
        tuple(TopologicalSorter(edges).static_order())
    except CycleError as err:
        # graphlib lists the cycle along "is imported by"; read backwards it is "imports".
        pytest.fail(f"import cycle between {what}: {' -> '.join(reversed(err.args[1]))}")


def test_models_and_checks_never_import_dagster() -> None:
    offenders = {
        name: sorted(i for i in _imports(path) if i.split(".")[0].startswith("dagster"))
        for name, path in _modules().items()
        if name.split(".")[0] in ("models", "checks")
    }
    assert {name: found for name, found in offenders.items() if found} == {}


def test_no_module_imports_itself_back(graph) -> None:
    _assert_acyclic(graph, "modules")


def test_no_cycle_between_packages(graph) -> None:
    units: dict[str, set[str]] = {}
    for module, imported in graph.items():
        units.setdefault(unit(module), set()).update(unit(i) for i in imported if unit(i) != unit(module))
    _assert_acyclic(units, "packages")


def test_the_leaves_import_no_asset_and_only_definitions_imports_asset_modules(graph) -> None:
    asset_modules = {m for m in graph if m.startswith("assets.") and m not in ASSET_HELPERS}
    importers = {
        m for m, imported in graph.items() if imported & asset_modules and not m.startswith("assets")
    }
    assert importers == {"orchestration.definitions"}
    assert asset_modules <= graph["orchestration.definitions"]
    for leaf in LEAVES:
        assert not {i for i in graph[leaf] if i.startswith(("assets", "orchestration"))} - LEAVES, leaf
    for module in asset_modules:
        assert {i for i in graph[module] if i.startswith("orchestration.")} <= LEAVES, module
