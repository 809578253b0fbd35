"""The study contract: one frozen `Study`, resolved once when a spec is loaded, with its parameters declared as
pydantic models whose defaults the engine fills into the spec (and so into the run ids)."""
from __future__ import annotations

import functools
import importlib
import sys
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType

import pydantic

from sweeper.errors import SpecError


class Params(pydantic.BaseModel):
    """Base for a study's data_params / fit_params: unknown keys are errors, defaults are validated too."""

    model_config = pydantic.ConfigDict(extra="forbid", validate_default=True)


@dataclass(frozen=True)
class Finding:
    """What a study reports in words at the top of report.html: each value of `axis` against `baseline` in
    `metric` at every combination of the other axes; or, without an axis, each configuration's mean of
    `metric` with its interval (e.g. a recovery error, recovered - true), over the axes in `by` (the others
    pooled; default all). Only the rows that match `where`."""

    metric: str
    axis: str | None = None
    baseline: object = None
    where: dict = field(default_factory=dict)
    by: tuple | None = None
    pair_by: str | None = None  # "repeat": the arms are paired by repeat though on datasets of their own


@dataclass(frozen=True)
class Study:
    """What a person wants to learn. `simulate(data: dict, seed) -> dict of arrays` makes data from known
    parameters; `fit(dataset, fit: dict, seed) -> {"metrics": ...}` trains or fits on it. Both receive plain
    dicts, validated by `data_params` / `fit_params` (pydantic models, defaults filled). Optional:
    `report(result, figures_dir)`, `setup()` once per worker process before its first run, `teardown()` after
    each run of a warm actor, `version` (bump to re-run everything), `description` (the question),
    `findings` (the `Finding`s report.html states in words), and for `pack: K` both `fit_packed(datasets,
    fits, seeds) -> [result, ...]` (several runs trained as one program) and `pack_key(data, fit)` (runs with
    equal keys may pack; None: never).
    `metrics` (the names `fit` may report, e.g. ("ssim", "psnr")): declared, a precision or Finding metric that
    is not one is refused when the spec is loaded, not after the first round.
    `ref` is how a worker or the CLI finds it again ("pkg.module" or "pkg.module:ATTR"); None for a study
    defined in a script or notebook."""

    name: str
    simulate: Callable
    fit: Callable
    data_params: type[pydantic.BaseModel] | None = None
    fit_params: type[pydantic.BaseModel] | None = None
    version: str | None = None
    report: Callable | None = None
    setup: Callable | None = None
    teardown: Callable | None = None
    description: str | None = None
    ref: str | None = None
    findings: tuple = ()
    metrics: tuple = ()
    fit_packed: Callable | None = None
    pack_key: Callable | None = None

    def __post_init__(self):
        for part in ("simulate", "fit"):
            if not callable(getattr(self, part)):
                raise TypeError(f"Study {self.name!r}: {part} must be callable")
        if not all(isinstance(f, Finding) for f in self.findings):
            raise TypeError(f"Study {self.name!r}: findings must be sweeper.Finding(metric, axis, baseline, where)")
        if isinstance(self.metrics, str) or not all(isinstance(m, str) for m in self.metrics):
            raise TypeError(f"Study {self.name!r}: metrics must be a tuple of names, such as ('ssim', 'psnr')")
        for part in ("data_params", "fit_params"):
            model = getattr(self, part)
            if model is not None and not (isinstance(model, type) and issubclass(model, pydantic.BaseModel)):
                raise TypeError(f"Study {self.name!r}: {part} must be a pydantic model class (sweeper.Params)")


def _import(module: str, where) -> ModuleType:
    spec_dir = Path(where.rsplit(":", 1)[0]).parent if where and ":" in str(where) else None
    for entry in ("", str(spec_dir) if spec_dir else None):  # the working directory, then the spec's own
        if entry is not None and entry not in sys.path:
            sys.path.insert(0, entry)
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name and module.startswith(e.name):
            raise SpecError(f"no module {module!r} (looked in the working directory, beside the spec and on "
                            "sys.path; add its folder to PYTHONPATH or pip install it)", where=where,
                            key="study") from None
        raise SpecError(f"cannot import study module {module!r}: {type(e).__name__}: {e}", where=where,
                        key="study") from None
    except Exception as e:  # the module itself may raise on import
        raise SpecError(f"cannot import study module {module!r}: {type(e).__name__}: {e}", where=where,
                        key="study") from None


def _from_module(mod: ModuleType, ref: str, where) -> Study:
    """The one Study a module holds, else its plain simulate / fit (/ report, setup, teardown) adapted."""
    found = {id(v): (k, v) for k, v in vars(mod).items() if isinstance(v, Study)}
    if len(found) > 1:
        names = ", ".join(sorted(k for k, _ in found.values()))
        raise SpecError(f"module {ref!r} holds several Studies ({names}); name one as {ref}:NAME", where=where,
                        key="study")
    if found:
        attr, study = next(iter(found.values()))
        return replace(study, ref=f"{ref}:{attr}")
    return adapt(mod, ref, where)


