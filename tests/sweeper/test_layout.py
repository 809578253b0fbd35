"""The code's layout holds: studies and benchmarks use the engine through its front door only, the engine
imports nothing from studies or kernels, kernels nothing from Ray or Keras, no import cycle in the engine, the
studies or the benchmarks, and a sweep is read through SweepResult only. Checked over the import graph (every
import statement's target, resolved) and the syntax tree, not by grepping strings."""
import ast
from pathlib import Path

import pytest

import sweeper
from tests import REPO

ROOT = REPO
FRONT_DOOR = {"sweeper", "sweeper.toolkit"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts) if path.is_relative_to(ROOT) else [path.stem]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set:
    """(module, name) pairs of every import in a file: `import a.b` -> (a.b, None); `from a import b` ->
    (a, b); relative imports resolved against the file's package."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {(a.name, None) for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            out |= {(base, a.name) for a in node.names}
    return out


def files(*folders) -> list:
    return [p for f in folders for p in sorted((ROOT / f).rglob("*.py"))]


def engine_graph(*folders) -> dict:
    """{module: the modules of `folders` it imports}; `from pkg import mod` counts as importing pkg.mod."""
    mods = {module_name(p): p for p in files(*(folders or ("sweeper",)))}
    graph = {}
    for name, path in mods.items():
        targets = set()
        for base, what in imports(path):
            if f"{base}.{what}" in mods:
                targets.add(f"{base}.{what}")
            elif base in mods and base != name:
                targets.add(base)
        graph[name] = targets - {name}
    return graph


def test_studies_and_benchmarks_use_only_the_front_door():
    public = set(sweeper.__all__) | {"toolkit"}
    wrong = []
    for path in files("studies", "benchmarks", "comparisons"):
        for base, what in imports(path):
            if base.split(".")[0] != "sweeper":
                continue
            if base not in FRONT_DOOR or (base == "sweeper" and what is not None and what not in public):
                wrong.append(f"{path.relative_to(ROOT)}: {base}{'.' + what if what else ''}")
    assert not wrong, "past the front door (sweeper, sweeper.toolkit):\n" + "\n".join(wrong)


def test_the_toolkit_exports_what_it_documents():
    from sweeper import toolkit

    for name in toolkit.__all__:
        assert hasattr(toolkit, name) and name in toolkit.__doc__


def test_engine_imports_no_study_and_kernels_no_framework():
    for path in files("sweeper"):
        assert not {b for b, _ in imports(path) if b.split(".")[0] in ("studies", "kernels")}, path
    for path in files("kernels"):
        assert not {b for b, _ in imports(path) if b.split(".")[0] in ("ray", "keras", "tensorflow", "sweeper")}, path


@pytest.mark.parametrize("folder", ["sweeper", "studies", "benchmarks"])
def test_no_import_cycle(folder):
    graph = engine_graph(folder)
    state = {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycle = stack[stack.index(nxt):] + [nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])


def test_a_cycle_would_be_found(monkeypatch):
    """The cycle check itself: a graph with a loop fails it."""
    monkeypatch.setitem(globals(), "engine_graph", lambda *_: {"a": {"b"}, "b": {"a"}})
    try:
        test_no_import_cycle("sweeper")
    except AssertionError as e:
        assert "a -> b -> a" in str(e)
    else:
        raise AssertionError("the cycle a -> b -> a was not found")


def test_the_engine_has_few_top_level_modules():
    top = [p.name for p in (ROOT / "sweeper").glob("*.py") if p.name != "__init__.py"]
    assert len(top) <= 10, top


READERS = ("sweeper/report", "sweeper/spec", "sweeper/cli.py", "sweeper/toolkit.py", "sweeper/records.py", "studies")
STORE_MODULES = {"sweeper.store.sweep_store", "sweeper.store.records", "sweeper.store.gather"}


def touches_the_store(path: Path) -> list:
    """Where a file imports the store's reading and writing modules or reaches an object's `.store`."""
    tree = ast.parse(path.read_text())
    found = [f"imports {base}" for base, what in imports(path)
             if base in STORE_MODULES or f"{base}.{what}" in STORE_MODULES]
    found += [f"line {n.lineno}: .store" for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr == "store"]
    return found


def test_a_sweep_is_read_through_sweep_result_only():
    """Reports, the CLI, the spec and the studies ask SweepResult (records, configs, compare, provenance, logs);
    only store/ and results/, the driver and execution/'s writers (which write a sweep) and the benchmarks of
    the store's own speed (through `toolkit.SweepStore`) hold a SweepStore."""
    wrong = {}
    for target in READERS:
        for path in [ROOT / target] if target.endswith(".py") else files(target):
            if path.name != "toolkit.py" or touches_the_store(path) != ["imports sweeper.store.sweep_store"]:
                wrong.update({str(path.relative_to(ROOT)): touches_the_store(path)} if touches_the_store(path) else {})
    assert not wrong, wrong


def test_touching_the_store_would_be_found(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from sweeper.store.sweep_store import SweepStore\n\ndef f(result):\n    return result.store\n")
    assert touches_the_store(bad) == ["imports sweeper.store.sweep_store", "line 4: .store"]
