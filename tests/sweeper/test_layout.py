"""The code's layout holds: studies and benchmarks use the engine through its front door only, the engine
imports nothing from studies or kernels, kernels nothing from Ray or Keras, and no engine import cycle.
Checked over the import graph (every import statement's target, resolved), not by grepping strings."""
import ast
from pathlib import Path

import sweeper
from tests import REPO

ROOT = REPO
FRONT_DOOR = {"sweeper", "sweeper.toolkit"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
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


def engine_graph() -> dict:
    """{engine module: the engine modules it imports}; `from pkg import mod` counts as importing pkg.mod."""
    mods = {module_name(p): p for p in files("sweeper")}
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


def test_engine_has_no_import_cycle():
    graph = engine_graph()
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
    monkeypatch.setitem(globals(), "engine_graph", lambda: {"a": {"b"}, "b": {"a"}})
    try:
        test_engine_has_no_import_cycle()
    except AssertionError as e:
        assert "a -> b -> a" in str(e)
    else:
        raise AssertionError("the cycle a -> b -> a was not found")


def test_the_engine_has_few_top_level_modules():
    top = [p.name for p in (ROOT / "sweeper").glob("*.py") if p.name != "__init__.py"]
    assert len(top) <= 10, top
