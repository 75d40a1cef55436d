"""Readers and writers of 2D keypoint detections (OpenPose JSON, COCO keypoint JSON, NumPy).

Every reader returns a :class:`Detections`: pixel keypoints (F, P, K, 2) and confidences
(F, P, K) of F frames with up to P persons each, in one named keypoint set. A missing point has
confidence 0 (NaN positions are missing points); a padding person slot (a frame with fewer than
P persons) has ``person_ids == -1`` and confidence 0 everywhere.

Bad input raises :class:`~key2mesh.errors.Key2MeshError` with one line naming the file.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from key2mesh.errors import Key2MeshError
from key2mesh.keypoints.sets import KEYPOINT_SETS, canonical_set_name, num_keypoints
from key2mesh.safe_paths import atomic_savez, atomic_write_text, natural_key, unique_names

OPENPOSE_VERSION = 1.3
# OpenPose body models by number of points: BODY_25 (default) and COCO (18).
_OPENPOSE_SETS = {25: "openpose_body25", 18: "openpose_coco18"}
# COCO-style keypoint counts: body, body + feet, COCO-WholeBody (body + feet + face + hands).
_COCO_SETS = {17: "coco17", 23: "coco23"}
_WHOLEBODY = 133
_NUMPY_EXT = (".npy", ".npz")


MIN_KEYPOINTS = 6  # the paper drops detections with fewer confident keypoints
CONF_THRESHOLD = 0.1
DEGENERATE_BOX = (
    1e-3  # a box smaller than this fraction of the coordinates' magnitude (at least 1) is one spot
)


class DetectionCheck(NamedTuple):
    """Which detections are used, and why the others are not (bool arrays over the leading dims)."""

    usable: np.ndarray
    too_few: np.ndarray  # fewer than ``min_keypoints`` points with confidence >= threshold
    degenerate: np.ndarray  # enough points, but all on one spot (a zero-size box)

    def reasons(self, min_keypoints: int = MIN_KEYPOINTS) -> dict[str, int]:
        """Counts of skipped detections by reason (reasons with a zero count left out)."""
        counts = {
            f"fewer than {min_keypoints} keypoints": int(self.too_few.sum()),
            "degenerate detection (all keypoints on one spot)": int(self.degenerate.sum()),
        }
        return {k: v for k, v in counts.items() if v}


def confident_points(
    confidence, threshold: float = CONF_THRESHOLD, keypoints=None, *, strict: bool = False
) -> np.ndarray:
    """(..., K) bool: points with confidence >= ``threshold`` (> ``threshold`` when ``strict``;
    NaN counts as 0; confidence 0 is never a point, even with threshold 0: readers write 0 for
    what the detector did not find) and, when ``keypoints`` (..., K, 2) are given, finite
    positions."""
    conf = np.nan_to_num(np.asarray(confidence, dtype=np.float64), nan=0.0)
    ok = (conf > threshold if strict else conf >= threshold) & (conf > 0)
    if keypoints is not None:
        ok &= np.isfinite(np.asarray(keypoints, dtype=np.float64)).all(-1)
    return ok


def enough_keypoints(
    confidence,
    min_keypoints: int = MIN_KEYPOINTS,
    threshold: float = CONF_THRESHOLD,
    keypoints=None,
    *,
    strict: bool = False,
) -> np.ndarray:
    """(...,) bool: the one "enough keypoints" rule (the paper drops detections with fewer than 6):
    at least ``min_keypoints`` :func:`confident_points`. Detection inputs use confidence >= 0.1
    and finite positions (:func:`check_detections`); the benchmark readers of
    :mod:`key2mesh.data.datasets` count confidence > 0 (``threshold=0, strict=True``)."""
    return (
        confident_points(confidence, threshold, keypoints, strict=strict).sum(-1) >= min_keypoints
    )


def check_detections(
    keypoints, confidence, min_keypoints: int = MIN_KEYPOINTS, threshold: float = CONF_THRESHOLD
) -> DetectionCheck:
    """The rule for which detections (..., K, 2) px / (..., K) are usable as inputs: at least
    ``min_keypoints`` points of confidence >= ``threshold`` (:func:`enough_keypoints`), spread
    over a box of non-zero size (all points on one pixel is a detector failure, not a person)."""
    kp = np.asarray(keypoints, dtype=np.float64)
    ok = confident_points(confidence, threshold, kp)
    too_few = ~enough_keypoints(confidence, min_keypoints, threshold, kp)
    m = ok[..., None]
    lo = np.where(m, kp, np.inf).min(-2)
    hi = np.where(m, kp, -np.inf).max(-2)
    with np.errstate(invalid="ignore"):
        size = np.nan_to_num((hi - lo).max(-1), nan=0.0, neginf=0.0)
        scale = np.maximum(1.0, np.where(m, np.abs(kp), 0.0).max((-1, -2)))
    degenerate = ~too_few & (size < DEGENERATE_BOX * scale)
    return DetectionCheck(~too_few & ~degenerate, too_few, degenerate)


class PersonDetections(NamedTuple):
    """Per-detection arrays: keypoints (N, K, 2) px, confidence (N, K), index (N, 2) = (frame, person slot)."""

    keypoints: np.ndarray
    confidence: np.ndarray
    index: np.ndarray


def _sanitize(
    keypoints: np.ndarray, confidence: np.ndarray, where: str
) -> tuple[np.ndarray, np.ndarray]:
    """Float32 copies with NaN points (or NaN confidences) made missing; an infinite point is an error."""
    with np.errstate(over="ignore"):  # beyond float32: infinite, refused below
        kp = np.asarray(keypoints, dtype=np.float32).copy()
        conf = np.asarray(confidence, dtype=np.float32).copy()
    conf[~np.isfinite(conf)] = 0.0
    conf = np.clip(conf, 0.0, 1.0)
    nan = np.isnan(kp).any(axis=-1)
    inf = np.isinf(kp).any(axis=-1)
    if (inf & (conf > 0)).any():
        f, p, k = (int(i[0]) for i in np.nonzero(inf & (conf > 0)))
        raise Key2MeshError(
            f"{where}: infinite coordinate at frame {f}, person {p}, keypoint {k} (expected finite pixels)"
        )
    bad = nan | inf
    conf[bad] = 0.0
    kp[bad] = 0.0
    return kp, conf


@dataclass
class Detections:
    """2D detections of F frames, up to P persons each, K points of ``keypoint_set``.

    keypoints: (F, P, K, 2) float32 pixels. confidence: (F, P, K) float32 in [0, 1], 0 = missing.
    frame_names: F names (file stems or image ids). person_ids: (F, P) int64 track ids (or the slot
    index for untracked detectors), -1 = padding. image_size: (width, height) px when known.
    tracked: whether ``person_ids`` are real track ids (OpenPose writes ``person_id: [-1]`` otherwise).
    fps: the frames' rate in Hz when the file says it (a motion table does), else None.
    """

    keypoints: np.ndarray
    confidence: np.ndarray
    keypoint_set: str
    frame_names: list[str]
    person_ids: np.ndarray
    image_size: tuple[int, int] | None = None
    tracked: bool = False
    source: str = field(default="<memory>", compare=False)
    fps: float | None = None

    def __post_init__(self) -> None:
        self.keypoint_set = canonical_set_name(self.keypoint_set)
        k = num_keypoints(self.keypoint_set)
        kp = np.asarray(self.keypoints)
        conf = np.asarray(self.confidence)
        pids = np.asarray(self.person_ids, dtype=np.int64)
        if kp.ndim != 4 or kp.shape[2:] != (k, 2):
            raise Key2MeshError(
                f"{self.source}: keypoints of set {self.keypoint_set!r} must be (F, P, {k}, 2), got {kp.shape}"
            )
        if conf.shape != kp.shape[:3]:
            raise Key2MeshError(
                f"{self.source}: confidence must be {kp.shape[:3]}, got {conf.shape}"
            )
        if pids.shape != kp.shape[:2]:
            raise Key2MeshError(
                f"{self.source}: person_ids must be {kp.shape[:2]}, got {pids.shape}"
            )
        self.frame_names = [str(n) for n in self.frame_names]
        if len(self.frame_names) != kp.shape[0]:
            raise Key2MeshError(
                f"{self.source}: {len(self.frame_names)} frame names for {kp.shape[0]} frames"
            )
        self.keypoints, self.confidence = _sanitize(kp, conf, self.source)
        self.person_ids = pids.copy()
        self._check_unique_ids()
        pad = self.person_ids < 0
        self.confidence[pad] = 0.0
        self.keypoints[pad] = 0.0
        if self.image_size is not None:
            try:
                w, h = (int(v) for v in self.image_size)
            except (TypeError, ValueError, OverflowError):
                w = h = 0
            if not (0 < w < 2**31 and 0 < h < 2**31):
                raise Key2MeshError(
                    f"{self.source}: image_size must be (width, height) in pixels, got {self.image_size!r}"
                )
            self.image_size = (w, h)
        if self.fps is not None:
            try:
                fps = float(self.fps)
            except (TypeError, ValueError):
                fps = math.nan
            if not (math.isfinite(fps) and fps > 0):
                raise Key2MeshError(
                    f"{self.source}: fps must be a positive number, got {self.fps!r}"
                )
            self.fps = fps

    def _check_unique_ids(self) -> None:
        """A person id names one person: refuse one id on two present slots of a frame."""
        frames, slots = np.nonzero(self.person_ids >= 0)
        pairs = np.stack([frames, self.person_ids[frames, slots]], axis=1)
        unique, counts = np.unique(pairs, axis=0, return_counts=True)
        if (counts > 1).any():
            i = int(np.argmax(counts > 1))
            f, pid = (int(v) for v in unique[i])
            raise Key2MeshError(
                f"{self.source}: person id {pid} appears {counts[i]} times in frame "
                f"{self.frame_names[f]!r} (expected one person per id and frame)"
            )

    @property
    def num_frames(self) -> int:
        return int(self.keypoints.shape[0])

    @property
    def max_persons(self) -> int:
        """P, the number of person slots per frame."""
        return int(self.keypoints.shape[1])

    @property
    def num_keypoints(self) -> int:
        return int(self.keypoints.shape[2])

    @property
    def present(self) -> np.ndarray:
        """(F, P) bool: the slot holds a detection (not padding)."""
        return self.person_ids >= 0

    @property
    def num_detections(self) -> int:
        return int(self.present.sum())

    def to(self, keypoint_set: str) -> Detections:
        """The same detections in another keypoint set (derived points: min confidence; underivable: 0)."""
        from key2mesh.keypoints.convert import convert_keypoints

        dst = canonical_set_name(keypoint_set)
        if dst == self.keypoint_set:
            return replace(self)
        kp, conf = convert_keypoints(self.keypoints, self.confidence, self.keypoint_set, dst)
        return replace(self, keypoints=kp.numpy(), confidence=conf.numpy(), keypoint_set=dst)

    def _gather(self, mask: np.ndarray) -> PersonDetections:
        f, p = np.nonzero(mask)
        return PersonDetections(
            self.keypoints[f, p], self.confidence[f, p], np.stack([f, p], axis=1).astype(np.int64)
        )

    def flatten(self) -> PersonDetections:
        """Every detection (padding left out), in frame order: (N, K, 2), (N, K), (N, 2) index."""
        return self._gather(self.present)

    def select_person(self, person_id: int) -> PersonDetections:
        """The detections of one person id (slot index when untracked) over the frames it appears in."""
        return self._gather(self.present & (self.person_ids == int(person_id)))

    def valid_mask(
        self, min_keypoints: int = MIN_KEYPOINTS, threshold: float = CONF_THRESHOLD
    ) -> np.ndarray:
        """(F, P) bool: detections usable as inputs (:func:`check_detections`: at least
        ``min_keypoints`` points of confidence >= ``threshold``, not all on one spot).

        The paper drops detections with fewer than 6 keypoints.
        """
        return (
            self.present
            & check_detections(self.keypoints, self.confidence, min_keypoints, threshold).usable
        )


# ---------------------------------------------------------------------------------------- helpers


def _load_json(path: Path) -> Any:
    """Parse a JSON file in UTF-8 (with or without a byte-order mark, as Windows tools write
    it), UTF-16 or UTF-32 (told apart from the first bytes, as JSON allows)."""
    try:
        raw = path.read_bytes()
        text = raw.decode(json.detect_encoding(raw))
    except (OSError, UnicodeDecodeError) as e:
        raise Key2MeshError(f"{path}: cannot read ({e.__class__.__name__}: {e})") from None
    if not text.strip():
        raise Key2MeshError(f"{path}: file is empty (expected JSON keypoints)")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise Key2MeshError(
            f"{path}: malformed JSON at line {e.lineno}, column {e.colno}: {e.msg}"
        ) from None
    except RecursionError:
        raise Key2MeshError(f"{path}: JSON nested too deeply to be keypoints") from None
    except ValueError:  # an integer of thousands of digits (Python's int-string limit)
        raise Key2MeshError(f"{path}: a number in the JSON has too many digits to read") from None


def _declared(keypoint_set: str | None) -> str | None:
    return None if keypoint_set is None else canonical_set_name(keypoint_set)


def _check_count(
    path: Path | str, k: int, declared: str | None, inferred: dict[int, str], what: str
) -> str:
    """The set of ``k``-point data: the declared set (must have k points) or the one inferred from k."""
    if declared is not None:
        if num_keypoints(declared) != k:
            raise Key2MeshError(
                f"{path}: {what} has {k} keypoints, but set {declared!r} has {num_keypoints(declared)}"
            )
        return declared
    if k not in inferred:
        expected = " or ".join(f"{n} ({s})" for n, s in inferred.items())
        raise Key2MeshError(
            f"{path}: {what} has {k} keypoints; expected {expected} or pass the keypoint set explicitly"
        )
    return inferred[k]


def _pack(
    persons: list[list[tuple[int, np.ndarray]]], k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-frame lists of (person id, (K, 3) x/y/c) → padded (F, P, K, 2), (F, P, K), (F, P)."""
    f = len(persons)
    p = max((len(x) for x in persons), default=0)
    kp = np.zeros((f, p, k, 2), dtype=np.float32)
    conf = np.zeros((f, p, k), dtype=np.float32)
    pids = np.full((f, p), -1, dtype=np.int64)
    for i, frame in enumerate(persons):
        if frame:
            arr = np.stack([a for _, a in frame])
            with np.errstate(over="ignore"):  # beyond float32: infinite, refused later
                kp[i, : len(frame)] = arr[..., :2]
                conf[i, : len(frame)] = arr[..., 2]
            pids[i, : len(frame)] = [pid for pid, _ in frame]
    return kp, conf, pids


