"""Imports run one way (STYLE.md): array helpers at the bottom, then the reference layers, then
the kernels and the fast path, then the model, then the commands.

Read from the source with ``ast`` (nothing is imported), counting imports inside functions too:
    * ``xp.py`` imports NumPy only (and CuPy, inside ``get_xp``, once it has seen a CuPy array);
    * the reference layers import only each other, ``xp`` and ``errors``: never the kernels, the
      backend, the fast path or the model;
    * the fast path imports no module above it (the model, the backend, the commands);
    * the package's import graph has no cycle, so no import inside a function dodges one, and
      it follows the order of the layout in ARCHITECTURE.md (each module imports only modules
      listed above it or in its own folder);
    * no module imports another module's private (underscore) name.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "minisketch"

# private names still read across modules in files that issue 17 part B rewrites (kernels by op):
# each entry must disappear once that lands (the test says so when an entry no longer occurs)
KNOWN_PRIVATE = set()


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict:
    """{module name: path} of every module of the package."""
    return {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def imports(path: Path):
    """(imported module, names, node) for every import statement in the file: relative imports
    resolved to absolute names; ``from pkg import mod`` gives pkg.mod when that is a module."""
    mods = modules()
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(a.name, (), node) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            names = tuple(a.name for a in node.names)
            subs = [f"{base}.{n}" for n in names if f"{base}.{n}" in mods]
            out += [(m, (), node) for m in subs] or [(base, names, node)]
    return out


def internal_deps(path: Path) -> set:
    mods = modules()
    return {m for m, _, _ in imports(path) if m in mods and m != module_name(path)}


def test_xp_imports_numpy_only():
    got = {m for m, _, _ in imports(PKG / "xp.py")}
    assert got <= {"__future__", "types", "numpy", "cupy"}, got


@pytest.mark.parametrize("path", sorted((PKG / "layers").glob("*.py")), ids=lambda p: p.name)
def test_layers_import_only_layers_and_array_helpers(path):
    allowed = ("minisketch.layers", "minisketch.xp", "minisketch.errors")
    bad = sorted(m for m in internal_deps(path) if not m.startswith(allowed))
    assert not bad, f"{path.name} imports {bad}: the reference layers sit below those"


@pytest.mark.parametrize("path", sorted((PKG / "fast").glob("*.py")), ids=lambda p: p.name)
def test_fast_path_imports_nothing_above_it(path):
    above = ("minisketch.model", "minisketch.backend", "minisketch.train", "minisketch.sample",
             "minisketch.sampling", "minisketch.checkpoint", "minisketch.export")
    bad = sorted(m for m in internal_deps(path) if m.startswith(above))
    assert not bad, f"{path.name} imports {bad}"


def test_import_graph_has_no_cycle():
    mods = modules()
    graph = {m: internal_deps(p) for m, p in mods.items()}
    # a package's __init__ is imported before its modules: an edge from a module to its own
    # package (``from . import x``) is not a cycle of code
    for m in graph:
        graph[m] = {d for d in graph[m] if not m.startswith(d + ".")}
    state, stack = {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == "open":
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(d):] + [d]))
            if d not in state:
                visit(d)
        stack.pop()
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_no_module_imports_another_modules_private_names():
    mods = modules()
    found = set()
    for path in mods.values():
        rel = str(path.relative_to(PKG))
        aliases = {}                        # local name -> minisketch module
        for m, names, node in imports(path):
            if m in mods and isinstance(node, ast.ImportFrom) and not names:
                for a in node.names:
                    aliases[a.asname or a.name] = m
            for n in names:
                if n.startswith("_") and not n.startswith("__"):
                    found.add((rel, n))
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in aliases and node.attr.startswith("_")
                    and not node.attr.startswith("__")):
                found.add((rel, node.attr))
    assert found <= KNOWN_PRIVATE, f"private names read across modules: {found - KNOWN_PRIVATE}"
    stale = KNOWN_PRIVATE - found
    assert not stale, f"no longer read across modules, remove from KNOWN_PRIVATE: {stale}"


def architecture_order() -> list:
    """The top-level names (``xp``, ``layers``, ``kernels``, ...) of ARCHITECTURE.md's layout
    block, in order."""
    text = (PKG.parent / "ARCHITECTURE.md").read_text()
    block = text.split("```\nminisketch/\n", 1)[1].split("```", 1)[0]
    order = []
    for line in block.splitlines():
        if re.match(r"  \S", line):
            names = re.split(r"\s{2,}", line.strip())[0]
            order += [n.strip().removesuffix(".py").removesuffix("/") for n in names.split(",")]
    return order


def test_imports_follow_the_architecture_layout():
    order = architecture_order()
    mods = modules()
    top = {m: m.split(".")[1] for m in mods if m.count(".") >= 1}
    unlisted = sorted(set(top.values()) - set(order))
    assert not unlisted, f"ARCHITECTURE.md's layout does not list {unlisted}"
    bad = []
    for m, path in mods.items():
        if m not in top:
            continue
        for d in internal_deps(path):
            if d in top and order.index(top[d]) > order.index(top[m]):
                bad.append(f"{m} -> {d}")
    assert not bad, "imports of a module listed further down ARCHITECTURE.md: " + ", ".join(bad)
