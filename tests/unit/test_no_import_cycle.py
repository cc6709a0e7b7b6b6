"""No import loop in colibri/ (issue 10), counting what Python really runs: importing ``a.b.c``
first runs ``a/__init__.py`` and ``a/b/__init__.py``, so every module imports its parent package.
A package ``__init__`` that imported one of its own submodules would close a loop (the submodule's
import runs the ``__init__`` first).  Imports inside functions count (a loop there is a loop in the
design, only postponed); ``if TYPE_CHECKING:`` blocks do not (they never run)."""

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "colibri"


def modules(package: Path) -> dict[str, tuple[Path, bool]]:
    """Every module under ``package``: its dotted name -> (its file, whether it is a package)."""
    found: dict[str, tuple[Path, bool]] = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        found[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return found


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(nodes: list[ast.stmt]) -> Iterator[ast.Import | ast.ImportFrom]:
    for node in nodes:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
            continue
        if isinstance(node, ast.If) and _type_checking(node):
            yield from _imports(node.orelse)
            continue
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.stmt):
                yield from _imports([child])
            elif isinstance(child, ast.excepthandler | ast.match_case):
                yield from _imports(child.body)


def graph(found: dict[str, tuple[Path, bool]]) -> dict[str, set[str]]:
    """Module -> the modules of ``found`` that importing it runs directly (its parent package too)."""
    edges: dict[str, set[str]] = {}
    for name, (path, is_package) in found.items():
        targets: set[str] = set()
        parent = name.rpartition(".")[0]
        if parent in found:
            targets.add(parent)
        here = name if is_package else parent
        for node in _imports(ast.parse(path.read_text(), str(path)).body):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names if alias.name in found)
                continue
            base = node.module or ""
            if node.level:
                anchor = here.split(".")[: len(here.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            for alias in node.names:
                if f"{base}.{alias.name}" in found:
                    targets.add(f"{base}.{alias.name}")  # from a.b import c: the module a.b.c
                elif base in found:
                    targets.add(base)
        targets.discard(name)
        edges[name] = targets
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """One loop per strongly connected part of the graph (Tarjan, iterative), as a path a -> ... -> a."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    parts: list[set[str]] = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                part = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    part.add(member)
                    if member == node:
                        break
                if len(part) > 1:
                    parts.append(part)
    return [_loop_in(part, edges) for part in parts]


def _loop_in(part: set[str], edges: dict[str, set[str]]) -> list[str]:
    """A shortest loop through the part's first module (breadth-first inside the part)."""
    start = min(part)
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(edges[node] & part):
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if child not in came_from:
                    came_from[child] = node
                    following.append(child)
        frontier = following
    raise AssertionError(f"no loop through {start}")  # a strongly connected part always has one


def test_colibri_has_no_import_cycle() -> None:
    found = modules(PACKAGE)
    assert len(found) > 50  # the walk saw the package
    loops = cycles(graph(found))
    assert not loops, "import loops:\n" + "\n".join(" -> ".join(loop) for loop in loops)


def test_the_check_sees_a_loop_through_a_package_init(tmp_path: Path) -> None:
    """The check itself: an ``__init__`` re-exporting a submodule that imports a sibling is a loop;
    a function-level import is one too; a TYPE_CHECKING import is not."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from pkg.sub.backend import Thing\n")
    (pkg / "sub" / "backend.py").write_text("from pkg.sub import core\nThing = core\n")
    (pkg / "sub" / "core.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from pkg import b\n")
    (pkg / "b.py").write_text("from . import a\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import d\n")
    (pkg / "d.py").write_text("import pkg.c\n")
    loops = cycles(graph(modules(pkg)))
    assert sorted(loops) == [
        ["pkg.a", "pkg.b", "pkg.a"],
        ["pkg.sub", "pkg.sub.backend", "pkg.sub"],
    ]
