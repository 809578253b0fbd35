"""The YAML dialect of specs, overrides and every value the engine writes as text: YAML 1.2 floats (1e9), no
duplicate keys, and a writer whose text reads back to the same typed value. A leaf: only PyYAML."""
from __future__ import annotations

import re

import yaml

from sweeper.hashing import plain


class DuplicateKey(yaml.MarkedYAMLError):
    """A mapping sets the same key twice (YAML would silently keep the last)."""


class Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """SafeLoader that also reads 1e9 and 1E-4 as floats (YAML 1.2), as scientists write them, and refuses
    a mapping that sets a key twice."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            first = {}
            for knode, _ in node.value:
                key = self.construct_object(knode, deep=True)
                try:
                    if key in first:
                        raise DuplicateKey(problem=f"duplicate key {key!r} (first set on line {first[key] + 1})",
                                           problem_mark=knode.start_mark)
                    first[key] = knode.start_mark.line
                except TypeError:  # an unhashable key: the base class says so
                    break
        return super().construct_mapping(node, deep)


class Dumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):
    """The writing side of Loader: a string that Loader would read as a float ("1e9") is quoted."""


FLOAT = re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                    |\.[0-9_]+(?:[eE][-+][0-9]+)?
                    |[-+]?\.(?:inf|Inf|INF)
                    |\.(?:nan|NaN|NAN))$""", re.X)
for _cls in (Loader, Dumper):
    _cls.add_implicit_resolver("tag:yaml.org,2002:float", FLOAT, list("-+0123456789."))


def parse_value(text: str):
    """A YAML-typed value from a string (an override's right-hand side)."""
    return yaml.load(text, Loader=Loader)


def dump_yaml(values) -> str:
    """Block YAML that Loader reads back to the same typed values (numpy scalars made plain first): the one
    place YAML is written (spec.yaml, `sweep config`, the sbatch script's spec)."""
    return yaml.dump(plain(values), Dumper=Dumper, sort_keys=False, allow_unicode=True)


def dump_flow(value) -> str:
    """One-line YAML of a value (an override's right-hand side) that parse_value reads back exactly."""
    text = yaml.dump(value, Dumper=Dumper, default_flow_style=True, width=2 ** 30, allow_unicode=True)
    return text.removesuffix("\n").removesuffix("\n...").removesuffix("...").rstrip("\n")
