"""The resolved, validated spec of a study: what every later step reads, checked before any Ray work."""
from __future__ import annotations

import difflib
import logging
from typing import Annotated
from pathlib import Path

import pydantic

from sweeper.columns import first_duplicate, key_of
from sweeper.errors import SpecError
from sweeper.hashing import short_hash
from sweeper.spec import precision
from sweeper.spec import source as config
from sweeper.spec.code_hash import study_code
from sweeper.spec.models import DESIGN_KEYS, HOW_KEYS, Design, HowToRun, how_to_run, validated
from sweeper.study import Study, defaults, resolve

log = logging.getLogger("sweeper")
TOP_KEYS = {"study", "description", "data", "fit", "sweep", "zip", "precision", *DESIGN_KEYS, *HOW_KEYS}


class Spec(pydantic.BaseModel):
    """What to sweep, resolved and validated: the study, its data and fit params (defaults filled in), the
    swept and zipped axes, sessions, repeats, seeds, the report and precision sections; `how` is how to run it
    (`HowToRun`, all the executors get). `origins`: the file:line of every value."""

    model_config = pydantic.ConfigDict(arbitrary_types_allowed=True, frozen=True)
    study: Study
    name: str
    seed: int
    data: dict
    fit: dict
    sweep: dict = {}
    zip: dict = {}
    data_mode: str = "shared"
    repeats_data: int = 1
    repeats_fit: int = 1
    sessions: dict = {}   # name -> {"data": ..., "fit": ...}
    origins: dict = {}
    path: str | None = None
    description: str = ""
    report: dict = {}   # {metric, maximize, axes}: the generic sweep report
    seeds: str = "paired"   # paired: fit arms share fit seeds; independent: a seed per arm too
    code: dict = {}   # {"sha256", "parts"}: the study's code (sweeper.code)
    precision: dict = {}  # spec.precision: repeats added until intervals are tight
    how: HowToRun = HowToRun()

    @property
    def study_name(self) -> str:
        return self.study.name

    @property
    def study_ref(self) -> str:
        """How spec.yaml names the study: "module" or "module:ATTR", or "script:NAME" (not re-runnable)."""
        return self.study.ref or f"script:{self.study.name}"

    def repeats(self):
        if self.data_mode == "crossed":
            return {"data": self.repeats_data, "fit": self.repeats_fit}
        return self.repeats_data if self.data_mode == "independent" else self.repeats_fit

    def to_dict(self) -> dict:
        """The resolved spec as plain YAML-able values (spec.yaml)."""
        how = self.how.to_dict()
        d = {"study": self.study_ref, "name": self.name, **({"description": self.description}
                                                             if self.description else {}), "seed": self.seed,
             "data": self.data, "fit": self.fit, "sweep": self.sweep, "zip": self.zip, "data_mode": self.data_mode,
             "repeats": self.repeats(), **{k: how.pop(k) for k in ("resources", "executor", "retries", "save_datasets")}}
        if "actors" in how:
            d["actors"] = how.pop("actors")
        optional = {"sessions": self.sessions, "report": self.report,
                    "seeds": self.seeds if self.seeds != "paired" else None, "precision": self.precision}
        return {**d, **{k: v for k, v in optional.items() if v}, **how}

    def sweep_id(self) -> str:
        """Hash of what decides the runs' results (not resources or executor), so a re-run resumes."""
        return short_hash({**self.plan_inputs(), "code": self.code.get("sha256")}, 10)

    def plan_inputs(self) -> dict:
        """What decides the plan (not resources, executor or the code): equal for a spec whose code changed."""
        keys = ("study", "name", "seed", "data", "fit", "sweep", "zip", "data_mode", "repeats", "sessions", "seeds",
                "precision")
        d = self.to_dict()
        d["study"] = self.study.name
        return {k: d.get(k) for k in keys}


def get_dotted(d: dict, dotted: str):
    node = d
    for p in dotted.split("."):
        if not isinstance(node, dict) or p not in node:
            raise KeyError(dotted)
        node = node[p]
    return node


