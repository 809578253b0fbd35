"""The spec's own keys as pydantic models: what to sweep (`Design`: seed, name, data mode, repeats, fit seeds,
the report) and how to run it (`HowToRun`: Ray resources, executor, retries, time limit, packing; never in the
sweep id). `validated` turns the first pydantic error into one SpecError naming file:line and the dotted key.
The study's params, the swept and zipped axes and the sessions are checked in resolved.py, against the study."""
from __future__ import annotations

import difflib
from typing import Annotated, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr

from sweeper.errors import SpecError

Number = Annotated[StrictInt | StrictFloat, Field(ge=0, allow_inf_nan=False)]
Count = Annotated[StrictInt, Field(ge=1)]


class Resources(BaseModel):
    """What each run (or each simulate task) asks Ray for; a key left out is not asked."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    num_cpus: Number | None = None
    num_gpus: Number | None = None
    memory: Number | None = None

    @pydantic.field_validator("num_gpus")
    @classmethod
    def _fraction_below_one(cls, v):
        if v is not None and v > 1 and v != int(v):
            raise ValueError("fractional num_gpus must be below 1")
        return v

    def asked(self) -> dict:
        """{Ray option: amount} of the keys given."""
        return {k: v for k, v in self.model_dump().items() if v is not None}


class HowToRun(BaseModel):
    """How a sweep runs, which never changes what its runs compute: the executors get only this."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    resources: Resources = Resources(num_cpus=1, num_gpus=0)
    simulate: Resources = Resources()          # resources.simulate: each simulate task's own (default: none)
    executor: Literal["task", "actor"] = "task"
    actors: Count | None = None
    retries: Annotated[StrictInt, Field(ge=0)] = 1
    save_datasets: StrictBool = True
    max_in_flight: Count | None = None
    pack: Count = 1                            # up to this many compatible runs trained as one program
    timeout_s: Annotated[StrictInt | StrictFloat, Field(gt=0, allow_inf_nan=False)] | None = None

    @pydantic.field_validator("timeout_s")
    @classmethod
    def _seconds(cls, v):
        return None if v is None else float(v)

    def to_dict(self) -> dict:
        """The spec.yaml form: resources (with `simulate` inside), then the rest as given or defaulted."""
        d = {"resources": {**self.resources.asked(), **({"simulate": self.simulate.asked()}
                                                        if self.simulate.asked() else {})},
             "executor": self.executor, "retries": self.retries, "save_datasets": self.save_datasets}
        optional = {"actors": self.actors, "pack": None if self.pack == 1 else self.pack, "timeout_s": self.timeout_s}
        return {**d, **{k: v for k, v in optional.items() if v is not None}}


HOW_KEYS = ("resources", "executor", "actors", "retries", "save_datasets", "max_in_flight", "pack", "timeout_s")


def how_to_run(values: dict, origins: dict, path) -> HowToRun:
    """The spec's how-to-run keys validated (`resources.simulate` is the model's `simulate`)."""
    given = {k: values[k] for k in HOW_KEYS if values.get(k) is not None}
    resources = given.pop("resources", None) or {}
    if not isinstance(resources, dict):
        raise SpecError("expected a mapping such as {num_cpus: 1, num_gpus: 0}", where=origins.get("resources", path),
                        key="resources")
    resources = dict(resources)
    simulate = resources.pop("simulate", None) or {}
    if not isinstance(simulate, dict):
        raise SpecError("expected a mapping such as {num_gpus: 1}", where=origins.get("resources.simulate", path),
                        key="resources.simulate")
    given.update(resources={"num_cpus": 1, "num_gpus": 0, **resources}, simulate=simulate)
    return validated(HowToRun, given, origins, path, rename={"simulate": "resources.simulate"})


class Report(BaseModel):
    """report: what the generic sweep report ranks and plots. `direction: max | min | none` says what
    `maximize` says; none: the metric has no better direction, nothing is ranked (maximize None)."""

    model_config = ConfigDict(extra="forbid")
    metric: str | None = None
    maximize: StrictBool | None = None
    direction: Literal["max", "min", "none"] | None = None
    axes: list[StrictStr] = []

    @pydantic.field_validator("metric", mode="before")
    @classmethod
    def _a_metric_name(cls, v):
        if v is not None and not isinstance(v, str):
            raise ValueError(f"expected a metric name such as metrics.psnr, got {v!r}")
        return v

    @pydantic.model_validator(mode="after")
    def _one_direction(self):
        if self.direction is not None and "maximize" in self.model_fields_set:
            raise ValueError("say direction or maximize, not both")
        return self

    def to_dict(self) -> dict:
        """The keys given ({metric, maximize, axes}), direction said as maximize."""
        d = self.model_dump(include=self.model_fields_set - {"direction"})
        if self.direction is not None:
            d["maximize"] = {"max": True, "min": False, "none": None}[self.direction]
        return d


