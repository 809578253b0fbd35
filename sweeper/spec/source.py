"""YAML specs: loading with line provenance, `extends` inheritance, `sessions`, and key=value overrides."""
from __future__ import annotations

import copy
import difflib
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from sweeper.errors import SpecError
from sweeper.yaml_dialect import DuplicateKey, Loader, parse_value


@dataclass
class Config:
    """A merged mapping and, for every dotted key, the "file:line" that set it."""

    values: dict
    origins: dict = field(default_factory=dict)
    files: list = field(default_factory=list)


def _origins(node, where: str, prefix: str = "") -> dict:
    out = {}
    if isinstance(node, yaml.MappingNode):
        for knode, vnode in node.value:
            key = f"{prefix}{knode.value}"
            out[key] = f"{where}:{knode.start_mark.line + 1}"
            if isinstance(vnode, yaml.MappingNode) and not key.startswith(("sweep.", "zip.")):
                out.update(_origins(vnode, where, key + "."))
            elif isinstance(vnode, yaml.MappingNode):
                out.update({f"{key}.{k.value}": f"{where}:{k.start_mark.line + 1}" for k, _ in vnode.value})
    return out


def _parse(text: str) -> tuple:
    """(values, node tree) of a YAML document, parsed once: the nodes carry the line of every key."""
    loader = Loader(text)
    try:
        node = loader.get_single_node()
        return (loader.construct_document(node) if node is not None else None), node
    finally:
        loader.dispose()


