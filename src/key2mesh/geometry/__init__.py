"""Geometry: rotation representations, the fixed virtual camera, keypoint normalisation."""

from key2mesh.geometry.camera import VirtualCamera
from key2mesh.geometry.normalize import bbox_normalize
from key2mesh.geometry.rotations import (
    axis_angle_to_matrix,
    matrix_to_axis_angle,
    matrix_to_rot6d,
    rot6d_to_matrix,
    rotation_x,
    rotation_y,
    rotation_z,
)

__all__ = [
    "VirtualCamera",
    "bbox_normalize",
    "axis_angle_to_matrix",
    "matrix_to_axis_angle",
    "matrix_to_rot6d",
    "rot6d_to_matrix",
    "rotation_x",
    "rotation_y",
    "rotation_z",
]
