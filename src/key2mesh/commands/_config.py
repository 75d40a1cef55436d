"""The config path of the training commands: ``--config`` files (JSON, or YAML when PyYAML is
installed), ``--set KEY=VALUE`` and named flags, each value checked by :mod:`key2mesh.options`."""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path

from key2mesh.errors import Key2MeshError


def read_config(path: str | None) -> dict:
    if not path:
        return {}
    p = Path(path)
    if p.is_dir():
        raise Key2MeshError(f"config file {p} is a folder, not a file")
    if not p.is_file():
        raise Key2MeshError(f"config file {p} does not exist")
    raw = p.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise Key2MeshError(
            f"cannot parse config {p}: not UTF-8 text (byte {exc.start}); save it as UTF-8"
        ) from None
    try:
        if p.suffix.lower() in (".yaml", ".yml"):
            data = _yaml_loads(text)
            data = {} if data is None else data  # empty, or comments only
        else:
            data = json.loads(text, object_pairs_hook=_unique_keys)
    except Exception as exc:  # noqa: BLE001
        raise Key2MeshError(f"cannot parse config {p}: {exc}".splitlines()[0]) from exc
    if not isinstance(data, dict):
        raise Key2MeshError(f"config {p} must hold a mapping of options")
    return data


# YAML 1.2's numbers in exponent form that PyYAML (YAML 1.1: a dot and a signed exponent) reads
# as text: 1e-3, 2E5, 1.5e3
_EXPONENT = re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$")


@functools.cache
def _yaml_loader():
    """``yaml.SafeLoader`` reading ``1e-3`` as the number (as JSON and YAML 1.2 do) and refusing
    a key given twice in one mapping (PyYAML keeps the last)."""
    import yaml

    class Loader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            seen = set()
            for key, _ in node.value:
                if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                    if key.value in seen:
                        line = key.start_mark.line + 1
                        raise ValueError(f"duplicate key {key.value!r} (line {line})")
                    seen.add(key.value)
            return super().construct_mapping(node, deep)

    Loader.add_implicit_resolver("tag:yaml.org,2002:float", _EXPONENT, list("-+0123456789"))
    return Loader


def _unique_keys(pairs: list) -> dict:
    """A JSON object's pairs as a dict; a key given twice is refused (``json`` keeps the last)."""
    out = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _yaml_loads(text: str):
    import yaml

    return yaml.load(text, Loader=_yaml_loader())  # a SafeLoader: no arbitrary objects


def add_config_arguments(p, what: str) -> None:
    """``--config FILE`` and ``--set KEY=VALUE`` (any field of the command's config dataclass)."""
    p.add_argument(
        "--config", help=f"JSON/YAML file of {what} options (command-line flags override it)"
    )
    p.add_argument(
        "--set",
        dest="set_options",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"set any {what} option, dotted for nested ones (e.g. synth.noise_profile=strong, "
        "amp=false, val_subjects=cmu_02,cmu_05); VALUE is read by the option's type (JSON for "
        "numbers, lists and mappings; text, or comma-separated for lists); named flags override it",
    )


def parse_set_options(items: list[str] | None) -> list[tuple[str, str, str]]:
    """``["a.b=1", "c=text"]`` → ``[("a.b", "1", "a.b=1"), ("c", "text", "c=text")]``: key, the
    value's text (read by the field's type, see :mod:`key2mesh.options`) and the item."""
    out = []
    for item in items or ():
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise Key2MeshError(f"--set expects KEY=VALUE, got {item!r}")
        out.append((key.strip(), text, item))
    return out


def merged_config(
    cls,
    path: str | None,
    flags: dict,
    sets: list[str] | None = None,
    names: dict[str, str] | None = None,
):
    """The one config path of every configurable command: ``cls``'s dataclass defaults, then the
    ``--config`` file, then ``--set KEY=VALUE`` items, then the named command-line ``flags`` that
    were given (None = not given; ``names``: a flag's spelling where it is not ``--field-name``).

    Keys are field names, dotted for nested ones (``"model.hidden"``, ``"synth.noise_profile"``).
    Every value, whatever its source, goes through :func:`key2mesh.options.check_option` (type,
    range, choices; a one-line error naming the option) before ``cls.from_dict`` builds the
    result, so nothing heavy runs with a bad option."""
    from key2mesh.options import check_option, checked_flags, show

    d: dict = {}
    for key, value in read_config(path).items():
        origin = f"{key}={show(value)} in --config {path}"
        _put(d, str(key), check_option(cls, str(key), value, origin))
    for key, text, item in parse_set_options(sets):
        _put(d, key, check_option(cls, key, text, f"--set {item}", text=True))
    for key, value in checked_flags(cls, flags, names).items():
        _put(d, key, value)
    try:
        cfg = cls.from_dict(d)
    except TypeError as exc:  # not expected: every key was checked above
        raise Key2MeshError(f"bad {cls.__name__} options: {exc}") from None
    if getattr(cfg, "device", None):
        from key2mesh.devices import check_device

        check_device(cfg.device)  # an unavailable cuda:N from --set / --config, before any work
    return cfg


def _put(d: dict, key: str, value) -> None:
    """``d[a][b] = value`` for ``key`` "a.b" (sub-mappings created or copied as needed)."""
    *parents, leaf = key.split(".")
    node = d
    for name in parents:
        sub = node.get(name)
        node[name] = dict(sub) if isinstance(sub, dict) else {}
        node = node[name]
    node[leaf] = value


