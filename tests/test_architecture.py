"""The package's import graph, read from the source with ``ast``: no circles, no private names across modules.

Every ``import`` counts, also those inside functions and under ``TYPE_CHECKING`` (a lazy import is still a
dependency). Importing ``a.b.c`` is an edge to ``a.b.c`` only (not to the packages ``a`` and ``a.b`` that
Python runs first), and ``from a.b import c`` is an edge to the submodule ``a.b.c`` when there is one, else to
``a.b``.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "ialp"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str, path: Path) -> list[tuple[str, str | None, int]]:
    """(imported module, imported name or None, line) of every import in the module."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: list[tuple[str, str | None, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((alias.name, None, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                out.append((sub, None, node.lineno) if sub in MODULES else (base, alias.name, node.lineno))
    return [(m, n, line) for m, n, line in out if m == "ialp" or m.startswith("ialp.")]


GRAPH = {name: {m for m, _, _ in _imports(name, path) if m != name} for name, path in MODULES.items()}


def _cycles() -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(GRAPH.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    return found


def test_every_import_resolves_to_a_module() -> None:
    unknown = sorted({(name, m) for name, deps in GRAPH.items() for m in deps if m not in MODULES})
    assert not unknown


def test_import_graph_has_no_circles() -> None:
    assert _cycles() == []


def test_no_private_name_is_imported_from_another_module() -> None:
    private = [f"{MODULES[name].relative_to(ROOT)}:{line} imports {imported} from {module}"
               for name, path in MODULES.items() for module, imported, line in _imports(name, path)
               if module != name and imported is not None and imported.startswith("_")]
    private += [f"{MODULES[name].relative_to(ROOT)}:{line} imports the private module {module}"
                for name, path in MODULES.items() for module, _, line in _imports(name, path)
                if any(part.startswith("_") and part != "__init__" for part in module.split("."))
                and module.rpartition(".")[0] != name.rpartition(".")[0]]
    assert private == []


def test_the_cycle_finder_finds_a_circle() -> None:
    GRAPH["ialp.__probe_a"] = {"ialp.__probe_b"}
    GRAPH["ialp.__probe_b"] = {"ialp.__probe_a"}
    try:
        assert ["ialp.__probe_a", "ialp.__probe_b"] in _cycles()
    finally:
        del GRAPH["ialp.__probe_a"], GRAPH["ialp.__probe_b"]


def test_only_ialp_envs_reads_the_session_internals() -> None:
    readers = [f"{path.relative_to(ROOT)}:{node.lineno}" for name, path in MODULES.items()
               if not name.startswith("ialp.envs")
               for node in ast.walk(ast.parse(path.read_text()))
               if isinstance(node, ast.Attribute) and node.attr == "session"]
    assert readers == []  # the rest reads step's infos, or the read-only ``face``
