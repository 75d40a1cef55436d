"""The subject's own body: one shape per track, optionally set to a given height and sex.

Per track the shape is the median of its per-frame predictions (one person keeps one body; the
per-frame shapes jitter, and the median ignores the few frames a detection glitch throws off).
``--height METRES`` / ``--sex male|female`` (every track) or ``--subject TRACK:HEIGHT:SEX``
(one track; repeatable, or a YAML file) then change that shape:

* anny: ``sex`` sets the ``gender`` phenotype (0 male, 1 female: anny's anchors are
  ``["male", "female"]``); ``height`` solves for the ``height`` phenotype that gives the rest
  mesh that stature (top of the head to the soles), the other phenotypes kept. anny's stature is
  linear in that phenotype, so a few secant steps are exact; within [0, 1] an adult reaches about
  1.35-2.45 m (male) / 1.22-2.31 m (female); outside, the nearest end is kept with a warning.
* SMPL: ``height`` moves the betas by the smallest change (least norm) that gives the rest mesh
  that stature (SMPL's rest vertices are linear in the betas). SMPL's sex is its model file (the
  checkpoint's gender): ``sex`` is not applied (a warning).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from key2mesh.errors import Key2MeshError

log = logging.getLogger(__name__)
SEXES = ("male", "female")
ANNY_GENDER = {"male": 0.0, "female": 1.0}  # anny's gender phenotype anchors: male, female
HEIGHT_RANGE_M = (0.5, 2.6)  # a stature outside this is a typo (e.g. centimetres)
EVERY = None  # the subjects' key of what applies to every track


@dataclass(frozen=True)
class Subject:
    """What the user knows of one person: stature ``height_m`` (metres, head to soles) and
    ``sex`` (male | female); None: estimated."""

    height_m: float | None = None
    sex: str | None = None

    def __post_init__(self) -> None:
        if self.height_m is not None:
            lo, hi = HEIGHT_RANGE_M
            if not np.isfinite(self.height_m) or not lo <= self.height_m <= hi:
                raise Key2MeshError(
                    f"subject height {self.height_m!r}: give the stature in metres, {lo} to {hi}"
                )
        if self.sex is not None and self.sex not in SEXES:
            raise Key2MeshError(f"subject sex {self.sex!r}: choose from {', '.join(SEXES)}")

    def merged(self, other: Subject | None) -> Subject:
        """This subject with the fields ``other`` leaves unset filled from ``other``."""
        if other is None:
            return self
        return Subject(
            self.height_m if self.height_m is not None else other.height_m,
            self.sex if self.sex is not None else other.sex,
        )


def _height(value, what: str) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise Key2MeshError(f"{what}: height {value!r} is not a number of metres") from None


def _sex(value) -> str | None:
    if value is None or not str(value).strip():
        return None
    return str(value).strip().lower()


def parse_subject(spec: str) -> tuple[int, Subject]:
    """``"TRACK:HEIGHT:SEX"`` (HEIGHT or SEX may be empty, e.g. ``1:1.62:``, ``0::male``,
    ``0:1.8``) → (track, :class:`Subject`); a one-line error otherwise."""
    parts = spec.split(":")
    if not 2 <= len(parts) <= 3 or not parts[0].strip().isdigit():
        raise Key2MeshError(
            f"--subject {spec!r}: expected TRACK:HEIGHT:SEX (e.g. 0:1.80:male, 1::female, "
            "2:1.65) or a YAML file"
        )
    what = f"--subject {spec!r}"
    sex = parts[2] if len(parts) == 3 else None
    return int(parts[0]), Subject(_height(parts[1], what), _sex(sex))


def load_subjects(path: str | Path) -> dict[int | None, Subject]:
    """A YAML file ``{TRACK: {height: METRES, sex: male|female}, all: {...}}`` (``all``: every
    track) → subjects."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise Key2MeshError(f"--subject {path}: cannot read it ({exc})") from None
    if not isinstance(data, dict):
        raise Key2MeshError(f"--subject {path}: expected a mapping TRACK: {{height, sex}}")
    out: dict[int | None, Subject] = {}
    for key, value in data.items():
        if str(key).strip().lower() in ("all", "*"):
            track = EVERY
        elif str(key).strip().isdigit():
            track = int(key)
        else:
            raise Key2MeshError(f"--subject {path}: key {key!r} is not a track id (or 'all')")
        if not isinstance(value, dict) or set(value) - {"height", "height_m", "sex"}:
            raise Key2MeshError(f"--subject {path}: track {key}: expected {{height, sex}}")
        h = value.get("height", value.get("height_m"))
        out[track] = Subject(_height(h, f"--subject {path}"), _sex(value.get("sex")))
    return out