def _track_id(value: Any) -> int | None:
    """A person/track id read from JSON as an int; None when it is not a whole number in the
    int64 range (text, lists, NaN, 1e30, ...): the person is then untracked."""
    if isinstance(value, list):
        value = value[0] if len(value) == 1 else None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, int):  # any size (np.isfinite refuses ints beyond int64)
        return value if abs(value) < 2**62 else None
    if not (math.isfinite(value) and value.is_integer() and abs(value) < 2**62):
        return None
    return int(value)


def _finite_check(path: Path | str, xyc: np.ndarray, what: str) -> None:
    bad = np.isinf(xyc[..., :2]).any(axis=-1) & (np.nan_to_num(xyc[..., 2], nan=0.0) > 0)
    if bad.any():
        k = int(np.nonzero(bad)[-1][0])
        raise Key2MeshError(
            f"{path}: {what}: infinite coordinate at keypoint {k} (expected finite pixels)"
        )


# ---------------------------------------------------------------------------------------- OpenPose


def _openpose_frame(
    path: Path, data: Any, declared: str | None
) -> tuple[list[tuple[int, np.ndarray]], str | None, bool]:
    """One OpenPose frame → [(person id, (K, 3))], its set (None when no person), any untracked id."""
    if not isinstance(data, dict) or not isinstance(data.get("people"), list):
        raise Key2MeshError(
            f"{path}: not an OpenPose frame (expected a JSON object with a 'people' list)"
        )
    out, found, untracked = [], None, False
    for j, person in enumerate(data["people"]):
        # OpenPose 1.0/1.1 (JSON version 1.0/1.1) named the array 'pose_keypoints'
        values = (
            person.get("pose_keypoints_2d", person.get("pose_keypoints"))
            if isinstance(person, dict)
            else None
        )
        if not isinstance(values, list):
            raise Key2MeshError(f"{path}: person {j} has no 'pose_keypoints_2d' list")
        if not values:  # OpenPose run without the body network (e.g. hands/face only)
            continue
        try:
            arr = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError, OverflowError):
            raise Key2MeshError(
                f"{path}: person {j}: 'pose_keypoints_2d' must hold numbers"
            ) from None
        if arr.ndim != 1 or arr.size % 3:
            raise Key2MeshError(
                f"{path}: person {j}: 'pose_keypoints_2d' has {arr.size} values, expected 3 per keypoint (x, y, confidence)"
            )
        k = arr.size // 3
        name = _check_count(path, k, declared, _OPENPOSE_SETS, f"person {j} ({arr.size} values)")
        if found is not None and name != found:
            raise Key2MeshError(f"{path}: persons with different keypoint counts in one frame")
        found = name
        xyc = arr.reshape(k, 3)
        _finite_check(path, xyc, f"person {j}")
        pid = _track_id(person.get("person_id", [-1]))
        pid = -1 if pid is None else pid
        untracked |= pid < 0
        out.append((pid, xyc))
    return out, found, untracked


