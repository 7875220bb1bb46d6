"""The shape of the core package: its modules import each other without circles, and importing
it (and running a workflow on a MemoryStore) loads none of the optional heavy dependencies."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

from .procs import ROOT

PACKAGE = "dotflow_providers"
SOURCE = ROOT / "providers" / PACKAGE

#: optional dependencies, each behind an extra: the core must never import them by itself
HEAVY = ("boto3", "botocore", "google.cloud", "opentelemetry", "rich", "cryptography")


def module_names() -> dict[str, Path]:
    """Every module of the package by dotted name (a package's name stands for its __init__)."""
    found = {}
    for path in sorted(SOURCE.rglob("*.py")):
        parts = (PACKAGE, *path.relative_to(SOURCE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def is_type_checking(test: ast.expr) -> bool:
    """`if TYPE_CHECKING:` or `if typing.TYPE_CHECKING:`."""
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def runtime_imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement that can run, at module level or inside functions and classes.

    Imports under `if TYPE_CHECKING:` never run, so they cannot close a circle; their `else:`
    branch does run. Imports inside functions count: a lazy import only defers the circle to
    the first call, and the two modules still cannot be understood or changed apart.
    """
    if isinstance(tree, ast.If) and is_type_checking(tree.test):
        for node in tree.orelse:
            yield from runtime_imports(node)
        return
    if isinstance(tree, ast.Import | ast.ImportFrom):
        yield tree
    for child in ast.iter_child_nodes(tree):
        yield from runtime_imports(child)


def resolve(
    statement: ast.Import | ast.ImportFrom, importer: str, is_package: bool, modules: set[str]
) -> set[str]:
    """The package's modules that `statement` in module `importer` loads by name.

    `from .x import y` loads `x`, and `x.y` too when that is a module. The parent packages that
    Python initialises on the way are left out: every module would otherwise depend on the
    package's `__init__`, which re-exports everything, and the graph would be one circle.
    """
    if isinstance(statement, ast.Import):
        wanted = [alias.name for alias in statement.names]
    else:
        if statement.level:
            base = importer.split(".")
            base = base if is_package else base[:-1]
            base = base[: len(base) - (statement.level - 1)]
            source = ".".join([*base, *([statement.module] if statement.module else [])])
        else:
            source = statement.module or ""
        submodules = [f"{source}.{alias.name}" for alias in statement.names]
        # `from . import _codec` loads the module `_codec`, not everything `__init__` exports
        wanted = submodules if set(submodules) <= modules else [source, *submodules]
    targets = set()
    for name in wanted:
        # `import dotflow_providers.storage._s3` names the deepest module that exists
        module = name
        while module and module not in modules:
            module = module.rpartition(".")[0]
        if module.startswith(PACKAGE) and module != importer:
            targets.add(module)
    return targets


def import_graph() -> dict[str, dict[str, str]]:
    """Module → {imported module: "file:line" of the first import}, from the source with ast."""
    modules = module_names()
    graph: dict[str, dict[str, str]] = {}
    for name, path in modules.items():
        edges = graph.setdefault(name, {})
        tree = ast.parse(path.read_text(), filename=str(path))
        for statement in runtime_imports(tree):
            for target in resolve(statement, name, path.name == "__init__.py", set(modules)):
                where = f"{path.relative_to(ROOT)}:{statement.lineno}"
                edges.setdefault(target, where)
    return graph


def cycles(graph: dict[str, dict[str, str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, {}):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
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

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def test_cycle_finder_reports_a_circle_and_nothing_else() -> None:
    graph = {"a": {"b": "a.py:1"}, "b": {"c": "b.py:1"}, "c": {"a": "c.py:1"}, "d": {"a": ""}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b": ""}, "b": {}}) == []


def test_imports_skip_type_checking_blocks_but_count_lazy_imports() -> None:
    source = textwrap.dedent(
        """
        from typing import TYPE_CHECKING
        from . import _engine
        if TYPE_CHECKING:
            from ._workflow import Workflow
        else:
            from ._status import Status
        def later():
            from .storage import MemoryStore
        """
    )
    modules = {f"{PACKAGE}.{m}" for m in ("_engine", "_workflow", "_status", "storage", "_x")}
    found = set()
    for statement in runtime_imports(ast.parse(source)):
        found |= resolve(statement, f"{PACKAGE}._x", False, modules)
    assert found == {f"{PACKAGE}._engine", f"{PACKAGE}._status", f"{PACKAGE}.storage"}


def test_the_core_package_has_no_import_cycles() -> None:
    graph = import_graph()
    assert graph[PACKAGE], "the package __init__ imports nothing: the graph builder is broken"
    report = []
    for component in cycles(graph):
        members = set(component)
        report.append(" <-> ".join(name.removeprefix(f"{PACKAGE}.") for name in component))
        for source in component:
            for target, where in sorted(graph[source].items()):
                if target in members:
                    report.append(f"    {source} -> {target}  ({where})")
    assert not report, "import cycles in the core package:\n" + "\n".join(report)


def test_importing_the_core_and_running_a_workflow_loads_no_optional_dependency() -> None:
    # A fresh interpreter: this test process has long imported everything. A finder that only
    # watches records which package module first asked for each heavy dependency.
    script = textwrap.dedent(
        f"""
        import json, sys, traceback
        HEAVY = {HEAVY!r}
        culprits = {{}}

        class Watch:
            def find_spec(self, name, path=None, target=None):
                if name in HEAVY and name not in culprits:
                    stack = traceback.extract_stack()
                    ours = [f for f in stack if "dotflow_providers" in f.filename]
                    culprits[name] = f"{{ours[-1].filename}}:{{ours[-1].lineno}}" if ours else "?"
                return None  # let the real finders load it

        sys.meta_path.insert(0, Watch())
        from dotflow_providers import MemoryStore, Workflow, action

        @action
        def double(initial_context):
            return initial_context.value * 2

        run = Workflow("architecture", store=MemoryStore()).add(double, initial_context=21).start()
        assert run.output == 42, run.summary()
        loaded = sorted(
            heavy for heavy in HEAVY
            if any(name == heavy or name.startswith(heavy + ".") for name in sys.modules)
        )
        print(json.dumps({{"loaded": loaded, "culprits": culprits}}))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found["loaded"] == [], f"imported, first from: {found['culprits']}"


ADAPTERS = (
    ROOT / "airflow_plugin" / "dotflow_airflow",
    ROOT / "prefect_blocks" / "dotflow_prefect",
)


def private_core_imports(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, name) of every import of a private core module or name in `tree`, wherever it is
    (type-only and lazy imports too: an adapter must hold only to the public surface)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == PACKAGE and any(part.startswith("_") for part in parts[1:]):
                yield node.lineno, name
                break


def test_the_private_import_finder_sees_every_form() -> None:
    source = textwrap.dedent(
        """
        from typing import TYPE_CHECKING
        import dotflow_providers._format
        from dotflow_providers import _lease, Workflow
        from dotflow_providers.storage._s3 import S3Store
        from dotflow_providers.integration import workflow_lease
        from dotflow_providers.storage import S3Store
        if TYPE_CHECKING:
            from dotflow_providers._engine import StepRecord
        def later():
            from dotflow_providers._journal import Journal
        """
    )
    assert [line for line, _ in private_core_imports(ast.parse(source))] == [3, 4, 5, 9, 11]


def test_adapters_import_only_the_public_core() -> None:
    found = []
    for adapter in ADAPTERS:
        sources = sorted(adapter.rglob("*.py"))
        assert sources, f"no adapter sources under {adapter}"
        for path in sources:
            for line, name in private_core_imports(ast.parse(path.read_text(), str(path))):
                found.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert not found, "adapters must use public core modules (add it to integration):\n" + (
        "\n".join(found)
    )
