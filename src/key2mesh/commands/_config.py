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


def merged_config(cls, path: str | None, flags: dict):
    """The one config path of every training command: ``cls``'s dataclass defaults, then the
    ``--config`` file, then the command-line ``flags`` that were given (None = not given).

    ``flags`` keys are field names, dotted for nested ones (``"model.hidden"``,
    ``"synth.noise_profile"``); ``cls.from_dict`` builds (and checks) the result."""
    d = read_config(path)
    for key, value in flags.items():
        if value is None:
            continue
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
    return cls.from_dict(d)