def _frame_name(path: Path) -> str:
    stem = path.stem
    return stem[: -len("_keypoints")] if stem.endswith("_keypoints") else stem


def read_openpose_json(path: str | Path, keypoint_set: str | None = None) -> Detections:
    """An OpenPose ``*_keypoints.json`` file or a folder of them (natural frame order).

    BODY_25 (75 values a person) or COCO-18 (54) is inferred from the length. A frame with no
    person is kept as a frame without detections. A folder's hidden files (``.name``) are skipped.
    """
    path = Path(path)
    declared = _declared(keypoint_set)
    if path.is_dir():
        # hidden files left out: macOS writes a binary '._<name>' twin of every file it copies
        # to a FAT/exFAT drive or a network share
        files = sorted(
            (
                p
                for p in path.iterdir()
                if p.suffix.lower() == ".json" and not p.name.startswith(".") and p.is_file()
            ),
            key=lambda p: natural_key(p.name),
        )
        if not files:
            raise Key2MeshError(
                f"{path}: folder has no .json files (expected OpenPose *_keypoints.json)"
            )
    elif path.is_file():
        files = [path]
    else:
        raise Key2MeshError(f"{path}: no such file or folder")
    return _openpose_from_files(path, files, declared)


def _openpose_from_files(
    path: Path, files: list[Path], declared: str | None, preloaded: Any = None
) -> Detections:
    frames, found, untracked = [], None, False
    for f in files:
        data = preloaded if preloaded is not None and f == path else _load_json(f)
        persons, name, untr = _openpose_frame(f, data, declared)
        if name is not None:
            if found is not None and name != found:
                raise Key2MeshError(
                    f"{f}: keypoint set {name!r} differs from the earlier frames' {found!r}"
                )
            found = name
        untracked |= untr
        frames.append(persons)
    name = found or declared or "openpose_body25"
    if untracked:  # renumber: the slot index stands in for the missing track id
        frames = [[(i, xyc) for i, (_, xyc) in enumerate(fr)] for fr in frames]
    kp, conf, pids = _pack(frames, num_keypoints(name))
    return Detections(
        kp,
        conf,
        name,
        [_frame_name(f) for f in files],
        pids,
        tracked=not untracked,
        source=str(path),
    )


