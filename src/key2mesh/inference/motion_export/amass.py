"""AMASS-style npz export of an SMPL track (what AMASS tools and the SMPL-X Blender add-on's
"Add Animation" read): ``poses`` (T, 156) SMPL-H axis-angle (root, 21 body joints, 30 hand
joints left at zero: SMPL's two hand joints have no SMPL-H counterpart), ``trans`` (T, 3) m,
``betas`` (16,) (the track's 10 SMPL betas, zero-padded), ``gender``, ``mocap_framerate``,
``surface_model_type`` "smplh" (what those tools need for the 156-value poses). The betas are
SMPL's: a tool that loads SMPL-H shows the pose exactly and the shape approximately (SMPL-H's
shape space is its own); SMPL itself with the first 72 pose values is exact (tested).

AMASS is z up: the model's y-up world is turned by ``C = Rx(+90°)`` (root orientation and
translation). ``trans`` follows SMPL's convention: ``vertices = SMPL(poses, betas) + trans``,
where SMPL's root joint sits at its rest position J0(betas), so ``trans = C · root - J0``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from key2mesh.body.traits import body_traits
from key2mesh.errors import Key2MeshError
from key2mesh.inference.motion_export.series import TrackSeries
from key2mesh.safe_paths import atomic_savez

Y_UP_TO_Z_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])  # Rx(+90°)


@torch.no_grad()
def smpl_rest_root(body, betas: np.ndarray) -> np.ndarray:
    """(3,) SMPL's root joint J0 for ``betas`` (the raw SMPL layer, before key2mesh re-centres)."""
    smpl = body.smpl
    eye = torch.eye(3, dtype=body.dtype, device=body.device)
    out = smpl(
        betas=torch.as_tensor(betas, dtype=body.dtype, device=body.device).reshape(1, -1),
        global_orient=eye.expand(1, 1, 3, 3),
        body_pose=eye.expand(1, 23, 3, 3),
        pose2rot=False,
    )
    return out.joints[0, 0].double().cpu().numpy()


def amass_arrays(model, series: TrackSeries) -> dict[str, np.ndarray]:
    """The AMASS npz arrays of one SMPL track."""
    from key2mesh.inference.motion import axis_angle

    if not body_traits(series.body).supports_amass or not hasattr(model.body, "smpl"):
        raise Key2MeshError(
            "AMASS export needs an SMPL body model (the checkpoint's body is not SMPL)"
        )
    t = len(series)
    root_rot = Y_UP_TO_Z_UP @ series.rotmats[:, 0]
    poses = np.zeros((t, 52, 3))
    poses[:, 0] = axis_angle(root_rot)
    poses[:, 1:22] = axis_angle(series.rotmats[:, 1:22])
    j0 = smpl_rest_root(model.body, series.shape)
    betas = np.zeros(16)
    betas[: len(series.shape)] = series.shape[:16]
    return {
        "poses": poses.reshape(t, 156),
        "trans": series.root @ Y_UP_TO_Z_UP.T - j0,
        "betas": betas,
        "gender": np.array(getattr(model.body, "gender", "neutral")),
        "mocap_framerate": np.array(float(series.fps)),
        "surface_model_type": np.array("smplh"),
    }


def write_amass(model, series: TrackSeries, path: str | Path) -> Path:
    return atomic_savez(Path(path), **amass_arrays(model, series))