def _axes(values, key, origins, path, spec_data, spec_fit, sessions) -> dict:
    axes = values.get(key) or {}
    if not isinstance(axes, dict):
        raise SpecError("expected a mapping of dotted keys to lists of values", where=origins.get(key, path), key=key)
    axes = {k: v for k, v in axes.items() if v is not None}  # `data.x: null` in a child removes the parent's axis
    for axis, vals in axes.items():
        where = origins.get(f"{key}.{axis}", origins.get(key, path))
        if not isinstance(vals, list):
            raise SpecError(f"expected a list of values, got {vals!r}", where=where, key=f"{key}.{axis}")
        if not vals:
            raise SpecError("the list of values is empty", where=where, key=f"{key}.{axis}")
        dup = first_duplicate(vals) if key == "sweep" else None  # zipped lists may repeat; their rows may not
        if dup:
            a, b = (vals[i] for i in dup)
            raise SpecError(f"values {a!r} and {b!r} are equal, so they would run indistinguishable "
                            "configurations; keep one", where=where, key=f"{key}.{axis}")
        section, _, rest = str(axis).partition(".")
        if section not in ("data", "fit") or not rest:
            raise SpecError("a sweep key is data.<key> or fit.<key>", where=where, key=f"{key}.{axis}")
        trees = [{"data": spec_data, "fit": spec_fit}] + list(sessions.values())
        if not any(_has(t, axis) for t in trees):
            known = sorted({k for t in trees for k in t[section]})
            near = difflib.get_close_matches(rest, known, n=1)
            hint = f"; did you mean {section}.{near[0]}?" if near else ""
            raise SpecError(f"{axis} is not a parameter of the study or the spec{hint}", where=where,
                            key=f"{key}.{axis}")
    return axes


def _distinct_rows(zips: dict, where) -> None:
    """Zipped lists move together: two equal rows would run indistinguishable configurations."""
    rows = [list(row) for row in zip(*zips.values())]
    dup = first_duplicate(rows)
    if dup:
        raise SpecError(f"rows {dup[0] + 1} and {dup[1] + 1} of the zipped lists ({', '.join(zips)}) are equal: "
                        f"{rows[dup[0]]!r}; keep one", where=where, key="zip")


def _has(tree, dotted):
    try:
        get_dotted(tree, dotted)
        return True
    except KeyError:
        return False


def from_config(cfg: config.Config, path: str | None = None) -> Spec:
    """Validate a merged Config into a Spec; every problem is a SpecError naming the file and key."""
    values, origins = cfg.values, dict(cfg.origins)
    _check_keys(values, origins, path)
    study = resolve(values["study"], origins.get("study", path))
    given = {k: values[k] for k in DESIGN_KEYS if values.get(k) is not None}
    default_name = Path(path).stem if path else study.name
    design = validated(Design, {**given, "name": values["name"] if "name" in values and values["name"] is not None
                                else default_name}, origins, path)
    data, fit, sessions = _params(values, origins, path, study)
    sweep = _axes(values, "sweep", origins, path, data, fit, sessions)
    zips = _axes(values, "zip", origins, path, data, fit, sessions)
    lengths = {k: len(v) for k, v in zips.items()}
    if len(set(lengths.values())) > 1:
        raise SpecError(f"zip lists must have equal lengths, got {lengths}", where=origins.get("zip", path), key="zip")
    _distinct_rows(zips, origins.get("zip", path))
    both = sorted(set(sweep) & set(zips))
    if both:
        raise SpecError("a key is either swept or zipped, not both", where=origins.get("zip", path), key=both[0])
    _check_swept_bases(study, {"data": data, "fit": fit}, [*sweep, *zips], origins, path)
    _check_findings(study, {"data": data, "fit": fit})
    rd, rf = design.repeat_counts()
    precise = precision.check_finding(precision.parse(values, origins, path), study.findings,
                                      origins.get("precision.finding", origins.get("precision", path)))
    _check_metrics(study, precise, origins, path)
    if precise:  # the plan holds every repeat precision may use; the driver runs them round by round
        rd, rf = (rd, precise["max_repeats"]) if design.data_mode == "shared" else (precise["max_repeats"], rf)
        if "repeats" in values and not isinstance(values["repeats"], dict):
            log.warning("%srepeats: %s is replaced by precision (from min_repeats %d up to max_repeats %d)",
                        f"{origins['repeats']}: " if origins.get("repeats") else "", values["repeats"],
                        precise["min_repeats"], precise["max_repeats"])
    return Spec(study=study, name=design.name, seed=design.seed, data=data, fit=fit, sweep=sweep, zip=zips,
                data_mode=design.data_mode, repeats_data=rd, repeats_fit=rf, sessions=sessions, origins=origins,
                path=path, description=str(values.get("description") or study.description or ""),
                report=design.report.to_dict(), seeds=design.seeds, code=study_code(study), precision=precise,
                how=how_to_run(values, origins, path))


