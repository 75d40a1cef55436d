"""The keypoint-files → motion-table pipeline behind ``key2mesh predict`` (the command only
parses its options and prints): one pass per input file.

Every detection is checked once (:meth:`Key2Mesh.check`; unusable ones are logged per frame and
counted by reason); people are tracked first (the file's own ids, else
:class:`~key2mesh.inference.tracking.Tracker`), so smoothing runs per tracked person; the
usable, tracked detections are predicted in chunks into the motion table
(:func:`~key2mesh.inference.motion.build_motion`: one shape per track, camera translation,
smoothing); meshes are written batch by batch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from key2mesh.inference.predictor import Key2Mesh

log = logging.getLogger(__name__)
CHUNK = 4096  # detections per chunk: outputs beyond the compact parameters are never held for more
MESH_BATCH = 256  # bodies per mesh batch (their vertices are dropped once the meshes are written)
NOT_TRACKED = "not tracked (no keypoint box)"
MESH_FILES = r".+\.(?:obj|ply|glb)"  # what a <stem>_meshes/ folder holds
DEFAULT_FPS = 30.0  # Hz, for keypoint files that do not say their frame rate


@dataclass
class FilePrediction:
    """One input file's result: its ``motion`` (:class:`~key2mesh.inference.motion.Motion`, one
    row per usable, tracked detection), the name of every row's frame (``frame_names`` (N,),
    from the file), how many detections were read (``total``) and skipped, by reason."""

    motion: object
    frame_names: list[str]
    total: int
    skipped: dict[str, int] = field(default_factory=dict)


def predict_file(
    model: Key2Mesh,
    path: str,
    keypoint_set: str | None = None,
    fps: float | None = None,
    image_size: tuple[int, int] | None = None,
    focal: float | None = None,
    smoothing=None,
    chunk_size: int = CHUNK,
    world: str = "camera",
    **options,
) -> FilePrediction:
    """One keypoint file → its motion table (the demo's table: tracked identities, camera
    translation, standard keys), predicted once. ``fps`` (Hz): this argument, else the file's
    (a motion table records it), else 30. ``image_size`` (H, W) px: this argument, else the
    file's, else the keypoints' extent (principal point at its centre).
    ``smoothing`` (:class:`~key2mesh.inference.motion.MotionSmoothing`) runs per tracked person;
    ``world``: the export frame (:func:`~key2mesh.inference.world.estimate_world`); ``options``:
    more :func:`~key2mesh.inference.motion.build_motion` keywords (``origin``, ``subjects``)."""
    from key2mesh.inference.motion import MotionSmoothing, build_motion
    from key2mesh.keypoints.io import read_detections

    det = read_detections(path, keypoint_set=keypoint_set)
    fps = fps or det.fps or DEFAULT_FPS
    ids = track_ids(det, fps=fps)
    det = det.to(model.keypoint_set)
    kp, conf, index = det.flatten()
    check = model.check(kp, conf)
    for mask, why in (
        (check.too_few, f"fewer than {model.min_keypoints} keypoints"),
        (check.degenerate, "degenerate detection: all keypoints on one spot"),
    ):
        for f in np.unique(index[mask, 0]):
            log.warning("%s frame %s: detection skipped (%s)", path, det.frame_names[f], why)
    skipped = dict(check.reasons(model.min_keypoints))
    untracked = int((check.usable & (ids < 0)).sum())
    if untracked:
        skipped[NOT_TRACKED] = untracked
    keep = check.usable & (ids >= 0)
    if image_size is None and det.image_size is not None:
        image_size = (det.image_size[1], det.image_size[0])
    if image_size is None:
        ok = conf > model.normalization.conf_threshold
        hi = np.where(ok[..., None], kp, 0).reshape(-1, 2).max(0) if ok.any() else np.ones(2)
        image_size = (int(np.ceil(hi[1] * 1.05)) + 1, int(np.ceil(hi[0] * 1.05)) + 1)
    frames = index[keep, 0]
    motion = build_motion(
        model,
        frames,
        frames / fps,
        ids[keep],
        kp[keep],
        conf[keep],
        image_size,
        fps,
        focal=focal,
        smoothing=smoothing or MotionSmoothing(),
        chunk_size=chunk_size,
        world=world,
        **options,
    )
    names = [det.frame_names[f] for f in frames]
    return FilePrediction(motion, names, len(kp), {k: v for k, v in skipped.items() if v})


def motion_from_file(model: Key2Mesh, path: str, keypoint_set: str | None = None, **kw):
    """:func:`predict_file`'s motion table alone."""
    return predict_file(model, path, keypoint_set, **kw).motion


