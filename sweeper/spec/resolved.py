"""The resolved, validated spec of a study: what every later step reads, checked before any Ray work."""
from __future__ import annotations

import difflib
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

from sweeper.columns import first_duplicate, key_of
from sweeper.errors import SpecError
from sweeper.hashing import short_hash
from sweeper.spec import precision
from sweeper.spec import source as config
from sweeper.spec.code_hash import study_code
from sweeper.study import Study, defaults, resolve
from sweeper.yaml_dialect import parse_value

TOP_KEYS = {"study", "name", "description", "seed", "data", "fit", "sweep", "zip", "data_mode", "repeats",
            "resources", "executor", "actors", "retries", "save_datasets", "max_in_flight",
            "report", "seeds", "precision", "pack", "timeout_s"}
DATA_MODES = ("shared", "independent", "crossed")
SEEDS = ("paired", "independent")
EXECUTORS = ("task", "actor")


@dataclass
class Spec:
    study: Study
    name: str
    seed: int
    data: dict
    fit: dict
    sweep: dict = field(default_factory=dict)
    zip: dict = field(default_factory=dict)
    data_mode: str = "shared"
    repeats_data: int = 1
    repeats_fit: int = 1
    resources: dict = field(default_factory=lambda: {"num_cpus": 1, "num_gpus": 0})
    # resources.simulate: what each simulate task asks for (default: the runs' CPUs, no GPU)
    simulate_resources: dict = field(default_factory=dict)
    executor: str = "task"
    actors: int | None = None
    retries: int = 1
    save_datasets: bool = True
    max_in_flight: int | None = None
    sessions: dict = field(default_factory=dict)   # name -> {"data": ..., "fit": ...}
    origins: dict = field(default_factory=dict)
    path: str | None = None
    description: str = ""
    report: dict = field(default_factory=dict)   # {metric, maximize, axes}: the generic sweep report
    seeds: str = "paired"   # paired: fit arms share fit seeds; independent: a seed per arm too
    code: dict = field(default_factory=dict)   # {"sha256", "parts"}: the study's code (sweeper.code)
    precision: dict = field(default_factory=dict)  # spec.precision: repeats added until intervals are tight
    pack: int = 1   # up to this many compatible runs trained as one program (study.fit_packed); no run id changes
    timeout_s: float | None = None  # a run still running this long after it started is cancelled and failed

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
        d = {"study": self.study_ref, "name": self.name, **({"description": self.description}
                                                             if self.description else {}), "seed": self.seed, "data": self.data, "fit": self.fit,
             "sweep": self.sweep, "zip": self.zip, "data_mode": self.data_mode, "repeats": self.repeats(),
             "resources": {**self.resources, **({"simulate": self.simulate_resources}
                                                if self.simulate_resources else {})}, "executor": self.executor, "retries": self.retries,
             "save_datasets": self.save_datasets}
        if self.actors is not None:
            d["actors"] = self.actors
        if self.sessions:
            d["sessions"] = self.sessions
        if self.report:
            d["report"] = self.report
        if self.seeds != "paired":
            d["seeds"] = self.seeds
        if self.precision:
            d["precision"] = self.precision
        if self.pack != 1:
            d["pack"] = self.pack
        if self.timeout_s is not None:
            d["timeout_s"] = self.timeout_s
        return d

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


def _int(values, key, origins, path, low=0):
    v = values[key]
    if isinstance(v, bool) or not isinstance(v, int) or v < low:
        raise SpecError(f"expected an integer >= {low}, got {v!r}", where=origins.get(key, path), key=key)
    return v


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


def _report(values, origins, path) -> dict:
    """report: {metric: metrics.x, maximize: bool, axes: [a, b]} -- what the generic sweep report ranks and plots.
    `direction: max | min | none` says the same as maximize; none: the metric has no better direction (a
    recovered parameter), so nothing is ranked (stored as maximize: null)."""
    rep = dict(values.get("report") or {})
    where = origins.get("report", path)
    if set(rep) - {"metric", "maximize", "axes", "direction"}:
        raise SpecError("expected a mapping with metric, maximize (or direction) and axes", where=where, key="report")
    if "metric" in rep and not isinstance(rep["metric"], str):
        raise SpecError(f"expected a metric name such as metrics.psnr, got {rep['metric']!r}",
                        where=origins.get("report.metric", where), key="report.metric")
    if "direction" in rep:
        directions = {"max": True, "min": False, "none": None}
        if rep["direction"] not in directions or "maximize" in rep:
            raise SpecError(f"expected max, min or none (and no maximize beside it), got {rep['direction']!r}",
                            where=origins.get("report.direction", where), key="report.direction")
        rep["maximize"] = directions[rep.pop("direction")]
    if rep.get("maximize") is not None and not isinstance(rep["maximize"], bool):
        raise SpecError(f"expected true or false, got {rep['maximize']!r}",
                        where=origins.get("report.maximize", where), key="report.maximize")
    axes = rep.get("axes", [])
    if not isinstance(axes, list) or not all(isinstance(a, str) for a in axes):
        raise SpecError(f"expected a list of sweep keys, got {axes!r}", where=origins.get("report.axes", where),
                        key="report.axes")
    return rep


