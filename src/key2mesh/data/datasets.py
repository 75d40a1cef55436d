"""Readers of the licensed benchmark datasets the user downloads (never bundled with key2mesh).

- :func:`load_3dpw`: the original 3DPW ``sequenceFiles/<split>/*.pkl`` (2D detections shipped
  with the dataset: OpenPose COCO-18 ``poses2d``), frames with a valid camera pose only, global
  orientation rotated into the camera frame.
- :func:`load_h36m_p2`: Human3.6M Protocol 2 (subjects S9/S11, frontal camera 60457274) from a
  SPIN-style ``.npz``, with OpenPose BODY_25 detections from its ``openpose`` key or a user file.

Both drop detections with fewer than 6 keypoints of confidence > 0 (the paper's rule) and report
how many. Bad files raise :class:`~key2mesh.errors.Key2MeshError` with one line naming the file.
"""

from __future__ import annotations

import logging
import pickle
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from key2mesh.data.benchmark import (
    BenchmarkSet,
    clean_keypoints,
    gender_name,
    load_benchmark_file,
    load_npz,
    require_key,
    text_value,
)
from key2mesh.errors import Key2MeshError
from key2mesh.geometry.rotations import axis_angle_to_matrix
from key2mesh.keypoints.io import MIN_KEYPOINTS, enough_keypoints

SPLITS_3DPW = ("train", "validation", "test")
H36M_P2_SUBJECTS = ("S9", "S11")
H36M_P2_CAMERA = "60457274"
# Human3.6M subjects' genders (S1, S5, S7 female; S6, S8, S9, S11 male).
H36M_GENDERS = {
    "S1": "female",
    "S5": "female",
    "S6": "male",
    "S7": "female",
    "S8": "male",
    "S9": "male",
    "S11": "male",
}
# SPIN's 24 ground-truth joints ('S' / 'part'): the 14 LSP joints first (0 R ankle … 11 L wrist,
# 12 neck, 13 head top), then 14 MPII pelvis, 15 MPII thorax, 16 H36M spine, 17 jaw, 18 head,
# 19-23 nose, eyes, ears. For H3.6M data the pelvis row holds the H36M root and the neck row the
# thorax. The 14 evaluation joints are the LSP ones with the H36M head (index 18) as head top:
# they pair element-wise with eval14() of the H36M-17 joints of SPIN's J_regressor_h36m, as in
# SPIN's evaluation. J24_TO_H36M17 gives the H36M-17 joints in key2mesh's (= SPIN's regressor)
# order; composed with H36M_TO_EVAL14 it is J24_TO_LSP14.
J24_TO_LSP14 = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 18)
J24_TO_H36M17 = (14, 3, 4, 5, 2, 1, 0, 16, 12, 17, 18, 9, 10, 11, 8, 7, 6)
LSP14 = (
    "right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle",
    "right_wrist", "right_elbow", "right_shoulder", "left_shoulder", "left_elbow", "left_wrist",
    "neck", "head_top",
)  # fmt: skip
log = logging.getLogger(__name__)
_H36M_NAME = re.compile(r"(S\d+)_.*\.(\d+)_\d+(?:\.\w+)?$")


# -------------------------------------------------------------------------------------- helpers


def sparse_detections(
    confidence: np.ndarray, min_keypoints: int = MIN_KEYPOINTS, threshold: float = 0.0
) -> np.ndarray:
    """(N,) bool: detections (N,K) with fewer than ``min_keypoints`` points of confidence > threshold
    (:func:`~key2mesh.keypoints.io.enough_keypoints`, strict)."""
    return ~enough_keypoints(confidence, min_keypoints, threshold, strict=True)


