"""A synthetic, license-free stand-in for SMPL's model file — for tests only.

:func:`write_synthetic_smpl` writes a ``.pkl`` with the same keys, shapes and dtypes as SMPL's
own ``SMPL_NEUTRAL.pkl`` (``v_template`` (6890, 3), ``shapedirs`` (6890, 3, 10), ``posedirs``
(6890, 3, 207), ``J_regressor`` scipy.sparse CSC (24, 6890), ``weights`` (6890, 24),
``kintree_table`` (2, 24), ``f`` (13776, 3) uint32, ``J``, ``bs_type``, ``bs_style``), as plain
numpy/scipy objects (no chumpy), so ``smplx`` loads it through its real code path. The geometry is
NOT SMPL's: it is a stick figure of tubes around the bones of a T-posed skeleton with plausible
joint positions (metres, y up, facing +z, pelvis at y ≈ -0.22 like SMPL). Each joint is the exact
centre of a ring of vertices (its ``J_regressor`` row averages that ring), every vertex is skinned
rigidly to the joint that drives its bone, and the shape/pose blend shapes are small random ones.
The face/foot landmark vertices of ``smplx.vertex_ids`` (nose, eyes, ears, toes, heels) are placed
at plausible spots so that regressed keypoints look sensible. The faces are the tube quads and
end caps, padded with repeats to SMPL's 13,776 triangles.

It exists only to exercise the SMPL backend without the licensed files; never use it for results.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import scipy.sparse

from key2mesh.keypoints.sets import SMPL24_PARENTS

NUM_VERTICES = 6890
NUM_FACES = 13776
NUM_JOINTS = 24
RING = 10  # vertices per ring around a bone

# Plausible SMPL-like T-pose joint positions (metres, SMPL frame; x = body's left).
_JOINTS = np.array([
    [0.000, -0.223, 0.028],   # pelvis
    [0.070, -0.314, 0.023],   # left hip
    [-0.070, -0.314, 0.023],  # right hip
    [0.000, -0.104, 0.012],   # spine1
    [0.105, -0.698, 0.028],   # left knee
    [-0.105, -0.698, 0.028],  # right knee
    [0.000, 0.031, 0.039],    # spine2
    [0.090, -1.118, -0.019],  # left ankle
    [-0.090, -1.118, -0.019], # right ankle
    [0.000, 0.089, 0.042],    # spine3
    [0.118, -1.176, 0.103],   # left foot
    [-0.118, -1.176, 0.103],  # right foot
    [0.000, 0.300, 0.015],    # neck
    [0.075, 0.210, 0.032],    # left collar
    [-0.075, 0.210, 0.032],   # right collar
    [0.000, 0.372, 0.046],    # head
    [0.175, 0.235, 0.021],    # left shoulder
    [-0.175, 0.235, 0.021],   # right shoulder
    [0.432, 0.217, -0.009],   # left elbow
    [-0.432, 0.217, -0.009],  # right elbow
    [0.686, 0.223, -0.010],   # left wrist
    [-0.686, 0.223, -0.010],  # right wrist
    [0.770, 0.214, -0.022],   # left hand
    [-0.770, 0.214, -0.022],  # right hand
])  # fmt: skip

# Tube radius of the bone driven by each joint (metres).
_RADIUS = np.array([0.11, 0.07, 0.07, 0.11, 0.05, 0.05, 0.11, 0.04, 0.04, 0.10, 0.03, 0.03,
                    0.05, 0.05, 0.05, 0.09, 0.045, 0.045, 0.04, 0.04, 0.035, 0.035, 0.02, 0.02])  # fmt: skip

# Landmark vertices (keys of smplx.vertex_ids["smplh"]): (driving joint, offset from that joint).
_LANDMARKS = {
    "nose": (15, (0.0, 0.03, 0.10)),
    "leye": (15, (0.032, 0.07, 0.085)),
    "reye": (15, (-0.032, 0.07, 0.085)),
    "lear": (15, (0.075, 0.04, -0.005)),
    "rear": (15, (-0.075, 0.04, -0.005)),
    "LBigToe": (10, (-0.02, -0.03, 0.07)),
    "LSmallToe": (10, (0.04, -0.03, 0.05)),
    "LHeel": (7, (0.0, -0.08, -0.06)),
    "RBigToe": (11, (0.02, -0.03, 0.07)),
    "RSmallToe": (11, (-0.04, -0.03, 0.05)),
    "RHeel": (8, (0.0, -0.08, -0.06)),
}
_GENDER_SCALE = {"neutral": 1.0, "male": 1.04, "female": 0.96}


def _segments(joints: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, int, int]]:
    """(start, end, driving joint, end joint or -1) for every bone plus head/hand/toe end pieces."""
    segs = [(joints[p], joints[j], p, j) for j, p in enumerate(SMPL24_PARENTS) if p >= 0]
    for j, off in (
        (15, (0, 0.15, 0)),
        (22, (0.08, 0, 0)),
        (23, (-0.08, 0, 0)),
        (10, (0, -0.02, 0.08)),
        (11, (0, -0.02, 0.08)),
    ):
        segs.append((joints[j], joints[j] + np.asarray(off, dtype=float), j, -1))
    return segs


def _ring_basis(axis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = axis / np.linalg.norm(axis)
    helper = np.array([0.0, 0.0, 1.0]) if abs(a[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    u = np.cross(a, helper)
    u /= np.linalg.norm(u)
    return u, np.cross(a, u)


def synthetic_smpl_data(gender: str = "neutral", seed: int = 0, num_betas: int = 10) -> dict:
    """The dict that :func:`write_synthetic_smpl` pickles (SMPL's keys, numpy/scipy values)."""
    from smplx.vertex_ids import vertex_ids  # the landmark vertex table smplx itself uses

    rng = np.random.default_rng(seed)
    joints = _JOINTS[0] + _GENDER_SCALE[gender] * (_JOINTS - _JOINTS[0])
    segs = _segments(joints)
    lengths = np.array([np.linalg.norm(e - s) for s, e, _, _ in segs])
    landmark_ids = np.array([vertex_ids["smplh"][k] for k in _LANDMARKS])
    free = np.setdiff1d(np.arange(NUM_VERTICES), landmark_ids)  # vertex ids of the tube rings
    total_rings = len(free) // RING
    rings = np.maximum(2, np.floor(lengths / lengths.sum() * total_rings).astype(int))
    rings[np.argmax(lengths)] += total_rings - rings.sum()
    leftover = len(free) - total_rings * RING  # extra vertices, parked at the pelvis

    theta = 2 * np.pi * np.arange(RING) / RING
    pos, drive, faces = [], [], []
    ring_of_joint: dict[int, np.ndarray] = {}
    start = 0
    for (s, e, driver, end_joint), n in zip(segs, rings, strict=True):
        u, w = _ring_basis(e - s)
        t = np.linspace(0.0, 1.0, n)
        centres = s + t[:, None] * (e - s)
        circle = _RADIUS[driver] * (np.cos(theta)[:, None] * u + np.sin(theta)[:, None] * w)
        pos.append((centres[:, None] + circle[None]).reshape(-1, 3))
        drive.append(np.full(n * RING, driver))
        idx = start + np.arange(n * RING).reshape(n, RING)
        a, b = idx[:-1], np.roll(idx[:-1], -1, axis=1)
        c, d = idx[1:], np.roll(idx[1:], -1, axis=1)
        faces += [np.stack([a, b, d], -1).reshape(-1, 3), np.stack([a, d, c], -1).reshape(-1, 3)]
        for cap in (idx[0], idx[-1][::-1]):  # fan caps
            faces.append(np.stack([np.full(RING - 2, cap[0]), cap[1:-1], cap[2:]], -1))
        if end_joint >= 0:
            ring_of_joint[end_joint] = idx[-1]
        if driver == 0 and end_joint == 3:
            ring_of_joint[0] = idx[0]
        start += n * RING
    pos.append(np.repeat(joints[:1], leftover, axis=0))
    drive.append(np.zeros(leftover, dtype=int))
    tube_pos, tube_drive = np.concatenate(pos), np.concatenate(drive)

    v = np.zeros((NUM_VERTICES, 3))
    driver_of = np.zeros(NUM_VERTICES, dtype=int)
    v[free], driver_of[free] = tube_pos, tube_drive
    for vid, (j, off) in zip(landmark_ids, _LANDMARKS.values(), strict=True):
        v[vid], driver_of[vid] = joints[j] + np.asarray(off), j
    f = free[np.concatenate(faces)]  # tube-local → mesh vertex ids
    f = np.resize(f, (NUM_FACES, 3)).astype(np.uint32)  # pad with repeats (or trim) to SMPL's count

    rows = np.repeat(np.arange(NUM_JOINTS), RING)
    cols = free[np.concatenate([ring_of_joint[j] for j in range(NUM_JOINTS)])]
    j_regressor = scipy.sparse.csc_matrix(
        (np.full(len(rows), 1.0 / RING), (rows, cols)), shape=(NUM_JOINTS, NUM_VERTICES)
    )
    weights = np.zeros((NUM_VERTICES, NUM_JOINTS))
    weights[np.arange(NUM_VERTICES), driver_of] = 1.0

    # Shape space: beta 0 scales the body about the pelvis; the others move each bone's tube by a
    # random few millimetres per unit (plus tiny per-vertex noise).
    shapedirs = np.zeros((NUM_VERTICES, 3, num_betas))
    shapedirs[:, :, 0] = 0.05 * (v - joints[0])
    bone_offsets = rng.normal(0.0, 0.006, size=(NUM_JOINTS, 3, num_betas - 1))
    shapedirs[:, :, 1:] = bone_offsets[driver_of] + rng.normal(
        0.0, 0.0005, size=(NUM_VERTICES, 3, num_betas - 1)
    )
    posedirs = rng.normal(0.0, 1e-4, size=(NUM_VERTICES, 3, 9 * (NUM_JOINTS - 1)))
    kintree = np.array(
        [[4294967295 if p < 0 else p for p in SMPL24_PARENTS], list(range(NUM_JOINTS))],
        dtype=np.int64,
    )
    return {
        "v_template": v,
        "shapedirs": shapedirs,
        "posedirs": posedirs,
        "J_regressor": j_regressor,
        "J": np.asarray(j_regressor @ v),
        "weights": weights,
        "kintree_table": kintree,
        "f": f,
        "bs_type": "lrotmin",
        "bs_style": "lbs",
    }


def write_synthetic_smpl(
    path: str | Path, gender: str = "neutral", seed: int = 0, num_betas: int = 10
) -> Path:
    """Write a synthetic SMPL-format model file to ``path`` (tests only; see the module doc).

    Pickled with protocol 2 so that ``pickle.load(f, encoding="latin1")`` (smplx's loader) reads it.
    """
    if gender not in _GENDER_SCALE:
        raise ValueError(f"gender must be one of {sorted(_GENDER_SCALE)}, got {gender!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        pickle.dump(synthetic_smpl_data(gender, seed, num_betas), fh, protocol=2)
    return path
