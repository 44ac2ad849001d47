"""Config: layers of TOML tables (defaults <- preset <- user file <- --set overrides) into one frozen
dataclass per section.

    resolve({"lsa": LsaConfig}, [{"lsa": {"n_components": 100}}, parse_sets(["lsa.n_components=50"])])
    -> {"lsa": LsaConfig(n_components=50, ...)}

Values are coerced to the field's declared type (int, float, bool, str, list[...], `X | None`, or a nested
frozen dataclass, written as a sub-table such as [embeddings.glove]); a value that does not fit, an unknown
section or an unknown field (at any depth) raises ConfigError listing what is valid.
"""

from __future__ import annotations

import copy
import dataclasses
import sys
import tomllib
import types
import typing
from pathlib import Path
from typing import Any

from nlp_pipeline.core.errors import ConfigError, MissingInputError


def load_toml(path: str | Path) -> dict:
    """Read a TOML file into a dict, with one-line errors for a missing or malformed file."""
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"config file {path} does not exist; check the path given to --config")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid TOML ({exc}); fix the file or pass another --config") from None


def parse_value(text: str) -> Any:
    """A --set value as TOML when it parses ('50' -> 50, '[\"a\"]' -> ['a'], 'true' -> True), else the raw string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_sets(items: list[str] | tuple[str, ...]) -> dict:
    """['lsa.n_components=50', 'embeddings.glove.window=5'] -> {'lsa': {'n_components': 50}, 'embeddings':
    {'glove': {'window': 5}}} (a dotted name nests at any depth); malformed items raise ConfigError."""
    out: dict[str, dict] = {}
    for item in items:
        name, sep, value = item.partition("=")
        path = [part.strip() for part in name.split(".")]
        if not sep or len(path) < 2 or not all(path):
            raise ConfigError(f"--set {item!r} is not of the form stage.field=value (e.g. --set lsa.n_components=50, "
                              f"or --set embeddings.glove.window=5 inside a sub-table)")
        set_dotted(out, path, parse_value(value.strip()), f"--set {item!r}")
    return out


def set_dotted(layer: dict, path: list[str], value: Any, origin: str) -> None:
    """layer[path[0]][path[1]]... = value, creating tables on the way; a table that already holds a plain
    value raises ConfigError naming `origin` (e.g. "--set 'embeddings.glove.window=5'")."""
    table = layer
    for depth, part in enumerate(path[:-1]):
        table = table.setdefault(part, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{origin} sets a field of {'.'.join(path[:depth + 1])}, which is given a plain value "
                              f"elsewhere; set only its fields")
    table[path[-1]] = value


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def coerce(value: Any, tp: Any, where: str) -> Any:
    """Coerce a TOML/--set value to the annotated type `tp`, or raise ConfigError naming `where`."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null") and type(None) in options):
            if type(None) in options:
                return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return coerce(value, option, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where} cannot be {value!r}")
    if origin in (list, tuple):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            shown = str(value).lower() if isinstance(value, bool) else repr(value)  # as TOML writes it
            raise ConfigError(f"{where} must be a list, got {shown}; write it in brackets, e.g. [{shown}]")
        args = typing.get_args(tp)
        item_tp = args[0] if args else Any
        items = [coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a table of settings like [{where}], got {value!r}; set its fields, "
                              f"e.g. {where}.{dataclasses.fields(tp)[0].name}")
        return build(tp, value, where)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ConfigError(f"{where} must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{where} must be a whole number, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{where} must be a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where} must be a string, got {value!r}")
    if typing.get_origin(tp) is typing.Literal:
        if value in typing.get_args(tp):
            return value
        raise ConfigError(f"{where} must be one of {list(typing.get_args(tp))}, got {value!r}")
    raise ConfigError(f"{where} has an unsupported type {_type_name(tp)}")


def pipeline_set(cls: type) -> list[str]:
    """The fields of dataclass `cls` that the pipeline sets, never a table: those declared with
    field(..., metadata={"set_by": "[model]"}) (what sets them)."""
    return [f.name for f in dataclasses.fields(cls) if "set_by" in f.metadata]


