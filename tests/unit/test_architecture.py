"""The rooms of the code stay as docs/architecture.md draws them: the layer contracts in pyproject.toml hold,
no two modules import each other (directly or round a longer loop), and each vocabulary is defined once."""

from __future__ import annotations

import enum
import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("scheduler_project", "operations", "notifications", "executions", "schedules", "toolkit")


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative: no recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
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


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = grimp.ImportGraph()
    for importer, imported in [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")]:
        graph.add_import(importer=importer, imported=imported)
    assert _cycles(graph) == [["a", "b", "c"]]


def test_no_import_cycle_between_modules() -> None:
    """Function-level imports count too: a lazy import that dodges a cycle at import time is still one."""
    graph = grimp.build_graph(*PACKAGES, include_external_packages=False, cache_dir=None)
    assert _cycles(graph) == []


def test_layer_contracts_hold() -> None:
    """project package -> operations -> notifications -> executions -> schedules -> toolkit; pure modules
    stay pure; only the RedBeat module imports RedBeat (pyproject.toml [tool.importlinter])."""
    lint_imports = Path(sys.executable).parent / "lint-imports"
    done = subprocess.run(
        [str(lint_imports), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]


def _project_modules() -> list[str]:
    names = []
    for package in PACKAGES:
        module = importlib.import_module(package)
        names.append(package)
        for info in pkgutil.walk_packages(module.__path__, prefix=f"{package}."):
            if ".migrations" in info.name or info.name.endswith((".wsgi", ".asgi")):
                continue
            names.append(info.name)
    return names


@pytest.mark.django_db
def test_each_vocabulary_is_defined_once() -> None:
    """Two enums with the same values are one vocabulary written twice, free to drift apart."""
    enums: dict[str, frozenset[str]] = {}
    for name in _project_modules():
        module = importlib.import_module(name)
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, enum.Enum)
                and value.__module__ == name
                and issubclass(value, str)
            ):
                enums[f"{name}.{value.__qualname__}"] = frozenset(m.value for m in value)
    assert len(enums) > 5  # the walk found the project's enums at all
    by_values: dict[frozenset[str], list[str]] = {}
    for qualname, values in enums.items():
        by_values.setdefault(values, []).append(qualname)
    assert [names for names in by_values.values() if len(names) > 1] == []
    short_names = [q.rsplit(".", 1)[1] for q in enums]
    assert sorted({n for n in short_names if short_names.count(n) > 1}) == []
