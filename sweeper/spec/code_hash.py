"""A hash of a study's code that ignores comments, docstrings and formatting (it is taken over the AST), so
results of changed code are never mixed with old ones while a comment-only edit resumes as before.

Hashed: the study's module (its report function left out: drawing does not change results) and, transitively,
every module it imports that lives beside it (under the same sys.path entry), except the engine itself.
A study defined in a script is hashed through its functions' source."""
from __future__ import annotations

import ast
import hashlib
import importlib.util
import inspect
import textwrap
from pathlib import Path

ENGINE = "sweeper"


def _names(node: ast.AST) -> set:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def _drop_report(tree: ast.Module, report: str, roots: set) -> None:
    """Remove the report function and the top-level functions and classes only it uses: drawing does not
    change results, so editing a figure keeps the results. `roots`: the names the study runs by (simulate,
    fit, ...); every name the module's other statements use is kept too."""
    defs = {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    todo = set(roots).union(*(_names(n) for n in tree.body if n not in defs.values())) - {report}
    keep = set()
    while todo:
        name = todo.pop()
        if name in defs and name not in keep and name != report:
            keep.add(name)
            todo |= _names(defs[name])
    tree.body = [n for n in tree.body if n not in defs.values() or n.name in keep]


REPORT_ONLY = {"findings", "description"}  # Study(...) keywords that change what is said, not what is computed


def _drop_report_keywords(tree: ast.Module) -> None:
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "Study":
            node.keywords = [k for k in node.keywords if k.arg not in REPORT_ONLY]


def _strip(tree: ast.Module, report: str | None = None, roots: set = frozenset()) -> ast.AST:
    """The tree without docstrings, the Study's findings and description (and without its report code)."""
    _drop_report_keywords(tree)
    if report:
        _drop_report(tree, report, roots)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body
                and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant)
                and isinstance(body[0].value.value, str)):
            body[:] = body[1:] or [ast.Pass()]
    return tree


def source_hash(text: str, report: str | None = None, roots: set = frozenset()) -> str:
    tree = _strip(ast.parse(text), report, roots)
    return hashlib.sha256(canonical(tree).encode()).hexdigest()


def canonical(node) -> str:
    """The syntax tree as text that stays the same across Python versions for the same source: node types and
    their fields by name, positions left out, and empty fields (None, []) left out, as newer Pythons add
    fields that are empty in code that does not use them (`type_params`, 3.12) and `ast.dump` stopped
    printing empty fields (3.13)."""
    if isinstance(node, ast.AST):
        fields = (f"{name}={canonical(value)}" for name, value in ast.iter_fields(node)
                  if value is not None and value != [])
        return f"{type(node).__name__}({','.join(fields)})"
    if isinstance(node, list):
        return f"[{','.join(map(canonical, node))}]"
    return repr(node)


def _imports(tree: ast.AST, module: str, is_package: bool) -> set:
    """Absolute names of the modules an AST imports (for `from a import b`, both a and a.b)."""
    package = module if is_package else module.rpartition(".")[0]
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{a.name}" for a in node.names)
    return {n for n in names if n}


def _find(name: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError, AttributeError):
        return None
    return Path(spec.origin).resolve() if spec and spec.origin and spec.origin.endswith(".py") else None


def _local(path: Path | None, root: Path) -> bool:
    return bool(path) and root in path.parents and not {"site-packages", "dist-packages"} & set(path.parts)


def _origin(name: str, root: Path) -> Path | None:
    """The file of module `name` if it lives under `root` (not installed packages, not the engine). The top
    package is checked first: finding a dotted name imports its parents, and a framework is slow to import."""
    parts = name.split(".")
    if parts[0] == ENGINE:
        return None
    for i in range(1, len(parts)):  # every parent must be a local package (`from mod import function` is no module)
        parent = _find(".".join(parts[:i]))
        if not _local(parent, root) or parent.name != "__init__.py":
            return None
    path = _find(name)
    return path if _local(path, root) else None


def module_root(module: str) -> Path | None:
    """The sys.path entry a module is found under (the folder holding its top package), or None."""
    path = _find(module)
    if path is None:
        return None
    for _ in range(module.count(".") + 1 + (path.name == "__init__.py")):
        path = path.parent
    return path


def local_modules(module: str) -> dict:
    """{module name: file} of a module and, transitively, the modules it imports that live beside it (under the
    same sys.path entry), the engine left out: the code a worker needs of a study."""
    root = module_root(module) if module.split(".")[0] != ENGINE else None
    if root is None:
        return {}
    out, todo = {}, [module]
    while todo:
        name = todo.pop()
        path = _origin(name, root)
        if name in out or path is None:
            continue
        out[name] = path
        todo.extend(_imports(ast.parse(path.read_text()), name, path.name == "__init__.py"))
    return out


def module_hashes(module: str, report: str | None = None, roots: set = frozenset()) -> dict:
    """{file (relative to the study's root): AST hash} of a module and the local modules it imports."""
    files = local_modules(module)
    if not files:
        return {}
    root = module_root(module)
    return {path.relative_to(root).as_posix(): source_hash(path.read_text(), *((report, roots) if name == module
                                                                                  else ()))
            for name, path in files.items()}


def function_hashes(study) -> dict:
    """{function name: hash} of a script study's functions (source AST, else compiled code)."""
    out = {}
    for part in ("simulate", "fit", "setup", "teardown"):
        fn = getattr(study, part)
        if fn is None:
            continue
        try:
            out[part] = source_hash(textwrap.dedent(inspect.getsource(fn)))
        except (OSError, TypeError, SyntaxError):
            code = getattr(fn, "__code__", None)
            out[part] = hashlib.sha256(repr((code.co_code, code.co_consts) if code else fn).encode()).hexdigest()
    return out


def study_code(study) -> dict:
    """{"sha256": one hash over the parts, "parts": {file or function: hash}} of a study's code."""
    if study.ref:
        module = study.ref.split(":")[0]
        report = getattr(study.report, "__name__", None) if getattr(study.report, "__module__", None) == module \
            else None
        roots = {getattr(getattr(study, p), "__name__", "") for p in ("simulate", "fit", "setup", "teardown",
                                                                      "data_params", "fit_params")}
        parts = module_hashes(module, report, roots - {""})
    else:
        parts = {}
    parts = parts or function_hashes(study)
    total = hashlib.sha256("".join(f"{k}={v};" for k, v in sorted(parts.items())).encode()).hexdigest()
    return {"sha256": total, "parts": parts}
