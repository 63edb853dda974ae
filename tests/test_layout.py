"""The package's shape, read with `ast` (no imports): the rules ARCHITECTURE.md sets.

- no import circle among module-level imports (imports inside functions are lazy on purpose);
- no function over 80 lines;
- every exception pvtseg raises is a `pvtseg.errors` type, never a bare builtin;
- arrows only down the flow: runtime imports neither torch nor pvtseg.models; engine never
  imports pvtseg.models; models never import export/engine/runtime/training/apps.
"""

from __future__ import annotations

import ast
import builtins
from pathlib import Path
from typing import Dict, Iterator, List, Set, Tuple

import pytest

PKG = Path(__file__).resolve().parents[1] / "python" / "pvtseg"
MAX_FUNCTION_LINES = 80
BUILTIN_EXCEPTIONS = {name for name, obj in vars(builtins).items()
                      if isinstance(obj, type) and issubclass(obj, BaseException)}
# Raising these is part of Python's protocols, not an error report.
PROTOCOL_EXCEPTIONS = {"StopIteration", "StopAsyncIteration", "KeyboardInterrupt", "SystemExit",
                       "NotImplementedError", "GeneratorExit"}


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> Dict[str, Tuple[Path, ast.Module]]:
    return {module_name(p): (p, ast.parse(p.read_text(), str(p))) for p in sorted(PKG.rglob("*.py"))}


def resolve(current: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = current.split(".") if is_package else current.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def module_level_imports(name: str, path: Path, tree: ast.Module, known: Set[str]) -> Set[str]:
    """pvtseg modules imported at module level (including under `if`/`try` at top level)."""
    out: Set[str] = set()

    def visit(stmts: List[ast.stmt]) -> None:
        for node in stmts:
            if isinstance(node, ast.Import):
                out.update(a.name for a in node.names if a.name.split(".")[0] == "pvtseg")
            elif isinstance(node, ast.ImportFrom):
                target = resolve(name, path.name == "__init__.py", node)
                for a in node.names:  # `from pkg import submodule` imports the submodule
                    out.add(f"{target}.{a.name}" if f"{target}.{a.name}" in known else target)
            elif isinstance(node, (ast.If, ast.Try)):
                visit(node.body)
                visit(getattr(node, "orelse", []))
                for h in getattr(node, "handlers", []):
                    visit(h.body)
    visit(tree.body)
    return {m for m in out if m.startswith("pvtseg")}


def import_graph() -> Dict[str, Set[str]]:
    mods = modules()
    known = set(mods)
    graph: Dict[str, Set[str]] = {}
    for name, (path, tree) in mods.items():
        deps = set()
        for m in module_level_imports(name, path, tree, known):
            # importing a.b.c runs a/__init__ and a/b/__init__ first
            parts = m.split(".")
            deps.update(".".join(parts[:i]) for i in range(1, len(parts) + 1) if ".".join(parts[:i]) in known)
        # A module's own parent packages are already being imported when it runs: no edge.
        parts = name.split(".")
        deps -= {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
        graph[name] = deps
    return graph


def find_cycle(graph: Dict[str, Set[str]]) -> List[str]:
    state: Dict[str, int] = {}
    stack: List[str] = []

    def dfs(n: str) -> List[str]:
        state[n] = 1
        stack.append(n)
        for d in sorted(graph.get(n, ())):
            if state.get(d) == 1:
                return stack[stack.index(d):] + [d]
            if d not in state:
                found = dfs(d)
                if found:
                    return found
        stack.pop()
        state[n] = 2
        return []

    for n in sorted(graph):
        if n not in state:
            found = dfs(n)
            if found:
                return found
    return []


def functions(tree: ast.AST) -> Iterator[ast.AST]:
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


def test_no_import_circle():
    cycle = find_cycle(import_graph())
    assert not cycle, "import circle among module-level imports: " + " -> ".join(cycle)


def test_cycle_finder_finds_a_planted_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) == []


def test_no_function_over_80_lines():
    long = []
    for name, (path, tree) in modules().items():
        for fn in functions(tree):
            start = min([fn.lineno] + [d.lineno for d in fn.decorator_list])
            n = fn.end_lineno - start + 1
            if n > MAX_FUNCTION_LINES:
                long.append(f"{name}.{fn.name}: {n} lines")
    assert not long, "functions over 80 lines (split them):\n" + "\n".join(long)


def raised_builtins(tree: ast.AST) -> Iterator[Tuple[int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and node.exc is not None:
            exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if isinstance(exc, ast.Name) and exc.id in BUILTIN_EXCEPTIONS - PROTOCOL_EXCEPTIONS:
                yield node.lineno, exc.id


def test_every_raise_is_a_pvtseg_error():
    bare = [f"{name}:{line} raises {exc}" for name, (_, tree) in modules().items()
            for line, exc in raised_builtins(tree)]
    assert not bare, "raise a pvtseg.errors type instead of a bare builtin:\n" + "\n".join(bare)


def test_no_assert_as_runtime_check():
    found = [f"{name}:{node.lineno}" for name, (_, tree) in modules().items()
             for node in ast.walk(tree) if isinstance(node, ast.Assert)]
    assert not found, "assert is stripped by python -O; raise a pvtseg.errors type:\n" + "\n".join(found)


def test_detectors_catch_planted_violations():
    bad = ast.parse("def f():\n    raise ValueError('x')\n\ndef g():\n    raise StopIteration\n")
    assert [e for _, e in raised_builtins(bad)] == ["ValueError"]
    long_fn = ast.parse("def f():\n" + "    x = 1\n" * 90)
    fn = next(functions(long_fn))
    assert fn.end_lineno - fn.lineno + 1 > MAX_FUNCTION_LINES


FORBIDDEN = {
    # room: top-level imports (anywhere in the module, lazy included) it must not make
    "pvtseg.runtime": ("torch", "pvtseg.models", "pvtseg.training", "pvtseg.export", "pvtseg.apps"),
    "pvtseg.engine": ("pvtseg.models", "pvtseg.training", "pvtseg.apps"),
    "pvtseg.models": ("pvtseg.export", "pvtseg.engine", "pvtseg.runtime", "pvtseg.training", "pvtseg.apps"),
    "pvtseg.export": ("pvtseg.training", "pvtseg.apps", "pvtseg.runtime"),
    "pvtseg.training": ("pvtseg.apps",),
}
# The TorchScript backend is torch by definition; the Segmenter imports it only for .ts files.
ALLOWED_FRAMEWORK = {"pvtseg.runtime.backends.torchscript": ("torch",)}


def all_imports(name: str, path: Path, tree: ast.Module) -> Set[str]:
    out: Set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            out.add(resolve(name, path.name == "__init__.py", node))
    return out


@pytest.mark.parametrize("room", sorted(FORBIDDEN))
def test_arrows_point_down_the_flow(room):
    wrong = []
    for name, (path, tree) in modules().items():
        if name != room and not name.startswith(room + "."):
            continue
        for imp in all_imports(name, path, tree):
            for bad in FORBIDDEN[room]:
                if bad in ALLOWED_FRAMEWORK.get(name, ()):
                    continue
                if imp == bad or imp.startswith(bad + "."):
                    wrong.append(f"{name} imports {imp}")
    assert not wrong, "\n".join(sorted(wrong))