def _drop_reason(count: int, min_keypoints: int, threshold: float) -> str:
    return f"{count} detections with fewer than {min_keypoints} keypoints of confidence > {threshold:g}"


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that only rebuilds plain containers and NumPy arrays (no arbitrary code)."""

    _ALLOWED = {
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
        ("copyreg", "_reconstructor"), ("builtins", "object"), ("_codecs", "encode"),
        ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "bytearray"),
    }  # fmt: skip

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _load_pickle(path: Path) -> dict:
    if not path.is_file():
        raise Key2MeshError(f"{path}: no such file (expected a 3DPW sequence .pkl)")
    try:
        with path.open("rb") as f:
            data = _ArrayUnpickler(f, encoding="latin1").load()
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a bad file
        raise Key2MeshError(
            f"{path}: not a readable 3DPW sequence pickle ({e.__class__.__name__}: {e})"
        ) from None
    if not isinstance(data, dict):
        raise Key2MeshError(
            f"{path}: expected a dict of 3DPW sequence data, got {type(data).__name__}"
        )
    return data


def _array(path: Path, value: Any, key: str, shape: tuple[int | None, ...]) -> np.ndarray:
    """``value`` as float64 array whose shape matches ``shape`` (None = any size)."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):  # text, or ragged lists
        raise Key2MeshError(f"{path}: {key!r} must hold numbers of one shape") from None
    if arr.ndim != len(shape) or any(s is not None and s != a for s, a in zip(shape, arr.shape)):
        want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise Key2MeshError(f"{path}: {key!r} must be {want}, got {arr.shape}")
    return arr


def _check_metres(path: Path, joints: torch.Tensor) -> None:
    """Refuse 3D joints (N, J, 3) that are not in metres: a body's joints lie within about a
    metre of its root, so a median distance above 10 means millimetres (or centimetres), which
    would make every error in mm come out 1000 (100) times too large."""
    if joints.numel() == 0:
        return
    spread = (joints - joints[:, :1]).norm(dim=-1).median().item()
    if spread > 10:
        raise Key2MeshError(
            f"{path}: 'S' must be in metres (SPIN's files are); its joints lie a median "
            f"{spread:.0f} units from the root, as in millimetres: divide it by 1000"
        )