def _float32_list(values: np.ndarray) -> list[float]:
    """Shortest decimals that give back the same float32 (so files stay readable)."""
    return [float(str(v)) for v in np.asarray(values, dtype=np.float32).ravel()]


def write_openpose_json(
    detections: Detections, folder: str | Path, keypoint_set: str | None = None
) -> list[Path]:
    """One OpenPose-layout file ``<frame name>_keypoints.json`` per frame; returns the paths.

    Frame names become plain file names inside ``folder`` (:func:`key2mesh.safe_paths.unique_names`:
    no path separators or leading dots; repeated names get ``_1``, ``_2`` ...).

    Written in ``keypoint_set`` (default: the detections' set when it is an OpenPose set, else
    BODY_25 through conversion). Untracked persons get ``person_id: [-1]`` as OpenPose writes.
    """
    folder = Path(folder)
    if keypoint_set is None:
        keypoint_set = (
            detections.keypoint_set
            if detections.keypoint_set in _OPENPOSE_SETS.values()
            else "openpose_body25"
        )
    det = detections.to(keypoint_set)
    names = unique_names(det.frame_names)  # plain, unique file names inside ``folder``
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise Key2MeshError(f"{folder}: cannot create output folder ({e})") from None
    xyc = np.concatenate([det.keypoints, det.confidence[..., None]], axis=-1)  # (F, P, K, 3)
    paths = []
    for f, name in enumerate(names):
        people = []
        for p in np.nonzero(det.present[f])[0]:
            people.append({
                "person_id": [int(det.person_ids[f, p]) if det.tracked else -1],
                "pose_keypoints_2d": _float32_list(xyc[f, p]),
                "face_keypoints_2d": [], "hand_left_keypoints_2d": [], "hand_right_keypoints_2d": [],
                "pose_keypoints_3d": [], "face_keypoints_3d": [], "hand_left_keypoints_3d": [], "hand_right_keypoints_3d": [],
            })  # fmt: skip
        out = atomic_write_text(
            folder / f"{name}_keypoints.json",
            json.dumps({"version": OPENPOSE_VERSION, "people": people}),
        )
        paths.append(out)
    return paths