def no_usable_detection(model: Key2Mesh, inputs: list[str], total: int, skipped: dict) -> str:
    """The one-line message of a run where no detection was usable."""
    why = "; ".join(f"{n} {reason}" for reason, n in skipped.items()) or "no detection in the files"
    return (
        f"no usable detection (at least {model.min_keypoints} keypoints, not all on one spot) in "
        f"{', '.join(inputs)}: {total} detections read ({why})"
    )


def write_meshes(
    model: Key2Mesh,
    result: FilePrediction,
    mesh_dir: Path,
    fmt: str,
    chunk_size: int = CHUNK,
    progress: bool = True,
) -> int:
    """One mesh file per row of ``result.motion`` into ``mesh_dir``
    (``{frame_name}_track{track_id}.{fmt}``, sanitised and unique; the body in its own frame,
    root at the origin, as the motion's ``rotmats`` / ``shape``), computed
    ``min(MESH_BATCH, chunk_size)`` bodies at a time."""
    from tqdm import tqdm

    from key2mesh.inference.meshes import write_mesh
    from key2mesh.safe_paths import remove_stale, unique_names

    motion = result.motion
    # names come from inside the input files: plain, unique file names inside mesh_dir only
    stems = unique_names(f"{fn}_track{tid}" for fn, tid in zip(result.frame_names, motion.track_id))
    rot_t, shape_t = torch.from_numpy(motion.rotmats), torch.from_numpy(motion.shape)
    faces = model.faces.cpu().numpy()
    batch = min(MESH_BATCH, chunk_size)
    mesh_dir.mkdir(parents=True, exist_ok=True)
    written = []
    with tqdm(total=len(motion), desc="meshes", disable=not progress) as bar:
        for part, verts in model.mesh_chunks(rot_t, shape_t, batch):
            for j, k in enumerate(range(part.start, part.stop)):
                written.append(write_mesh(verts[j], faces, mesh_dir / f"{stems[k]}.{fmt}"))
            bar.update(len(verts))
            del verts  # this batch's vertices go before the next batch is computed
    remove_stale(mesh_dir, MESH_FILES, written)  # an earlier run's meshes of other frames
    return len(motion)


def track_ids(det, min_confidence: float = 0.3, fps: float = 30.0, max_people: int = 64):
    """(N,) identities of ``det.flatten()``'s detections: the file's own person ids when it is
    tracked, else assigned by :class:`~key2mesh.inference.tracking.Tracker` frame by frame."""
    from key2mesh.inference.tracking import Tracker
    from key2mesh.media.multi_detect import keypoint_box

    kp, conf, index = det.flatten()
    if det.tracked:
        return det.person_ids[index[:, 0], index[:, 1]]
    ids = np.full(len(kp), -1, dtype=np.int64)
    tracker = Tracker(max_people=max_people)
    for f in np.unique(index[:, 0]):
        sel = np.flatnonzero(index[:, 0] == f)
        boxes = keypoint_box(kp[sel], conf[sel], min_confidence)
        ok = np.isfinite(boxes).all(1)
        if ok.any():
            ids[sel[ok]] = tracker.update(f / fps, boxes[ok], kp[sel[ok]], conf[sel[ok]])
    return ids
