"""Declared parameters: what a workflow's ``spec`` and a manual step's input take, written once.

Each :class:`Param` names one value: its type, bounds, default, whether it is required, and a
sentence of help. A workflow definition declares its spec as a :class:`ParamSet`; a manual step
declares its inputs the same way. ``provisioning.services`` is the only place that checks
values against a declaration (:meth:`ParamSet.clean`); the API schema, the admin's form and
the console's form are generated from it, so they cannot disagree. No Django here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any, TypeAlias

#: What a parameter holds once checked (JSON values).
Value: TypeAlias = int | float | bool | str | list[Any]

_JSON_TYPES: dict[type, str] = {
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    list: "array",
}
_SIZED = (str, list)


@dataclass(frozen=True)
class Problem:
    """One value at fault: the parameter's name, a machine-readable code, a sentence."""

    name: str
    code: str
    message: str


class ParamError(ValueError):
    """The values do not fit the declaration; ``problems`` names each parameter at fault."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        super().__init__("; ".join(p.message for p in self.problems))


@dataclass(frozen=True)
class Param:
    """One parameter. ``minimum``/``maximum`` bound a number's value, or a string's or a list's
    length; ``item`` declares a list's elements; ``default`` (``None``: none) is filled in and
    stored when the value is left out; ``in_forms`` offers it in people's forms (the admin, the
    console), not only the API."""

    name: str
    type: type
    help: str
    default: Value | None = None
    required: bool = False
    minimum: float | None = None
    maximum: float | None = None
    item: Param | None = None
    label: str = ""
    in_forms: bool = True

    def __post_init__(self) -> None:
        if self.type not in _JSON_TYPES:
            raise TypeError(f"{self.name}: a parameter is one of {sorted(map(str, _JSON_TYPES))}")
        if (self.type is list) != (self.item is not None):
            raise TypeError(f"{self.name}: a list parameter, and only one, declares its item")
        if self.default is not None:
            self.clean(self.default)  # a default outside its own bounds is a programming error

    @property
    def title(self) -> str:
        """What a form calls it."""
        return self.label or self.name.replace("_", " ").capitalize()

    def _fail(self, code: str, message: str) -> ParamError:
        return ParamError([Problem(self.name, code, f"{self.name} {message}")])

    def clean(self, value: object) -> Value:
        """``value`` as this parameter holds it (an integral float is an int, an int a float
        where a number is wanted); raises :class:`ParamError` naming the parameter."""
        if self.type is bool:
            if not isinstance(value, bool):
                raise self._fail("invalid", "must be true or false")
            return value
        if self.type is str:
            if not isinstance(value, str):
                raise self._fail("invalid", "must be a string")
            self._bounds(len(value), "characters")
            return value
        if self.type is list:
            if not isinstance(value, list):
                raise self._fail("invalid", "must be a list")
            self._bounds(len(value), "items")
            assert self.item is not None
            item = replace(self.item, name=self.name)
            problems: list[Problem] = []
            cleaned: list[Any] = []
            for index, element in enumerate(value):
                try:
                    cleaned.append(item.clean(element))
                except ParamError as exc:
                    problems += [replace(p, name=f"{self.name}.{index}") for p in exc.problems]
            if problems:
                raise ParamError(problems)
            return cleaned
        # a number; bool is an int in Python, but `true` is not a batch size
        if isinstance(value, bool) or not isinstance(value, int | float):
            wanted = "a whole number" if self.type is int else "a number"
            raise self._fail("invalid", f"must be {wanted}")
        if isinstance(value, float) and not math.isfinite(value):
            raise self._fail("invalid", "must be a finite number")
        if self.type is int:
            if isinstance(value, float) and not value.is_integer():
                raise self._fail("invalid", "must be a whole number")
            number: int | float = int(value)
        else:
            number = float(value)
        self._bounds(number)
        return number

    def _bounds(self, measure: float, unit: str = "") -> None:
        """``unit`` is "" for a number's value, else what a length counts."""
        if self.minimum is not None and measure < self.minimum:
            raise self._beyond("min", self.minimum, measure, unit)
        if self.maximum is not None and measure > self.maximum:
            raise self._beyond("max", self.maximum, measure, unit)

    def _beyond(self, end: str, limit: float, measure: float, unit: str) -> ParamError:
        word = "least" if end == "min" else "most"
        if unit:
            return self._fail(f"{end}_length", f"must have at {word} {_num(limit)} {unit}")
        return self._fail(f"{end}_value", f"must be at {word} {_num(limit)} (not {_num(measure)})")

    def json_schema(self) -> dict[str, Any]:
        """This parameter as an OpenAPI / JSON Schema property."""
        schema: dict[str, Any] = {"type": _JSON_TYPES[self.type], "description": self.help}
        if self.type in _SIZED:
            low, high = ("minLength", "maxLength") if self.type is str else ("minItems", "maxItems")
        else:
            low, high = "minimum", "maximum"
        if self.minimum is not None:
            schema[low] = _num(self.minimum)
        if self.maximum is not None:
            schema[high] = _num(self.maximum)
        if self.item is not None:
            item = self.item.json_schema()
            item.pop("description", None)
            schema["items"] = item
        if self.default is not None:
            schema["default"] = self.default
        return schema


