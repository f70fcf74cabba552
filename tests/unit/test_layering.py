"""The module map of docs/design.md holds: no import cycle among backupd modules or packages, and each layer
imports only what lies below it. Every import statement counts, also those inside functions (they run too).

``from pkg import name`` depends on the module ``pkg.name`` when that is a module, else on ``pkg`` itself
(its ``__init__``, re-exports included); importing a submodule is not counted as depending on its parent
package's ``__init__``, which Python runs first anyway and which must not need the submodule back.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "backupd"


def modules(root: Path = ROOT) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file under the package root."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _resolve(name: str, path: Path, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    base = package[:len(package) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


@functools.lru_cache(maxsize=None)
def imports(root: Path = ROOT) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (anywhere in the file)."""
    mods = modules(root)
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(name, path, node)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            else:
                continue
            graph[name].update(t for t in targets if t in mods and t != name)
    return graph


SPAWNERS = {"subprocess", "pty"}
OS_SPAWN = ("system", "popen", "exec", "spawn", "posix_spawn", "fork")


def spawns(path: Path) -> list[str]:
    """How a file could start another program: importing subprocess/pty, or os.system/popen/exec*/spawn*/fork*.
    A Python worker pool (concurrent.futures, multiprocessing) runs our own code, not a program: allowed."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] in SPAWNERS]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            if node.module.split(".")[0] in SPAWNERS:
                found.append(node.module)
            if node.module == "os":
                found += [f"os.{a.name}" for a in node.names if a.name.startswith(OS_SPAWN)]
        elif (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "os"
              and node.attr.startswith(OS_SPAWN)):
            found.append(f"os.{node.attr}")
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one member (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            for succ in successors:
                if succ not in index:
                    index[succ] = low[succ] = len(index)
                    stack.append(succ)
                    on_stack.add(succ)
                    work.append((succ, iter(sorted(graph.get(succ, ())))))
                    break
                if succ in on_stack:
                    low[node] = min(low[node], index[succ])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def package_of(module: str, root: Path = ROOT) -> str:
    """backupd.actions.backup -> backupd.actions; a top-level module (backupd.errors) stands alone."""
    parts = module.split(".")
    if len(parts) >= 2 and (root / parts[1]).is_dir():
        return ".".join(parts[:2])
    return module


def package_graph(graph: dict[str, set[str]], root: Path = ROOT) -> dict[str, set[str]]:
    packages: dict[str, set[str]] = {}
    for module, targets in graph.items():
        for target in targets:
            a, b = package_of(module, root), package_of(target, root)
            if a != b:
                packages.setdefault(a, set()).add(b)
    return packages


def _describe(graph: dict[str, set[str]], component: list[str]) -> str:
    members = set(component)
    edges = [f"{a} -> {b}" for a in component for b in sorted(graph.get(a, ())) if b in members]
    return "; ".join(edges)


def test_no_import_cycle_between_modules():
    graph = imports()
    found = cycles(graph)
    assert not found, "import cycles: " + " | ".join(_describe(graph, c) for c in found)


def test_no_import_cycle_between_packages():
    graph = package_graph(imports())
    found = cycles(graph)
    assert not found, "package cycles: " + " | ".join(_describe(graph, c) for c in found)


def _under(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


# layer (module prefixes) -> what it must never import, from docs/design.md "Layers".
FORBIDDEN = {
    ("backupd.actions",): ("backupd.commands", "backupd.cli"),
    ("backupd.render",): ("backupd.actions", "backupd.commands", "backupd.cli", "backupd.engine",
                          "backupd.process", "backupd.storage", "backupd.evidence", "backupd.state",
                          "backupd.daemon"),
    ("backupd.engine",): ("backupd.actions", "backupd.commands", "backupd.cli", "backupd.daemon"),
    ("backupd.process",): ("backupd.actions", "backupd.commands", "backupd.cli", "backupd.engine"),
}


@pytest.mark.parametrize("layer", sorted(FORBIDDEN), ids=lambda layer: layer[0])
def test_layer_imports_nothing_above_it(layer):
    graph = imports()
    wrong = sorted(f"{m} -> {t}" for m, targets in graph.items() if _under(m, layer)
                   for t in targets if _under(t, FORBIDDEN[layer]))
    assert not wrong, "layering broken: " + "; ".join(wrong)


def test_only_execute_spawns_processes():
    others = {name: spawns(path) for name, path in modules().items() if name != "backupd.process.execute"}
    wrong = {name: found for name, found in others.items() if found}
    assert not wrong, f"only backupd/process/execute.py may start a program; also: {wrong}"


def test_cli_only_assembles_command_groups():
    """backupd/cli.py defines the top-level group; every command lives in backupd/commands/."""
    tree = ast.parse((ROOT / "cli.py").read_text())
    commands = [node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)
                and any("command" in ast.unparse(d) or "group" in ast.unparse(d) for d in node.decorator_list)]
    assert commands == ["main"], f"commands defined in cli.py instead of backupd/commands/: {commands[1:]}"


def test_checker_sees_function_level_and_reexport_cycles(tmp_path):
    """The checker itself: a function-level import and a package re-export each close a cycle."""
    pkg = tmp_path / "backupd"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from backupd import b\n")
    (pkg / "b.py").write_text("from backupd.a import f\n")
    (pkg / "sub" / "__init__.py").write_text("from backupd.sub.inner import thing\n")
    (pkg / "sub" / "inner.py").write_text("thing = 1\n")
    (pkg / "sub" / "user.py").write_text("from . import inner\n")
    (pkg / "c.py").write_text("from backupd.sub import thing\n")
    (pkg / "sub" / "back.py").write_text("import backupd.c\n")
    (pkg / "sub" / "__init__.py").write_text("from backupd.sub.inner import thing\nfrom backupd.sub import back\n")
    graph = imports(pkg)
    assert graph["backupd.sub.user"] == {"backupd.sub.inner"}
    assert sorted(cycles(graph)) == [["backupd.a", "backupd.b"], ["backupd.c", "backupd.sub", "backupd.sub.back"]]
    assert sorted(cycles(package_graph(graph, pkg))) == [["backupd.a", "backupd.b"], ["backupd.c", "backupd.sub"]]
    (pkg / "d.py").write_text("import os\nos.system('true')\n")
    assert spawns(pkg / "d.py") == ["os.system"] and spawns(pkg / "a.py") == []
