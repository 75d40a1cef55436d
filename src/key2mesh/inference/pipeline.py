"""The keypoint-files → body-parameters pipeline behind ``key2mesh predict`` (the command only
parses its options and prints).

Every detection of every file is checked once (:meth:`Key2Mesh.check`); usable ones are
predicted in chunks (:meth:`Key2Mesh.predict_chunks`), optionally smoothed per tracked person
(:func:`~key2mesh.inference.smoothing.smooth_tracks`, then their keypoints recomputed from the
smoothed parameters), and gathered into one table; meshes are written batch by batch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from key2mesh.errors import Key2MeshError
from key2mesh.inference.predictor import Key2Mesh

log = logging.getLogger(__name__)
CHUNK = 4096  # detections per chunk: outputs beyond the compact parameters are never held for more
MESH_BATCH = 256  # bodies per mesh batch (their vertices are dropped once the meshes are written)


@dataclass
class PredictionTable:
    """One row per predicted detection: ``source`` file, ``frame`` index and ``frame_name``,
    ``person_id``, ``rotmats`` (N,24,3,3), ``shape`` (N,S), ``keypoints3d`` (N,K,3); plus how many
    detections were read (``total``) and skipped, by reason."""

    arrays: dict[str, np.ndarray]
    total: int
    skipped: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.arrays["rotmats"])


def predict_files(
    model: Key2Mesh,
    inputs: list[str],
    keypoint_set: str | None = None,
    smooth: bool = False,
    chunk_size: int = CHUNK,
) -> PredictionTable:
    """Read keypoint files (:func:`~key2mesh.keypoints.io.read_detections`), skip unusable
    detections (logged per frame, counted by reason) and predict the rest. A one-line
    :class:`Key2MeshError` when no detection is usable."""
    from key2mesh.inference.smoothing import smooth_tracks
    from key2mesh.keypoints.io import read_detections

    rows: dict[str, list] = {
        k: []
        for k in ("source", "frame", "frame_name", "person_id", "rotmats", "shape", "keypoints3d")
    }
    skipped: dict[str, int] = {}
    total = 0
    for path in inputs:
        det = read_detections(path, keypoint_set=keypoint_set)
        kp, conf, index = det.flatten()
        total += len(kp)
        check = model.check(kp, conf)
        ok = check.usable
        for mask, why in (
            (check.too_few, f"fewer than {model.min_keypoints} keypoints"),
            (check.degenerate, "degenerate detection: all keypoints on one spot"),
        ):
            for f in np.unique(index[mask, 0]):
                log.warning("%s frame %s: detection skipped (%s)", path, det.frame_names[f], why)
        for why, count in check.reasons(model.min_keypoints).items():
            skipped[why] = skipped.get(why, 0) + count
        if not ok.any():
            continue
        kp, conf, index = kp[ok], conf[ok], index[ok]
        rot, shape, kp3d = [], [], []
        for _, pred in model.predict_chunks(
            kp, conf, keypoint_set=det.keypoint_set, chunk_size=chunk_size
        ):
            rot.append(pred.rotmats.cpu())
            shape.append(pred.shape.cpu())
            kp3d.append(pred.keypoints3d.cpu())
        rot, shape, kp3d = torch.cat(rot), torch.cat(shape), torch.cat(kp3d)
        pids = det.person_ids[index[:, 0], index[:, 1]]
        if (
            smooth
        ):  # over whole tracks (compact parameters), then the keypoints again, chunk by chunk
            rot, shape = smooth_tracks(rot, shape, index[:, 0], pids)
            kp3d = model.keypoints3d(rot, shape, chunk_size)
        rows["source"] += [str(path)] * len(kp)
        rows["frame"].append(index[:, 0])
        rows["frame_name"] += [det.frame_names[f] for f in index[:, 0]]
        rows["person_id"].append(pids)
        rows["rotmats"].append(rot.numpy())
        rows["shape"].append(shape.numpy())
        rows["keypoints3d"].append(kp3d.numpy())
    if not rows["rotmats"]:
        why = (
            "; ".join(f"{n} {reason}" for reason, n in skipped.items())
            or "no detection in the files"
        )
        raise Key2MeshError(
            f"no usable detection (at least {model.min_keypoints} keypoints, not all on one spot) in "
            f"{', '.join(inputs)}: {total} detections read ({why})"
        )
    stacked = ("frame", "person_id", "rotmats", "shape", "keypoints3d")
    arrays = {k: (np.concatenate(v) if k in stacked else np.array(v)) for k, v in rows.items()}
    return PredictionTable(arrays, total, skipped)


def write_meshes(
    model: Key2Mesh,
    table: PredictionTable,
    mesh_dir: Path,
    fmt: str,
    chunk_size: int = CHUNK,
    progress: bool = True,
) -> int:
    """One mesh file per row of ``table`` into ``mesh_dir`` (``{frame_name}_p{person_id}.{fmt}``,
    sanitised and unique), computed ``min(MESH_BATCH, chunk_size)`` bodies at a time."""
    from tqdm import tqdm

    from key2mesh.inference.meshes import write_mesh
    from key2mesh.safe_paths import unique_names

    arrays = table.arrays
    # names come from inside the input files: plain, unique file names inside mesh_dir only
    stems = unique_names(
        f"{fn}_p{pid}" for fn, pid in zip(arrays["frame_name"], arrays["person_id"])
    )
    rot_t, shape_t = torch.from_numpy(arrays["rotmats"]), torch.from_numpy(arrays["shape"])
    faces = model.faces.cpu().numpy()
    batch = min(MESH_BATCH, chunk_size)
    with tqdm(total=len(table), desc="meshes", disable=not progress) as bar:
        for part, verts in model.mesh_chunks(rot_t, shape_t, batch):
            for j, k in enumerate(range(part.start, part.stop)):
                write_mesh(verts[j], faces, mesh_dir / f"{stems[k]}.{fmt}")
            bar.update(len(verts))
            del verts  # this batch's vertices go before the next batch is computed
    return len(table)


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


def motion_from_file(
    model: Key2Mesh,
    path: str,
    keypoint_set: str | None = None,
    fps: float = 30.0,
    image_size: tuple[int, int] | None = None,
    focal: float | None = None,
    smoothing=None,
    chunk_size: int = CHUNK,
    world: str = "camera",
    **options,
):
    """One keypoint file → :class:`~key2mesh.inference.motion.Motion` (the demo's table:
    tracked identities, camera translation, standard keys). ``image_size`` (H, W) px: from the
    file when it has one, else this argument, else the keypoints' extent (principal point at
    its centre). Unusable detections and untracked ones are left out. ``world``: the export
    frame (:func:`~key2mesh.inference.world.estimate_world`); ``options``: more
    :func:`~key2mesh.inference.motion.build_motion` keywords (``origin``, ``subjects``)."""
    from key2mesh.inference.motion import MotionSmoothing, build_motion
    from key2mesh.keypoints.io import read_detections

    det = read_detections(path, keypoint_set=keypoint_set)
    ids = track_ids(det, fps=fps)
    det = det.to(model.keypoint_set)
    kp, conf, index = det.flatten()
    keep = model.check(kp, conf).usable & (ids >= 0)
    if det.image_size is not None:
        image_size = (det.image_size[1], det.image_size[0])
    if image_size is None:
        ok = conf > model.normalization.conf_threshold
        hi = np.where(ok[..., None], kp, 0).reshape(-1, 2).max(0) if ok.any() else np.ones(2)
        image_size = (int(np.ceil(hi[1] * 1.05)) + 1, int(np.ceil(hi[0] * 1.05)) + 1)
    frames = index[keep, 0]
    return build_motion(
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