class Crossed(BaseModel):
    model_config = ConfigDict(extra="forbid")
    data: Count
    fit: Count


class Design(BaseModel):
    """The spec's scalar what-to-sweep keys."""

    model_config = ConfigDict(extra="forbid")
    seed: Annotated[StrictInt, Field(ge=0)]
    name: str
    data_mode: Literal["shared", "independent", "crossed"] = "shared"
    repeats: Count | Crossed = 1
    seeds: Literal["paired", "independent"] = "paired"
    report: Report = Report()

    @pydantic.field_validator("repeats")
    @classmethod
    def _repeats_fit_the_mode(cls, v, info: pydantic.ValidationInfo):
        crossed = info.data.get("data_mode") == "crossed"
        if crossed != isinstance(v, Crossed):
            raise ValueError("crossed data needs repeats: {data: D, fit: F}" if crossed else
                             f"expected an integer >= 1 ({{data: D, fit: F}} is for data_mode: crossed), got "
                             f"{v.model_dump()}")
        return v

    @pydantic.field_validator("name", mode="before")
    @classmethod
    def _a_folder_name(cls, v):
        if not isinstance(v, str) or not v or "/" in v:
            raise ValueError("expected a name (letters, digits, _ and -) for the sweep directory")
        return v

    def repeat_counts(self) -> tuple[int, int]:
        """(data repeats, fit repeats)."""
        if isinstance(self.repeats, Crossed):
            return self.repeats.data, self.repeats.fit
        return (self.repeats, 1) if self.data_mode == "independent" else (1, self.repeats)


DESIGN_KEYS = ("seed", "name", "data_mode", "repeats", "seeds", "report")


def validated(model: type[BaseModel], given: dict, origins: dict, path, prefix: str = "", rename=None):
    """`model` validated from `given`; the first error as one SpecError at the key's file:line."""
    try:
        return model.model_validate(given)
    except pydantic.ValidationError as e:
        err = e.errors()[0]
    loc = [str(p) for p in err["loc"] if str(p) not in UNION_TAGS and not str(p).startswith(UNION_PREFIXES)]
    words = _words(err, model, loc)
    if loc and rename and loc[0] in rename:
        loc[0] = rename[loc[0]]
    key = ".".join([prefix, *loc] if prefix else loc) or prefix or None
    where = next((origins[k] for k in _parents(key) if k in origins), path)
    raise SpecError(words, where=where, key=key) from None


UNION_TAGS = {"int", "float", "str", "Crossed", "Resources"}
UNION_PREFIXES = ("function-after", "constrained-")


def _parents(key: str | None) -> list:
    parts = (key or "").split(".")
    return [".".join(parts[:i]) for i in range(len(parts), 0, -1)]


def _model_at(model, loc: list):
    """The (nested) model that holds the last key of `loc`."""
    for name in loc:
        field = model.model_fields.get(name)
        inner = getattr(field, "annotation", None)
        if not (isinstance(inner, type) and issubclass(inner, BaseModel)):
            return model
        model = inner
    return model


def _words(err: dict, model, loc: list) -> str:
    """A pydantic error said as the spec's other errors say it: what was expected, what was found."""
    kind, got, ctx = err["type"], err.get("input"), err.get("ctx") or {}
    holder = _model_at(model, loc[:-1]).model_fields.get(loc[-1]) if loc else None
    noun = "a number" if holder is not None and "float" in str(holder.annotation).lower() else "an integer"
    if kind == "extra_forbidden":
        fields = list(_model_at(model, loc[:-1]).model_fields)
        near = difflib.get_close_matches(loc[-1], fields, n=1)
        return f"unknown key ({f'did you mean {near[0]!r}? ' if near else ''}expected one of {', '.join(fields)})"
    if kind == "missing":
        return "missing"
    if kind in ("greater_than_equal", "greater_than"):
        bound = ctx.get("ge", ctx.get("gt"))
        return f"expected {noun} {'>' if kind == 'greater_than' else '>='} {bound}, got {got!r}"
    if kind in ("int_type", "int_from_float", "int_parsing", "float_type", "finite_number", "float_parsing"):
        return f"expected {noun}, got {got!r}"
    if kind == "bool_type":
        return f"expected true or false, got {got!r}"
    if kind == "literal_error":
        return f"expected one of {ctx['expected'].replace(chr(39), '').replace(' or ', ', ')}, got {got!r}"
    if kind == "string_type":
        return f"expected text, got {got!r}"
    return err["msg"].removeprefix("Value error, ")
