"""The module import graph of the installed package `aiot`: no cycle, the product never
imports the evaluation, the package never imports the lab, and one CLI (click) only.

The graph is read from the source (ast), imports inside functions included: a cycle hidden
behind a function-level import is still a cycle (it only shows at run time, in whichever
order the modules happen to load)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "toolkit" / "aiot"

#: The only modules outside aiot.evaluate that may import it: the verbs that run an evaluation.
#: `aiot release` is one: its gate evaluates the candidate and the current release on the
#: installation's history with `aiot evaluate`'s own code (docs/lifecycle.md).
EVALUATION_VERBS = {"aiot.commands.evaluate", "aiot.commands.tune", "aiot.commands.scenarios", "aiot.commands.release"}
#: argparse entry points still in the package, each until the change that replaces it lands.
#: aiot.evaluate.tuning's `python -m` entry is being replaced by `aiot tune` (another branch);
#: remove it from here when that merges.
ARGPARSE_UNTIL_REPLACED = {"aiot.evaluate.tuning"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Every module ``name`` imports (top-level, in functions, in classes), by its full name.
    ``from a.b import c`` is the module a.b.c when that is a module, else a.b."""
    is_pkg = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = name.split(".")
                base = base if is_pkg else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            for a in node.names:
                sub = f"{mod}.{a.name}"
                out.add(sub if sub in known else mod)
    return out


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    known = set(mods)
    return {m: _imports(m, p, known) for m, p in mods.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (or a self-import)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph[v]:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_graph_is_read_from_every_module():
    graph = _graph()
    assert "aiot.cli" in graph and "aiot.evaluate.pipeline" in graph
    # a function-level import counts: aiot.cli loads its verbs with importlib, but imports
    # aiot.commands inside _verbs()
    assert "aiot.commands" in graph["aiot.cli"]


def test_the_cycle_finder_finds_a_cycle_hidden_in_a_function():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_in_aiot():
    cycles = _cycles(_graph())
    assert cycles == [], f"import cycles (imports inside functions included): {cycles}"


def test_only_the_evaluation_imports_the_evaluation():
    offenders = {
        m: sorted(i for i in imps if i == "aiot.evaluate" or i.startswith("aiot.evaluate."))
        for m, imps in _graph().items()
        if not (m == "aiot.evaluate" or m.startswith("aiot.evaluate.")) and m not in EVALUATION_VERBS
    }
    offenders = {m: i for m, i in offenders.items() if i}
    assert offenders == {}, ("product modules import the evaluation; move what they need to the product side "
                             f"(aiot.installation, aiot.alert_settings): {offenders}")


def test_aiot_never_imports_the_lab():
    offenders = {m: sorted(i for i in imps if i == "lab" or i.startswith("lab."))
                 for m, imps in _graph().items()}
    assert {m: i for m, i in offenders.items() if i} == {}


@pytest.mark.parametrize("forbidden", ["argparse", "optparse"])
def test_one_cli_no_second_argument_parser(forbidden):
    users = {m for m, imps in _graph().items() if forbidden in imps}
    assert users - ARGPARSE_UNTIL_REPLACED == set(), f"{forbidden} entry points besides `aiot`: {users}"
