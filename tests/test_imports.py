"""The package's import graph, function-local imports counted: no cycle, no import of another
module's private name, and local imports of our own modules only where they keep heavy
libraries out of start-up (and say so)."""
from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "rankbits"
# modules whose function-local imports of ours are on purpose, each saying why: the command line
# (torch, pandas, scipy stay out of --help), reading data (torch stays out), the job server's
# client (a job's thin script imports only it; the server imports the rest before it forks)
LOCAL_OK = {"rankbits.cli", "rankbits.data", "rankbits.jobserver"}


def modules() -> dict[str, Path]:
    out = {}
    for p in SRC.rglob("*.py"):
        parts = list(p.relative_to(SRC.parent).with_suffix("").parts)
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    return out


def imports(mods: dict[str, Path]):
    """(module, imported module, imported name, inside a function) for each import of ours."""
    for name, path in mods.items():
        tree = ast.parse(path.read_text())
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        inner = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                 for n in ast.walk(f) if n is not f}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                base = package.split(".")[:len(package.split(".")) - node.level + 1] if node.level else []
                target = ".".join(base + ([node.module] if node.module else [])) if node.level else node.module
                for alias in node.names:
                    full = f"{target}.{alias.name}"
                    if full in mods:
                        yield name, full, None, id(node) in inner
                    elif target in mods:
                        yield name, target, alias.name, id(node) in inner
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name in mods:
                        yield name, alias.name, None, id(node) in inner


def test_no_import_cycle_counting_function_local_imports():
    mods = modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for a, b, _, _ in imports(mods):
        if a != b:
            graph[a].add(b)
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(m: str, path: list[str]):
        state[m] = 1
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(n):] + [m, n]))
            if n not in state:
                visit(n, path + [m])
        state[m] = 2

    for m in sorted(mods):
        if m not in state:
            visit(m, [])


def test_no_private_names_of_another_module_and_local_imports_only_where_said():
    mods = modules()
    found = list(imports(mods))
    private = [(a, f"{b}.{n}") for a, b, n, _ in found if n and n.startswith("_") and not n.startswith("__")]
    assert private == []
    local = sorted({(a, b) for a, b, _, inner in found if inner and a not in LOCAL_OK})
    assert local == []
    assert len(found) > 100  # the walk sees the package's imports