def from_config(cfg: config.Config, path: str | None = None) -> Spec:
    """Validate a merged Config into a Spec; every problem is a SpecError naming the file and key."""
    values, origins = cfg.values, dict(cfg.origins)
    _check_keys(values, origins, path)
    study = resolve(values["study"], origins.get("study", path))
    seed = _int(values, "seed", origins, path)
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
    mode, rd, rf = _repeats(values, origins, path)
    precise = precision.parse(values, origins, path)
    if precise:  # the plan holds every repeat precision may use; the driver runs them round by round
        rd, rf = (rd, precise["max_repeats"]) if mode == "shared" else (precise["max_repeats"], rf)
    executor = _choice(values, origins, path, "executor", EXECUTORS)
    actors = _int(values, "actors", origins, path, 1) if values.get("actors") is not None else None
    retries = _int(values, "retries", origins, path) if "retries" in values else 1
    mif = _int(values, "max_in_flight", origins, path, 1) if "max_in_flight" in values else None
    save = values.get("save_datasets", True)
    if not isinstance(save, bool):
        raise SpecError(f"expected true or false, got {save!r}", where=origins.get("save_datasets", path),
                        key="save_datasets")
    name = values.get("name") or (Path(path).stem if path else study.name)
    if not name or not isinstance(name, str) or "/" in name:
        raise SpecError("expected a name (letters, digits, _ and -) for the sweep directory",
                        where=origins.get("name", path), key="name")
    return Spec(study=study, name=name, seed=seed, data=data, fit=fit, sweep=sweep, zip=zips, data_mode=mode,
                repeats_data=rd, repeats_fit=rf, resources=_resources(values, origins, path),
                simulate_resources=_simulate_resources(values, origins, path), executor=executor,
                actors=actors, retries=retries, save_datasets=save, max_in_flight=mif, sessions=sessions,
                origins=origins, path=path, description=str(values.get("description") or study.description or ""),
                report=_report(values, origins, path), seeds=_choice(values, origins, path, "seeds", SEEDS),
                code=study_code(study), precision=precise,
                pack=_int(values, "pack", origins, path, 1) if "pack" in values else 1,
                timeout_s=_timeout(values, origins, path))


def _timeout(values, origins, path) -> float | None:
    v = values.get("timeout_s")
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < math.inf:
        raise SpecError(f"expected a number of seconds > 0, got {v!r}", where=origins.get("timeout_s", path),
                        key="timeout_s")
    return float(v)


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


def _choice(values, origins, path, key, choices):
    value = values.get(key, choices[0])
    if value not in choices:
        raise SpecError(f"expected one of {', '.join(choices)}, got {value!r}", where=origins.get(key, path), key=key)
    return value


def _repeats(values, origins, path) -> tuple[str, int, int]:
    mode = _choice(values, origins, path, "data_mode", DATA_MODES)
    reps = values.get("repeats", 1)
    rwhere = origins.get("repeats", path)
    if mode == "crossed":
        if not isinstance(reps, dict) or set(reps) != {"data", "fit"}:
            raise SpecError("crossed data needs repeats: {data: D, fit: F}", where=rwhere, key="repeats")
        return mode, _int(reps, "data", {"data": rwhere}, path, 1), _int(reps, "fit", {"fit": rwhere}, path, 1)
    if isinstance(reps, bool) or not isinstance(reps, int) or reps < 1:
        raise SpecError(f"expected an integer >= 1 (or {{data: D, fit: F}} with data_mode: crossed), got {reps!r}",
                        where=rwhere, key="repeats")
    return (mode, reps, 1) if mode == "independent" else (mode, 1, reps)


def _resources(values, origins, path) -> dict:
    given = {k: v for k, v in (values.get("resources") or {}).items() if k != "simulate"}
    return _checked({"num_cpus": 1, "num_gpus": 0, **given}, "resources", origins, path,
                    "resources are num_cpus, num_gpus, memory and simulate (the simulate task's own)")


def _simulate_resources(values, origins, path) -> dict:
    given = (values.get("resources") or {}).get("simulate") or {}
    if not isinstance(given, dict):
        raise SpecError("expected a mapping such as {num_gpus: 1}", where=origins.get("resources.simulate", path),
                        key="resources.simulate")
    return _checked(dict(given), "resources.simulate", origins, path,
                    "resources.simulate are num_cpus, num_gpus and memory")


def _checked(resources: dict, prefix: str, origins, path, known: str) -> dict:
    for k, v in resources.items():
        key = f"{prefix}.{k}"
        if k not in ("num_cpus", "num_gpus", "memory"):
            raise SpecError(known, where=origins.get(key, path), key=key)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 or not math.isfinite(v):
            raise SpecError(f"expected a number >= 0, got {v!r}", where=origins.get(key, path), key=key)
    gpus = resources.get("num_gpus", 0)
    if gpus > 1 and gpus != int(gpus):
        raise SpecError("fractional num_gpus must be below 1", where=origins.get(f"{prefix}.num_gpus", path),
                        key=f"{prefix}.num_gpus")
    return resources


def _pin_axis(cfg: config.Config, text: str) -> config.Config:
    """`data.x=v` on a swept (or zipped) key means "run at v": the axis is dropped, as in Hydra's multirun.
    On a zipped key whose rows hold v, only those rows stay (fit.model=epie runs the epie arm alone)."""
    key, raw = (part.strip() for part in text.split("=", 1))  # apply_override has checked there is a "="
    key = key.lstrip("+")
    if key.startswith(("sweep.", "zip.")):
        return cfg
    for section in ("sweep", "zip"):
        axes = cfg.values.get(section)
        if isinstance(axes, dict) and key in axes:
            if section == "zip":
                axes = _first_rows(_without(_rows_holding(axes, key, parse_value(raw)), key))
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
    for text in overrides:
        key = text.split("=", 1)[0].strip()
        # a top-level setting, or a parameter the study declares, may be set even if the file leaves it out
        new = "=" in text and (key in TOP_KEYS or key in declared)
        cfg = config.apply_override(cfg, text, add=new)
        sessions = {name: config.apply_override(s, text, add=new) for name, s in sessions.items()}
        cfg = _pin_axis(cfg, text)
    if sessions:
        cfg.values["_sessions"] = sessions
    try:
        return from_config(cfg, path)
    finally:
        cfg.values.pop("_sessions", None)