def _check_keys(values, origins, path) -> None:
    unknown = sorted(set(values) - TOP_KEYS - {"_sessions"})
    if unknown:
        near = difflib.get_close_matches(unknown[0], sorted(TOP_KEYS), n=1)
        hint = f"did you mean {near[0]!r}? " if near else ""
        raise SpecError(f"unknown key ({hint}expected one of {', '.join(sorted(TOP_KEYS))})",
                        where=origins.get(unknown[0], path), key=unknown[0])
    if "study" not in values:
        raise SpecError("missing: the study module to run (study: package.module)", where=path, key="study")
    if "seed" not in values:
        raise SpecError("missing: an integer seed (seeds are explicit; there is no default)", where=path, key="seed")
    for section in ("data", "fit"):
        if not isinstance(values.get(section, {}), dict):
            raise SpecError("expected a mapping of parameters", where=origins.get(section, path), key=section)


def _declared_field(study: Study, key: str):
    """The pydantic field a dotted data./fit. key names in the study's params, or None."""
    section, _, name = str(key).partition(".")
    model = {"data": study.data_params, "fit": study.fit_params}.get(section)
    return model.model_fields.get(name) if model is not None else None


def _field_problem(field, value) -> dict | None:
    """The first pydantic error of `value` checked against one field alone (its type and bounds), or None."""
    try:
        pydantic.TypeAdapter(Annotated[field.annotation, field]).validate_python(value)
    except pydantic.ValidationError as e:
        return e.errors()[0]
    return None


def _check_swept_bases(study: Study, params: dict, axes: list, origins, path) -> None:
    """A swept key's own value in data or fit is never run, but it is what the spec says: it is checked
    against the field alone (its type and bounds; checks across fields need a whole point)."""
    for axis in axes:
        section, _, name = axis.partition(".")
        field = _declared_field(study, axis)
        if field is None or name not in params[section] or origins.get(axis, "").startswith("study "):
            continue
        err = _field_problem(field, params[section][name])
        if err is not None:
            raise SpecError(f"{err['msg'].removeprefix('Value error, ')}, got {err.get('input')!r} (the value "
                            f"{axis} takes where it is not swept)", where=origins.get(axis, path), key=axis)


def _check_findings(study: Study, params: dict) -> None:
    """A declared Finding's axis and `where` keys must be params of the study, and its baseline and `where`
    values values those params can take: a typo is refused here, not a sentence missing from report.html."""
    for i, f in enumerate(study.findings):
        named = ([(f.axis, f.baseline, "axis")] if f.axis is not None else []) + \
            [(k, v, "where") for k, v in f.where.items()]
        for key, value, role in named:
            section, _, name = str(key).partition(".")
            field = _declared_field(study, key)
            where = f"study {study.name}, findings[{i}] ({f.metric})"
            if section not in params or (field is None and name not in params[section]):
                raise SpecError(f"{key} is not a parameter of the study (the finding's {role})", where=where,
                                key=str(key))
            err = _field_problem(field, value) if field is not None else None
            if err is not None:
                raise SpecError(f"{value!r} is not a value {key} can take ({err['msg']})", where=where, key=str(key))


def _check_metrics(study: Study, precise: dict, origins, path) -> None:
    """Where the study declares its metrics, the precision metric and every Finding's metric must be one."""
    if not study.metrics:
        return
    declared = [f"metrics.{m}" for m in study.metrics]
    named = [(f.metric, f"study {study.name}, findings[{i}]", "metric") for i, f in enumerate(study.findings)]
    if precise and precise.get("metric") is not None:  # a targeted finding's metric is checked as the finding's
        named.append((precise["metric"], origins.get("precision.metric", origins.get("precision", path)),
                      "precision.metric"))
    for metric, where, key in named:
        if metric not in declared:
            near = difflib.get_close_matches(metric, declared, n=1)
            hint = f"did you mean {near[0]}? " if near else ""
            raise SpecError(f"{metric} is not a metric of the study ({hint}it reports {', '.join(declared)})",
                            where=where, key=key)


def _params(values, origins, path, study: Study) -> tuple[dict, dict, dict]:
    """(data, fit, sessions) with the study's declared defaults filled in (their origin: the study)."""
    filled = {"data": defaults(study.data_params), "fit": defaults(study.fit_params)}
    for section, found in filled.items():
        for key in found:
            if key not in (values.get(section) or {}):
                origins.setdefault(f"{section}.{key}", f"study {study.name} (default)")
    data = {**filled["data"], **(values.get("data") or {})}
    fit = {**filled["fit"], **(values.get("fit") or {})}
    sessions = {name: {s: {**filled[s], **(sess.values.get(s) or {})} for s in ("data", "fit")}
                for name, sess in (values.get("_sessions") or {}).items()}
    return data, fit, sessions


