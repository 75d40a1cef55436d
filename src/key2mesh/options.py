"""The one validator of the configurable commands' options (``pretrain``, ``adapt``, ``fit``,
``data prepare``'s numbers): a value from ``--config``, ``--set KEY=VALUE`` or a named flag is
checked against its dataclass field's type and :class:`Rule` (range, choices) and converted (text
→ number, ``"a,b"`` → ``["a", "b"]``), or refused with one line naming the option, the value and
what is expected.

A field's rule sits next to it (``field(metadata=rule(ge=0))``), or in :data:`TABLES` for the
classes whose files declare none; a field without a rule is still type-checked."""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import re
import types
import typing
from typing import Any

from key2mesh.errors import Key2MeshError

RULE = "key2mesh.rule"
INT_LIMIT = 2**63  # integers reach torch and numpy as int64


@dataclasses.dataclass(frozen=True)
class Rule:
    """What a field's value must satisfy beyond its type. Bounds apply to numbers and to each
    number of a list; ``nested`` + ``keys``: a dict field holding overrides of those fields of
    the dataclass ``nested``."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple[str, ...] = ()
    pattern: str = ""  # a regular expression the whole text must match
    expect: str = ""  # what ``pattern`` stands for, e.g. "auto, cpu, cuda, cuda:N or mps"
    finite: bool = True  # NaN and ±inf refused
    length: int | None = None  # lists of exactly this many items
    ascending: bool = False  # list items in non-decreasing order
    nested: type | None = None
    keys: tuple[str, ...] = ()


def rule(base: Rule | None = None, **kw) -> dict:
    """Field metadata declaring the field's :class:`Rule` (``base``, with ``kw`` changed):
    ``field(default=0, metadata=rule(ge=0))``, ``field(default="auto", metadata=rule(DEVICE))``."""
    return {RULE: dataclasses.replace(base or Rule(), **kw)}


DEVICE = Rule(pattern=r"auto|cpu|mps|cuda(:\d+)?", expect="auto, cpu, cuda, cuda:N or mps")
COUNT, POSITIVE_COUNT = Rule(ge=0), Rule(ge=1)
WEIGHT, POSITIVE, FRACTION = Rule(ge=0), Rule(gt=0), Rule(ge=0, lt=1)
SEED = Rule(ge=0, lt=2**32)

# rules of the classes whose modules declare none, by "module.Class" and field name
TABLES: dict[str, dict[str, Rule]] = {
    "key2mesh.train.adapt.AdaptConfig": {
        "steps": COUNT,
        "epochs": POSITIVE,
        "batch_size": POSITIVE_COUNT,
        "lr": POSITIVE,
        "critic_lr": POSITIVE,
        "critic_steps": COUNT,
        "gamma": WEIGHT,
        "select_every": POSITIVE_COUNT,
        "min_keypoints": POSITIVE_COUNT,
        "holdout_fraction": FRACTION,
        "bn": Rule(choices=("frozen", "batch")),
        "critic_dropout": FRACTION,
        "selection": Rule(choices=("guarded", "target")),
        "source_tolerance": WEIGHT,
        "min_gain": FRACTION,
        "max_size_change": FRACTION,
        "max_depth_share": FRACTION,
        "mv_shape_anchor": WEIGHT,
        "source_samples": COUNT,
        "seed": SEED,
        "device": DEVICE,
        "threads": COUNT,
    },
    "key2mesh.train.losses.AdaptWeights": dict.fromkeys(("kp2d", "wd", "reg", "mv"), WEIGHT),
    "key2mesh.train.losses.PretrainWeights": dict.fromkeys(
        ("pose", "shape", "kp2d", "kp3d"), WEIGHT
    ),
}


class _Bad(Exception):
    """The value does not fit: ``expect`` says what is expected of option ``name`` (a nested one,
    when set)."""

    def __init__(self, expect: str, name: str = ""):
        super().__init__(expect)
        self.expect, self.name = expect, name


def _one_line(text: str) -> str:
    """``text`` with control characters (newlines, tabs …) written as escapes: error lines stay
    one line whatever the user typed."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def check_option(cls: type, key: str, value: Any, origin: str, text: bool = False) -> Any:
    """``value`` of the option ``key`` (a field of dataclass ``cls``, dotted for nested ones)
    checked and converted; ``text``: a string to parse (``--set``, a flag) rather than a value
    already typed (``--config``). ``origin`` (e.g. ``--set threads=-3``) opens the error line."""
    origin = _one_line(origin)
    *parents, leaf = key.split(".")
    owner, path = cls, []
    for name in parents:
        tp, r = _field(owner, name, path, origin)
        path.append(name)
        owner = r.nested or (tp if dataclasses.is_dataclass(tp) else None)
        if owner is None:
            raise Key2MeshError(f"{origin}: {'.'.join(path)} has no options inside it")
        if r.nested:
            owner = _Restricted(r.nested, r.keys)
    tp, r = _field(owner, leaf, path, origin)
    name = ".".join([*path, leaf])
    try:
        return _convert(tp, r, value, text, name)
    except _Bad as bad:
        raise Key2MeshError(f"{origin}: {bad.name or name} must be {bad.expect}") from None