class ConfigDefaults:
    """The default values of a config dataclass's fields, read from its source file with
    :mod:`ast` (the module itself is not imported: it imports torch, and ``--help`` must not),
    so that ``--help`` shows the defaults of the code instead of retyped ones.

    ``ConfigDefaults("train/adapt.py", "AdaptConfig").text("min_gain")`` → ``"0.05"``; dotted keys
    reach nested dataclasses (``"weights.sigma"``, ``"model.hidden"``). A default computed at run
    time (a function call) reads ``"computed at run time"``."""

    def __init__(self, path: str, cls: str):
        self.path, self.cls = path, cls

    def value(self, key: str):
        """The default of ``key`` (LookupError when it is computed at run time)."""
        path, cls = self.path, self.cls
        *parents, leaf = key.split(".")
        for name in parents:
            node = _fields(path, cls)[name]
            path, cls = _nested_class(path, node)
        return _field_default(path, _fields(path, cls)[leaf])

    def text(self, key: str) -> str:
        try:
            value = self.value(key)
        except LookupError:
            return "computed at run time"
        if isinstance(value, list | tuple):
            return ",".join(str(v) for v in value)
        return str(value)

    def help(self, key: str, text: str) -> str:
        """``text`` with the field's default appended: ``"text (AdaptConfig default: 0.05)"``."""
        return f"{text} ({self.cls} default: {self.text(key)})"


_SRC = Path(__file__).resolve().parents[1]  # src/key2mesh


_TREES: dict = {}  # path -> its parsed module (each source file is parsed once)


def _module_tree(path: str):
    import ast

    if path not in _TREES:
        _TREES[path] = ast.parse((_SRC / path).read_text())
    return _TREES[path]


def _module_path(module: str) -> str:
    """``key2mesh.keypoints.io`` → ``keypoints/io.py`` (or ``.../__init__.py``)."""
    rel = Path(*module.split(".")[1:])
    return str(rel / "__init__.py") if (_SRC / rel).is_dir() else f"{rel}.py"


def _fields(path: str, cls: str) -> dict:
    """Field name → its ``AnnAssign`` node in class ``cls`` of ``path``."""
    import ast

    for node in _module_tree(path).body:
        if isinstance(node, ast.ClassDef) and node.name == cls:
            return {
                n.target.id: n
                for n in node.body
                if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)
            }
    path2, cls2 = _resolve_name(path, cls)
    return _fields(path2, cls2)


def _resolve_name(path: str, name: str) -> tuple[str, str]:
    """Where a name imported by ``path`` (``from key2mesh.x import name``) is defined."""
    import ast

    for node in _module_tree(path).body:
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("key2mesh"):
            for alias in node.names:
                if (alias.asname or alias.name) == name:
                    return _module_path(node.module), alias.name
    raise LookupError(f"{name} in {path}")


def _nested_class(path: str, node) -> tuple[str, str]:
    """The dataclass a nested field holds: ``field(default_factory=Cls)`` or
    ``field(metadata=rule(nested=Cls))``."""
    import ast

    call = node.value
    if isinstance(call, ast.Call):
        for kw in call.keywords:
            factory = kw.value
            if kw.arg == "default_factory" and isinstance(factory, ast.Name):
                if factory.id not in ("dict", "list"):
                    return path, factory.id
            if kw.arg == "metadata" and isinstance(kw.value, ast.Call):
                for inner in kw.value.keywords:
                    if inner.arg == "nested" and isinstance(inner.value, ast.Name):
                        return path, inner.value.id
    raise LookupError("not a nested dataclass field")


def _field_default(path: str, node):
    import ast

    value = node.value
    if value is None:
        raise LookupError("no default")
    if isinstance(value, ast.Call) and getattr(value.func, "id", "") == "field":
        for kw in value.keywords:
            if kw.arg == "default":
                return _eval(path, kw.value)
            if kw.arg == "default_factory":
                f = kw.value
                if isinstance(f, ast.Lambda):
                    return _eval(path, f.body)
                if isinstance(f, ast.Name) and f.id in ("list", "dict", "tuple"):
                    return {"list": [], "dict": {}, "tuple": ()}[f.id]
        raise LookupError("computed default")
    return _eval(path, value)


def _eval(path: str, node):
    """A constant expression of ``path``'s source: literals, module-level names (followed through
    ``from key2mesh... import``), ``list(X)``/``tuple(X)``, unary minus."""
    import ast

    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.List | ast.Tuple):
        return [_eval(path, e) for e in node.elts]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_eval(path, node.operand)
    if isinstance(node, ast.Call) and getattr(node.func, "id", "") in ("list", "tuple"):
        if len(node.args) == 1:
            return list(_eval(path, node.args[0]))
    if isinstance(node, ast.Name):
        for stmt in _module_tree(path).body:
            targets = (
                stmt.targets
                if isinstance(stmt, ast.Assign)
                else [stmt.target]
                if isinstance(stmt, ast.AnnAssign)
                else []
            )
            if any(isinstance(t, ast.Name) and t.id == node.id for t in targets):
                return _eval(path, stmt.value)
        other, name = _resolve_name(path, node.id)
        return _eval(other, ast.Name(id=name))
    raise LookupError(f"not a constant: {ast.dump(node)[:60]}")
