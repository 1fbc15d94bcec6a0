"""Strict YAML -> frozen-dataclass loading shared by every config in facenas.

Defaults live in the dataclasses; YAML only overrides them. Unknown keys and wrong types are errors
that name the file and the key, e.g.::

    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class TrainConfig:
    ...     steps: int = 100
    >>> from_dict(TrainConfig, {"steps": 5}, where="x.yaml:train")
    TrainConfig(steps=5)
    >>> from_dict(TrainConfig, {"stesp": 5}, where="x.yaml:train")
    Traceback (most recent call last):
    ...
    ValueError: x.yaml:train: unknown key 'stesp' (known: steps)
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from core.io import read_text

T = TypeVar("T")


class _StrictLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last one
    silently, so a second ``train:`` section would drop the first one's settings)."""

    source = "<yaml>"

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            first: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # `<<: *anchor` merges may be overridden by explicit keys
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                try:
                    if key in first:
                        raise ValueError(f"{self.source}:{line}: duplicate key {key!r} (first on "
                                         f"line {first[key]}); give each key once")
                    first[key] = line
                except TypeError:  # an unhashable key: SafeConstructor reports it
                    pass
        return super().construct_mapping(node, deep)


def parse_yaml(text: str, source: str, lines: bool = True) -> Any:
    """YAML `text` (safe types only); a syntax error or a duplicate key is a one-line ValueError
    naming `source` (and the line, if `lines`)."""
    loader = _StrictLoader(text)
    loader.source = source
    try:
        return loader.get_single_data()
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None and lines else source
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ValueError(f"{where}: not valid YAML: {problem}") from None
    finally:
        loader.dispose()


def load_yaml(path: str | Path) -> dict:
    """Read a YAML mapping; errors name the file (and the line)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    data = parse_yaml(read_text(path), str(path))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at top level, got {type(data).__name__}")
    return data


def _check_type(value: Any, hint: Any, where: str) -> Any:
    """Return `value` converted to `hint` where that is lossless (int -> float, list -> tuple)."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in typing.get_args(hint):
            try:
                return _check_type(value, option, where)
            except (TypeError, ValueError) as err:
                if isinstance(value, dict) and dataclasses.is_dataclass(option):
                    raise  # a mapping meant for this dataclass: its error names the bad key
                errors.append(str(err))
        raise TypeError(f"{where}: {value!r} does not match {hint}")
    if hint is type(None):
        if value is not None:
            raise TypeError(f"{where}: expected null, got {value!r}")
        return None
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"{where}: expected a list, got {type(value).__name__} {value!r}")
        args = typing.get_args(hint)
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            items = [_check_type(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)]
        elif origin is tuple and args:
            if len(args) != len(value):
                raise TypeError(f"{where}: expected {len(args)} items, got {len(value)}")
            items = [_check_type(v, a, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value))]
        else:
            items = [_check_type(v, args[0], f"{where}[{i}]") if args else v for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise TypeError(f"{where}: expected a mapping, got {type(value).__name__}")
        return dict(value)
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        if not isinstance(value, dict):
            raise TypeError(f"{where}: expected a mapping, got {type(value).__name__} {value!r}")
        return from_dict(hint, value, where)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{where}: expected a number, got {type(value).__name__} {value!r}")
        if not math.isfinite(value):  # YAML .nan / .inf: never a meaningful setting
            raise ValueError(f"{where}: expected a finite number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{where}: expected an integer, got {type(value).__name__} {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise TypeError(f"{where}: expected true/false, got {type(value).__name__} {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise TypeError(f"{where}: expected a string, got {type(value).__name__} {value!r}")
        return value
    if typing.get_origin(hint) is typing.Literal:
        if value not in typing.get_args(hint):
            raise ValueError(f"{where}: {value!r} is not one of {typing.get_args(hint)}")
        return value
    return value


def from_dict(cls: type[T], data: dict, where: str = "config") -> T:
    """Build dataclass `cls` from `data`, rejecting unknown keys and wrong types."""
    if not isinstance(data, dict):
        raise TypeError(f"{where}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(fields))})")
    hints = typing.get_type_hints(cls)
    kwargs = {k: _check_type(v, hints[k], f"{where}.{k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as err:  # __post_init__ checks: add the file and section
        if where in str(err):
            raise
        raise type(err)(f"{where}: {err}") from None


def to_dict(obj: Any) -> Any:
    """Dataclass -> plain YAML-safe data (tuples become lists)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj


def apply_overrides(data: dict, overrides: list[str], where: str = "--set") -> dict:
    """Apply `section.key=value` strings (value parsed as YAML) to a nested config mapping."""
    data = dict(data)
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"{where}: expected key=value, got {item!r}")
        dotted, raw = item.split("=", 1)
        keys = dotted.strip().split(".")
        node = data
        for key in keys[:-1]:
            child = node.get(key, {})
            if not isinstance(child, dict):
                raise ValueError(f"{where}: {dotted!r}: {key!r} is not a section")
            node[key] = child = dict(child)
            node = child
        node[keys[-1]] = parse_yaml(raw, f"{where} {item!r}", lines=False)
    return data
