"""Browser viewer for key2mesh results (``key2mesh view``, ``key2mesh live``): the scene data
(:mod:`.scene`, plain arrays), skinned bodies (:mod:`.bodies`), the viser app (:mod:`.app`, the
optional ``viewer`` extra), headless screenshots (:mod:`.screenshot`) and the live pipeline
(:mod:`.live`). Design notes: docs/viewer.md."""

from __future__ import annotations

from pathlib import Path

from key2mesh.viewer.scene import Scene


def load_scene(path: str | Path) -> Scene:
    """The :class:`Scene` of a result: a ``demo`` / ``predict`` folder or params file, or an
    ``adapt`` run folder (a ``best.pt`` beside its ``summary.json``)."""
    from key2mesh.viewer.scene import find_results, load_params_scene

    path = Path(path)
    if path.is_dir() and (path / "best.pt").exists() and not list(path.glob("*_params.npz")):
        from key2mesh.viewer.adapt_run import load_adapt_scene

        return load_adapt_scene(path)
    files = find_results(path)
    return load_params_scene(files, title=str(path))


def load_bodies(scene: Scene, kit=None) -> dict:
    """{track name: :class:`~key2mesh.viewer.bodies.SkinnedBody`} of every track (``kit``: a
    predictor, or built from the tracks' body model)."""
    from key2mesh.viewer.bodies import body_kit, skinned_body

    kits = {}
    out = {}
    for tr in scene.tracks:
        if kit is None and tr.body not in kits:
            kits[tr.body] = body_kit(tr.body)
        out[tr.name] = skinned_body(kit or kits[tr.body], tr)
    return out
