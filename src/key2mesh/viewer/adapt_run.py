"""An ``adapt`` run in the viewer: its adapted network (``best.pt``) on the run's own target
detections, one body per person and view. Views of a multi-camera target (frame names
``CAMERA/FRAME``) are placed in the first camera's frame by a rigid fit (Kabsch) of each view's
predicted joints onto the first view's over the instants both saw: the cameras appear where the
predictions put them, and how well the bodies of one instant overlap shows the multi-view
consistency."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from key2mesh.errors import Key2MeshError
from key2mesh.viewer.scene import Scene, camera_of, ground_of, tracks_of

FPS = 30.0  # target files carry no frame rate: instants are shown at this rate


def kabsch(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rotation R (3, 3) and translation t (3,) minimising Σ |R src_i + t - dst_i|² over
    points (N, 3) (no scale; a proper rotation)."""
    a, b = src - src.mean(0), dst - dst.mean(0)
    u, _, vt = np.linalg.svd(a.T @ b)
    d = np.sign(np.linalg.det(vt.T @ u.T))
    r = vt.T @ np.diag([1.0, 1.0, d]) @ u.T
    return r, dst.mean(0) - r @ src.mean(0)


def _target(run: Path, ck: dict) -> Path:
    target = ck.get("target")
    if not target or str(target).startswith("synthetic:"):
        raise Key2MeshError(
            f"{run}: the run's target ({target!r}) is not a detections file to show"
        )
    for base in (Path.cwd(), run, *run.parents):
        path = base / target
        if path.exists():
            return path
    raise Key2MeshError(
        f"{run}: its target {target} is not found (run from the folder adapt ran in)"
    )


def load_adapt_scene(run: str | Path, checkpoint: str = "best.pt") -> Scene:
    """The :class:`~key2mesh.viewer.scene.Scene` of an adapt run folder (see module doc)."""
    from key2mesh.data.multiview import instant_groups, stored_instants
    from key2mesh.inference.motion import build_motion
    from key2mesh.inference.predictor import Key2Mesh
    from key2mesh.inference.world import FLIP, World
    from key2mesh.keypoints.io import read_detections
    from key2mesh.model.checkpoint import load_checkpoint

    run = Path(run)
    ck_path = run / checkpoint
    ck = load_checkpoint(ck_path).extra  # the run's step, target, ... (weights_only)
    target = _target(run, ck)
    model = Key2Mesh.from_pretrained(str(ck_path), device="cpu")
    det = read_detections(target).to(model.keypoint_set)
    kp, conf, index = det.flatten()
    names = [det.frame_names[f] for f in index[:, 0]]
    cams = [n.rpartition("/")[0] for n in names]
    try:
        instants = stored_instants(target)
        instants = instants[index[:, 0]] if instants is not None else instant_groups(names)
    except Key2MeshError:  # one camera: frames in order
        instants, cams = index[:, 0], [""] * len(names)
    size, focal = _intrinsics(target, index[:, 0])
    people = det.person_ids[index[:, 0], index[:, 1]]  # track ids (slots when untracked)
    motions = {}
    for c in dict.fromkeys(cams):
        rows = np.flatnonzero(np.array(cams) == c)
        motions[c] = build_motion(
            model, instants[rows], instants[rows] / FPS, people[rows],
            kp[rows], conf[rows], size or (1080, 1920), FPS,
            focal=focal, world="camera",
        )  # fmt: skip
    ref = next(iter(motions))
    ref_m = motions[ref]
    tracks, cameras = [], []
    for i, (c, m) in enumerate(motions.items()):
        r, t = np.eye(3), np.zeros(3)
        if c != ref:
            a, b = _paired_rows(m.frame_index, ref_m.frame_index)
            ok = np.isfinite(m.joints3d[a]).all((1, 2)) & np.isfinite(ref_m.joints3d[b]).all((1, 2))
            if ok.sum() >= 3:
                r, t = kabsch(
                    m.joints3d[a][ok].reshape(-1, 3), ref_m.joints3d[b][ok].reshape(-1, 3)
                )
        # X_world = FLIP (R X_c + t) = (FLIP R) (X_c - (-R^T t))
        m.world = World(
            "camera", FLIP @ r, -r.T @ t, np.zeros((len(m), 2), bool), np.zeros((len(m), 3))
        )
        prefix = f"{c}/" if c else ""
        for tr in tracks_of(m, prefix):
            from key2mesh.inference.render import track_color

            tr.color = track_color(i)
            tracks.append(tr)
        cam = camera_of(m, c or "camera")
        if cam is not None:
            cameras.append(cam)
    if not tracks:
        raise Key2MeshError(f"{run}: no usable detection in its target {target}")
    notes = [
        f"adapted network {ck_path.name} (step {ck.get('step', '?')}) on {target}",
        f"views placed by a rigid fit of their predicted joints onto {ref or 'the first'}",
    ]
    return Scene(tracks, cameras, ground_of(tracks, estimated=False), [], str(run), notes)


def _paired_rows(frames: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows (a, b) of two views' instants ``frames`` and ``ref`` that show the same person: the
    instants each view saw exactly one person at (with several, which is whom is unknown)."""

    def once(f: np.ndarray) -> np.ndarray:
        u, n = np.unique(f, return_counts=True)
        return u[n == 1]

    both = np.intersect1d(once(frames), once(ref))
    a, b = np.flatnonzero(np.isin(frames, both)), np.flatnonzero(np.isin(ref, both))
    return a[np.argsort(frames[a], kind="stable")], b[np.argsort(ref[b], kind="stable")]


def _intrinsics(target: Path, frames: np.ndarray) -> tuple[tuple[int, int] | None, float | None]:
    """Image size (H, W) and focal length (px) from a benchmark file's ``intrinsics`` (the
    principal point taken as the image centre), else (None, None)."""
    if target.suffix != ".npz":
        return None, None
    with np.load(target, allow_pickle=False) as z:
        if "intrinsics" not in z.files:
            return None, None
        k = z["intrinsics"][frames].astype(np.float64)
    fx, cx, cy = np.median(k[:, 0, 0]), np.median(k[:, 0, 2]), np.median(k[:, 1, 2])
    return (int(round(2 * cy)), int(round(2 * cx))), float(fx)