def _per_person(path: Path, value: Any, key: str) -> Sequence[Any]:
    """A 3DPW per-person field (a list or an array with one entry per person)."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple, np.ndarray)):
        raise Key2MeshError(
            f"{path}: {key!r} must be a list with one entry per person, got {type(value).__name__}"
        )
    return value


def _rotmats(axis_angle: np.ndarray) -> torch.Tensor:
    """(N,72) axis-angle → (N,24,3,3) float64."""
    return axis_angle_to_matrix(torch.from_numpy(axis_angle.reshape(-1, 24, 3)))


# ------------------------------------------------------------------------------------------ 3DPW


def _3dpw_files(path: Path, split: str) -> tuple[list[Path], str]:
    if split not in SPLITS_3DPW:
        raise Key2MeshError(f"unknown 3DPW split {split!r}; use one of {', '.join(SPLITS_3DPW)}")
    if path.is_file():
        return [path], path.parent.name if path.parent.name in SPLITS_3DPW else split
    if not path.is_dir():
        raise Key2MeshError(
            f"{path}: no such file or folder (expected the 3DPW root or a sequence .pkl)"
        )
    if (path / "sequenceFiles").is_dir():
        path = path / "sequenceFiles"
    if (path / split).is_dir():
        folder = path / split
    elif any(path.glob("*.pkl")):
        if path.name in SPLITS_3DPW and path.name != split:
            raise Key2MeshError(
                f"{path}: holds the 3DPW {path.name!r} split but split={split!r} was asked"
            )
        folder = path
    else:
        found = [p.name for p in sorted(path.iterdir()) if p.is_dir()]
        raise Key2MeshError(
            f"{path}: no 3DPW split {split!r} (expected sequenceFiles/{split}/*.pkl; "
            f"folders here: {', '.join(found) or 'none'})"
        )
    files = sorted(folder.glob("*.pkl"))
    if not files:
        raise Key2MeshError(f"{folder}: no 3DPW sequence .pkl files")
    return files, split


def _read_3dpw_sequence(path: Path) -> dict[str, Any]:
    """One 3DPW sequence → per-detection arrays of its camera-valid frames (all persons)."""
    data = _load_pickle(path)
    seq = text_value(require_key(path, data, "sequence"))
    poses = _per_person(path, require_key(path, data, "poses"), "poses")
    persons = len(poses)
    per_person = {
        k: _per_person(path, require_key(path, data, k), k)
        for k in ("genders", "betas", "campose_valid", "poses2d")
    }
    for key, values in per_person.items():
        if len(values) != persons:
            raise Key2MeshError(
                f"{path}: {key!r} has {len(values)} entries for {persons} persons in 'poses'"
            )
    cam = _array(path, require_key(path, data, "cam_poses"), "cam_poses", (None, 4, 4))
    frames = cam.shape[0]
    # images are numbered by frame index; 'img_frame_ids' holds 60 Hz video ids (0, 2, 4, ...)
    frame_ids = np.arange(frames)
    intr = None
    if "cam_intrinsics" in data:
        intr = _array(path, data["cam_intrinsics"], "cam_intrinsics", (3, 3))
    joints = data.get("jointPositions")
    if joints is not None:
        joints = _per_person(path, joints, "jointPositions")
    if joints is not None and len(joints) != persons:
        raise Key2MeshError(
            f"{path}: 'jointPositions' has {len(joints)} entries for {persons} persons"
        )
    out: dict[str, list] = {
        k: [] for k in ("kp", "rot", "betas", "genders", "names", "joints", "intr")
    }
    invalid = 0
    for p in range(persons):  # a sequence has one or two persons
        pose = _array(path, poses[p], f"poses[{p}]", (frames, 72))
        valid = _array(path, per_person["campose_valid"][p], f"campose_valid[{p}]", (None,))
        valid = valid.astype(bool)
        if valid.shape != (frames,):
            raise Key2MeshError(
                f"{path}: 'campose_valid[{p}]' must have {frames} entries, got {valid.shape}"
            )
        kp = _array(path, per_person["poses2d"][p], f"poses2d[{p}]", (frames, None, None))
        if kp.shape == (frames, 3, 18):
            kp = kp.transpose(0, 2, 1)
        elif kp.shape != (frames, 18, 3):
            raise Key2MeshError(
                f"{path}: 'poses2d[{p}]' must be ({frames}, 3, 18) OpenPose COCO-18, got {kp.shape}"
            )
        betas = _array(path, per_person["betas"][p], f"betas[{p}]", (None,)).reshape(-1)
        if betas.size < 10:
            raise Key2MeshError(
                f"{path}: 'betas[{p}]' has {betas.size} values, expected at least 10"
            )
        invalid += int((~valid).sum())
        n = int(valid.sum())
        rot = _rotmats(pose[valid])
        cam_r = torch.from_numpy(cam[valid, :3, :3])
        rot[:, 0] = cam_r @ rot[:, 0]
        out["rot"].append(rot)
        out["kp"].append(kp[valid])
        out["betas"].append(np.broadcast_to(betas[:10], (n, 10)))
        out["genders"] += [gender_name(path, per_person["genders"][p])] * n
        out["names"] += [f"imageFiles/{seq}/image_{i:05d}.jpg" for i in frame_ids[valid]]
        if joints is not None:
            j = _array(path, joints[p], f"jointPositions[{p}]", (frames, 72)).reshape(
                frames, 24, 3
            )[valid]
            out["joints"].append(
                np.einsum("nij,nkj->nki", cam[valid, :3, :3], j) + cam[valid, None, :3, 3]
            )
        if intr is not None:
            out["intr"].append(np.broadcast_to(intr, (n, 3, 3)))
    result: dict[str, Any] = {
        "kp": np.concatenate(out["kp"]) if persons else np.zeros((0, 18, 3)),
        "rot": torch.cat(out["rot"]) if persons else torch.zeros(0, 24, 3, 3, dtype=torch.float64),
        "betas": np.concatenate(out["betas"]) if persons else np.zeros((0, 10)),
        "genders": out["genders"],
        "names": out["names"],
        "invalid": invalid,
        "joints": np.concatenate(out["joints"]) if out["joints"] else None,
        "intr": np.concatenate(out["intr"]) if out["intr"] else None,
    }
    return result


def load_3dpw(
    path_or_dir: str | Path,
    split: str = "test",
    min_keypoints: int = MIN_KEYPOINTS,
    threshold: float = 0.0,
) -> BenchmarkSet:
    """3DPW from its original sequence pickles.

    ``path_or_dir``: the dataset root (``sequenceFiles/<split>/*.pkl``), ``sequenceFiles``, a
    split folder (its name must match ``split``) or one sequence ``.pkl``. Keeps frames whose
    ``campose_valid`` is set (one sample per person and frame), rotates the global orientation
    into the camera frame (``R_cam = cam_R @ R_world``), truncates betas to 10, and drops
    detections with fewer than ``min_keypoints`` keypoints of confidence > ``threshold``.
    ``joints3d`` are the SMPL joints (``jointPositions``) in the camera frame.
    """
    files, split = _3dpw_files(Path(path_or_dir), split)
    seqs = [_read_3dpw_sequence(f) for f in files]
    kp = np.concatenate([s["kp"] for s in seqs])  # (N,18,3) x, y, confidence
    xy, conf = clean_keypoints(kp[..., :2], kp[..., 2])
    joints = [s["joints"] for s in seqs]
    intr = [s["intr"] for s in seqs]
    sparse = sparse_detections(conf, min_keypoints, threshold)
    keep = torch.from_numpy(~sparse)

    def cat(parts: list[np.ndarray | None]) -> torch.Tensor | None:
        if any(p is None for p in parts) or not parts:
            return None
        return torch.from_numpy(np.concatenate(parts)).float()[keep]

    names = [n for s in seqs for n in s["names"]]
    genders = [g for s in seqs for g in s["genders"]]
    keep_list = keep.tolist()
    root = Path(path_or_dir)
    return BenchmarkSet(
        name=f"3dpw-{split}",
        keypoints2d=torch.from_numpy(xy).float()[keep],
        confidence=torch.from_numpy(conf).float()[keep],
        keypoint_set="openpose_coco18",
        pose=torch.cat([s["rot"] for s in seqs]).float()[keep],
        betas=torch.from_numpy(np.concatenate([s["betas"] for s in seqs])).float()[keep],
        genders=[g for g, k in zip(genders, keep_list) if k],
        image_names=[n for n, k in zip(names, keep_list) if k],
        joints3d=cat(joints),
        joints3d_set="smpl24" if all(j is not None for j in joints) else None,
        intrinsics=cat(intr),
        dropped=int(sparse.sum()),
        drop_reason=_drop_reason(int(sparse.sum()), min_keypoints, threshold),
        excluded={"invalid camera pose": sum(s["invalid"] for s in seqs)},
        source=str(root),
    )


# ---------------------------------------------------------------------------------------- H3.6M


def _parse_h36m_names(path: Path, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    matches = [_H36M_NAME.search(n) for n in names]
    bad = next((n for n, m in zip(names, matches) if m is None), None)
    if bad is not None:
        raise Key2MeshError(
            f"{path}: cannot read subject/camera from imgname {bad!r} "
            "(expected e.g. 'images/S9_Directions_1.60457274_000001.jpg')"
        )
    return (
        np.array([m.group(1) for m in matches if m]),
        np.array([m.group(2) for m in matches if m]),
    )


def _stem(name: str) -> str:
    stem = Path(str(name)).name
    stem = stem.rsplit(".", 1)[0] if re.search(r"\.(jpg|jpeg|png|json)$", stem, re.I) else stem
    return stem[: -len("_keypoints")] if stem.endswith("_keypoints") else stem


def _detections_for(
    path: Path, det_path: Path, names: list[str], rows: np.ndarray, keypoint_set: str | None
) -> tuple[np.ndarray, np.ndarray, str]:
    """A user detections file → (N,K,2), (N,K), set for the npz rows ``rows`` (index of kept rows).

    Frames are matched to ``imgname`` by file stem; when no stem matches, by order (the file
    must then have one frame per npz row, or one per kept row). Each frame's detection is its
    most confident person; unmatched rows get confidence 0 (and are dropped as too sparse).
    """
    try:
        from key2mesh.keypoints.io import read_detections
    except ImportError as e:  # pragma: no cover - the reader ships with key2mesh
        raise Key2MeshError(
            f"{det_path}: cannot read detections, key2mesh.keypoints.io is unavailable ({e})"
        ) from None
    det = read_detections(det_path, keypoint_set)
    k = det.num_keypoints
    if det.max_persons == 0:  # no person detected in any frame
        kp, conf = np.zeros((det.num_frames, k, 2)), np.zeros((det.num_frames, k))
    else:  # each frame's most confident person
        best = (det.confidence.sum(-1) * det.present).argmax(-1)
        frames = np.arange(det.num_frames)
        kp, conf = det.keypoints[frames, best], det.confidence[frames, best]
    index = {_stem(n): i for i, n in enumerate(det.frame_names)}
    wanted = [_stem(names[r]) for r in rows]
    found = np.array([index.get(w, -1) for w in wanted], dtype=np.int64)
    if (found < 0).all():
        if det.num_frames == len(names):
            found = rows.astype(np.int64)
        elif det.num_frames == len(rows):
            found = np.arange(len(rows))
        else:
            raise Key2MeshError(
                f"{det_path}: frame names match none of the {len(rows)} selected images of {path} "
                f"and the {det.num_frames} frames cannot be matched by order "
                f"(expected {len(names)} or {len(rows)})"
            )
    out_kp = np.zeros((len(rows), k, 2))
    out_conf = np.zeros((len(rows), k))
    hit = found >= 0
    out_kp[hit], out_conf[hit] = kp[found[hit]], conf[found[hit]]
    return out_kp, out_conf, det.keypoint_set


def _smpl_fits(path: Path, data: dict, n: int, rows: np.ndarray) -> tuple[bool, np.ndarray]:
    """Whether ``pose``/``shape`` are ground truth, and which of the ``rows`` to keep. SPIN writes a
    zero pose and shape where ``has_smpl`` is 0: then ``S`` (H3.6M's own ground truth) scores
    every row if the file has it, else the rows without a fit are left out."""
    fit = np.ones(len(rows), dtype=bool)
    if not ("pose" in data or "shape" in data):
        return False, fit
    if "has_smpl" not in data:
        return True, fit
    fitted = _array(path, data["has_smpl"], "has_smpl", (n,))[rows] > 0
    if fitted.all():
        return True, fit
    if "S" in data:
        log.warning(
            "%s: 'has_smpl' is 0 for %d of the %d selected images: scoring on 'S', "
            "the SMPL ground truth ('pose'/'shape') is not used",
            path,
            int((~fitted).sum()),
            len(rows),
        )
        return False, fit
    if not fitted.any():
        raise Key2MeshError(
            f"{path}: 'has_smpl' is 0 for every selected image and there is no 'S': "
            "no ground truth to evaluate against"
        )
    return True, fitted


def load_h36m_p2(
    npz: str | Path,
    detections: str | Path | None = None,
    min_keypoints: int = MIN_KEYPOINTS,
    threshold: float = 0.0,
    subjects: tuple[str, ...] = H36M_P2_SUBJECTS,
    camera: str = H36M_P2_CAMERA,
    keypoint_set: str | None = None,
) -> BenchmarkSet:
    """Human3.6M Protocol 2 from a SPIN-style ``.npz``.

    Keys: ``imgname`` (required; subject and camera are read from it, e.g.
    ``images/S9_Directions_1.60457274_000001.jpg``), ground truth ``pose`` (N,72) axis-angle in
    the camera frame + ``shape`` (N,10) (where an optional ``has_smpl`` is 0 for some rows: ``S``
    alone is the ground truth, or without ``S`` those rows are left out) and/or ``S`` (N,24,4)
    root-centred 3D joints in metres, camera frame, SPIN's 24-joint layout (→ ``joints3d`` (N,17,3) in ``"h36m17"`` order, see
    ``J24_TO_H36M17``), optional ``gender``, and 2D detections from ``openpose`` (N,25,3)
    BODY_25 unless a ``detections`` file (any format of
    :func:`key2mesh.keypoints.io.read_detections`) is given. Keeps ``subjects`` seen by
    ``camera``; drops detections with fewer than ``min_keypoints`` points of confidence >
    ``threshold``. ``center``/``scale``/``part`` are not used.
    """
    path = Path(npz)
    data = load_npz(path)
    names = [  # bytes in files written from Python 2 or with dtype 'S'
        n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n)
        for n in np.asarray(require_key(path, data, "imgname")).reshape(-1)
    ]
    n = len(names)
    subj, cams = _parse_h36m_names(path, names)
    rows = np.nonzero(np.isin(subj, list(subjects)) & (cams == str(camera)))[0]
    if len(rows) == 0:
        raise Key2MeshError(
            f"{path}: no image of subjects {', '.join(subjects)} from camera {camera}"
        )
    pose = betas = joints = None
    excluded = {"other subjects/cameras": n - len(rows)}
    smpl, fit = _smpl_fits(path, data, n, rows)
    if not fit.all():
        excluded["no SMPL fit (has_smpl 0)"] = int((~fit).sum())
    if smpl:
        aa = _array(path, require_key(path, data, "pose"), "pose", (n, 72))
        betas = _array(path, require_key(path, data, "shape"), "shape", (n, None))[:, :10]
        if betas.shape[1] < 10:
            raise Key2MeshError(
                f"{path}: 'shape' must have at least 10 betas, got {betas.shape[1]}"
            )
        pose, betas = _rotmats(aa[rows]).float(), torch.from_numpy(betas[rows]).float()
    if "S" in data:
        s = _array(path, data["S"], "S", (n, 24, None))
        if s.shape[2] not in (3, 4):
            raise Key2MeshError(
                f"{path}: 'S' must be ({n}, 24, 4) joints with confidence, got {s.shape}"
            )
        joints = torch.from_numpy(s[rows][:, list(J24_TO_H36M17), :3]).float()
        _check_metres(path, joints)
    if pose is None and joints is None:
        raise Key2MeshError(
            f"{path}: missing key 'pose' (with 'shape') or 'S': no ground truth to evaluate against"
        )
    if detections is not None:
        kp, conf, kset = _detections_for(path, Path(detections), names, rows, keypoint_set)
    else:
        if "openpose" not in data:
            raise Key2MeshError(
                f"{path}: missing key 'openpose' (BODY_25 detections); pass a detections file instead"
            )
        op = _array(path, data["openpose"], "openpose", (n, 25, 3))[rows]
        kp, conf, kset = op[..., :2], op[..., 2], "openpose_body25"
    if "gender" in data:
        genders = [gender_name(path, g) for g in np.asarray(data["gender"]).reshape(-1)[rows]]
    else:
        genders = [H36M_GENDERS.get(s, "neutral") for s in subj[rows]]
    kp, conf = clean_keypoints(kp, conf)
    sparse = sparse_detections(conf, min_keypoints, threshold) & fit
    keep = torch.from_numpy(~sparse & fit)
    keep_list = keep.tolist()
    return BenchmarkSet(
        name="h36m-p2",
        keypoints2d=torch.from_numpy(kp).float()[keep],
        confidence=torch.from_numpy(conf).float()[keep],
        keypoint_set=kset,
        pose=None if pose is None else pose[keep],
        betas=None if betas is None else betas[keep],
        genders=[g for g, k in zip(genders, keep_list) if k],
        image_names=[names[r] for r, k in zip(rows, keep_list) if k],
        joints3d=None if joints is None else joints[keep],
        joints3d_set=None if joints is None else "h36m17",
        dropped=int(sparse.sum()),
        drop_reason=_drop_reason(int(sparse.sum()), min_keypoints, threshold),
        excluded=excluded,
        source=str(path),
    )


# ------------------------------------------------------------------------------- any benchmark


def load_benchmark(
    dataset: str, path: str | None = None, split: str = "test", detections: str | None = None
):
    """``3dpw`` / ``h36m-p2`` from ``path`` (licensed, user-supplied) or a key2mesh benchmark file
    (``dataset`` is then the ``.npz`` path, e.g. from ``key2mesh data pose2sim``).
    ``detections`` replaces H3.6M's ``openpose`` key; the other sets carry their own detections."""
    if detections is not None and dataset != "h36m-p2":
        raise Key2MeshError(
            f"--detections applies to h36m-p2 only; {dataset} is scored on its own detections "
            "(3DPW: the OpenPose poses2d of its sequence files; a benchmark file: its keypoints)"
        )
    if dataset in ("3dpw", "h36m-p2"):
        if not path:
            raise Key2MeshError(
                f"--dataset {dataset} needs --path (the dataset is licensed and user-supplied)"
            )
        return load_3dpw(path, split) if dataset == "3dpw" else load_h36m_p2(path, detections)
    return load_benchmark_file(path or dataset)