def read_yaml(path: Path) -> Config:
    """One YAML file as a Config (no inheritance)."""
    if path.is_dir():
        raise SpecError("is a directory, not a spec file (give the .yaml file)", where=str(path))
    if not path.is_file():
        raise SpecError(f"no such file {path}", where=str(path))
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise SpecError(f"not a YAML spec: the file is not UTF-8 text (byte {e.start})", where=str(path)) from None
    try:
        values, node = _parse(text)
    except DuplicateKey as e:
        raise SpecError(e.problem, where=f"{path}:{e.problem_mark.line + 1}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise SpecError(f"YAML syntax error: {getattr(e, 'problem', e)}", where=where) from None
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise SpecError(f"a spec must be a mapping of keys, got {type(values).__name__}", where=str(path))
    return Config(values, _origins(node, str(path)), [str(path)])


def deep_merge(base: Config, child: Config) -> Config:
    """child over base: dicts merge recursively, lists and scalars are replaced, child wins."""
    values = copy.deepcopy(base.values)
    origins = dict(base.origins)
    for key, value in child.values.items():
        dotted = str(key)
        if isinstance(value, dict) and isinstance(values.get(key), dict):
            sub = deep_merge(Config(values[key], _sub(origins, dotted)), Config(value, _sub(child.origins, dotted)))
            values[key] = sub.values
            origins = {k: v for k, v in origins.items() if not k.startswith(dotted + ".")}
            origins.update({f"{dotted}.{k}": v for k, v in sub.origins.items()})
        else:
            values[key] = copy.deepcopy(value)
            origins = {k: v for k, v in origins.items() if not k.startswith(dotted + ".")}
            origins.update({k: v for k, v in child.origins.items() if k == dotted or k.startswith(dotted + ".")})
        if dotted in child.origins:
            origins[dotted] = child.origins[dotted]
    return Config(values, origins, base.files + [f for f in child.files if f not in base.files])


def _sub(origins: dict, dotted: str) -> dict:
    n = len(dotted) + 1
    return {k[n:]: v for k, v in origins.items() if k.startswith(dotted + ".")}


def load(path: str | Path, _stack: tuple = ()) -> Config:
    """A spec file with its `extends` chain merged (parents first, child wins); cycles are errors."""
    path = Path(path).resolve()
    if path in _stack:
        chain = " -> ".join(p.name for p in (*_stack, path))
        raise SpecError(f"inheritance cycle: {chain}", where=str(_stack[-1]), key="extends")
    cfg = read_yaml(path)
    parent = cfg.values.pop("extends", None)
    if parent is None:
        return cfg
    if not isinstance(parent, str):
        raise SpecError("expected a file name (a path relative to this file)", where=cfg.origins.get("extends"),
                        key="extends")
    parent_path = (path.parent / parent).resolve()
    if not parent_path.is_file():
        raise SpecError(f"parent spec {parent_path} does not exist", where=cfg.origins.get("extends"),
                        key="extends")
    origins = {k: v for k, v in cfg.origins.items() if k != "extends"}
    return deep_merge(load(parent_path, (*_stack, path)), Config(cfg.values, origins, cfg.files))


def load_sessions(cfg: Config, spec_path: Path) -> dict[str, Config]:
    """The `sessions` of a spec: each session file merged over the spec, by session name."""
    names = cfg.values.pop("sessions", None)
    session_dir = cfg.values.pop("session_dir", ".")
    if names is None:
        return {}
    where = cfg.origins.get("sessions")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise SpecError("expected a non-empty list of session names", where=where, key="sessions")
    # session_dir is relative to the file that set it
    set_in = Path(cfg.origins.get("session_dir", str(spec_path)).rsplit(":", 1)[0])
    base_dir = (set_in.parent / str(session_dir)).resolve()
    out = {}
    for name in names:
        f = base_dir / f"{name}.yaml"
        if not f.is_file():
            raise SpecError(f"session file {f} does not exist", where=where, key="sessions")
        sess = read_yaml(f)
        sess.values.pop("session", None)
        bad = sorted(set(sess.values) - {"data", "fit"})
        if bad:
            raise SpecError("a session file may set only `data` and `fit`", where=sess.origins.get(bad[0]), key=bad[0])
        out[name] = deep_merge(cfg, sess)
    return out


@dataclass(frozen=True)
class Override:
    """One command-line `key=value` (`+key=value` may add a key), read once: the dotted key, the YAML-typed
    value, and the text as typed (where its values came from)."""

    key: str
    value: object
    add: bool
    text: str

    @classmethod
    def parse(cls, text: str) -> "Override":
        if "=" not in text:
            raise SpecError("an override is key=value (or +key=value to add a key)", where=f"override {text!r}")
        key, raw = text.split("=", 1)
        try:
            value = parse_value(raw)
        except yaml.YAMLError as e:
            raise SpecError(f"cannot read the value {raw!r} as YAML: {getattr(e, 'problem', None) or e}",
                            where=f"override {text!r}", key=key.lstrip("+").strip()) from None
        return cls(key.lstrip("+").strip(), value, key.startswith("+"), text)

    @property
    def where(self) -> str:
        return f"override {self.text!r}"


def apply_override(cfg: Config, override: Override, add: bool = False) -> Config:
    """An override onto cfg; `+key=value` (or add=True) may add a key that is not there."""
    key, value, where, add = override.key, override.value, override.where, add or override.add
    parts = key.split(".")
    if parts[0] in ("sweep", "zip") and len(parts) > 1:
        parts = [parts[0], ".".join(parts[1:])]
        add = True  # any axis may be added to the sweep; its key is checked against data/fit later
    values = copy.deepcopy(cfg.values)
    node = values
    for i, p in enumerate(parts[:-1]):
        if p not in node and add:
            node[p] = {}
        if not isinstance(node.get(p), dict):
            raise SpecError(f"{'.'.join(parts[:i + 1])} is not a mapping in the spec (use +{key}=... to add it)",
                            where=where, key=key)
        node = node[p]
    if parts[-1] not in node and not add:
        near = difflib.get_close_matches(parts[-1], [str(k) for k in node], n=1)
        hint = f"did you mean {'.'.join([*parts[:-1], near[0]])}? or " if near else ""
        raise SpecError(f"no such key in the spec ({hint}use +{key}=... to add a new key)", where=where, key=key)
    node[parts[-1]] = value
    origins = {k: v for k, v in cfg.origins.items() if not k.startswith(key + ".")}
    origins[key] = where
    return Config(values, origins, cfg.files)