def _pin_axis(cfg: config.Config, override: config.Override) -> config.Config:
    """`data.x=v` on a swept (or zipped) key means "run at v": the axis is dropped, as in Hydra's multirun.
    On a zipped key whose rows hold v, only those rows stay (fit.model=epie runs the epie arm alone)."""
    key, text = override.key, override.text
    if key.startswith(("sweep.", "zip.")):
        return cfg
    for section in ("sweep", "zip"):
        axes = cfg.values.get(section)
        if isinstance(axes, dict) and key in axes:
            if section == "zip":
                axes = _first_rows(_without(_rows_holding(axes, key, override.value), key))
            else:
                axes = _without(axes, key)
            origins = {k: v for k, v in cfg.origins.items() if k != f"{section}.{key}"}
            cfg = config.Config({**cfg.values, section: axes}, origins, cfg.files)
            held = " (the zip keeps its rows that hold the value, if any do)" if section == "zip" else ""
            logging.getLogger("sweeper").info("%s pins the %s axis %s%s", text, section, key, held)
    report = cfg.values.get("report")
    if isinstance(report, dict) and isinstance(report.get("axes"), list) and key in report["axes"]:
        report = {**report, "axes": [a for a in report["axes"] if a != key]}
        cfg = config.Config({**cfg.values, "report": report}, cfg.origins, cfg.files)
        logging.getLogger("sweeper").warning("note: %s pins %s, so the sweep report draws it no more "
                                             "(report.axes is now %s)", text, key, report["axes"])
    return cfg


def _without(axes: dict, key: str) -> dict:
    return {k: v for k, v in axes.items() if k != key}


def _rows_holding(zips: dict, key: str, value) -> dict:
    """The zipped rows whose `key` is `value`; all of them where none is (the pinned value is new)."""
    if not all(isinstance(v, list) for v in zips.values()):
        return zips
    keep = [i for i, v in enumerate(zips[key]) if key_of(v) == key_of(value)]
    return {k: [v[i] for i in keep] for k, v in zips.items()} if keep else zips


def _first_rows(zips: dict) -> dict:
    """Zipped lists without their repeated rows (the first of each kept): what is left when a pinned key
    made two rows equal (pinning fit.loss of [pinn, nll], [pinn, mae], [epie, nll] leaves pinn and epie)."""
    if not zips or not all(isinstance(v, list) for v in zips.values()):
        return zips
    first: dict = {}
    for i, row in enumerate(zip(*zips.values())):
        first.setdefault(key_of(list(row)), i)
    return {k: [v[i] for i in first.values()] for k, v in zips.items()}


def _declared(cfg: config.Config, path) -> set:
    """The dotted keys the spec's study declares (data.x, fit.y); empty if the study does not resolve (yet)."""
    try:
        study = resolve(cfg.values.get("study"), cfg.origins.get("study", path))
    except SpecError:
        return set()
    return {f"{section}.{name}" for section, model in (("data", study.data_params), ("fit", study.fit_params))
            if model is not None for name in model.model_fields}


def load_spec(spec, overrides=()) -> Spec:
    """A Spec from a YAML path or a dict (whose `study` may be a module or object), overrides applied last."""
    if isinstance(spec, Spec):
        if overrides:
            raise SpecError("overrides apply to a YAML path or a dict, not to a Spec object")
        return spec
    if isinstance(spec, dict):
        cfg, path = config.Config(dict(spec), {}, []), None
        if "extends" in spec:
            raise SpecError("extends needs a YAML file (a dict spec has no directory to resolve it from)",
                            key="extends")
    else:
        path = str(Path(spec).resolve())
        cfg = config.load(path)
    sessions = config.load_sessions(cfg, Path(path) if path else Path.cwd())
    declared = _declared(cfg, path)
    for override in map(config.Override.parse, overrides):
        # a top-level setting, or a parameter the study declares, may be set even if the file leaves it out
        new = override.key in TOP_KEYS or override.key in declared
        cfg = config.apply_override(cfg, override, add=new)
        sessions = {name: config.apply_override(s, override, add=new) for name, s in sessions.items()}
        cfg = _pin_axis(cfg, override)
    if sessions:
        cfg.values["_sessions"] = sessions
    try:
        return from_config(cfg, path)
    finally:
        cfg.values.pop("_sessions", None)
