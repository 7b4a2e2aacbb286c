"""The one way configuration is read: YAML file -> ``a.b=c`` overrides -> typed, validated dataclasses.

Every configuration (the experiment, its ``llm`` and ``candidates`` sections, the ``ialp llm`` and
``ialp candidates`` commands) is a pydantic v2 dataclass declared with :data:`STRICT` (unknown fields are
errors; ``Literal`` choices; ``Field`` constraints). Pydantic *dataclasses* rather than ``BaseModel``s, so that
the standard library's ``dataclasses.replace``/``asdict``/``fields`` keep working on them (and ``replace``
validates too).

>>> from pydantic.dataclasses import dataclass
>>> @dataclass(config=STRICT)
... class Section:
...     k: int = 5
>>> parse(Section, apply_overrides({}, ["k=7"])).k
7
>>> parse(Section, {"k": "many"})
Traceback (most recent call last):
...
ialp.schema.ConfigError: k: got 'many'; Input should be a valid integer
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import types
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml
from pydantic import ConfigDict, TypeAdapter, ValidationError

__all__ = ["STRICT", "ConfigError", "apply_overrides", "load", "parse", "read_yaml_mapping"]

T = TypeVar("T")

#: The pydantic settings of every config dataclass: unknown fields are errors and assignments are validated too.
#: :func:`parse` validates in strict mode: types are not coerced (a quoted number is not a number, ``true`` is
#: not 1); an int is accepted where a float is expected.
STRICT = ConfigDict(extra="forbid", validate_assignment=True)


class ConfigError(ValueError):
    """An invalid configuration: names the key, the value and what is allowed."""


def read_yaml_mapping(path: str | os.PathLike[str] | None) -> dict[str, Any]:
    """The top-level mapping of a YAML file (empty for no file); clear errors for bad YAML or another shape."""
    if path is None:
        return {}
    try:
        loaded = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if loaded is not None and not isinstance(loaded, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return dict(loaded or {})


def apply_overrides(mapping: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """A copy of ``mapping`` with each ``dotted.key=value`` override set (the value is parsed as YAML).

    >>> apply_overrides({"agent": {"n_steps": 8}}, ["agent.n_steps=16", "methods=[random, ucb]"])
    {'agent': {'n_steps': 16}, 'methods': ['random', 'ucb']}
    """
    data = copy.deepcopy(dict(mapping))
    for assignment in overrides:
        key, sep, raw = assignment.partition("=")
        key = key.strip()
        if not sep or not key or "" in key.split("."):
            raise ConfigError(f"override {assignment!r}: expected dotted.key=value")
        *parents, leaf = key.split(".")
        node = data
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {assignment!r}: {part!r} is not a section")
        try:
            node[leaf] = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {assignment!r}: the value is not valid YAML: {exc}") from None
    return data


def _section_class(cls: Any, loc: Sequence[str | int]) -> Any:
    """The dataclass that the location ``loc`` (a path of field names) points into, or None."""
    for part in loc:
        if not dataclasses.is_dataclass(cls) or not isinstance(part, str):
            return None
        hint = get_type_hints(cls).get(part)
        if get_origin(hint) in (Union, types.UnionType):
            hint = next((a for a in get_args(hint) if dataclasses.is_dataclass(a)), None)
        cls = hint
    return cls if dataclasses.is_dataclass(cls) else None


def _describe(cls: Any, error: Any, where: str) -> str:
    loc = [p for p in error["loc"] if p != "__root__"]
    path = ".".join(str(p) for p in ([where] if where else []) + loc) or "config"
    if error["type"] in ("unexpected_keyword_argument", "extra_forbidden"):
        owner = _section_class(cls, loc[:-1])
        allowed = sorted(f.name for f in dataclasses.fields(owner)) if owner is not None else []
        parent = path.rpartition(".")[0] or "config"
        return f"{parent}: unknown field(s) [{loc[-1]!r}]; allowed: {allowed}"
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] in ("dataclass_type", "dataclass_exact_type", "dict_type", "model_type", "model_attributes_type"):
        return f"{path}: expected a mapping, got {error['input']!r}"
    if error["type"] == "value_error" or "input" not in error:
        return f"{path}: {message}"
    return f"{path}: got {error['input']!r}; {message}"


def parse(cls: type[T], mapping: Any, where: str = "") -> T:
    """Validate ``mapping`` into the config dataclass ``cls``.

    Args:
        cls: A pydantic dataclass declared with :data:`STRICT`.
        mapping: Plain data (e.g. a YAML file's section).
        where: The section's name, prefixed to the keys in error messages.

    Raises:
        ConfigError: Naming every offending key, its value and what is allowed.
    """
    if not isinstance(mapping, Mapping):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {type(mapping).__name__} {mapping!r}")
    try:
        text = json.dumps(mapping)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where or 'config'}: holds a value that is not plain data: {exc}") from None
    try:  # JSON mode: strict types, while sections may still be given as mappings
        return TypeAdapter(cls).validate_json(text, strict=True)
    except ValidationError as exc:
        raise ConfigError("; ".join(_describe(cls, e, where) for e in exc.errors())) from None


def load(cls: type[T], path: str | os.PathLike[str] | None = None, overrides: Iterable[str] = (),
         section: str | None = None) -> T:
    """Read a YAML file (or nothing: the defaults), apply ``a.b=c`` overrides, validate into ``cls``.

    Args:
        cls: The config dataclass.
        path: The YAML file; None for the defaults.
        overrides: ``dotted.key=value`` assignments, keys spelled from the file's top level.
        section: Read only this top-level section of the file (e.g. ``llm``); overrides must then start with it.
    """
    overrides = list(overrides)
    if section is not None:
        outside = [o for o in overrides if not o.strip().startswith(f"{section}.")]
        if outside:
            raise ConfigError(f"override {outside[0]!r}: this command reads the {section!r} section only; "
                              f"spell keys as {section}.KEY=VALUE")
    data = apply_overrides(read_yaml_mapping(path), overrides)
    if section is not None:
        data = data.get(section) or {}
    return parse(cls, data, section or "")