# ---------------------------------------------------------------------------------------- COCO


def _coco_xyc(path: Path, values: Any, j: int, declared: str | None) -> tuple[np.ndarray, str]:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        raise Key2MeshError(f"{path}: entry {j}: 'keypoints' must hold numbers") from None
    if arr.ndim != 1 or arr.size % 3:
        raise Key2MeshError(
            f"{path}: entry {j}: 'keypoints' has {arr.size} values, expected 3 per keypoint (x, y, v/score)"
        )
    k = arr.size // 3
    xyc = arr.reshape(k, 3)
    if k == _WHOLEBODY and (declared is None or declared in _COCO_SETS.values()):
        name = declared or "coco23"  # COCO-WholeBody: body (17) + feet (6) come first
        xyc = xyc[: num_keypoints(name)]
    else:
        name = _check_count(path, k, declared, {**_COCO_SETS, _WHOLEBODY: "coco23"}, f"entry {j}")
    _finite_check(path, xyc, f"entry {j}")
    return xyc, name


def read_coco_json(path: str | Path, keypoint_set: str | None = None) -> Detections:
    """COCO keypoint results (a list of ``{image_id, keypoints, score}``, as mmpose/ViTPose/detectron
    write them) or a COCO dataset dict with ``annotations`` (+ ``images`` for file names/sizes).

    K = 17 → coco17, 23 → coco23, 133 (COCO-WholeBody) → its first 23 points (body + feet).
    Confidence is the third value clipped to [0, 1] (scores, or visibility flags v ∈ {0, 1, 2}).
    """
    path = Path(path)
    if not path.is_file():
        raise Key2MeshError(f"{path}: no such file")
    return _coco_from_data(path, _load_json(path), _declared(keypoint_set))


