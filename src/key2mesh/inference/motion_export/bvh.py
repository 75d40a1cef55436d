"""BVH export: the body's own skeleton (rest offsets of the track's shape), local rotations as
Euler angles and the root's translation, y up, metres (Blender: File > Import > BVH, scale 1)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from key2mesh.inference.motion_export.series import TrackSeries
from key2mesh.inference.motion_export.skeleton import body_skeleton
from key2mesh.safe_paths import atomic_write_text

EULER = "ZXY"  # channel order; R = Rz · Rx · Ry (intrinsic), degrees


def _fmt(v) -> str:
    return " ".join(f"{x:.6f}" for x in np.asarray(v).reshape(-1))


def bvh_text(skeleton, series: TrackSeries) -> str:
    """The BVH file of one track (see module doc)."""
    from scipy.spatial.transform import Rotation

    children: dict[int, list[int]] = {k: [] for k in range(len(skeleton.names))}
    for k, p in enumerate(skeleton.parents):
        if p >= 0:
            children[int(p)].append(k)
    lines: list[str] = ["HIERARCHY"]
    order: list[int] = []
    rot_channels = " ".join(f"{a}rotation" for a in EULER)

    def emit(k: int, depth: int) -> None:
        pad = "  " * depth
        root = skeleton.parents[k] < 0
        lines.append(f"{pad}{'ROOT' if root else 'JOINT'} {skeleton.names[k]}")
        lines.append(f"{pad}{{")
        lines.append(f"{pad}  OFFSET {_fmt(skeleton.offsets[k] if not root else np.zeros(3))}")
        if root:
            lines.append(f"{pad}  CHANNELS 6 Xposition Yposition Zposition {rot_channels}")
        else:
            lines.append(f"{pad}  CHANNELS 3 {rot_channels}")
        order.append(k)
        for c in children[k]:
            emit(c, depth + 1)
        if k in skeleton.end_sites:
            lines.extend(
                [
                    f"{pad}  End Site",
                    f"{pad}  {{",
                    f"{pad}    OFFSET {_fmt(skeleton.end_sites[k])}",
                    f"{pad}  }}",
                ]
            )
        lines.append(f"{pad}}}")

    emit(int(np.flatnonzero(skeleton.parents < 0)[0]), 0)
    rot = series.rotmats[:, skeleton.smpl_index[order]]  # (T, J, 3, 3) in file order
    t, j = rot.shape[:2]
    euler = Rotation.from_matrix(rot.reshape(-1, 3, 3)).as_euler(EULER, degrees=True)
    values = np.concatenate([series.root, euler.reshape(t, j * 3)], axis=1)
    lines += ["MOTION", f"Frames: {t}", f"Frame Time: {1.0 / series.fps:.8f}"]
    lines += [_fmt(row) for row in values]
    return "\n".join(lines) + "\n"


def write_bvh(model, series: TrackSeries, path: str | Path) -> Path:
    """Write one track as BVH (atomically); returns the path."""
    skeleton = body_skeleton(model, series.shape, series.body)
    return atomic_write_text(Path(path), bvh_text(skeleton, series))