def _num(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


@dataclass(frozen=True, init=False)
class ParamSet:
    """An ordered set of parameters: a workflow kind's spec, or a manual step's input."""

    params: tuple[Param, ...]

    def __init__(self, *params: Param) -> None:
        names = [p.name for p in params]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"declared twice: {', '.join(twice)}")
        object.__setattr__(self, "params", params)

    def __iter__(self) -> Iterator[Param]:
        return iter(self.params)

    def __contains__(self, name: object) -> bool:
        return any(p.name == name for p in self.params)

    def __getitem__(self, name: str) -> Param:
        for param in self.params:
            if param.name == name:
                return param
        raise KeyError(name)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    def with_defaults(self, **defaults: Value) -> ParamSet:
        """The same parameters, some with (other) defaults."""
        unknown = sorted(set(defaults) - set(self.names))
        if unknown:
            raise KeyError(f"not declared: {', '.join(unknown)}")
        return ParamSet(
            *(replace(p, default=defaults[p.name]) if p.name in defaults else p for p in self)
        )

    def clean(self, data: Mapping[str, object], *, partial: bool = False) -> dict[str, Value]:
        """The values as declared, defaults filled in (unless ``partial``: a change to some of
        them). Raises :class:`ParamError` naming every parameter at fault: unknown ones, missing
        required ones, values of the wrong type or out of bounds."""
        problems = [
            Problem(
                str(key),
                "unknown",
                f"{key} is not a parameter here; known: {', '.join(self.names) or 'none'}",
            )
            for key in sorted(map(str, data))
            if key not in self
        ]
        cleaned: dict[str, Value] = {}
        for param in self.params:
            if param.name in data:
                try:
                    cleaned[param.name] = param.clean(data[param.name])
                except ParamError as exc:
                    problems += exc.problems
            elif partial:
                continue
            elif param.required:
                problems.append(Problem(param.name, "required", f"{param.name} is required"))
            elif param.default is not None:
                cleaned[param.name] = param.clean(param.default)  # a fresh copy
        if problems:
            raise ParamError(problems)
        return cleaned

    def json_schema(self) -> dict[str, Any]:
        """An object of these parameters, as OpenAPI / JSON Schema."""
        schema: dict[str, Any] = {
            "type": "object",
            "properties": {p.name: p.json_schema() for p in self.params},
            "additionalProperties": False,
        }
        required = [p.name for p in self.params if p.required]
        if required:
            schema["required"] = required
        return schema


def merged_schema(sets: Mapping[str, ParamSet]) -> dict[str, Any]:
    """One object schema for values whose declaration depends on a discriminator (a workflow's
    ``spec`` by its ``kind``): every parameter of any set, each saying which ones take it, with
    what default, and where it is required. A parameter shared by several sets has the same
    type and bounds in each (only its default and required-ness may differ)."""
    holders: dict[str, list[tuple[str, Param]]] = {}
    for key, params in sets.items():
        for param in params:
            holders.setdefault(param.name, []).append((key, param))
    properties: dict[str, Any] = {}
    for name, held in holders.items():
        schema = held[0][1].json_schema()
        schema.pop("default", None)
        defaults = {repr(p.default) for _, p in held}
        if len(held) == len(sets) and len(defaults) == 1 and held[0][1].default is not None:
            schema["default"] = held[0][1].default
        where = []
        for key, param in held:
            notes = ["required"] if param.required else []
            if param.default is not None:
                notes.append(f"default {_json(param.default)}")
            where.append(f"{key} ({', '.join(notes)})" if notes else key)
        schema["description"] = f"{schema['description']} Applies to: {'; '.join(where)}."
        properties[name] = schema
    return {"type": "object", "properties": properties, "additionalProperties": False}


def _json(value: Value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


#: How long a step may wait for a person before its workflow escalates (4 h).
DEFAULT_PERSON_TIMEOUT = 4 * 3600
PERSON_TIMEOUT = Param(
    "person_timeout_seconds",
    int,
    "How long a step that waits for a person (dispatch, repair, any manual input) may wait "
    "before the workflow escalates (an 'escalated' event and a notification). The step keeps "
    "waiting: an escalation, not a failure.",
    default=DEFAULT_PERSON_TIMEOUT,
    minimum=1,
    maximum=30 * 86400,
    label="Wait for a person (seconds)",
)