def _coco_from_data(path: Path, data: Any, declared: str | None) -> Detections:
    images: dict[Any, dict] = {}
    if isinstance(data, dict) and isinstance(data.get("annotations"), list):
        entries = data["annotations"]
        listed = data.get("images") or []
        if not isinstance(listed, list):
            raise Key2MeshError(f"{path}: 'images' must be a list of image records")
        for img in listed:
            if isinstance(img, dict) and "id" in img:
                images[_image_id(path, img["id"], "an image record")] = img
    elif isinstance(data, list):
        entries = data
    else:
        raise Key2MeshError(
            f"{path}: not COCO keypoints (expected a list of results or an object with 'annotations')"
        )

    by_image: dict[Any, list[tuple[int | None, np.ndarray]]] = {i: [] for i in images}
    found = None
    for j, e in enumerate(entries):
        if not isinstance(e, dict) or "image_id" not in e or "keypoints" not in e:
            raise Key2MeshError(f"{path}: entry {j} lacks 'image_id' or 'keypoints'")
        if e.get("iscrowd") or not e["keypoints"]:
            continue
        xyc, name = _coco_xyc(path, e["keypoints"], j, declared)
        if found is not None and name != found:
            raise Key2MeshError(
                f"{path}: entry {j} has a different keypoint count than the earlier entries"
            )
        found = name
        image_id = _image_id(path, e["image_id"], f"entry {j}")
        by_image.setdefault(image_id, []).append((_track_id(e.get("track_id")), xyc))
    if not by_image:
        raise Key2MeshError(f"{path}: no keypoint entries")
    name = found or declared
    if name is None:
        cats = data.get("categories") if isinstance(data, dict) else None
        names = (
            cats[0].get("keypoints")
            if isinstance(cats, list) and cats and isinstance(cats[0], dict)
            else None
        )
        k = len(names) if isinstance(names, list) else 0
        name = _check_count(path, k, None, {**_COCO_SETS, _WHOLEBODY: "coco23"}, "category")

    # numbers in value order, then names in natural order (frame_9 before frame_10)
    ids = sorted(
        by_image,
        key=lambda i: (0, i, []) if isinstance(i, (int, float)) else (1, 0, natural_key(i)),
    )
    tracked = all(pid is not None and pid >= 0 for i in ids for pid, _ in by_image[i])
    frames = [
        [(pid if tracked else s, xyc) for s, (pid, xyc) in enumerate(by_image[i])] for i in ids
    ]
    kp, conf, pids = _pack(frames, num_keypoints(name))
    # the file name's stem, '/' or '\\' separated (datasets written on Windows), else the image id
    names = [
        Path(re.split(r"[/\\]", images[i]["file_name"].rstrip("/\\"))[-1]).stem or str(i)
        if isinstance(images.get(i, {}).get("file_name"), str)
        else str(i)
        for i in ids
    ]
    sizes = {_image_size(path, img) for img in images.values()}
    size = next(iter(sizes)) if len(sizes) == 1 else None
    return Detections(
        kp,
        conf,
        name,
        names,
        pids,
        image_size=size,
        tracked=tracked and bool(frames),
        source=str(path),
    )


def _image_id(path: Path, value: Any, what: str) -> int | float | str:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float, str))
        or (isinstance(value, float) and not np.isfinite(value))
    ):
        raise Key2MeshError(f"{path}: {what} has image_id {value!r}; expected a number or a name")
    return value


def _image_size(path: Path, img: dict) -> tuple[int, int] | None:
    """(width, height) of a COCO image record; None when it does not say."""
    w, h = img.get("width"), img.get("height")
    if w is None or h is None:
        return None
    for v in (w, h):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0 < v < 2**31):
            raise Key2MeshError(
                f"{path}: image {img.get('id')!r} has width {w!r}, height {h!r}; expected positive pixel counts"
            )
    return int(w), int(h)


# ---------------------------------------------------------------------------------------- NumPy


# Sets a NumPy file must name: SMPL's 24 joints are body-model joints, not a detector's output, and
# 24 points from an unknown source are too easily read as them.
_NOT_INFERRED = ("smpl24",)


def _set_from_k(path: Path, k: int, declared: str | None) -> str:
    candidates = {}
    for name, names in KEYPOINT_SETS.items():
        candidates.setdefault(len(names), []).append(name)
    if declared is None and k in candidates and set(candidates[k]) <= set(_NOT_INFERRED):
        raise Key2MeshError(
            f"{path}: {k} keypoints and no keypoint set named; key2mesh will not assume "
            f"{' / '.join(candidates[k])} joints: pass --keypoint-set (e.g. --keypoint-set {candidates[k][0]}) "
            "or store a 'keypoint_set' entry in the npz"
        )
    unique = {n: s[0] for n, s in candidates.items() if len(s) == 1}
    if declared is None and k in candidates and k not in unique:
        raise Key2MeshError(
            f"{path}: {k} keypoints fit several sets ({', '.join(candidates[k])}); pass the keypoint set explicitly"
        )
    return _check_count(path, k, declared, unique, "array")


def _text(value: Any) -> str:
    """A name stored in a NumPy file: text, or bytes (``S`` arrays, as h5py or Python 2 code
    writes them) decoded as UTF-8 rather than shown as "b'...'"; a one-element array is its element."""
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.reshape(-1)[0]
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return str(value)