def from_flags(cls: type, flags: dict, names: dict[str, str] | None = None):
    """``cls(**flags)`` with every flag given (not None) checked: ``names`` maps a field to its
    flag's spelling (default ``--field-name``); string values are parsed."""
    return cls(**checked_flags(cls, flags, names))


def checked_flags(cls: type, flags: dict, names: dict[str, str] | None = None) -> dict:
    """The flags that were given (not None), each checked and converted (see :func:`from_flags`)."""
    out = {}
    for key, value in flags.items():
        if value is None:
            continue
        flag = (names or {}).get(key) or "--" + key.rsplit(".", 1)[-1].replace("_", "-")
        shown = value if isinstance(value, str) else show(value)
        out[key] = check_option(cls, key, value, f"{flag} {shown}", text=isinstance(value, str))
    return out


def show(value: Any, width: int = 60) -> str:
    """A value as one short line of JSON (error messages)."""
    try:
        s = json.dumps(value, default=str)
    except ValueError:
        s = repr(value)
    return s if len(s) <= width else s[: width - 3] + "..."


class _Restricted:
    """The dataclass ``cls`` seen through only its fields ``keys`` (a dict field of overrides)."""

    def __init__(self, cls: type, keys: tuple[str, ...]):
        self.cls, self.keys = cls, keys or tuple(f.name for f in dataclasses.fields(cls))


@functools.cache
def _hints(cls: type) -> dict:
    return typing.get_type_hints(cls)


def _fields(owner) -> dict[str, tuple[Any, Rule]]:
    """Field name → (type, rule) of a dataclass or a :class:`_Restricted` one."""
    cls, keys = (owner.cls, owner.keys) if isinstance(owner, _Restricted) else (owner, None)
    table = TABLES.get(f"{cls.__module__}.{cls.__qualname__}", {})
    hints = _hints(cls)
    return {
        f.name: (hints.get(f.name, Any), f.metadata.get(RULE) or table.get(f.name) or Rule())
        for f in dataclasses.fields(cls)
        if f.init and (keys is None or f.name in keys)
    }


def _field(owner, name: str, path: list[str], origin: str) -> tuple[Any, Rule]:
    fields = _fields(owner)
    if name not in fields:
        where = f"{'.'.join(path)} " if path else ""
        raise Key2MeshError(
            f"{origin}: unknown {where}option {'.'.join([*path, name])!r}; valid: {', '.join(fields)}"
        )
    return fields[name]


def _convert(tp, r: Rule, value: Any, text: bool, name: str) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        if type(None) in args and (value is None or (text and value == "null")):
            return None
        try:
            return _convert(inner[0] if len(inner) == 1 else Any, r, value, text, name)
        except _Bad as bad:
            raise _Bad(f"{bad.expect} or null", bad.name) from None
    if r.nested is not None or dataclasses.is_dataclass(tp):
        return _mapping(tp, r, value, text, name)
    if origin in (list, tuple) or tp in (list, tuple):
        return _sequence(args[0] if args else Any, r, value, text)
    if tp is bool:
        return _bool(value)
    if tp is int:
        return _int(r, _parsed(value, text))
    if tp is float:
        return _float(r, _parsed(value, text))
    if tp is str:
        return _str(r, value)
    return _parsed(value, text)