def adapt(obj, ref: str | None, where=None) -> Study:
    """A Study from any object or module with simulate and fit (and optionally report, setup, teardown or
    cleanup, data_params, fit_params, __version__ or VERSION, description)."""
    missing = [f for f in ("simulate", "fit") if not callable(getattr(obj, f, None))]
    if missing:
        raise SpecError(f"study {ref or obj!r} has no callable {' or '.join(missing)} (a study needs simulate "
                        "and fit)", where=where, key="study")
    get = lambda *names: next((getattr(obj, n) for n in names if getattr(obj, n, None) is not None), None)  # noqa
    version = get("__version__", "VERSION")
    name = getattr(obj, "__name__", None) or (ref or "study").rsplit(".", 1)[-1]
    return Study(name=name, simulate=obj.simulate, fit=obj.fit, data_params=get("data_params", "DataParams"),
                 fit_params=get("fit_params", "FitParams"), version=None if version is None else str(version),
                 report=get("report"), setup=get("setup"), teardown=get("teardown", "cleanup"),
                 description=get("description"), ref=ref, findings=tuple(get("findings") or ()),
                 metrics=tuple(get("metrics", "METRICS") or ()),
                 fit_packed=get("fit_packed"), pack_key=get("pack_key"))


def resolve(ref, where=None) -> Study:
    """A Study from a Study, "pkg.module", "pkg.module:ATTR", a module, or an object with simulate and fit."""
    if isinstance(ref, Study):
        return ref if ref.ref else replace(ref, ref=_importable_ref(ref))
    if isinstance(ref, ModuleType):
        return _from_module(ref, ref.__name__, where)
    if isinstance(ref, str):
        if ref.startswith("script:"):
            raise SpecError(f"study {ref[7:]!r} was defined in a script or notebook, not an importable module: "
                            "run it again through sweeper.run(spec, ...) with the same Study", where=where,
                            key="study")
        module, _, attr = ref.partition(":")
        mod = _import(module, where)
        if not attr:
            return _from_module(mod, module, where)
        value = getattr(mod, attr, None)
        if value is None:
            raise SpecError(f"module {module!r} has no {attr!r}", where=where, key="study")
        return replace(value, ref=ref) if isinstance(value, Study) else adapt(value, ref, where)
    return adapt(ref, None, where)


def _importable_ref(study: Study) -> str | None:
    """"module:ATTR" if the study is an attribute of the module its simulate comes from (and that module is
    importable by name), else None: a study defined in a script or notebook."""
    module = getattr(study.simulate, "__module__", None)
    mod = sys.modules.get(module or "")
    if mod is None or module == "__main__" or not getattr(mod, "__file__", None):
        return None
    attr = next((k for k, v in vars(mod).items() if v is study), None)
    return f"{module}:{attr}" if attr else None


def validated(model, values: dict, section: str, context=None) -> dict:
    """`values` checked by the study's model and completed with its defaults, as a plain dict. Unknown keys
    are errors whatever the model's own config says (a plain pydantic BaseModel ignores them, and a typo would
    be lost)."""
    if model is None:
        return values
    return strict(model).model_validate(values, context=context).model_dump(mode="python")


@functools.cache
def strict(model):
    """The model as the spec is checked against it: unknown keys are errors, and a number field takes no
    true/false (pydantic would read true as 1). The model itself where it already is so."""
    numbers = [name for name, f in model.model_fields.items() if _takes_numbers(f.annotation)]
    if model.model_config.get("extra") == "forbid" and not numbers:
        return model
    config = pydantic.ConfigDict(**{**model.model_config, "extra": "forbid"})
    validators = {"_no_bools": pydantic.field_validator(*numbers, mode="before")(_no_bool)} if numbers else {}
    return type(model.__name__, (model,), {"model_config": config, "__module__": model.__module__, **validators})


def _takes_numbers(annotation) -> bool:
    """An int or float field (or an optional one), not a bool one."""
    kinds = set(typing.get_args(annotation)) if typing.get_origin(annotation) in (typing.Union, types.UnionType) \
        else {annotation}
    return bool(kinds & {int, float}) and bool not in kinds


def _no_bool(cls, value):
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {value!r}")
    return value


def defaults(model) -> dict:
    """The declared defaults of a model ({} without one); fields without a default are left out."""
    if model is None:
        return {}
    return {name: f.get_default(call_default_factory=True) for name, f in model.model_fields.items()
            if not f.is_required()}