def build(cls: type, values: dict, section: str) -> Any:
    """Instantiate dataclass `cls` from `values`, coercing types; unknown fields, and fields the pipeline sets
    (pipeline_set), raise ConfigError."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown setting {section}.{unknown[0]}; valid settings of [{section}]: {', '.join(sorted(set(fields) - set(pipeline_set(cls))))}"
        )
    fixed = sorted(set(values) & set(pipeline_set(cls)))
    if fixed:
        by = fields[fixed[0]].metadata["set_by"]
        raise ConfigError(f"{section}.{fixed[0]} is set by the pipeline from {by}; set {by} instead")
    hints = typing.get_type_hints(cls, vars(sys.modules[cls.__module__]))
    kwargs = {name: coerce(value, hints[name], f"{section}.{name}") for name, value in values.items()}
    try:
        obj = cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"[{section}] does not fit: {exc}") from None
    validate = getattr(obj, "validate", None)
    if callable(validate):
        validate()  # raises ConfigError with its own message
    return obj


def merge(layers: list[dict]) -> dict:
    """Later layers win, table by table and key by key, sub-tables too: [{'a': {'x': 1, 's': {'p': 1, 'q': 1}}},
    {'a': {'y': 2, 's': {'q': 2}}}] -> {'a': {'x': 1, 's': {'p': 1, 'q': 2}, 'y': 2}}. The layers are not modified."""
    out: dict[str, dict] = {}
    for layer in layers:
        for section, table in layer.items():
            if not isinstance(table, dict):
                raise ConfigError(f"config key {section!r} must be a table like [{section}], got {table!r}")
        _merge_into(out, layer)
    return out


def _merge_into(out: dict, table: dict) -> dict:
    for name, value in table.items():
        if isinstance(value, dict):
            if not isinstance(out.get(name), dict):
                out[name] = {}  # a new table (or one replacing a plain value), filled from copies
            _merge_into(out[name], value)
        else:
            out[name] = value
    return out


def resolve(schemas: dict[str, type], layers: list[dict], moved: dict[str, str] | None = None) -> dict[str, Any]:
    """One frozen dataclass per schema section from merged layers; unknown sections raise ConfigError, and so
    does a field named in `moved` ({"old.field": "new.field"}), naming where it went."""
    merged = merge(layers)
    for name, new in (moved or {}).items():
        section, _, field = name.partition(".")
        if field in merged.get(section, {}):
            raise ConfigError(f"{name} is now {new}; rename it in your config file or --set")
    unknown = sorted(set(merged) - set(schemas))
    if unknown:
        raise ConfigError(f"unknown config section [{unknown[0]}]; valid sections: {', '.join(schemas)}")
    return {name: build(cls, merged.get(name, {}), name) for name, cls in schemas.items()}


def set_fields(cfg: Any, section: str, names: tuple[str, ...] | None = None) -> list[str]:
    """"section.field" of each field of dataclass `cfg` (of `names`, if given) that differs from its default, i.e.
    that some layer set: set_fields(LinearConfig(ngrams=3), "linear") -> ["linear.ngrams"]."""
    default = type(cfg)()
    return [f"{section}.{f.name}" for f in dataclasses.fields(cfg)
            if (names is None or f.name in names) and getattr(cfg, f.name) != getattr(default, f.name)]


def lookup(layers: list[dict], dotted: str) -> bool:
    """True when some layer sets `dotted` ("embeddings.glove.window"): lookup([{"a": {"b": 1}}], "a.b") -> True."""
    for layer in layers:
        table: Any = layer
        for part in dotted.split("."):
            table = table.get(part, _MISSING) if isinstance(table, dict) else _MISSING
        if table is not _MISSING:
            return True
    return False


def drop(layer: dict, dotted: str) -> bool:
    """Remove `dotted` from `layer` in place; True when it was there."""
    *path, name = dotted.split(".")
    for part in path:
        layer = layer.get(part)
        if not isinstance(layer, dict):
            return False
    return layer.pop(name, _MISSING) is not _MISSING


_MISSING = object()


def to_dict(configs: dict[str, Any]) -> dict:
    """The resolved configs as plain tables, nested configs as nested tables (for runs/<name>/config.toml and
    meta.json). Fields the pipeline sets (metadata "set_by") are left out: a config file may not name them."""
    return {name: _table(cfg) for name, cfg in configs.items()}


def _table(cfg: Any) -> dict:
    out = {}
    for f in dataclasses.fields(cfg):
        if "set_by" not in f.metadata:
            value = getattr(cfg, f.name)
            out[f.name] = _table(value) if dataclasses.is_dataclass(value) else copy.deepcopy(value)
    return out