def _params_table(path: Path, extra: dict[str, Any]) -> np.ndarray:
    """A motion table (``<stem>_params.npz`` of ``demo``/``predict``: one row per (frame, person),
    ``frame_index`` (N,), ``track_id`` (N,), ``keypoints2d`` (N, K, 3) px + confidence) → keypoints
    (F, P, K, 3) with F = last frame + 1 and one slot per track; ``extra`` gets ``person_ids``
    (F, P), ``tracked`` and ``image_size`` as (width, height) (the table stores height, width)."""
    kp, frames, tracks = extra.pop("keypoints2d"), extra["frame_index"], extra["track_id"]
    n = len(kp)
    if kp.ndim != 3 or kp.shape[-1] != 3 or frames.shape != (n,) or tracks.shape != (n,):
        raise Key2MeshError(
            f"{path}: a motion table needs keypoints2d (N, K, 3), frame_index (N,) and track_id "
            f"(N,); got {kp.shape}, {frames.shape}, {tracks.shape}"
        )
    if n == 0:
        raise Key2MeshError(f"{path}: the motion table has no rows")
    if kp.dtype.kind not in "iuf":
        raise Key2MeshError(f"{path}: keypoints2d must be real numbers, got dtype {kp.dtype}")
    if (
        frames.dtype.kind not in "iu"
        or tracks.dtype.kind not in "iu"
        or min(frames.min(), tracks.min()) < 0
    ):
        raise Key2MeshError(f"{path}: frame_index and track_id must be integers ≥ 0")
    ids, slot = np.unique(tracks, return_inverse=True)
    slot = slot.reshape(-1)
    if len(np.unique(frames * len(ids) + slot)) != n:
        raise Key2MeshError(f"{path}: a track appears twice in one frame")
    f = int(frames.max()) + 1
    if f * len(ids) * kp.shape[1] > 200_000_000:  # a dense (F, P, K, 3) float32 array over 2.4 GB
        raise Key2MeshError(
            f"{path}: frame_index reaches {f - 1} with {len(ids)} tracks: too large to read"
        )
    arr = np.zeros((f, len(ids), kp.shape[1], 3), np.float32)
    arr[frames, slot] = kp
    pids = np.full((f, len(ids)), -1, np.int64)
    pids[frames, slot] = tracks
    extra["person_ids"], extra["tracked"] = pids, np.asarray(True)
    if "image_size" in extra and extra["image_size"].size == 2:
        extra["image_size"] = extra["image_size"].reshape(-1)[::-1].copy()
    return arr


