"""Reading ``--config`` files (JSON, or YAML when PyYAML is installed) for training commands."""

from __future__ import annotations

import dataclasses
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
        "amp=false); VALUE is read as JSON, else as text; named flags override it",
    )


def parse_set_options(items: list[str] | None) -> dict:
    """``["a.b=1", "c=text"]`` → ``{"a.b": 1, "c": "text"}`` (values JSON when they parse)."""
    out = {}
    for item in items or ():
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise Key2MeshError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            value = json.loads(text)
        except ValueError:
            value = text
        out[key.strip()] = value
    return out


def merged_config(cls, path: str | None, flags: dict, sets: list[str] | None = None):
    """The one config path of every configurable command: ``cls``'s dataclass defaults, then the
    ``--config`` file, then ``--set KEY=VALUE`` items, then the named command-line ``flags`` that
    were given (None = not given).

    Keys are field names, dotted for nested ones (``"model.hidden"``, ``"synth.noise_profile"``);
    ``cls.from_dict`` builds (and checks) the result."""
    d = read_config(path)
    given = {k: v for k, v in flags.items() if v is not None}
    for key, value in {**parse_set_options(sets), **given}.items():
        *parents, leaf = key.split(".")
        node = d
        for name in parents:
            sub = node.get(name)
            node[name] = (
                dict(sub)
                if isinstance(sub, dict)
                else (dataclasses.asdict(sub) if dataclasses.is_dataclass(sub) else {})
            )
            node = node[name]
        node[leaf] = value
    try:
        return cls.from_dict(d)
    except TypeError as exc:  # an unknown nested option, e.g. synth.nope
        raise Key2MeshError(f"bad {cls.__name__} options: {exc}") from None
