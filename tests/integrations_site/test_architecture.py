"""The shape of the code (STYLE 4a, 4c): which app may import which, no import cycle inside an app, and
modules short enough to read in one sitting.

Read from the source with ``ast`` (nothing is imported): every import counts, the ones inside functions
too, so an import moved into a function does not hide an arrow or a cycle.
"""
import ast
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "integrations_site"
APPS = ("tenants", "audit", "catalog", "notifications", "connections", "webhooks", "demo")
MAX_LINES = 400

# What each app may import besides itself (STYLE 4c): connections depends on catalog, webhooks on
# connections, every app may depend on tenants and audit and on the project package's shared pieces;
# notifications (telling tenants what happened) depends on none of them, and connections and webhooks
# hand it what they have to tell.
# Nothing imports demo (installed by the local and test settings only); the project package holds the
# reads that need two apps (integrations_site/activity.py) and may import any app but demo.
ALLOWED = {
    "tenants": {PROJECT, "audit"},
    "audit": {PROJECT, "tenants"},
    "catalog": {PROJECT, "tenants", "audit"},
    "notifications": {PROJECT, "tenants", "audit"},
    "connections": {PROJECT, "tenants", "audit", "catalog", "notifications"},
    "webhooks": {PROJECT, "tenants", "audit", "catalog", "connections", "notifications"},
    "demo": {PROJECT, "tenants", "audit", "catalog", "connections", "webhooks", "notifications"},
    PROJECT: {"tenants", "audit", "catalog", "connections", "webhooks", "notifications"},
}

# Over the limit for now, each with why; none may grow. Remove an entry once its module is split or gone.
OVER_THE_LIMIT: dict[str, tuple[int, str]] = {}


@cache
def modules() -> dict[str, Path]:
    """Dotted name → file, for the project package and every app (migrations left out)."""
    found = {}
    for package in (PROJECT, *APPS):
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" in path.parts or "__pycache__" in path.parts:
                continue
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _known(name: str) -> str | None:
    """The module ``name`` names, or the nearest package of ours holding it (``pkg.mod.Class`` → ``pkg.mod``)."""
    while name and name not in modules():
        name = name.rpartition(".")[0]
    return name or None


@cache
def imports_of(name: str) -> frozenset[tuple[str, int]]:
    """(module of ours, line) for each import in module ``name``, wherever in the file it stands."""
    path = modules()[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            # ``from pkg import mod`` imports the module pkg.mod; ``from mod import name`` the module mod.
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules() else base for alias in node.names]
        else:
            continue
        for target in targets:
            known = _known(target)
            if known and known != name:
                found.add((known, node.lineno))
    return frozenset(found)


def app_of(name: str) -> str:
    return name.split(".")[0]


def forbidden_arrows() -> list[str]:
    arrows = []
    for name in modules():
        for target, line in imports_of(name):
            source, dest = app_of(name), app_of(target)
            if source != dest and dest not in ALLOWED[source]:
                arrows.append(f"{modules()[name].relative_to(ROOT)}:{line} imports {target} ({source} → {dest})")
    return sorted(arrows)


def cycles_within(app: str) -> list[list[str]]:
    """Strongly connected groups of more than one module among the modules of ``app`` (Tarjan)."""
    nodes = [name for name in modules() if app_of(name) == app]
    edges = {name: sorted({t for t, _ in imports_of(name) if app_of(t) == app}) for name in nodes}
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in edges[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in nodes:
        if node not in index:
            visit(node)
    return groups


def test_no_app_imports_an_app_it_must_not():
    assert forbidden_arrows() == []


def test_catalog_imports_nothing_of_connections_and_connections_nothing_of_webhooks():
    arrows = [(app_of(name), app_of(target)) for name in modules() for target, _ in imports_of(name)]
    assert ("catalog", "connections") not in arrows
    assert ("connections", "webhooks") not in arrows
    assert ("webhooks", "connections") in arrows  # the way the arrow does point: the check reads real imports


@pytest.mark.parametrize("app", (PROJECT, *APPS))
def test_no_import_cycle_inside_an_app(app):
    assert cycles_within(app) == []


def test_connections_services_is_a_package_of_one_module_per_concept_that_never_imports_the_tasks():
    services = [name for name in modules() if name.startswith("connections.services.")]
    assert {"integrations", "credentials", "probes", "health", "checks", "statuses", "polling", "oauth", "usage",
            "queueing"} <= {name.split(".")[2] for name in services}
    assert [name for name in services for target, _ in imports_of(name) if target == "connections.tasks"] == []


def long_modules() -> list[str]:
    found = []
    for path in modules().values():
        relative, lines = path.relative_to(ROOT).as_posix(), len(path.read_text().splitlines())
        cap, why = OVER_THE_LIMIT.get(relative, (MAX_LINES, ""))
        if lines > cap:
            found.append(f"{relative}: {lines} lines" + (f", more than when it was listed ({why})" if why else ""))
    return sorted(found)


def test_every_module_is_short_enough_to_read_in_one_sitting():
    assert long_modules() == [], f"split them by concept (a package of the same name); at most {MAX_LINES} lines"


# --- the checks themselves, on code written for them ----------------------------------------------------------


def test_the_graph_sees_imports_inside_functions_and_relative_ones(tmp_path, monkeypatch):
    app = tmp_path / "catalog"
    (app / "services").mkdir(parents=True)
    for name in ("__init__.py", "services/__init__.py"):
        (app / name).write_text("")
    (app / "services" / "a.py").write_text("from . import b\n")
    (app / "services" / "b.py").write_text("def later():\n    from .a import thing\n    import connections.models\n")
    (tmp_path / "connections").mkdir()
    (tmp_path / "connections" / "__init__.py").write_text("")
    (tmp_path / "connections" / "models.py").write_text("")
    for name in (PROJECT, *APPS):
        (tmp_path / name).mkdir(exist_ok=True)
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    for cached in (modules, imports_of):
        cached.cache_clear()
    (app / "services" / "c.py").write_text("x = 1\n" * (MAX_LINES + 1))
    try:
        assert cycles_within("catalog") == [["catalog.services.a", "catalog.services.b"]]
        assert forbidden_arrows() == ["catalog/services/b.py:3 imports connections.models (catalog → connections)"]
        assert long_modules() == [f"catalog/services/c.py: {MAX_LINES + 1} lines"]
    finally:
        monkeypatch.undo()
        for cached in (modules, imports_of):
            cached.cache_clear()