def read_numpy(path: str | Path, keypoint_set: str | None = None) -> Detections:
    """``.npy`` array (F, K, 2|3) or (F, P, K, 2|3), or ``.npz`` with ``keypoints`` (+ optional
    ``confidence``/``scores``, ``keypoint_set``, ``frame_names``, ``person_ids``, ``tracked``,
    ``image_size`` as (width, height), ``fps``), or a motion table ``<stem>_params.npz`` written by
    ``demo``/``predict`` (its ``keypoints2d``; its ``image_size`` is (height, width)).

    The set is the given one, else the ``keypoint_set`` stored in the npz, else inferred from K
    when only one set has K points (never SMPL's 24 joints: those must be named). A third
    coordinate is the confidence.
    """
    path = Path(path)
    if not path.is_file():
        raise Key2MeshError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise Key2MeshError(f"{path}: file is empty (expected a NumPy array)")
    extra: dict[str, Any] = {}
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.lib.npyio.NpzFile):
            with loaded:
                table = {"keypoints2d", "frame_index", "track_id"} <= set(loaded.files)
                if "keypoints" not in loaded.files and not table:
                    raise Key2MeshError(
                        f"{path}: npz has no 'keypoints' array (found: {', '.join(loaded.files) or 'nothing'})"
                    )
                extra = {k: loaded[k] for k in loaded.files}
                arr = extra.pop("keypoints") if "keypoints" in extra else _params_table(path, extra)
        else:
            arr = loaded
    except Key2MeshError:
        raise
    except Exception as e:  # noqa: BLE001 - a damaged file raises zip, EOF, npy-header (SyntaxError) or zlib errors
        reason = " ".join(str(e).split()) or "damaged file"
        raise Key2MeshError(
            f"{path}: not a readable NumPy file ({e.__class__.__name__}: {reason})"
        ) from None
    if arr.dtype.kind not in "iuf":
        raise Key2MeshError(f"{path}: keypoints must be real numbers, got dtype {arr.dtype}")
    if arr.ndim == 3:
        arr = arr[:, None]
    if arr.ndim != 4 or arr.shape[-1] not in (2, 3):
        raise Key2MeshError(
            f"{path}: keypoints must be (F, K, 2|3) or (F, P, K, 2|3), got {arr.shape}"
        )
    declared = _declared(keypoint_set)
    if declared is None and "keypoint_set" in extra:
        try:
            declared = _declared(_text(extra["keypoint_set"]))
        except Key2MeshError as e:
            raise Key2MeshError(f"{path}: {e}") from None
    name = _set_from_k(path, arr.shape[2], declared)
    f, p, k = arr.shape[:3]
    conf_key = next((c for c in ("confidence", "scores") if c in extra), None)
    if conf_key is not None:
        if extra[conf_key].dtype.kind not in "iufb":
            raise Key2MeshError(
                f"{path}: '{conf_key}' must be real numbers, got dtype {extra[conf_key].dtype}"
            )
        conf = np.asarray(extra[conf_key], dtype=np.float64)
        if conf.shape == (f, k) and p == 1:
            conf = conf[:, None]
        if conf.shape != (f, p, k):
            raise Key2MeshError(
                f"{path}: '{conf_key}' must be {(f, p, k)} to match keypoints {arr.shape}, got {conf.shape}"
            )
    elif arr.shape[-1] == 3:
        conf = arr[..., 2].astype(np.float64)
    else:
        conf = np.ones((f, p, k))
    with np.errstate(invalid="ignore"):  # values that do not cast are reported just below
        xyc = np.concatenate([arr[..., :2].astype(np.float64), conf[..., None]], axis=-1)
    _finite_check(path, xyc, "keypoints")
    if "frame_names" in extra and extra["frame_names"].shape != (f,):
        raise Key2MeshError(
            f"{path}: frame_names must be a list of {f} names, got shape {extra['frame_names'].shape}"
        )
    names = (
        [_text(n) for n in extra["frame_names"]]
        if "frame_names" in extra
        else [f"{i:06d}" for i in range(f)]
    )
    pids = extra.get("person_ids", np.broadcast_to(np.arange(p), (f, p)))
    whole = pids.dtype.kind in "iu" or (
        pids.dtype.kind == "f"
        and bool(np.all((pids == np.round(pids)) & (np.abs(pids.astype(np.float64)) < 2.0**62)))
    )
    if not whole or pids.shape != (f, p):
        raise Key2MeshError(
            f"{path}: person_ids must be {(f, p)} integers, got {pids.shape} {pids.dtype}"
        )
    size = extra["image_size"].reshape(-1).tolist() if "image_size" in extra else None
    tracked = extra.get("tracked", np.asarray(False))
    if tracked.size != 1 or tracked.dtype.kind not in "biu":
        raise Key2MeshError(
            f"{path}: tracked must be one boolean, got {tracked.shape} {tracked.dtype}"
        )
    tracked = bool(tracked.reshape(-1)[0])
    fps = extra.get("fps")
    if fps is not None and (fps.size != 1 or fps.dtype.kind not in "iuf"):
        raise Key2MeshError(f"{path}: fps must be one number, got {fps.shape} {fps.dtype}")
    return Detections(
        xyc[..., :2],
        xyc[..., 2],
        name,
        names,
        pids,
        image_size=size,
        tracked=tracked,
        source=str(path),
        fps=None if fps is None else float(fps.reshape(-1)[0]),
    )


def write_npz(detections: Detections, path: str | Path) -> Path:
    """Save detections as ``.npz`` readable by :func:`read_numpy` (all fields kept)."""
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    extra = (
        {}
        if detections.image_size is None
        else {"image_size": np.asarray(detections.image_size, dtype=np.int64)}
    )
    if detections.fps is not None:
        extra["fps"] = np.float64(detections.fps)
    return atomic_savez(
        path,
        keypoints=detections.keypoints.astype(np.float32),
        confidence=detections.confidence.astype(np.float32),
        keypoint_set=np.asarray(detections.keypoint_set),
        frame_names=np.asarray(detections.frame_names, dtype=str),
        person_ids=detections.person_ids.astype(np.int64),
        tracked=np.asarray(detections.tracked),
        **extra,
    )


# ---------------------------------------------------------------------------------------- dispatch


def read_detections(path: str | Path, keypoint_set: str | None = None) -> Detections:
    """Read detections from any supported file, chosen by extension and content.

    A folder → OpenPose JSON files; ``.json`` → OpenPose (an object with ``people``) or COCO
    (a results list or an object with ``annotations``); ``.npy``/``.npz`` → :func:`read_numpy`.
    ``keypoint_set`` names the set in the file when it cannot be inferred.
    """
    path = Path(path)
    if path.is_dir():
        return read_openpose_json(path, keypoint_set)
    if not path.exists():
        raise Key2MeshError(f"{path}: no such file or folder")
    suffix = path.suffix.lower()
    if suffix in _NUMPY_EXT:
        return read_numpy(path, keypoint_set)
    if suffix != ".json":
        raise Key2MeshError(
            f"{path}: unknown detections format {suffix or '(no extension)'!r}; expected a folder, .json, .npy or .npz"
        )
    data = _load_json(path)
    if isinstance(data, dict) and "people" in data:
        return _openpose_from_files(path, [path], _declared(keypoint_set), preloaded=data)
    if isinstance(data, list) or (isinstance(data, dict) and "annotations" in data):
        return _coco_from_data(path, data, _declared(keypoint_set))
    raise Key2MeshError(
        f"{path}: unrecognised JSON layout (expected OpenPose 'people' or COCO keypoint results)"
    )
