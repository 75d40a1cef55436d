"""The options of the motion's frame and bodies shared by ``demo`` and ``predict``: ``--world``,
``--origin``, ``--height``, ``--sex``, ``--subject`` (no torch import here)."""

from __future__ import annotations

import argparse

WORLD_MODES = ("ground", "camera")  # key2mesh.inference.world.WORLD_MODES
ORIGINS = ("first-pelvis", "people", "camera")  # key2mesh.inference.world.ORIGINS


def add_world_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--world",
        choices=list(WORLD_MODES),
        default=None,
        help="frame of the exports: ground (default: gravity-aligned from the people's feet, "
        "y up, the ground at y = 0; falls back to camera with a warning when the feet show no "
        "ground, e.g. single images) or camera (the camera at the origin looking along -z)",
    )
    p.add_argument(
        "--origin",
        choices=list(ORIGINS),
        default=None,
        help="--world ground: the origin is the ground point under the first person's first "
        "pelvis (first-pelvis, default), under the median pelvis of everyone (people) or under "
        "the camera (camera)",
    )
    p.add_argument(
        "--height",
        type=float,
        default=None,
        metavar="METRES",
        help="stature of the people (head to soles, metres; every track): their bodies are "
        "scaled to it, so the motion is in true size (per track: --subject)",
    )
    p.add_argument(
        "--sex",
        choices=["male", "female"],
        default=None,
        help="sex of the people's bodies (every track; anny bodies; per track: --subject)",
    )
    p.add_argument(
        "--subject",
        action="append",
        default=[],
        metavar="TRACK:HEIGHT:SEX",
        help="one tracked person's stature (m) and sex, either may be empty (e.g. 0:1.80:male, "
        "1::female); repeatable; or a YAML file {TRACK: {height: 1.8, sex: male}}. Track ids "
        "are those of the outputs (<name>_track<ID>)",
    )


def motion_options(args: argparse.Namespace) -> dict:
    """``build_motion`` keywords from the parsed options: ``world``, ``origin``, ``subjects``
    (one-line errors for bad values)."""
    from key2mesh.errors import Key2MeshError
    from key2mesh.inference.subject import subjects_from_options

    world = getattr(args, "world", None)
    origin = getattr(args, "origin", None)
    if origin is not None and world == "camera":
        raise Key2MeshError(
            "--origin applies to --world ground (the camera frame's origin is the camera)"
        )
    subjects = subjects_from_options(
        getattr(args, "height", None), getattr(args, "sex", None), getattr(args, "subject", ())
    )
    return {"world": world or "auto", "origin": origin or "first-pelvis", "subjects": subjects}