def _parsed(value: Any, text: bool) -> Any:
    """A ``--set`` / flag string read as JSON when it parses (``3``, ``1e-3``, ``NaN``), else kept."""
    if text and isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _bounds(r: Rule) -> str:
    def num(v):
        return str(int(v)) if float(v).is_integer() and abs(v) < 1e15 else f"{v:g}"

    lo = (
        (f"[{num(r.ge)}" if r.ge is not None else f"({num(r.gt)}") if {r.ge, r.gt} != {None} else ""
    )
    hi = (
        (f"{num(r.le)}]" if r.le is not None else f"{num(r.lt)})") if {r.le, r.lt} != {None} else ""
    )
    if lo and hi:
        return f" in {lo}, {hi}"
    if lo:
        return f" {'>=' if r.ge is not None else '>'} {lo[1:]}"
    if hi:
        return f" {'<=' if r.le is not None else '<'} {hi[:-1]}"
    return ""


def _in_range(r: Rule, v: float) -> bool:
    return not (
        (r.ge is not None and not v >= r.ge)
        or (r.gt is not None and not v > r.gt)
        or (r.le is not None and not v <= r.le)
        or (r.lt is not None and not v < r.lt)
    )


def _int(r: Rule, value: Any) -> int:
    what = f"an integer{_bounds(r)}"
    if isinstance(value, bool) or not isinstance(value, int) or not _in_range(r, value):
        raise _Bad(what)
    if abs(value) >= INT_LIMIT:
        raise _Bad(f"{what} (below 2**63)")
    return value


def _float(r: Rule, value: Any) -> float:
    what = f"a number{_bounds(r)}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Bad(what)
    try:
        v = float(value)
    except OverflowError:
        raise _Bad(what) from None
    if (r.finite and not math.isfinite(v)) or math.isnan(v) or not _in_range(r, v):
        raise _Bad(what)
    return v


def _bool(value: Any) -> bool:
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    if not isinstance(value, bool):
        raise _Bad("true or false")
    return value


def _str(r: Rule, value: Any) -> str:
    if r.choices:
        what = f"one of {', '.join(r.choices)}"
    else:
        what = r.expect or "text"
    if not isinstance(value, str):
        raise _Bad(what)
    if (r.choices and value not in r.choices) or (r.pattern and not re.fullmatch(r.pattern, value)):
        raise _Bad(what)
    return value


def _sequence(item, r: Rule, value: Any, text: bool) -> list:
    kind = {str: "text", int: "integer", float: "number"}.get(item, "value")
    what = f"a list of {f'{r.length} ' if r.length else ''}{kind}s{_bounds(r) if kind != 'text' else ''}"
    what += f"{' in ascending order' if r.ascending else ''} (JSON list or comma-separated)"
    if text and isinstance(value, str) and value.lstrip().startswith("["):
        value = _parsed(value, True)
    if isinstance(value, str):  # "a,b" from any source: the items, never the characters
        value, text = [s.strip() for s in value.split(",") if s.strip()], True
    if not isinstance(value, (list, tuple)):
        raise _Bad(what)
    item_rule = dataclasses.replace(r, length=None, ascending=False)
    try:
        out = [_convert(item, item_rule, v, text, "") for v in value]
    except _Bad:
        raise _Bad(what) from None
    if (r.length is not None and len(out) != r.length) or (
        r.ascending and any(a > b for a, b in zip(out, out[1:]))
    ):
        raise _Bad(what)
    return out


def _mapping(tp, r: Rule, value: Any, text: bool, name: str) -> dict:
    owner = _Restricted(r.nested, r.keys) if r.nested is not None else tp
    fields = _fields(owner)
    what = f"a mapping of options ({', '.join(fields)})"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    value = _parsed(value, text)
    if not isinstance(value, dict):
        raise _Bad(what)
    out = {}
    for key, v in value.items():
        if key not in fields:
            raise _Bad(f"{what}; {key!r} is not one")
        sub_tp, sub_r = fields[key]
        try:
            out[key] = _convert(sub_tp, sub_r, v, False, f"{name}.{key}")
        except _Bad as bad:
            raise _Bad(bad.expect, bad.name or f"{name}.{key}") from None
    return out