def subjects_from_options(
    height: float | None = None, sex: str | None = None, specs=()
) -> dict[int | None, Subject]:
    """``--height``, ``--sex`` (every track) and ``--subject`` values (``TRACK:HEIGHT:SEX`` or a
    YAML file) → {track or None (every track): :class:`Subject`}; empty when nothing is known."""
    out: dict[int | None, Subject] = {}
    if height is not None or sex is not None:
        out[EVERY] = Subject(height, _sex(sex))
    for spec in specs or ():
        if spec.lower().endswith((".yaml", ".yml")) or Path(spec).is_file():
            for track, subject in load_subjects(spec).items():
                out[track] = subject.merged(out.get(track))
        else:
            track, subject = parse_subject(spec)
            out[track] = subject.merged(out.get(track))
    return out


def subject_of(subjects: dict[int | None, Subject] | None, track: int) -> Subject | None:
    """The subject of one track: its own entry, its unset fields from the every-track one."""
    if not subjects:
        return None
    own, every = subjects.get(int(track)), subjects.get(EVERY)
    return own.merged(every) if own is not None else every


@torch.no_grad()
def rest_height(body, shape: torch.Tensor) -> torch.Tensor:
    """(B,) stature of bodies ``shape`` (B, S) in the rest pose, metres: the vertical extent of
    the mesh (head top to soles; the model's y is up)."""
    s = torch.as_tensor(shape, dtype=body.dtype, device=body.device).reshape(-1, body_dim(body))
    rot = torch.eye(3, dtype=body.dtype, device=body.device).expand(len(s), 24, 3, 3)
    y = body(rot, s).vertices[..., 1]
    return (y.amax(1) - y.amin(1)).double().cpu()


def body_dim(body) -> int:
    return int(body.default_shape(1).shape[-1])


def is_anny(body) -> bool:
    return bool(getattr(body, "phenotype_labels", None))


def fit_subject(body, shape: np.ndarray, subject: Subject, steps: int = 4) -> np.ndarray:
    """One track's shape (S,) set to ``subject`` (see the module doc): (S,) float32."""
    s = np.asarray(shape, np.float64).copy()
    if is_anny(body):
        labels = list(body.phenotype_labels)
        if subject.sex is not None:
            s[labels.index("gender")] = ANNY_GENDER[subject.sex]
        free, lo, hi = [labels.index("height")], 0.0, 1.0
    else:
        if subject.sex is not None:
            gender = getattr(body, "gender", "?")
            log.warning(
                "--sex %s is not applied to SMPL: its sex is the model file's (this body: %s)",
                subject.sex,
                gender,
            )
        free, lo, hi = list(range(len(s))), -np.inf, np.inf
    if subject.height_m is None:
        return s.astype(np.float32)
    eps = 0.05
    for _ in range(steps):  # secant / least-norm Gauss-Newton steps on the stature
        probe = np.repeat(s[None], len(free) + 1, 0)
        probe[np.arange(1, len(free) + 1), free] += eps
        h = rest_height(body, torch.from_numpy(probe)).numpy()
        grad = (h[1:] - h[0]) / eps
        miss = subject.height_m - h[0]
        if abs(miss) < 1e-4 or not np.any(grad):
            break
        s[free] = np.clip(s[free] + miss * grad / (grad @ grad), lo, hi)
    got = float(rest_height(body, torch.from_numpy(s[None]))[0])
    if abs(got - subject.height_m) > 0.01:
        log.warning(
            "height %.2f m is outside this body model's range for the subject: %.2f m kept",
            subject.height_m,
            got,
        )
    return s.astype(np.float32)


def track_shapes(
    body,
    shape: np.ndarray,
    track_id: np.ndarray,
    subjects: dict[int | None, Subject] | None = None,
    valid: np.ndarray | None = None,
) -> tuple[np.ndarray, dict[int, dict]]:
    """One shape per track: ``shape`` (N, S) per-row predictions → (N, S), every row of a
    track the median of its rows (of its ``valid`` (N,) rows where it has any: rows without
    usable keypoints do not vote), set to the track's subject (:func:`subject_of`) where one is
    given; and per track {"height_m": stature of its body, "subject": what was given or None}."""
    shape = np.asarray(shape, np.float32)
    out = shape.copy()
    tracks = np.unique(track_id)
    unknown = sorted(set(k for k in (subjects or {}) if k is not EVERY) - set(tracks.tolist()))
    if unknown:
        log.warning("--subject: no track %s in this motion", ", ".join(map(str, unknown)))
    info: dict[int, dict] = {}
    for t in tracks:  # a few tracks, not samples
        sel = track_id == t
        vote = sel if valid is None or not (sel & valid).any() else sel & valid
        s = np.median(shape[vote], axis=0)
        subject = subject_of(subjects, int(t))
        if subject is not None:
            s = fit_subject(body, s, subject)
        out[sel] = s
        info[int(t)] = {
            "subject": None
            if subject is None
            else {"height_m": subject.height_m, "sex": subject.sex},
        }
    if len(tracks):
        heights = rest_height(
            body, torch.from_numpy(np.stack([out[track_id == t][0] for t in tracks]))
        )
        for t, h in zip(tracks, heights.tolist()):
            info[int(t)]["height_m"] = h
    return out, info
