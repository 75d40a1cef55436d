"""The config path of the training commands: ``--config`` files (JSON, or YAML when PyYAML is
installed), ``--set KEY=VALUE`` and named flags, each value checked by :mod:`key2mesh.options`."""

from __future__ import annotations

import json
from pathlib import Path

from key2mesh.errors import Key2MeshError


def read_config(path: str | None) -> dict:
    if not path:
        return {}
    p = Path(path)
    if not p.is_file():
        raise Key2MeshError(f"config file {p} does not exist")
    text = p.read_text()
    try:
        if p.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as exc:  # noqa: BLE001
        raise Key2MeshError(f"cannot parse config {p}: {exc}".splitlines()[0]) from exc
    if not isinstance(data, dict):
        raise Key2MeshError(f"config {p} must hold a mapping of options")
    return data


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
